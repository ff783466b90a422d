// The plumbing of pmserver's helper threads, written once. The event loop
// owns the catalogue and every connection; helpers (the Verifier, the
// Committer, the Drainer, the peer repair) take work from it on threads of
// their own and hand results back through an eventfd the loop polls.
//
// - Wakeup: that eventfd.
// - Workers<Job, Result>: THREADS threads taking jobs from one queue in
//   order, each turned into a result by WORK; the loop takes the results
//   when event_fd() is readable.
// - Periodic: one thread calling a function every interval until stopped.
//
// Each stops and joins its threads in its destructor: a helper class keeps
// its Workers or Periodic as its last member, so the threads end before the
// state they use.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace pmcr::server {

class Wakeup {
 public:
  Wakeup();  // throws Error(PMCR_E_IO) when no eventfd can be made
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  int fd() const { return fd_; }
  void signal();  // from any thread
  void clear();   // the loop, before it takes what was signalled

 private:
  int fd_ = -1;
};

template <class Job, class Result>
class Workers {
 public:
  using Work = std::function<Result(Job&)>;

  Workers(unsigned threads, Work work) : work_(std::move(work)) {
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  }
  // Jobs not started are dropped (their owner releases what they hold).
  ~Workers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }
  int event_fd() const { return wakeup_.fd(); }

  void submit(Job job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  // The results ready so far.
  std::vector<Result> take() {
    wakeup_.clear();
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(results_, {});
  }
  // Jobs queued or running.
  bool busy() const {
    std::lock_guard<std::mutex> lock(mu_);
    return !jobs_.empty() || running_ > 0;
  }
  // For a long job to give up early: the owner is being destroyed.
  bool stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_;
  }

 private:
  void loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (stop_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        running_++;
      }
      Result result = work_(job);
      {
        std::lock_guard<std::mutex> lock(mu_);
        results_.push_back(std::move(result));
        running_--;
      }
      wakeup_.signal();
    }
  }

  Work work_;
  Wakeup wakeup_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<Result> results_;
  size_t running_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

class Periodic {
 public:
  // Calls TICK every INTERVAL (the first after one interval) until destroyed.
  Periodic(std::chrono::milliseconds interval, std::function<void()> tick);
  ~Periodic();
  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

  bool stopping() const;

 private:
  std::chrono::milliseconds interval_;
  std::function<void()> tick_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace pmcr::server
