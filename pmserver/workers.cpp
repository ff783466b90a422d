#include "workers.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "error.hpp"

namespace pmcr::server {

Wakeup::Wakeup() {
  fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) throw Error(PMCR_E_IO, std::string("eventfd: ") + std::strerror(errno));
}

Wakeup::~Wakeup() { ::close(fd_); }

void Wakeup::signal() {
  const uint64_t one = 1;
  (void)!::write(fd_, &one, sizeof one);
}

void Wakeup::clear() {
  uint64_t n;
  while (::read(fd_, &n, sizeof n) > 0) {
  }
}

Periodic::Periodic(std::chrono::milliseconds interval, std::function<void()> tick)
    : interval_(interval), tick_(std::move(tick)) {
  thread_ = std::thread([this] {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (cv_.wait_for(lock, interval_, [&] { return stop_; })) return;
      }
      tick_();
    }
  });
}

Periodic::~Periodic() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool Periodic::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

}  // namespace pmcr::server
