#include "lease.hpp"

#include <algorithm>

#include "error.hpp"
#include "log.hpp"

namespace pmcr::client {

LeaseHolder::LeaseHolder(Options options, std::chrono::milliseconds lease)
    : lease_(lease), period_(std::max<std::chrono::milliseconds>(lease / 4, std::chrono::milliseconds(25))) {
  options.name += "/lease";
  // Each renewal must get through well within the lease.
  options.timeout = std::min<std::chrono::milliseconds>(options.timeout, std::max(lease, std::chrono::milliseconds(1000)));
  client_ = std::make_unique<Client>(options);
}

void LeaseHolder::hold(const std::string& job, uint64_t attempt, uint32_t rank, uint32_t nranks) {
  if (thread_.joinable()) throw Error(PMCR_E_STATE, "this lease holder holds a lease already");
  job_ = job;
  client_->join(job, attempt);
  client_->hold_lease(job, rank, nranks, static_cast<uint32_t>(lease_.count()));
  thread_ = std::thread([this] { run(); });
}

LeaseHolder::~LeaseHolder() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaseHolder::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, period_, [this] { return stop_; })) {
    lock.unlock();
    std::string failure;
    try {
      client_->renew_lease(job_);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    lock.lock();
    if (!failure.empty()) {
      error_ = failure;
      log()->warn("job {}: this rank's lease is no longer renewed: {}", job_, failure);
      return;
    }
  }
}

bool LeaseHolder::leave() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (!thread_.joinable()) return false;  // it never held one
  thread_.join();
  if (!error().empty()) return false;
  try {
    client_->leave_lease(job_);
    return true;
  } catch (const std::exception& e) {
    log()->debug("job {}: giving the lease up: {}", job_, e.what());
    return false;
  }
}

std::string LeaseHolder::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

}  // namespace pmcr::client
