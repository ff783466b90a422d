#include "checksum.hpp"

#include <xxhash.h>

#include <algorithm>

namespace pmcr {

uint64_t checksum(const void* data, size_t size) noexcept {
  return XXH3_64bits(size == 0 ? "" : data, size);
}

std::vector<uint64_t> block_hashes(const void* data, size_t size, size_t block_size) {
  std::vector<uint64_t> out;
  out.reserve(block_size ? (size + block_size - 1) / block_size : 0);
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t at = 0; at < size; at += block_size) out.push_back(checksum(p + at, std::min(block_size, size - at)));
  return out;
}

uint64_t combine_hashes(const uint64_t* hashes, size_t count) noexcept {
  // (Stored little-endian: the only byte order pmcr runs on.)
  return checksum(hashes, count * sizeof(uint64_t));
}

}  // namespace pmcr
