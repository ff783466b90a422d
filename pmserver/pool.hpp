// Pool: a file or DAX device mapped with libpmem2. The only file in pmcr that
// calls libpmem2. It formats a new pool (header, empty catalogue), validates
// an existing one, and persists ranges with the functions libpmem2 returns for
// this mapping at the granularity the mapping reports.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "auth.hpp"
#include "layout.hpp"

struct pmem2_map;

namespace pmcr::server {

// The key a pool's header is authenticated under (pmserver --key-file).
struct PoolKey {
  const auth::Key* key = nullptr;  // none: only a pool made without a key opens
  bool adopt = false;  // bind a pool made without a key (or by an older pmserver) to KEY
};

class Pool {
 public:
  // Opens PATH if it exists (SIZE, if given, must match), else creates it
  // with SIZE bytes and formats it. Takes an exclusive lock on the file so
  // two servers can never share a pool. Throws Error with a message that
  // names the path and the remedy.
  // PROGRESS, if given, hears how far the allocation of a new pool is
  // (bytes done, bytes in all).
  // A new pool's header is authenticated under KEY.key, if given; an
  // existing pool opens only if its header verifies under that key (or it
  // has none and there is none, or KEY.adopt binds it): otherwise Error
  // (CONFIG) says which key is missing or wrong.
  using Progress = std::function<void(uint64_t done, uint64_t total)>;
  static Pool open_or_create(const std::string& path, std::optional<uint64_t> size, const Progress& progress = {},
                             const PoolKey& key = {});

  Pool(Pool&& other) noexcept;
  Pool& operator=(Pool&&) = delete;
  Pool(const Pool&) = delete;
  ~Pool();

  uint8_t* base() const { return base_; }
  uint64_t size() const { return header()->pool_size; }
  const PoolHeader* header() const { return reinterpret_cast<const PoolHeader*>(base_); }
  Record* records() const { return reinterpret_cast<Record*>(base_ + header()->catalogue_offset); }
  uint64_t slots() const { return header()->catalogue_slots; }
  const std::string& path() const { return path_; }
  bool formatted_now() const { return formatted_now_; }
  // Opened as a layout version 1 pool (upgraded now): its jobs have no owner records.
  bool upgraded() const { return upgraded_; }

  // Makes [p, p+n) durable (flush + drain at the mapping's granularity).
  void persist(const void* p, size_t n) const;
  // Stores an 8-byte word with one aligned store and persists it.
  void store_persist(uint64_t* word, uint64_t value) const;
  // Copies into the pool and persists (libpmem2's memcpy: non-temporal
  // stores where that is faster; it already flushes, so no second persist).
  void copy_persist(void* dst, const void* src, size_t n) const;

  // Bytes of the store granularity: 8 (byte), 64 (cache line), 4096 (page).
  uint64_t granularity_bytes() const { return granularity_; }
  const char* granularity_name() const;

  // Faults the whole mapping in, so first touches by clients do not run at
  // page-fault speed. Safe while the pool is in use (it never changes a
  // byte), so it runs in the background after the server listens. PROGRESS
  // hears how far it is; it stops early once STOP becomes true. Failure is
  // harmless and only logged.
  void prefault(const Progress& progress, const bool* stop) const;

 private:
  Pool() = default;
  void format(uint64_t size, const auth::Key* key);
  void validate(uint64_t file_size, std::optional<uint64_t> size);
  // Checks the header's MAC under KEY, upgrades a version 1 header, and
  // binds a pool without a MAC when KEY.adopt says so.
  void authenticate(const PoolKey& key);
  void seal_header(const auth::Key* key);  // checksum and MAC of the header, not persisted

  std::string path_;
  int fd_ = -1;
  pmem2_map* map_ = nullptr;
  uint8_t* base_ = nullptr;
  uint64_t map_size_ = 0;
  uint64_t granularity_ = 0;
  void (*persist_)(const void*, size_t) = nullptr;
  void* (*memcpy_)(void*, const void*, size_t, unsigned) = nullptr;
  void* (*memset_)(void*, int, size_t, unsigned) = nullptr;
  bool formatted_now_ = false;
  bool upgraded_ = false;
  bool torn_upgrade_ = false;  // a crash cut an upgrade from version 1 short: it is done again
};

}  // namespace pmcr::server
