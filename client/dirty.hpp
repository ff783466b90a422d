// Write tracking: which pages of the protected buffers the CPU wrote since
// the last checkpoint, so an incremental checkpoint (PMCR_TRACK_WRITES=1)
// hashes only the blocks that may have changed instead of reading every
// protected byte. Two mechanisms of the Linux kernel, the first available:
//   uffd-wp     userfaultfd's asynchronous write-protection with the
//               PAGEMAP_SCAN ioctl (Linux 6.7): the kernel marks a page
//               written on its first write, and a scan returns the written
//               pages and protects them again, atomically;
//   soft-dirty  /proc/self/clear_refs and the pagemap's soft-dirty bit
//               (CONFIG_MEM_SOFT_DIRTY; what CRIU's incremental dumps use).
//
// What the kernel cannot see is not marked: a NIC writing by DMA into
// registered memory (an MPI receiving over RDMA straight into a protected
// buffer) leaves no trace. That is why tracking is not the default.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pmcr::client {

class WriteTracker {
 public:
  // The mechanism this kernel offers this process ("uffd-wp",
  // "soft-dirty"), or "" if none (tried once, on a mapping of its own).
  static std::string mechanism();

  // Throws Error(PMCR_E_CONFIG) if there is no mechanism.
  WriteTracker();
  ~WriteTracker();
  WriteTracker(const WriteTracker&) = delete;
  WriteTracker& operator=(const WriteTracker&) = delete;
  const std::string& name() const { return name_; }

  struct Range {
    const void* ptr;
    size_t size;
  };
  // Tracks the pages of RANGE from the next take() on. False if this
  // memory cannot be tracked (the caller must then read all of it).
  bool track(const Range& range);
  // For each of RANGES, for each BLOCK_SIZE block of it: whether one of its
  // pages may have been written since the last take() (written, or given
  // back to the kernel). Starts a new interval for every tracked page.
  // Throws Error(PMCR_E_IO).
  std::vector<std::vector<bool>> take(const std::vector<Range>& ranges, size_t block_size);

 private:
  std::string name_;
  int uffd_ = -1;     // uffd-wp
  int pagemap_ = -1;  // both
  std::vector<std::pair<uintptr_t, uintptr_t>> tracked_;  // page ranges registered (uffd-wp)
};

}  // namespace pmcr::client
