// Verifier: checks region data against its committed checksum on a thread
// of its own, so that verifying gigabytes never stalls the event loop.
//
// Two classes of work: urgent checks (a reader's OPEN, a VERIFY request)
// run first and at full speed, on several threads at once (a version's
// regions, a region's blocks); background checks (the scrub) run on the
// first thread only when nothing urgent waits, in slices, at no more than a
// configured rate, so they never starve clients. The caller pins every region it submits (its
// extent cannot be freed or reused under the check) and collects results
// on the main thread after event_fd() becomes readable.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "workers.hpp"

namespace pmcr::server {

class Verifier {
 public:
  struct Check {
    uint64_t id = 0;
    const uint8_t* data = nullptr;
    uint64_t size = 0;
    uint64_t expected = 0;
    bool background = false;
  };
  struct Result {
    uint64_t id = 0;
    bool ok = false;
    uint64_t actual = 0;
    bool cancelled = false;  // given up (cancel): neither passed nor failed
  };

  // RATE: bytes per second for background checks (0: unlimited); THREADS
  // (at least 1) hash urgent checks in parallel.
  Verifier(uint64_t background_rate, unsigned threads);
  ~Verifier();
  Verifier(const Verifier&) = delete;
  Verifier& operator=(const Verifier&) = delete;

  void submit(const Check& check);
  // Gives up the background checks IDS (their data is about to be freed):
  // each comes back from take() as cancelled, at once if it was waiting, or
  // after the slice being hashed. Urgent checks and unknown ids are left alone.
  void cancel(const std::vector<uint64_t>& ids);
  // Results ready so far (clears the event fd).
  std::vector<Result> take();
  int event_fd() const { return wakeup_.fd(); }
  // Urgent and background checks not finished yet.
  size_t pending() const;

 private:
  struct Running {
    Check check;
    uint64_t done = 0;
    void* state = nullptr;  // XXH3_state_t
  };
  // The first thread also runs the background checks.
  void loop(bool background_too);
  void finish(Running& r);

  const uint64_t rate_;
  Wakeup wakeup_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Check> urgent_, background_;
  std::vector<Result> results_;
  uint64_t paced_ = 0;        // the background check under way (0: none)
  bool give_up_paced_ = false;  // ... was cancelled: its thread answers it
  size_t running_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace pmcr::server
