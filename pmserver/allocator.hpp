// ExtentAllocator: best-fit allocation of page-aligned extents in the pool's
// data area, with coalescing on free. It lives in DRAM only: at start-up the
// catalogue rebuilds it by reserving the extent of every surviving region.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

namespace pmcr::server {

class ExtentAllocator {
 public:
  // Manages [begin, end); every offset and size is a multiple of align.
  ExtentAllocator(uint64_t begin, uint64_t end, uint64_t align);

  // Best fit; returns the offset, or nothing when no free extent is large
  // enough. size must be a non-zero multiple of align.
  std::optional<uint64_t> allocate(uint64_t size);
  // Returns an allocated extent; neighbours are merged.
  void release(uint64_t offset, uint64_t size);
  // Marks an extent as allocated (recovery). False if it is out of range,
  // misaligned or overlaps anything already allocated.
  bool reserve(uint64_t offset, uint64_t size);

  uint64_t free_bytes() const { return free_; }
  uint64_t used_bytes() const { return (end_ - begin_) - free_; }
  uint64_t capacity() const { return end_ - begin_; }
  uint64_t largest_free() const;
  size_t fragments() const { return by_offset_.size(); }

 private:
  void insert_free(uint64_t offset, uint64_t size);
  void erase_free(std::map<uint64_t, uint64_t>::iterator it);

  uint64_t begin_, end_, align_;
  uint64_t free_ = 0;
  std::map<uint64_t, uint64_t> by_offset_;     // free extents: offset -> size
  std::multimap<uint64_t, uint64_t> by_size_;  // free extents: size -> offset
};

}  // namespace pmcr::server
