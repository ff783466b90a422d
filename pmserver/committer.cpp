#include "committer.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"

namespace pmcr::server {

Committer::Committer(unsigned threads, std::function<void(const void*, size_t)> persist)
    : persist_(std::move(persist)) {
  efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd_ < 0) throw Error(PMCR_E_IO, std::string("eventfd: ") + std::strerror(errno));
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
}

Committer::~Committer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  ::close(efd_);
}

void Committer::submit(const Job& job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(job);
  }
  cv_.notify_one();
}

std::vector<Committer::Result> Committer::take() {
  uint64_t n;
  while (::read(efd_, &n, sizeof n) > 0) {
  }
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(results_, {});
}

void Committer::loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;  // the pinned regions of unfinished commits are the server's to drop
      job = jobs_.front();
      jobs_.pop_front();
    }
    PMCR_FAULT_POINT("commit.work");  // tests: pause one commit's worker
    persist_(job.data, job.size);
    const uint64_t sum = checksum(job.data, job.size);
    {
      std::lock_guard<std::mutex> lock(mu_);
      results_.push_back(Result{job.id, sum});
    }
    const uint64_t one = 1;
    (void)!::write(efd_, &one, sizeof one);
  }
}

}  // namespace pmcr::server
