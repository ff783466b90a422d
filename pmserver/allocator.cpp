#include "allocator.hpp"

#include <cassert>

namespace pmcr::server {

ExtentAllocator::ExtentAllocator(uint64_t begin, uint64_t end, uint64_t align) : begin_(begin), end_(end), align_(align) {
  if (end_ > begin_) insert_free(begin_, end_ - begin_);
}

void ExtentAllocator::insert_free(uint64_t offset, uint64_t size) {
  by_offset_.emplace(offset, size);
  by_size_.emplace(size, offset);
  free_ += size;
}

void ExtentAllocator::erase_free(std::map<uint64_t, uint64_t>::iterator it) {
  auto range = by_size_.equal_range(it->second);
  for (auto s = range.first; s != range.second; ++s) {
    if (s->second == it->first) {
      by_size_.erase(s);
      break;
    }
  }
  free_ -= it->second;
  by_offset_.erase(it);
}

std::optional<uint64_t> ExtentAllocator::allocate(uint64_t size) {
  if (size == 0 || size % align_ != 0) return std::nullopt;
  auto best = by_size_.lower_bound(size);
  if (best == by_size_.end()) return std::nullopt;
  const uint64_t offset = best->second;
  const uint64_t have = best->first;
  erase_free(by_offset_.find(offset));
  if (have > size) insert_free(offset + size, have - size);
  return offset;
}

void ExtentAllocator::release(uint64_t offset, uint64_t size) {
  if (size == 0) return;
  uint64_t start = offset, len = size;
  auto next = by_offset_.lower_bound(offset);
  if (next != by_offset_.begin()) {
    auto prev = std::prev(next);
    assert(prev->first + prev->second <= offset && "double free of an extent");
    if (prev->first + prev->second == offset) {
      start = prev->first;
      len += prev->second;
      erase_free(prev);
    }
  }
  next = by_offset_.lower_bound(offset);
  if (next != by_offset_.end()) {
    assert(offset + size <= next->first && "double free of an extent");
    if (offset + size == next->first) {
      len += next->second;
      erase_free(next);
    }
  }
  insert_free(start, len);
}

bool ExtentAllocator::reserve(uint64_t offset, uint64_t size) {
  if (size == 0) return true;
  // Untrusted values (a record read back from the pool): checked without
  // overflow, offset first (end_ - offset must not wrap).
  if (offset < begin_ || offset >= end_ || size > end_ - offset || offset % align_ || size % align_) return false;
  auto it = by_offset_.upper_bound(offset);
  if (it == by_offset_.begin()) return false;
  --it;
  const uint64_t fo = it->first, fs = it->second;
  if (offset + size > fo + fs) return false;  // not wholly inside one free extent
  erase_free(it);
  if (offset > fo) insert_free(fo, offset - fo);
  if (fo + fs > offset + size) insert_free(offset + size, fo + fs - offset - size);
  return true;
}

uint64_t ExtentAllocator::largest_free() const { return by_size_.empty() ? 0 : by_size_.rbegin()->first; }

}  // namespace pmcr::server
