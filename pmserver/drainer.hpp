// Drainer: pmserver --drain DIR copies every sealed version (or the part
// of it this server holds) into DIR, the capacity tier on the site's
// parallel file system, on a thread of its own and at no more than
// --drain-rate bytes per second, so it never takes the checkpoints' time.
//
// Layout (README, "A capacity tier"): DIR/<job>/<version>/<rank>/<id>, one
// file per region (its stored bytes: encrypted ones stay encrypted), and a
// manifest per part, written last, that names the version's rank count,
// the ranks the part holds and every region's size, checksum and block
// size. The manifest is the record that the part is drained: files and
// manifest are written to temporary names, fsynced and renamed, so a
// manifest never names a file that is not whole. Two servers holding the
// same ranks (copies) write the same files and the same manifest name; the
// second finds it there and skips. Every region is checked against its
// checksum as it is copied: damaged data is never drained as good.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "workers.hpp"

namespace pmcr::server {

class Drainer {
 public:
  struct Region {
    uint32_t rank = 0, id = 0;
    uint64_t size = 0, checksum = 0, block_size = 0;
    uint64_t handle = 0;  // pinned by the event loop until the result is taken
    std::vector<std::pair<const uint8_t*, uint64_t>> pieces;  // its bytes, in order
  };
  struct Job {
    std::string job;
    uint64_t version = 0;
    uint32_t nranks = 0;
    std::vector<Region> regions;
  };
  struct Result {
    std::string job;
    uint64_t version = 0;
    std::vector<uint64_t> handles;  // to unpin
    bool drained = false;           // written now, or found there already
    std::string error;              // why not
    uint64_t bytes = 0;
  };

  // DIR must exist. RATE: bytes per second (0: unlimited).
  Drainer(std::string dir, uint64_t rate);

  const std::string& dir() const { return dir_; }
  // The manifest's name for a part holding RANKS of NRANKS.
  static std::string manifest_name(const std::set<uint32_t>& ranks, uint32_t nranks);
  bool busy() const { return worker_.busy(); }
  void submit(Job job) { worker_.submit(std::move(job)); }
  std::vector<Result> take() { return worker_.take(); }
  int event_fd() const { return worker_.event_fd(); }

 private:
  Result drain(const Job& job);

  std::string dir_;
  uint64_t rate_;
  Workers<Job, Result> worker_;  // one thread; last: it uses the members above
};

}  // namespace pmcr::server
