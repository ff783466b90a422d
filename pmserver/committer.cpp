#include "committer.hpp"

#include <utility>

#include "checksum.hpp"
#include "fault.hpp"

namespace pmcr::server {

Committer::Committer(unsigned threads, std::function<void(const void*, size_t)> persist)
    : persist_(std::move(persist)), workers_(threads, [this](Job& job) { return work(job); }) {}

// (Jobs still queued when the server stops are dropped: their pinned
// regions are the server's to release.)
Committer::Result Committer::work(const Job& job) {
  PMCR_FAULT_POINT("commit.work");  // tests: pause one commit's worker
  Result r{job.id, 0, {}};
  if (!job.blocks.empty()) {
    r.hashes.reserve(job.blocks.size());
    for (const auto& [p, n] : job.blocks) {
      persist_(p, n);
      r.hashes.push_back(checksum(p, n));
    }
    return r;
  }
  persist_(job.data, job.size);
  r.checksum = checksum(job.data, job.size);
  return r;
}

}  // namespace pmcr::server
