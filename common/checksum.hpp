// Checksums of region data: XXH3-64 (runs at memory speed), seed 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace pmcr {

uint64_t checksum(const void* data, size_t size) noexcept;

// checksum() of DATA, computed a slice at a time: a writer hashes a buffer
// in the moments it would otherwise sleep while the buffer's bytes are
// being sent. The same value as checksum(DATA, SIZE).
class Checksummer {
 public:
  Checksummer(const void* data, size_t size);
  ~Checksummer();
  Checksummer(const Checksummer&) = delete;
  Checksummer& operator=(const Checksummer&) = delete;
  // Hashes up to N more bytes; false if none were left.
  bool step(size_t n);
  // Hashes what is left; the checksum.
  uint64_t value();
  size_t done() const { return done_; }  // bytes hashed so far, from the start

 private:
  const unsigned char* data_;
  size_t size_, done_ = 0;
  void* state_;  // XXH3_state_t
};

// One Checksummer for the threads that send the same buffer to several
// servers (its replicas): the buffer is hashed once, a slice at a time by
// whichever of them would otherwise sleep, and each commits the same value.
class SharedChecksummer {
 public:
  SharedChecksummer(const void* data, size_t size) : sum_(data, size) {}
  // Hashes up to N more bytes; false if none were left or another thread
  // is hashing now.
  bool step(size_t n);
  uint64_t value();  // hashes what is left; the checksum

 private:
  std::mutex mutex_;
  Checksummer sum_;
};

// Regions kept in blocks (incremental checkpoints, named regions): the
// checksum of each BLOCK_SIZE block of DATA (the last one may be shorter),
// and the region's checksum over them: the XXH3-64 of the hashes as
// little-endian 64-bit words. Verified block by block, computed in one pass.
std::vector<uint64_t> block_hashes(const void* data, size_t size, size_t block_size);
uint64_t combine_hashes(const uint64_t* hashes, size_t count) noexcept;

}  // namespace pmcr
