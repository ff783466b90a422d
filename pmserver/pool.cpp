#include "pool.hpp"

#include <fcntl.h>
#include <libpmem2.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "files.hpp"
#include "text.hpp"

namespace pmcr::server {
namespace {

[[noreturn]] void throw_pmem2(const std::string& what) {
  throw Error(PMCR_E_PMEM, what + ": libpmem2: " + pmem2_errormsg());
}

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw Error(err == ENOSPC ? PMCR_E_NOSPACE : PMCR_E_IO, what + ": " + std::strerror(err));
}

uint64_t header_checksum(const PoolHeader* h) {
  const auto* begin = reinterpret_cast<const uint8_t*>(&h->layout_version);
  const auto* end = reinterpret_cast<const uint8_t*>(&h->checksum);
  return checksum(begin, static_cast<size_t>(end - begin));
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}

}  // namespace

void Pool::seal_header(const auth::Key* key) {
  auto* h = reinterpret_cast<PoolHeader*>(base_);
  h->checksum = header_checksum(h);
  h->mac_kind = key ? kMacHmacSha256 : kMacNone;
  const auth::Mac mac = key ? auth::pool_mac(*key, h, kIdentitySize) : auth::Mac{};
  std::memcpy(h->mac, mac.data(), sizeof h->mac);
}

void Pool::authenticate(const PoolKey& key) {
  auto* h = reinterpret_cast<PoolHeader*>(base_);
  const bool old = h->layout_version == 1 || torn_upgrade_;  // version 1 had no MAC: the bytes after its header are zero
  if (old && (h->mac_kind != 0 || !all_zero(h->mac, sizeof h->mac)))
    throw Error(PMCR_E_CORRUPT, "pool " + path_ + " has a damaged header (layout version 1 with a MAC)");
  if (h->mac_kind == kMacHmacSha256) {
    if (!key.key)
      throw Error(PMCR_E_CONFIG, "pool " + path_ + " is bound to a key: start pmserver with --key-file and the key "
                                 "file it was made (or adopted) with");
    if (!auth::check_pool_mac(*key.key, h, kIdentitySize, h->mac))
      throw Error(PMCR_E_CONFIG, "pool " + path_ + "'s header does not verify under the key given with --key-file: "
                                 "the pool belongs to another key (another server), or its header was altered; "
                                 "refusing to serve it");
    return;
  }
  if (h->mac_kind != kMacNone)
    throw Error(PMCR_E_CORRUPT, "pool " + path_ + " has a damaged header (unknown MAC kind " +
                                    std::to_string(h->mac_kind) + ")");
  if (key.key && !key.adopt)
    throw Error(PMCR_E_CONFIG, "pool " + path_ + " was made without a key (pmserver --auth none without --key-file" +
                                   std::string(old ? ", or an older pmserver" : "") +
                                   "), so it cannot prove it is this server's: to bind it to the key of --key-file, "
                                   "start pmserver once with --adopt-pool");
  if (!old && !key.adopt) return;
  // Each step survives a crash at any point: the upgrade's two words are
  // recognised torn (validate), and the MAC is written before the one
  // 8-byte word (mac_kind) that makes it count.
  if (old) {
    h->layout_version = kLayoutVersion;
    h->checksum = header_checksum(h);
    persist(h, kIdentitySize);
    upgraded_ = true;
    spdlog::warn("pool {}: upgraded from layout version 1; its jobs had no owner and go to the one principal of "
                 "--auth key and none", path_);
  }
  if (key.adopt && key.key) {
    const auth::Mac mac = auth::pool_mac(*key.key, h, kIdentitySize);
    std::memcpy(h->mac, mac.data(), sizeof h->mac);
    persist(h->mac, sizeof h->mac);
    store_persist(&h->mac_kind, kMacHmacSha256);
    spdlog::warn("pool {}: now bound to the key of --key-file (--adopt-pool)", path_);
  }
}

