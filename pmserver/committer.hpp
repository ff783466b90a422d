// Committer: the heavy half of a COMMIT (persisting the region's data and
// checksumming it, a pass over every byte) on worker threads, so that a
// gigabyte commit does not stall the event loop, and several commits use
// several cores. The event loop prepares the commit (checks, pins the
// region), submits it here, and finishes it (the catalogue's record, the
// reply) when event_fd() says its result is ready: the catalogue is only
// ever changed on the event loop's thread, in the same order as before.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "workers.hpp"

namespace pmcr::server {

class Committer {
 public:
  struct Job {
    uint64_t id = 0;
    uint8_t* data = nullptr;
    uint64_t size = 0;
    // A region kept in blocks: its new blocks instead, each persisted and
    // hashed on its own.
    std::vector<std::pair<uint8_t*, uint64_t>> blocks;
  };
  struct Result {
    uint64_t id = 0;
    uint64_t checksum = 0;  // of the data, after it was persisted
    std::vector<uint64_t> hashes;  // of each block, in order
  };

  // THREADS workers; PERSIST makes a range of the pool durable (thread-safe).
  Committer(unsigned threads, std::function<void(const void*, size_t)> persist);

  unsigned threads() const { return workers_.threads(); }
  void submit(const Job& job) { workers_.submit(job); }
  // Results ready so far (clears the event fd).
  std::vector<Result> take() { return workers_.take(); }
  int event_fd() const { return workers_.event_fd(); }

 private:
  Result work(const Job& job);

  std::function<void(const void*, size_t)> persist_;
  Workers<Job, Result> workers_;  // last: its threads use the members above
};

}  // namespace pmcr::server
