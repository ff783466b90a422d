#include "pool_damage.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <stdexcept>

#include "layout.hpp"

namespace pmcr::test {
namespace {

using server::PoolHeader;
using server::Record;

// Calls F on the first record of STATE matching (job, version[, rank, id])
// in POOL, mapped writable; false if none.
bool with_record(const std::string& pool, uint64_t state, const std::string& job, uint64_t version, int64_t rank,
                 int64_t id, const std::function<void(uint8_t* base, Record& r)>& f) {
  const int fd = ::open(pool.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + pool);
  struct stat st {};
  ::fstat(fd, &st);
  auto* base = static_cast<uint8_t*>(::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ::close(fd);
  if (base == MAP_FAILED) throw std::runtime_error("cannot map " + pool);
  const auto* h = reinterpret_cast<const PoolHeader*>(base);
  auto* recs = reinterpret_cast<Record*>(base + h->catalogue_offset);
  bool found = false;
  for (uint64_t i = 0; i < h->catalogue_slots && !found; ++i) {
    Record& r = recs[i];
    if (r.state != state || r.version != version || std::string(r.job, strnlen(r.job, sizeof r.job)) != job) continue;
    if (rank >= 0 && (r.rank != static_cast<uint32_t>(rank) || r.id != static_cast<uint32_t>(id))) continue;
    f(base, r);
    found = true;
  }
  ::msync(base, static_cast<size_t>(st.st_size), MS_SYNC);
  ::munmap(base, static_cast<size_t>(st.st_size));
  return found;
}

}  // namespace

void damage_region_data(const std::string& pool, const std::string& job, uint64_t version, uint32_t rank, uint32_t id,
                        int count) {
  const auto where = [&](const Record& r, int k) { return (r.size - 1) * static_cast<uint64_t>(k + 1) / (count + 1); };
  bool ok = with_record(pool, server::kRegionCommitted, job, version, rank, id, [&](uint8_t* base, Record& r) {
    if (r.size == 0) throw std::runtime_error("the region is empty: nothing to damage");
    for (int k = 0; k < count; ++k) base[r.offset + where(r, k)] ^= 0x5a;
  });
  // A region kept in blocks (an incremental checkpoint's): the bytes of its
  // blocks, found through its block map.
  ok = ok || with_record(pool, server::kRegionMapped, job, version, rank, id, [&](uint8_t* base, Record& r) {
    if (r.size == 0) throw std::runtime_error("the region is empty: nothing to damage");
    const auto* head = reinterpret_cast<const server::MapHeader*>(base + r.offset);
    const auto* entries = reinterpret_cast<const server::MapEntry*>(head + 1);
    for (int k = 0; k < count; ++k) {
      const uint64_t at = where(r, k);
      base[entries[at / head->block_size].offset + at % head->block_size] ^= 0x5a;
    }
  });
  if (!ok) throw std::runtime_error("no committed region " + job + "/" + std::to_string(version) + " in " + pool);
}

void damage_seal_record(const std::string& pool, const std::string& job, uint64_t version) {
  const bool ok = with_record(pool, server::kVersionSealed, job, version, -1, -1, [](uint8_t*, Record& r) { r.size ^= 1; });
  if (!ok) throw std::runtime_error("no seal record of " + job + "/" + std::to_string(version) + " in " + pool);
}

}  // namespace pmcr::test