namespace {

// The process holding a flock on the file of ST, from /proc/locks (0 if
// unknown). Lines read "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF".
pid_t lock_holder(const struct stat& st) {
  FILE* f = std::fopen("/proc/locks", "r");
  if (!f) return 0;
  char line[256];
  pid_t found = 0;
  while (!found && std::fgets(line, sizeof line, f)) {
    char kind[16], mode[16], rw[16];
    long pid = 0;
    unsigned maj = 0, min = 0;
    unsigned long long ino = 0;
    if (std::sscanf(line, "%*d: %15s %15s %15s %ld %x:%x:%llu", kind, mode, rw, &pid, &maj, &min, &ino) == 7 &&
        std::strcmp(kind, "FLOCK") == 0 && ino == st.st_ino && makedev(maj, min) == st.st_dev)
      found = static_cast<pid_t>(pid);
  }
  std::fclose(f);
  return found;
}

uint64_t slots_for(uint64_t size) {
  uint64_t slots = size / (16 * 1024);
  if (slots < 1024) slots = 1024;
  if (slots > (1u << 20)) slots = 1u << 20;
  return slots;
}

}  // namespace

Pool Pool::open_or_create(const std::string& path, std::optional<uint64_t> size, const Progress& progress,
                          const PoolKey& key) {
  Pool pool;
  pool.path_ = path;
  // A new pool is formatted under a temporary name and linked into place
  // only when complete: PATH is either absent or a whole pool, whatever the
  // moment of a crash. A stale temporary from such a crash is removed.
  const std::string creating = path + ".creating";
  bool created = false;
  pool.fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (pool.fd_ < 0 && errno == ENOENT) {
    if (!size)
      throw Error(PMCR_E_INVAL, "pool " + path + " does not exist; give --size to create it (e.g. --size 1G)");
    ::unlink(creating.c_str());
    pool.fd_ = ::open(creating.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (pool.fd_ < 0)
      throw_errno("cannot create pool " + path + " (does its directory exist and is it writable?)", errno);
    created = true;
  } else if (pool.fd_ < 0) {
    throw_errno("cannot open pool " + path, errno);
  }
  // From here on, a failure must not leave a half-made file behind.
  try {
    if (::flock(pool.fd_, LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        struct stat st {};
        const pid_t holder = ::fstat(pool.fd_, &st) == 0 ? lock_holder(st) : 0;
        throw Error(PMCR_E_BUSY, "pool " + path + " is in use by another pmserver" +
                                     (holder > 0 ? " (pid " + std::to_string(holder) + ")" : "") +
                                     ", which holds its lock; stop that server or use another pool");
      }
      throw_errno("cannot lock pool " + path, errno);
    }
    struct stat st {};
    if (::fstat(pool.fd_, &st) != 0) throw_errno("cannot stat pool " + path, errno);
    if (created) {
      uint64_t want = (*size + 4095) / 4096 * 4096;
      if (want < kMinPoolSize)
        throw Error(PMCR_E_INVAL, "pool size " + format_size(*size) + " is too small; the minimum is " +
                                      format_size(kMinPoolSize));
      // In steps, so that the progress of a large pool can be reported.
      constexpr uint64_t kStep = 1ull << 30;
      for (uint64_t done = 0; done < want;) {
        const uint64_t n = std::min(kStep, want - done);
        const int rc = ::posix_fallocate(pool.fd_, static_cast<off_t>(done), static_cast<off_t>(n));
        if (rc != 0) throw_errno("cannot allocate " + format_size(want) + " for pool " + path, rc);
        done += n;
        if (progress) progress(done, want);
      }
    } else if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
      throw Error(PMCR_E_INVAL, "pool " + path + " is neither a regular file nor a DAX device");
    }

    pmem2_config* cfg = nullptr;
    pmem2_source* src = nullptr;
    if (pmem2_config_new(&cfg) != 0) throw_pmem2("pmem2_config_new");
    struct Cleanup {
      pmem2_config** c;
      pmem2_source** s;
      ~Cleanup() {
        if (*s) pmem2_source_delete(s);
        pmem2_config_delete(c);
      }
    } cleanup{&cfg, &src};
    if (pmem2_config_set_required_store_granularity(cfg, PMEM2_GRANULARITY_PAGE) != 0)
      throw_pmem2("pmem2_config_set_required_store_granularity");
    if (pmem2_source_from_fd(&src, pool.fd_) != 0) throw_pmem2("cannot use " + path + " as a pmem2 source");
    size_t source_size = 0;
    if (pmem2_source_size(src, &source_size) != 0) throw_pmem2("cannot size " + path);
    if (pmem2_map_new(&pool.map_, cfg, src) != 0) throw_pmem2("cannot map pool " + path);
    pool.base_ = static_cast<uint8_t*>(pmem2_map_get_address(pool.map_));
    pool.map_size_ = pmem2_map_get_size(pool.map_);
    pool.persist_ = pmem2_get_persist_fn(pool.map_);
    pool.memcpy_ = pmem2_get_memcpy_fn(pool.map_);
    pool.memset_ = pmem2_get_memset_fn(pool.map_);
    switch (pmem2_map_get_store_granularity(pool.map_)) {
      case PMEM2_GRANULARITY_BYTE: pool.granularity_ = 8; break;
      case PMEM2_GRANULARITY_CACHE_LINE: pool.granularity_ = 64; break;
      default: pool.granularity_ = 4096; break;
    }

    const auto* h = reinterpret_cast<const PoolHeader*>(pool.base_);
    if (created) {
      pool.format(pool.map_size_, key.key);
      if (::link(creating.c_str(), path.c_str()) != 0) {
        if (errno == EEXIST)
          throw Error(PMCR_E_BUSY, "pool " + path + " was created by another pmserver at the same time");
        throw_errno("cannot create pool " + path, errno);
      }
      ::unlink(creating.c_str());
      try {
        sync_directory(parent_directory(path));  // the new pool's name durable
      } catch (const Error& e) {
        spdlog::warn("{}", e.what());
      }
      pool.formatted_now_ = true;
    } else if (h->magic == 0 && all_zero(pool.base_, kHeaderSize)) {
      // A fresh device (DAX devices cannot be created, only formatted).
      if (size && *size != pool.map_size_)
        throw Error(PMCR_E_INVAL, "uninitialised pool " + path + " has " + format_size(pool.map_size_) +
                                      "; --size " + format_size(*size) + " does not match (omit --size)");
      pool.format(pool.map_size_, key.key);
      pool.formatted_now_ = true;
    } else {
      pool.validate(pool.map_size_, size);
      pool.authenticate(key);
    }
  } catch (...) {
    if (created) ::unlink(creating.c_str());
    throw;
  }
  return pool;
}

