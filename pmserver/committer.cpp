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
  persist_(job.data, job.size);
  return Result{job.id, checksum(job.data, job.size)};
}

}  // namespace pmcr::server
