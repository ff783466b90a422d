// Committer: the heavy half of a COMMIT (persisting the region's data and
// checksumming it, a pass over every byte) on worker threads, so that a
// gigabyte commit does not stall the event loop, and several commits use
// several cores. The event loop prepares the commit (checks, pins the
// region), submits it here, and finishes it (the catalogue's record, the
// reply) when event_fd() says its result is ready: the catalogue is only
// ever changed on the event loop's thread, in the same order as before.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pmcr::server {

class Committer {
 public:
  struct Job {
    uint64_t id = 0;
    uint8_t* data = nullptr;
    uint64_t size = 0;
  };
  struct Result {
    uint64_t id = 0;
    uint64_t checksum = 0;  // of the data, after it was persisted
  };

  // THREADS workers; PERSIST makes a range of the pool durable (thread-safe).
  Committer(unsigned threads, std::function<void(const void*, size_t)> persist);
  ~Committer();
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }
  void submit(const Job& job);
  // Results ready so far (clears the event fd).
  std::vector<Result> take();
  int event_fd() const { return efd_; }

 private:
  void loop();

  std::function<void(const void*, size_t)> persist_;
  int efd_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<Result> results_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace pmcr::server