Pool::Pool(Pool&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(o.fd_),
      map_(o.map_),
      base_(o.base_),
      map_size_(o.map_size_),
      granularity_(o.granularity_),
      persist_(o.persist_),
      memcpy_(o.memcpy_),
      memset_(o.memset_),
      formatted_now_(o.formatted_now_),
      upgraded_(o.upgraded_) {
  o.fd_ = -1;
  o.map_ = nullptr;
  o.base_ = nullptr;
}

Pool::~Pool() {
  if (map_ && pmem2_map_delete(&map_) != 0) spdlog::error("unmapping pool {}: {}", path_, pmem2_errormsg());
  if (fd_ >= 0) ::close(fd_);
}

void Pool::format(uint64_t size, const auth::Key* key) {
  auto* h = reinterpret_cast<PoolHeader*>(base_);
  const uint64_t slots = slots_for(size);
  const uint64_t cat_bytes = slots * sizeof(Record);
  const uint64_t data_offset = (kHeaderSize + cat_bytes + kDataAlign - 1) / kDataAlign * kDataAlign;
  if (data_offset + kExtentAlign > size)
    throw Error(PMCR_E_INVAL, "pool " + path_ + " of " + format_size(size) + " is too small for its catalogue");
  // The magic is cleared first and stored last: a crash anywhere in between
  // leaves a pool that the next start formats again.
  store_persist(&h->magic, 0);
  h->layout_version = kLayoutVersion;
  if (::getrandom(h->uuid, sizeof h->uuid, 0) != static_cast<ssize_t>(sizeof h->uuid))
    throw_errno("cannot generate a pool uuid", errno);
  h->pool_size = size;
  h->catalogue_offset = kHeaderSize;
  h->catalogue_slots = slots;
  h->data_offset = data_offset;
  h->data_size = (size - data_offset) / kExtentAlign * kExtentAlign;
  h->created_unix = static_cast<uint64_t>(std::time(nullptr));
  // The MAC covers the magic as it will be once the format is complete.
  h->magic = kPoolMagic;
  seal_header(key);
  h->magic = 0;
  persist(h, sizeof *h);
  memset_(base_ + kHeaderSize, 0, cat_bytes, 0);  // flushes and drains itself
  if (PMCR_FAULT_POINT("pool.format")) throw Error(PMCR_E_IO, "fault injected at pool.format");
  store_persist(&h->magic, kPoolMagic);
  spdlog::info("formatted pool {}: {} with {} catalogue slots, data area {} at offset {}", path_, format_size(size),
               slots, format_size(h->data_size), data_offset);
}

void Pool::validate(uint64_t file_size, std::optional<uint64_t> size) {
  const PoolHeader* h = header();
  if (h->magic != kPoolMagic)
    throw Error(PMCR_E_CORRUPT, "file " + path_ + " is not a pmcr pool (bad magic); refusing to touch it: "
                                "remove it or choose another --pool path");
  if (h->layout_version != kLayoutVersion && h->layout_version != 1)
    throw Error(PMCR_E_CORRUPT, "pool " + path_ + " has layout version " + std::to_string(h->layout_version) +
                                    "; this pmserver reads versions 1 to " + std::to_string(kLayoutVersion));
  if (h->checksum != header_checksum(h)) {
    // An upgrade from version 1 rewrites two words (version, checksum): a
    // crash between them leaves one new, one old. Such a header is whole
    // otherwise, and the upgrade is done again.
    PoolHeader other = *h;
    other.layout_version = h->layout_version == 1 ? kLayoutVersion : 1;
    if (other.checksum != header_checksum(&other) || !all_zero(h->mac, sizeof h->mac) || h->mac_kind != kMacNone)
      throw Error(PMCR_E_CORRUPT, "pool " + path_ + " has a damaged header (checksum mismatch)");
    torn_upgrade_ = true;
  }
  if (h->pool_size != file_size)
    throw Error(PMCR_E_CORRUPT, "pool " + path_ + " header says " + format_size(h->pool_size) + " but the file has " +
                                    format_size(file_size) + " (was it truncated or extended?)");
  if (size && *size != h->pool_size && (*size + 4095) / 4096 * 4096 != h->pool_size)
    throw Error(PMCR_E_INVAL, "pool " + path_ + " has " + format_size(h->pool_size) + "; --size " + format_size(*size) +
                                  " does not match (omit --size to open an existing pool)");
  // Checked without overflow: every field is untrusted until it fits.
  if (h->catalogue_offset < kHeaderSize || h->catalogue_offset > h->pool_size ||
      h->catalogue_slots > (h->pool_size - h->catalogue_offset) / sizeof(Record) ||
      h->catalogue_offset + h->catalogue_slots * sizeof(Record) > h->data_offset || h->data_offset > h->pool_size ||
      h->data_size > h->pool_size - h->data_offset || h->data_offset % kExtentAlign || h->data_size % kExtentAlign)
    throw Error(PMCR_E_CORRUPT, "pool " + path_ + " has an inconsistent layout in its header");
}

void Pool::persist(const void* p, size_t n) const {
  if (n) persist_(p, n);
}

void Pool::store_persist(uint64_t* word, uint64_t value) const {
  __atomic_store_n(word, value, __ATOMIC_RELEASE);
  persist_(word, sizeof *word);
}

void Pool::copy_persist(void* dst, const void* src, size_t n) const {
  if (n) memcpy_(dst, src, n, 0);
}

const char* Pool::granularity_name() const {
  switch (granularity_) {
    case 8: return "byte";
    case 64: return "cache line";
    default: return "page";
  }
}

void Pool::prefault(const Progress& progress, const bool* stop) const {
  // Memory (tmpfs: the pool is allocated already) and DAX (no page cache)
  // are write-populated and then touched: an atomic add of zero to a byte of
  // each page, which cannot undo a client's concurrent write. Otherwise a
  // region's first write pays a fault per page, and on a virtual machine a
  // hypervisor fault too: ~0.7 GB/s here against ~15 GB/s once touched
  // (README, "Benchmark"). A page-cache-backed file is read-populated only:
  // writing would dirty every page and make the kernel write the pool back.
  struct statfs fs {};
  const bool memory = ::statfs(path_.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
  const bool write = memory || granularity_bytes() < 4096;
  constexpr uint64_t kStep = 64ull << 20;
  for (uint64_t off = 0; off < map_size_; off += kStep) {
    if (stop && __atomic_load_n(stop, __ATOMIC_RELAXED)) return;
    const uint64_t n = std::min(kStep, map_size_ - off);
#if defined(MADV_POPULATE_WRITE)
    if (::madvise(base_ + off, n, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) != 0) {
      spdlog::warn("prefaulting pool {} failed: {} (first accesses will be slower)", path_, std::strerror(errno));
      return;
    }
#endif
    if (write)
      for (uint64_t p = off; p < off + n; p += 4096) __atomic_fetch_add(base_ + p, 0, __ATOMIC_RELAXED);
    if (progress) progress(off + n, map_size_);
  }
}

}  // namespace pmcr::server
