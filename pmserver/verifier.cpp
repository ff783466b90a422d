#include "verifier.hpp"

#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>


namespace pmcr::server {
namespace {

constexpr uint64_t kSlice = 4u << 20;  // bytes hashed between looks at the queues

}  // namespace

Verifier::Verifier(uint64_t background_rate, unsigned threads) : rate_(background_rate) {
  for (unsigned i = 0; i < std::max(1u, threads); ++i) threads_.emplace_back([this, i] { loop(i == 0); });
}

Verifier::~Verifier() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Verifier::submit(const Check& check) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    (check.background ? background_ : urgent_).push_back(check);
  }
  // (All: the one that would take it may be the first thread, pacing a
  // background check.)
  cv_.notify_all();
}

void Verifier::cancel(const std::vector<uint64_t>& ids) {
  if (ids.empty()) return;
  bool any = false, wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = background_.begin(); it != background_.end();) {
      if (std::find(ids.begin(), ids.end(), it->id) == ids.end()) {
        ++it;
        continue;
      }
      results_.push_back(Result{it->id, false, 0, true});
      it = background_.erase(it);
      any = true;
    }
    // The one under way (paced, or a slice being hashed): its thread gives it up.
    if (paced_ != 0 && std::find(ids.begin(), ids.end(), paced_) != ids.end()) give_up_paced_ = wake = true;
  }
  if (wake) cv_.notify_all();
  if (any) wakeup_.signal();
}

std::vector<Verifier::Result> Verifier::take() {
  wakeup_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(results_, {});
}

size_t Verifier::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return urgent_.size() + background_.size() + running_;
}

void Verifier::finish(Running& r) {
  const uint64_t actual = XXH3_64bits_digest(static_cast<XXH3_state_t*>(r.state));
  XXH3_freeState(static_cast<XXH3_state_t*>(r.state));
  r.state = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    results_.push_back(Result{r.check.id, actual == r.check.expected, actual});
    running_--;
    if (r.check.background) {  // (a cancel that came too late: it is answered all the same)
      paced_ = 0;
      give_up_paced_ = false;
    }
  }
  wakeup_.signal();
}

// One urgent check runs to its end before the thread takes the next; a
// background check is hashed a slice at a time, and an urgent check that
// arrives meanwhile runs before its next slice. Background slices are
// paced to the rate.
void Verifier::loop(bool background_too) {
  using Clock = std::chrono::steady_clock;
  std::optional<Running> background;
  Clock::time_point allowed = Clock::now();  // when the next background slice may start
  for (;;) {
    Running r;
    bool urgent = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        if (stop_) {
          if (background) XXH3_freeState(static_cast<XXH3_state_t*>(background->state));
          return;
        }
        if (!urgent_.empty()) {
          r.check = urgent_.front();
          urgent_.pop_front();
          running_++;
          urgent = true;
          break;
        }
        if (!background_too) {
          cv_.wait(lock);
          continue;
        }
        if (!background && !background_.empty()) {
          background.emplace();
          background->check = background_.front();
          background_.pop_front();
          paced_ = background->check.id;
          running_++;
        }
        if (background && give_up_paced_) {
          XXH3_freeState(static_cast<XXH3_state_t*>(background->state));
          results_.push_back(Result{background->check.id, false, 0, true});
          running_--;
          background.reset();
          paced_ = 0;
          give_up_paced_ = false;
          wakeup_.signal();
          continue;
        }
        if (background) {
          if (rate_ == 0 || Clock::now() >= allowed) break;
          cv_.wait_until(lock, allowed);
          continue;
        }
        cv_.wait(lock);
      }
    }
    Running& job = urgent ? r : *background;
    if (!job.state) {
      job.state = XXH3_createState();
      XXH3_64bits_reset(static_cast<XXH3_state_t*>(job.state));
    }
    auto* state = static_cast<XXH3_state_t*>(job.state);
    if (urgent) {
      XXH3_64bits_update(state, job.check.data, job.check.size);
      finish(job);
      continue;
    }
    const uint64_t n = std::min<uint64_t>(kSlice, job.check.size - job.done);
    const auto started = Clock::now();
    XXH3_64bits_update(state, job.check.data + job.done, n);
    job.done += n;
    if (rate_ > 0)  // the slice "costs" n / rate seconds of the budget
      allowed = std::max(allowed, started) +
                std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(n) / double(rate_)));
    if (job.done >= job.check.size) {
      finish(job);
      background.reset();
    }
  }
}

}  // namespace pmcr::server
