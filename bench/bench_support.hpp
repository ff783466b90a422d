// What pmcr-bench's own measurements share (pmcr_bench.cpp, ucx_limit.cpp):
// the median of repeated runs, and memory touched before anything is timed.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "error.hpp"
#include "text.hpp"

namespace pmcr::bench {

// A checkpoint's baselines are measured in steady state, as pmcr's checkpoint
// is (pmcr-bench-rank times it after PMCR_KEEP + 1 = 3 checkpoints): the
// same processes and connections move the bytes this many times untimed
// first. On a VM the first transfer between new processes can cost 10x the
// next.
constexpr int kWarmRounds = 3;

// How a baseline measures REPS times: in SETS of new rank processes, each
// moving the bytes ROUNDS times on the same connections, the first UNTIMED
// of them not counted. A checkpoint (TO_SERVER): one set, kWarmRounds
// untimed rounds first. A restart, a new job each time: REPS sets of one.
struct Rounds {
  int sets, rounds, untimed;
};
inline Rounds rounds_for(bool to_server, int reps) {
  return to_server ? Rounds{1, kWarmRounds + reps, kWarmRounds} : Rounds{reps, 1, 0};
}

// NAN if there is nothing, or a run that gave none.
inline double median(std::vector<double> v) {
  if (v.empty() || std::any_of(v.begin(), v.end(), [](double x) { return std::isnan(x); })) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// A buffer of pages touched up front, so first-touch faults are not timed.
struct Buffer {
  explicit Buffer(uint64_t n) : size(n) {
    data = static_cast<uint8_t*>(::mmap(nullptr, std::max<uint64_t>(n, 1), PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
    if (data == MAP_FAILED) throw pmcr::Error(PMCR_E_NOMEM, "cannot allocate " + pmcr::format_size(n));
  }
  ~Buffer() { ::munmap(data, std::max<uint64_t>(size, 1)); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint64_t size;
  uint8_t* data;
};

}  // namespace pmcr::bench
