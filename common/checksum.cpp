#include "checksum.hpp"

#include <xxhash.h>

#include <algorithm>
#include <new>

namespace pmcr {

uint64_t checksum(const void* data, size_t size) noexcept {
  return XXH3_64bits(size == 0 ? "" : data, size);
}

Checksummer::Checksummer(const void* data, size_t size)
    : data_(static_cast<const unsigned char*>(data)), size_(size), state_(XXH3_createState()) {
  if (!state_) throw std::bad_alloc();
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}

Checksummer::~Checksummer() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

bool Checksummer::step(size_t n) {
  if (done_ == size_) return false;
  n = std::min(n, size_ - done_);
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data_ + done_, n);
  done_ += n;
  return true;
}

uint64_t Checksummer::value() {
  step(size_ - done_);
  return XXH3_64bits_digest(static_cast<XXH3_state_t*>(state_));
}

bool SharedChecksummer::step(size_t n) {
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  return lock.owns_lock() && sum_.step(n);
}

uint64_t SharedChecksummer::value() {
  std::lock_guard<std::mutex> lock(mutex_);
  return sum_.value();
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
