// Copy-on-write blocks: what a region's data is when it is kept in blocks
// (named regions, and the regions of incremental checkpoints), in DRAM. The
// on-media form is the block map of layout.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "layout.hpp"

namespace pmcr::server {

using Owner = uint64_t;  // the connection that created a region; 0 = none

struct Block {
  uint64_t offset = 0;  // 0: none (a hole; never committed)
  uint64_t length = 0;  // extent bytes
  uint64_t valid = 0;   // bytes of the region in it
  uint64_t hash = 0;    // committed blocks: XXH3-64 of those bytes
  bool fresh = false;   // written by this (uncommitted) generation
};

// A committed set of blocks: a named region's generation, or a region of
// an incremental checkpoint.
struct Generation {
  uint64_t number = 0;  // named: the generation; a checkpoint's region: its version
  uint64_t block_size = 0;
  uint32_t slot = UINT32_MAX;  // its record
  uint64_t map_offset = 0, map_length = 0;
  uint64_t size = 0;
  std::vector<Block> blocks;
  uint32_t pins = 0;  // readers' handles holding it, sends from it
  bool kept = true;   // false: dropped; its blocks go with its last pin
};

// The blocks a writer is building (not committed yet).
struct Working {
  uint64_t handle = 0;
  Owner writer = 0;
  uint64_t block_size = 0;
  bool counted = false;  // its new blocks count against the writer's quota (named regions)
  uint64_t size = 0;  // bytes of the next generation so far
  std::vector<Block> blocks;
  std::vector<Block> retired;  // fresh blocks replaced while writes were landing
  uint32_t landing = 0;        // receives in progress into its blocks
  std::string broken;          // why it cannot be committed
  bool abandoned = false;
  bool fixed = false;  // a checkpoint's region: its size was declared at CREATE; writes stay within it
  bool committing = false;  // its new blocks are being hashed off the event loop: no writes meanwhile
};

using GenerationRef = std::shared_ptr<Generation>;
using WorkingRef = std::shared_ptr<Working>;

inline uint64_t blocks_for(uint64_t size, uint64_t block_size) { return (size + block_size - 1) / block_size; }

inline uint64_t valid_bytes(uint64_t size, uint64_t block_size, uint64_t i) {
  return i * block_size >= size ? 0 : std::min(block_size, size - i * block_size);
}

inline uint64_t map_bytes(uint64_t blocks) { return sizeof(MapHeader) + blocks * sizeof(MapEntry); }

// The checksum of a region kept in blocks (checksum.hpp, combine_hashes).
uint64_t combine_hashes(const std::vector<Block>& blocks);

}  // namespace pmcr::server
