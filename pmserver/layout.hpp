// The on-media layout of a pmcr pool. Everything here is stored in persistent
// memory, little-endian (the only byte order pmserver runs on: x86-64 and
// aarch64), and versioned by kLayoutVersion.
//
//   [0, 4096)                          PoolHeader
//   [4096, 4096 + slots * 128)         catalogue: an array of Record
//   [data_offset, data_offset + size)  data area, carved into extents
//
// Crash consistency rests on one rule: a record's `state` word is the only
// thing whose store makes a change visible. The body of a record is written
// and persisted while its state still says the body does not matter, then
// one aligned 8-byte store of the state (failure-atomic on every persistent
// memory platform) is persisted. See catalogue.cpp for each transition.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pmcr::server {

constexpr uint64_t kPoolMagic = 0x4c4f4f5052434d50ull;  // bytes "PMCRPOOL"
// 2: job owner records, the header's key MAC. A version 1 pool is upgraded
// in place when opened (its jobs, which have no owner record, are left to
// the admins).
constexpr uint64_t kLayoutVersion = 2;
constexpr uint64_t kHeaderSize = 4096;
constexpr uint64_t kExtentAlign = 4096;  // data extents start and end on pages
constexpr uint64_t kDataAlign = 1ull << 21;  // data area starts on a 2 MiB boundary
constexpr uint64_t kMinPoolSize = 4ull << 20;

struct PoolHeader {
  uint64_t magic;  // written last at format time
  uint64_t layout_version;
  uint8_t uuid[16];
  uint64_t pool_size;
  uint64_t catalogue_offset;
  uint64_t catalogue_slots;
  uint64_t data_offset;
  uint64_t data_size;
  uint64_t created_unix;
  uint64_t checksum;  // XXH3 of the fields from layout_version to created_unix
  // The pool's identity (every field above) authenticated under the server's
  // key (pmserver --key-file): a pool is served only by a server holding the
  // key it was made or adopted with.
  uint64_t mac_kind;  // kMacNone or kMacHmacSha256
  uint8_t mac[32];
};
static_assert(sizeof(PoolHeader) == 128, "PoolHeader layout changed");
static_assert(offsetof(PoolHeader, mac_kind) == 88, "PoolHeader layout changed");
constexpr uint64_t kMacNone = 0;        // made without a key (pmserver --auth none, no --key-file)
constexpr uint64_t kMacHmacSha256 = 1;  // HMAC-SHA-256 under the key's pool subkey (auth::pool_mac)
constexpr size_t kIdentitySize = offsetof(PoolHeader, mac_kind);

constexpr size_t kJobNameMax = 64;

// Record kinds and states, combined in the state word as (kind << 8) | state.
enum : uint64_t {
  kStateFree = 0,
  kRegionCreated = 0x0101,    // being written; never survives a restart
  kRegionCommitted = 0x0102,  // data durable and checksummed; visible once its version is sealed
  kVersionSealed = 0x0203,    // the version and all its regions are visible
  kVersionDeleting = 0x0204,  // invisible; its regions are being freed
  kVersionQuarantined = 0x0205,  // sealed, then found damaged: kept for inspection, never served
  kJobOwned = 0x0301,  // job: `version` holds the owner's uid, `rank` its gid
  // A committed region of an incremental checkpoint, kept in blocks: as
  // kRegionCommitted, but `offset` is its block map (below) and `checksum`
  // the checksum over its blocks' hashes (checksum.hpp, combine_hashes).
  kRegionMapped = 0x0103,
  // A committed generation of a named region (region.h): `version` is the
  // generation, `offset` its block map (below), `size` its bytes,
  // `checksum` the XXH3 of the whole map, `rank`/`id` the low/high halves
  // of the XXH3 of its name. (An older pmserver keeps records of a kind it
  // does not know untouched and never serves them.)
  kGeneration = 0x0402,
};

// The block map of a generation, in its own extent: a header, then one
// entry per block. Block i holds the region's bytes [i * block_size,
// min((i + 1) * block_size, size)) in the extent at `offset` (page-aligned,
// `length` >= those bytes). Generations share the blocks they did not
// change (copy-on-write), so a block is used by any number of maps; it is
// free when no map of a committed generation names it (recovery counts).
constexpr uint64_t kMapMagic = 0x3150414d52434d50ull;  // bytes "PMCRMAP1"
constexpr size_t kRegionNameMax = 255;
struct MapHeader {
  uint64_t magic;
  uint64_t generation;
  uint64_t size;
  uint64_t block_size;
  uint64_t blocks;  // entries that follow: ceil(size / block_size)
  uint32_t keep;    // generations the region keeps
  uint32_t name_length;
  char name[kRegionNameMax + 1];
  char job[kJobNameMax];
  uint64_t entries_sum;  // XXH3-64 of the entries
  uint8_t reserved[136];
};
static_assert(sizeof(MapHeader) == 512, "MapHeader layout changed");
struct MapEntry {
  uint64_t offset;  // from the pool start
  uint64_t length;  // extent bytes
  uint64_t hash;    // XXH3-64 of the block's bytes of the region
};
static_assert(sizeof(MapEntry) == 24, "MapEntry layout changed");
constexpr uint64_t kMinBlockSize = 4096;
constexpr uint64_t kMaxBlockSize = 64ull << 20;
// A block size pmserver accepts: a power of two from 4 KiB to 64 MiB.
constexpr bool valid_block_size(uint64_t bs) {
  return bs >= kMinBlockSize && bs <= kMaxBlockSize && (bs & (bs - 1)) == 0;
}
constexpr uint32_t kMaxKeep = 64;

struct Record {
  uint64_t state;     // the commit word (see above)
  uint64_t body_sum;  // XXH3 of the bytes from `job` to the end of the record
  char job[kJobNameMax];  // NUL-padded, not NUL-terminated when 64 bytes long
  uint64_t version;
  uint32_t rank;  // version record: number of ranks
  uint32_t id;    // version record: number of regions
  uint64_t offset;    // region: data extent offset from the pool start
  uint64_t size;      // region: bytes; version: total bytes of its regions
  uint64_t checksum;  // region: XXH3-64 of its data
  uint64_t sequence;  // order of creation, for listings and diagnosis
};
static_assert(sizeof(Record) == 128, "Record layout changed");
static_assert(offsetof(Record, job) == 16, "Record layout changed");

constexpr uint64_t kRecordBodyOffset = offsetof(Record, job);

inline uint64_t extent_size(uint64_t bytes) { return (bytes + kExtentAlign - 1) / kExtentAlign * kExtentAlign; }

}  // namespace pmcr::server
