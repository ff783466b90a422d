#include "catalogue.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "protocol.hpp"
#include "text.hpp"

// Every state transition below follows one pattern: write and persist a
// record's body while its state word says the body is irrelevant, then make
// the change with one persisted 8-byte store of the state. A fault point sits
// after each persist, so crash tests can kill the server at each step.
#define CRASH_POINT(name)                                                         \
  do {                                                                            \
    if (PMCR_FAULT_POINT(name)) throw Error(PMCR_E_IO, "fault injected at " name); \
  } while (0)

namespace pmcr::server {
namespace {

std::string record_job(const Record& r) { return std::string(r.job, strnlen(r.job, kJobNameMax)); }

std::string describe(const std::string& job, uint64_t version) {
  return "version " + std::to_string(version) + " of job '" + job + "'";
}

}  // namespace

Catalogue::Catalogue(Pool& pool)
    : pool_(pool),
      alloc_(pool.header()->data_offset, pool.header()->data_offset + pool.header()->data_size, kExtentAlign),
      slots_(pool.slots()) {
  recover();
}

// ---------------------------------------------------------------- records

std::optional<uint32_t> Catalogue::slot_of(uint64_t handle) const {
  const uint64_t slot = handle & 0xffffffffu;
  if (slot >= slots_.size() || slots_[slot].gen != (handle >> 32)) return std::nullopt;
  const uint64_t st = rec(static_cast<uint32_t>(slot)).state;
  if (st != kRegionCreated && st != kRegionCommitted && st != kRegionMapped) return std::nullopt;
  return static_cast<uint32_t>(slot);
}

RegionView Catalogue::view_of(uint32_t slot) const {
  const Record& r = rec(slot);
  const SlotInfo& si = slots_[slot];
  if (si.blocks) return RegionView{handle_of(slot), 0, r.size, 0, r.checksum, r.rank, r.id, si.blocks->block_size, si.blocks};
  if (si.work) return RegionView{handle_of(slot), 0, r.size, 0, 0, r.rank, r.id, si.work->block_size, nullptr};
  return RegionView{handle_of(slot), r.offset, r.size, extent_size(r.size), r.checksum, r.rank, r.id, 0, nullptr};
}

uint32_t Catalogue::take_slot() {
  if (free_slots_.empty())
    throw Error(PMCR_E_NOSPACE, "the pool's catalogue is full (" + std::to_string(slots_.size()) +
                                    " records); delete old versions with 'pmcr rm' or use a larger pool");
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void Catalogue::write_body(uint32_t slot, const std::string& job, uint64_t version, uint32_t rank, uint32_t id,
                           uint64_t offset, uint64_t size, uint64_t checksum_value) {
  Record& r = rec(slot);
  std::memset(r.job, 0, sizeof r.job);
  std::memcpy(r.job, job.data(), job.size());
  r.version = version;
  r.rank = rank;
  r.id = id;
  r.offset = offset;
  r.size = size;
  r.checksum = checksum_value;
  r.sequence = next_sequence_++;
  r.body_sum = checksum(reinterpret_cast<const uint8_t*>(&r) + kRecordBodyOffset, sizeof(Record) - kRecordBodyOffset);
  pool_.persist(&r.body_sum, sizeof(Record) - offsetof(Record, body_sum));
}

bool Catalogue::body_ok(uint32_t slot) const {
  const Record& r = rec(slot);
  return r.body_sum ==
         checksum(reinterpret_cast<const uint8_t*>(&r) + kRecordBodyOffset, sizeof(Record) - kRecordBodyOffset);
}

void Catalogue::set_owner(uint32_t slot, Owner owner) {
  const Owner old = slots_[slot].owner;
  if (old == owner) return;
  const uint64_t bytes = extent_size(rec(slot).size);
  if (old != 0) {
    auto it = usage_.find(old);
    if (it != usage_.end()) {
      it->second.regions--;
      it->second.bytes -= bytes;
      if (it->second.regions == 0) usage_.erase(it);
    }
    auto o = owned_.find(old);
    if (o != owned_.end()) {
      o->second.erase(slot);
      if (o->second.empty()) owned_.erase(o);
    }
  }
  if (owner != 0) {
    OwnerUsage& u = usage_[owner];
    u.regions++;
    u.bytes += bytes;
    owned_[owner].insert(slot);
  }
  slots_[slot].owner = owner;
}

OwnerUsage Catalogue::usage(Owner owner) const {
  auto it = usage_.find(owner);
  return it == usage_.end() ? OwnerUsage{} : it->second;
}

void Catalogue::free_record(uint32_t slot) {
  set_owner(slot, 0);
  pool_.store_persist(&rec(slot).state, kStateFree);
  slots_[slot].gen++;
  slots_[slot].pins = 0;
  free_slots_.push_back(slot);
}

void Catalogue::free_region(uint32_t slot) {
  const Record& r = rec(slot);
  SlotInfo& si = slots_[slot];
  const bool mapped = si.work || si.blocks;
  const uint64_t offset = mapped ? 0 : r.offset, capacity = mapped ? 0 : extent_size(r.size);
  const uint64_t handle = handle_of(slot);
  const uint32_t pins = si.pins;
  GenerationRef blocks = std::move(si.blocks);
  drop_working(si.work);  // a region kept in blocks, being written: its new blocks
  si.work.reset();
  si.blocks.reset();
  free_record(slot);
  regions_--;
  if (pins > 0) zombies_[handle] = Zombie{offset, capacity, pins, std::move(blocks)};
  else if (blocks) free_blocks(*blocks);
  else release_extent(offset, capacity);
}

void Catalogue::release_extent(uint64_t offset, uint64_t capacity) {
  if (capacity == 0) return;
  if (on_extent_freed) on_extent_freed(offset, capacity);
  alloc_.release(offset, capacity);
}

Catalogue::Version* Catalogue::find_version(const std::string& job, uint64_t version) {
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return nullptr;
  auto v = j->second.find(version);
  return v == j->second.end() ? nullptr : &v->second;
}

const Catalogue::Version* Catalogue::find_version(const std::string& job, uint64_t version) const {
  return const_cast<Catalogue*>(this)->find_version(job, version);
}

void Catalogue::prune(const std::string& job, uint64_t version) {
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return;
  auto v = j->second.find(version);
  if (v != j->second.end() && !v->second.sealed && v->second.quarantine.empty() && v->second.regions.empty())
    j->second.erase(v);
  if (j->second.empty()) {
    jobs_.erase(j);
    release_job(job, false);  // unless it has named regions
  }
}

uint64_t Catalogue::manifest_digest(const Version& v) const {
  std::vector<uint64_t> words;
  words.reserve(v.regions.size() * 3);
  for (const auto& [key, slot] : v.regions) {
    words.push_back((static_cast<uint64_t>(key.first) << 32) | key.second);
    words.push_back(rec(slot).size);
    words.push_back(rec(slot).checksum);
  }
  return checksum(words.data(), words.size() * sizeof(uint64_t));
}

// ---------------------------------------------------------------- writers

uint64_t Catalogue::begin_attempt(const std::string& job, uint32_t* dropped, bool takeover) {
  check_job_name(job);
  // Each job's current attempt is remembered for the server's life (it
  // fences stale writers even while the job holds nothing): bounded.
  constexpr size_t kMaxJobs = 1u << 20;
  if (attempts_.size() >= kMaxJobs && !attempts_.count(job))
    throw Error(PMCR_E_QUOTA, "pmserver tracks " + std::to_string(kMaxJobs) +
                                  " jobs already; restart it to forget the attempts of jobs long gone");
  // Larger than any attempt this server issued, and than the wall clock in
  // nanoseconds: attempts keep growing across server restarts too.
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  last_attempt_ = std::max(last_attempt_ + 1, static_cast<uint64_t>(std::max<int64_t>(now, 0)));
  attempts_[job] = last_attempt_;
  if (takeover) takeovers_[job] = last_attempt_;
  // Every unsealed region of the job belongs to an earlier attempt, which
  // can never seal it now.
  const uint32_t n = release_unsealed(job);
  if (n) spdlog::warn("job '{}': attempt {} supersedes earlier attempts; {} of their unsealed regions dropped", job,
                      last_attempt_, n);
  if (dropped) *dropped = n;
  return last_attempt_;
}

std::optional<uint32_t> Catalogue::job_owner(const std::string& job) const {
  auto it = owners_.find(job);
  if (it == owners_.end()) return std::nullopt;
  return it->second.uid;
}

void Catalogue::claim_job(const std::string& job, uint32_t uid, uint32_t gid) {
  check_job_name(job);
  if (auto it = owners_.find(job); it != owners_.end()) {
    if (it->second.uid == uid) return;
    throw Error(PMCR_E_PERM, "job '" + job + "' belongs to another owner");
  }
  constexpr size_t kMaxJobs = 1u << 20;  // claims live in memory for the server's life
  if (owners_.size() >= kMaxJobs)
    throw Error(PMCR_E_QUOTA, "pmserver knows " + std::to_string(kMaxJobs) +
                                  " job names already; delete jobs ('pmcr rm --job NAME') or restart it");
  // One user cannot take every name: the one principal of --auth key and
  // none (everyone there is) is bounded by the server's limit alone.
  uint32_t& mine = claims_[uid];
  if (uid != proto::kSharedPrincipal && mine >= kMaxJobsPerOwner)
    throw Error(PMCR_E_QUOTA, "this user owns " + std::to_string(mine) + " job names on pmserver, the most one owner "
                              "may; delete jobs it no longer needs ('pmcr rm --job NAME')");
  mine++;
  owners_[job] = JobOwner{uid, gid, UINT32_MAX};
}

void Catalogue::persist_owner(const std::string& job) {
  auto it = owners_.find(job);
  if (it == owners_.end() || it->second.slot != UINT32_MAX || it->second.uid == kUnknownOwner) return;
  const uint32_t slot = take_slot();
  write_body(slot, job, it->second.uid, it->second.gid, 0, 0, 0, 0);
  pool_.store_persist(&rec(slot).state, kJobOwned);
  it->second.slot = slot;
  CRASH_POINT("job.owner");
}

void Catalogue::release_job(const std::string& job, bool forget) {
  if (!job_empty(job)) return;
  auto it = owners_.find(job);
  if (it == owners_.end()) return;
  if (it->second.slot != UINT32_MAX) {
    free_record(it->second.slot);
    it->second.slot = UINT32_MAX;
  }
  if (forget || it->second.uid == kUnknownOwner) {
    if (auto c = claims_.find(it->second.uid); c != claims_.end() && --c->second == 0) claims_.erase(c);
    owners_.erase(it);
  }
}

uint64_t Catalogue::current_attempt(const std::string& job) const {
  auto it = attempts_.find(job);
  return it == attempts_.end() ? 0 : it->second;
}

void Catalogue::check_attempt(const std::string& job, uint64_t attempt) const {
  const uint64_t current = current_attempt(job);
  if (attempt != 0 && attempt == current) return;
  if (attempt == 0 || current == 0 || attempt > current)
    throw Error(PMCR_E_STATE, "job '" + job + "' has no attempt " + std::to_string(attempt) +
                                  " on this pmserver (it restarted since the job began, or the attempt was never "
                                  "begun): begin a new attempt");
  if (auto t = takeovers_.find(job); t != takeovers_.end() && attempt < t->second)
    throw Error(PMCR_E_FENCED, "job '" + job + "': this writer's attempt " + std::to_string(attempt) +
                                   " was fenced off when a standby took the job over (attempt " +
                                   std::to_string(t->second) + "): this run of the job may write, seal or delete "
                                   "nothing more");
  throw Error(PMCR_E_SUPERSEDED, "job '" + job + "': this writer's attempt " + std::to_string(attempt) +
                                     " was superseded by attempt " + std::to_string(current) +
                                     " (a later run of the same job: a relaunch, or two runs sharing one job name); "
                                     "it may not write or seal any more");
}

RegionView Catalogue::create_region(const RegionKey& key, uint64_t size, Owner owner, uint64_t attempt,
                                     uint64_t block_size, std::optional<uint64_t> base_version, bool* based) {
  check_job_name(key.job);
  check_attempt(key.job, attempt);
  if (based) *based = false;
  if (block_size && !valid_block_size(block_size))
    throw Error(PMCR_E_INVAL, "block size " + std::to_string(block_size) +
                                  " is not a power of two from 4 KiB to 64 MiB (PMCR_BLOCK_SIZE)");
  if (size > alloc_.capacity())
    throw Error(PMCR_E_NOSPACE, "region of " + format_size(size) + " is larger than the pool's whole data area (" +
                                    format_size(alloc_.capacity()) + ")");
  persist_owner(key.job);  // durable before the job's first region
  // A quarantined version under this number is damaged and never served:
  // a new checkpoint of the same number (a program restarted from an older
  // version goes over the same steps again) takes its place.
  if (Version* q = find_version(key.job, key.version); q && !q->quarantine.empty()) {
    spdlog::warn("{} was quarantined ({}); deleted to make room for a new checkpoint of that version",
                 describe(key.job, key.version), q->quarantine);
    delete_version(key.job, key.version, *q);
    jobs_[key.job].erase(key.version);
  }
  Version& v = jobs_[key.job][key.version];
  if (v.sealed)
    throw Error(PMCR_E_EXISTS, describe(key.job, key.version) +
                                   " is sealed and cannot change; write a new version or delete this one first");
  // A region written again by its own writer (a retry) replaces the old
  // one; another writer's region is refused. Either way, its memory is
  // reused only once nothing can still land in it (pins).
  auto existing = v.regions.find({key.rank, key.id});
  if (existing != v.regions.end()) {
    const Owner holder = slots_[existing->second].owner;
    if (holder != owner)
      throw Error(PMCR_E_BUSY, "region rank " + std::to_string(key.rank) + " id " + std::to_string(key.id) + " of " +
                                   describe(key.job, key.version) + " is being written by another connection (" +
                                   std::to_string(holder) + ") of the same attempt; each rank writes its own regions");
    spdlog::debug("replacing unsealed region {}/{}/{}/{}", key.job, key.version, key.rank, key.id);
    free_region(existing->second);
    v.regions.erase(existing);
  }
  // A region kept in blocks gets them as its bytes arrive.
  const uint64_t capacity = block_size ? 0 : extent_size(size);
  uint64_t offset = 0;
  if (capacity) {
    auto got = alloc_.allocate(capacity);
    if (!got) {
      prune(key.job, key.version);
      throw Error(PMCR_E_NOSPACE, "no space in the pool for a region of " + format_size(size) + ": " +
                                      format_size(alloc_.free_bytes()) + " free, largest free extent " +
                                      format_size(alloc_.largest_free()) +
                                      "; delete old versions with 'pmcr rm' or use a larger pool");
    }
    offset = *got;
  }
  uint32_t slot;
  try {
    slot = take_slot();
  } catch (...) {
    if (capacity) alloc_.release(offset, capacity);
    prune(key.job, key.version);
    throw;
  }
  write_body(slot, key.job, key.version, key.rank, key.id, offset, size, 0);
  CRASH_POINT("create.body");
  pool_.store_persist(&rec(slot).state, kRegionCreated);
  CRASH_POINT("create.state");
  set_owner(slot, owner);
  v.regions[{key.rank, key.id}] = slot;
  regions_++;
  if (block_size) {
    auto w = std::make_shared<Working>();
    w->handle = handle_of(slot);
    w->writer = owner;
    w->block_size = block_size;
    w->size = size;
    w->fixed = true;
    w->blocks.resize(blocks_for(size, block_size));
    // The base version's blocks, held by this writer until its commit.
    const Version* base =
        base_version && *base_version != key.version ? find_version(key.job, *base_version) : nullptr;
    if (base && base->sealed) {
      auto it = base->regions.find({key.rank, key.id});
      const GenerationRef& g = it == base->regions.end() ? GenerationRef() : slots_[it->second].blocks;
      if (g && g->block_size == block_size && g->size == size) {
        w->blocks = g->blocks;
        hold_blocks(*w);
        if (based) *based = true;
      }
    }
    slots_[slot].work = std::move(w);
  }
  return view_of(slot);
}

RegionView Catalogue::writable_region(uint64_t handle, Owner owner) const {
  const auto slot = slot_of(handle);
  if (!slot) throw Error(PMCR_E_NOT_FOUND, "unknown region handle (the region was replaced, deleted or reclaimed)");
  const Record& r = rec(*slot);
  if (slots_[*slot].owner != owner)
    throw Error(PMCR_E_STATE, "region belongs to another connection; only its creator can write it");
  if (r.state != kRegionCreated) throw Error(PMCR_E_STATE, "region is already committed");
  return view_of(*slot);
}

uint8_t* Catalogue::write_blocks(uint64_t handle, Owner owner, uint64_t offset, uint64_t length, WorkingRef* pin) {
  writable_region(handle, owner);
  const WorkingRef& w = slots_[*slot_of(handle)].work;
  if (!w) throw Error(PMCR_E_STATE, "the region is not kept in blocks");
  uint8_t* dest = write_into(*w, offset, length, UINT64_MAX);  // (its declared size counts against the quota)
  if (dest) *pin = w;
  return dest;
}

// The commit of a region kept in blocks: its new blocks persisted and
// hashed, the whole checked against CHECKSUM (over every block's hash,
// those it shares with its base version included), its block map written,
// then the record rewritten and committed with one state word.
void Catalogue::commit_mapped(uint32_t slot, uint64_t size, uint64_t checksum_value) {
  hash_blocks(mapped_target(slot, size), false);
  commit_hashed(slot, checksum_value);
}

Working& Catalogue::mapped_target(uint32_t slot, uint64_t size) {
  const Record& r = rec(slot);
  Working& w = *slots_[slot].work;
  if (w.committing) throw Error(PMCR_E_STATE, "a COMMIT of this region is in progress; wait for its reply");
  if (!w.broken.empty())
    throw Error(PMCR_E_IO, "the region's data did not arrive whole (" + w.broken + "); write the region again");
  if (w.landing > 0) throw Error(PMCR_E_BUSY, "the region's data is still arriving; commit after it");
  if (size != r.size)
    throw Error(PMCR_E_SIZE, "commit of " + std::to_string(size) + " bytes for a region created with " +
                                 std::to_string(r.size) + " bytes");
  return w;
}

void Catalogue::commit_hashed(uint32_t slot, uint64_t checksum_value) {
  Record& r = rec(slot);
  Working& w = *slots_[slot].work;
  const uint64_t actual = combine_hashes(w.blocks);
  if (actual != checksum_value) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "pool holds %016llx, client sent %016llx", static_cast<unsigned long long>(actual),
                  static_cast<unsigned long long>(checksum_value));
    throw Error(PMCR_E_CHECKSUM, std::string("region data does not match its checksum (") + buf +
                                     "); the blocks not sent must be those of the base version");
  }
  const auto map = write_map(w, record_job(r), "", r.version, 0);
  r.offset = map.first;
  r.checksum = checksum_value;
  r.body_sum = checksum(reinterpret_cast<const uint8_t*>(&r) + kRecordBodyOffset, sizeof(Record) - kRecordBodyOffset);
  pool_.persist(&r.body_sum, sizeof(Record) - offsetof(Record, body_sum));
  CRASH_POINT("commit.body");
  pool_.store_persist(&r.state, kRegionMapped);
  slots_[slot].blocks = adopt(w, slot, r.version, map);
  slots_[slot].work.reset();
  CRASH_POINT("commit.state");
}

Record* Catalogue::commit_target(uint64_t handle, uint64_t size, uint64_t checksum_value, Owner owner, uint32_t* slot_out) {
  const auto slot = slot_of(handle);
  if (!slot) throw Error(PMCR_E_NOT_FOUND, "unknown region handle (the region was replaced, deleted or reclaimed)");
  Record& r = rec(*slot);
  if (slots_[*slot].owner != owner)
    throw Error(PMCR_E_STATE, "region belongs to another connection; only its creator can commit it");
  if (size != r.size)
    throw Error(PMCR_E_SIZE, "commit of " + std::to_string(size) + " bytes for a region created with " +
                                 std::to_string(r.size) + " bytes");
  if (r.state == kRegionCommitted || r.state == kRegionMapped) {
    if (r.checksum == checksum_value) return nullptr;  // a retried commit
    throw Error(PMCR_E_STATE, "region is already committed with another checksum");
  }
  *slot_out = *slot;
  return &r;
}

void Catalogue::commit_checked(Record& r, uint64_t checksum_value, uint64_t actual) {
  CRASH_POINT("commit.data");
  if (actual != checksum_value) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "pool holds %016llx, client sent %016llx",
                  static_cast<unsigned long long>(actual), static_cast<unsigned long long>(checksum_value));
    throw Error(PMCR_E_CHECKSUM, std::string("region data does not match its checksum (") + buf +
                                     "); were all puts flushed before COMMIT?");
  }
  r.checksum = checksum_value;
  r.body_sum = checksum(reinterpret_cast<const uint8_t*>(&r) + kRecordBodyOffset, sizeof(Record) - kRecordBodyOffset);
  pool_.persist(&r.body_sum, sizeof(Record) - offsetof(Record, body_sum));
  CRASH_POINT("commit.body");
  pool_.store_persist(&r.state, kRegionCommitted);
  CRASH_POINT("commit.state");
}

void Catalogue::commit_region(uint64_t handle, uint64_t size, uint64_t checksum_value, Owner owner) {
  uint32_t slot = 0;
  Record* r = commit_target(handle, size, checksum_value, owner, &slot);
  if (!r) return;
  if (slots_[slot].work) return commit_mapped(slot, size, checksum_value);
  uint8_t* data = pool_.base() + r->offset;
  pool_.persist(data, size);
  commit_checked(*r, checksum_value, checksum(data, size));
}

std::optional<std::pair<uint8_t*, uint64_t>> Catalogue::commit_data(uint64_t handle, uint64_t size,
                                                                    uint64_t checksum_value, Owner owner) {
  uint32_t slot = 0;
  Record* r = commit_target(handle, size, checksum_value, owner, &slot);
  if (!r || slots_[slot].work) return std::nullopt;
  return std::make_pair(pool_.base() + r->offset, size);
}

void Catalogue::commit_persisted(uint64_t handle, uint64_t size, uint64_t checksum_value, uint64_t actual,
                                 Owner owner) {
  uint32_t slot = 0;
  Record* r = commit_target(handle, size, checksum_value, owner, &slot);
  if (r) commit_checked(*r, checksum_value, actual);
}

std::optional<std::vector<std::pair<uint8_t*, uint64_t>>> Catalogue::commit_blocks_data(uint64_t handle, uint64_t size,
                                                                                     uint64_t checksum_value,
                                                                                     Owner owner, WorkingRef* work) {
  uint32_t slot = 0;
  Record* r = commit_target(handle, size, checksum_value, owner, &slot);
  if (!r || !slots_[slot].work) return std::nullopt;
  Working& w = mapped_target(slot, size);
  auto fresh = fresh_blocks(w);
  w.committing = true;
  w.landing++;  // (see release_write and drop_working)
  *work = slots_[slot].work;
  return fresh;
}

void Catalogue::commit_blocks_hashed(uint64_t handle, uint64_t size, uint64_t checksum_value, Owner owner,
                                     const std::vector<uint64_t>& hashes) {
  uint32_t slot = 0;
  Record* r = commit_target(handle, size, checksum_value, owner, &slot);
  if (!r || !slots_[slot].work) throw Error(PMCR_E_INTERNAL, "a region committed in blocks changed under its COMMIT");
  Working& w = *slots_[slot].work;
  w.committing = false;  // (its landing count goes with release_write)
  if (!w.broken.empty())
    throw Error(PMCR_E_IO, "the region's data did not arrive whole (" + w.broken + "); write the region again");
  hashed_blocks(w, hashes);
  CRASH_POINT("commit.data");
  commit_hashed(slot, checksum_value);
}

bool Catalogue::seal(const std::string& job, uint64_t version, uint32_t nranks, uint32_t nregions, uint64_t attempt,
                     uint32_t part_ranks) {
  check_job_name(job);
  if (part_ranks == nranks) part_ranks = 0;  // the whole version
  Version* v = find_version(job, version);
  if (v && !v->quarantine.empty())
    throw Error(PMCR_E_CORRUPT, describe(job, version) + " is quarantined (" + v->quarantine + ")");
  if (v && v->sealed) {
    const Record& s = rec(v->seal_slot);
    if (s.rank == nranks && s.id == nregions && s.offset == part_ranks) return false;  // a retried seal
    throw Error(PMCR_E_EXISTS, describe(job, version) + " is already sealed with " + std::to_string(s.rank) +
                                   " ranks and " + std::to_string(s.id) + " regions" +
                                   (s.offset ? " (a part: " + std::to_string(s.offset) + " ranks' regions)" : ""));
  }
  check_attempt(job, attempt);
  if (!v) throw Error(PMCR_E_NOT_FOUND, describe(job, version) + " has no regions to seal");
  const uint32_t held = part_ranks ? part_ranks : nranks;
  if (nranks == 0 || nregions < held || held > nranks)
    throw Error(PMCR_E_INVAL, "seal needs at least one rank and at least one region per rank held (got " +
                                  std::to_string(nranks) + " ranks, " + std::to_string(held) + " of them held here, " +
                                  std::to_string(nregions) + " regions)");
  uint32_t committed = 0, created = 0;
  uint64_t bytes = 0;
  std::set<uint32_t> ranks;
  for (const auto& [key, slot] : v->regions) {
    if (key.first >= nranks)
      throw Error(PMCR_E_INVAL, describe(job, version) + " has a region of rank " + std::to_string(key.first) +
                                    " but the seal names only " + std::to_string(nranks) + " ranks");
    if (rec(slot).state == kRegionCommitted || rec(slot).state == kRegionMapped) {
      committed++;
      bytes += rec(slot).size;
      ranks.insert(key.first);
    } else {
      created++;
    }
  }
  if (created || committed != nregions)
    throw Error(PMCR_E_INCOMPLETE, describe(job, version) + " has " + std::to_string(committed) +
                                       " committed regions (" + std::to_string(created) + " not yet committed); " +
                                       std::to_string(nregions) + " are required to seal it");
  if (ranks.size() != held)
    throw Error(PMCR_E_INCOMPLETE, describe(job, version) + ": only " + std::to_string(ranks.size()) + " of " +
                                       std::to_string(held) + " ranks have committed regions");
  const uint32_t slot = take_slot();
  // A version record's offset: the ranks of a part (0: all of them).
  write_body(slot, job, version, nranks, nregions, part_ranks, bytes, manifest_digest(*v));
  CRASH_POINT("seal.body");
  pool_.store_persist(&rec(slot).state, kVersionSealed);
  v->sealed = true;
  v->seal_slot = slot;
  for (const auto& [key, region_slot] : v->regions) set_owner(region_slot, 0);
  CRASH_POINT("seal.state");
  return true;
}

size_t Catalogue::region_count(const std::string& job, uint64_t version) const {
  const Version* v = find_version(job, version);
  return v ? v->regions.size() : 0;
}

// ---------------------------------------------------------------- readers

RegionView Catalogue::open_region(const RegionKey& key) {
  const Version* v = find_version(key.job, key.version);
  if (v && !v->quarantine.empty())
    throw Error(PMCR_E_CORRUPT, describe(key.job, key.version) + " is quarantined (" + v->quarantine +
                                    ") and is never served: restart from an older version");
  if (!v || !v->sealed)
    throw Error(PMCR_E_NOT_FOUND, describe(key.job, key.version) + " is not a sealed checkpoint in this pool");
  auto it = v->regions.find({key.rank, key.id});
  if (it == v->regions.end())
    throw Error(PMCR_E_NOT_FOUND, describe(key.job, key.version) + " has no region with rank " +
                                      std::to_string(key.rank) + " and id " + std::to_string(key.id));
  slots_[it->second].pins++;
  return view_of(it->second);
}

void Catalogue::pin(uint64_t handle) {
  if (const auto slot = slot_of(handle)) {
    slots_[*slot].pins++;
    return;
  }
  // A deleted region a reader still has open: its extent stays.
  auto z = zombies_.find(handle);
  if (z == zombies_.end()) throw Error(PMCR_E_NOT_FOUND, "unknown region handle (the region was replaced, deleted or reclaimed)");
  z->second.pins++;
}

void Catalogue::unpin(uint64_t handle) {
  if (auto slot = slot_of(handle)) {
    if (slots_[*slot].pins > 0) {
      slots_[*slot].pins--;
      return;
    }
  }
  auto z = zombies_.find(handle);
  if (z == zombies_.end()) throw Error(PMCR_E_NOT_FOUND, "unknown or already closed region handle");
  if (--z->second.pins == 0) {
    if (z->second.blocks) free_blocks(*z->second.blocks);
    else release_extent(z->second.offset, z->second.capacity);
    zombies_.erase(z);
  }
}

std::vector<RegionView> Catalogue::version_regions(const std::string& job, uint64_t version) const {
  const Version* v = find_version(job, version);
  if (v && !v->quarantine.empty())
    throw Error(PMCR_E_CORRUPT, describe(job, version) + " is quarantined (" + v->quarantine + ")");
  if (!v || !v->sealed) throw Error(PMCR_E_NOT_FOUND, describe(job, version) + " is not a sealed checkpoint in this pool");
  std::vector<RegionView> out;
  out.reserve(v->regions.size());
  for (const auto& [key, slot] : v->regions) out.push_back(view_of(slot));
  return out;
}

uint64_t Catalogue::version_id(const std::string& job, uint64_t version) const {
  const Version* v = find_version(job, version);
  return v && v->sealed ? rec(v->seal_slot).sequence : 0;
}

void Catalogue::quarantine(const std::string& job, uint64_t version, uint64_t id, const std::string& reason) {
  Version* v = find_version(job, version);
  if (!v || !v->sealed || rec(v->seal_slot).sequence != id) return;
  // Durable for a sealed version: one store of its seal record's state (the
  // body, and so the digest of its regions, stays as it was).
  if (v->sealed) pool_.store_persist(&rec(v->seal_slot).state, kVersionQuarantined);
  v->sealed = false;
  v->quarantine = reason;
  spdlog::error("{} quarantined: {}; it is never served again (inspect it with 'pmcr ls', delete it with 'pmcr rm')",
                describe(job, version), reason);
}

// ---------------------------------------------------------------- deletion

uint32_t Catalogue::delete_version(const std::string& job, uint64_t version, Version& v) {
  // A sealed version first becomes invisible as a whole (DELETING), then its
  // regions go; a crash in between is finished at the next start.
  const bool has_seal = v.seal_slot != UINT32_MAX;
  if (has_seal) {
    pool_.store_persist(&rec(v.seal_slot).state, kVersionDeleting);
    CRASH_POINT("delete.mark");
  }
  uint32_t n = 0;
  for (const auto& [key, slot] : v.regions) {
    free_region(slot);
    n++;
    CRASH_POINT("delete.region");
  }
  for (uint32_t slot : v.damaged_slots) {
    free_record(slot);
    if (auto k = kept_extents_.find(slot); k != kept_extents_.end()) {
      release_extent(k->second.first, k->second.second);
      kept_extents_.erase(k);
    }
  }
  v.damaged_slots.clear();
  if (has_seal) {
    free_record(v.seal_slot);
    CRASH_POINT("delete.done");
  }
  spdlog::info("deleted {} ({} regions)", describe(job, version), n);
  return n;
}

std::pair<uint32_t, uint32_t> Catalogue::delete_versions(const std::string& job, std::optional<uint64_t> version) {
  check_job_name(job);
  auto j = jobs_.find(job);
  if (j == jobs_.end()) throw Error(PMCR_E_NOT_FOUND, "job '" + job + "' has no versions in this pool");
  std::vector<uint64_t> targets;
  if (version) {
    if (!j->second.count(*version)) throw Error(PMCR_E_NOT_FOUND, describe(job, *version) + " does not exist");
    targets.push_back(*version);
  } else {
    for (const auto& [ver, v] : j->second) targets.push_back(ver);
  }
  uint32_t versions = 0, regions = 0;
  for (uint64_t ver : targets) {
    regions += delete_version(job, ver, j->second.at(ver));
    j->second.erase(ver);
    versions++;
  }
  if (j->second.empty()) {
    jobs_.erase(j);
    release_job(job, !version);
  }
  return {versions, regions};
}

uint32_t Catalogue::release_unsealed(const std::string& job) {
  auto j = jobs_.find(job);
  if (j == jobs_.end()) return 0;
  uint32_t n = 0;
  std::vector<uint64_t> touched;
  for (auto& [ver, v] : j->second) {
    if (v.sealed || !v.quarantine.empty()) continue;
    for (const auto& [key, slot] : v.regions) {
      free_region(slot);
      n++;
      CRASH_POINT("reclaim.region");
    }
    v.regions.clear();
    touched.push_back(ver);
  }
  for (uint64_t ver : touched) prune(job, ver);
  return n;
}

uint32_t Catalogue::release_owner(Owner owner) { return release_owned(owner, nullptr, 0); }

uint32_t Catalogue::release_owner(Owner owner, const std::string& job, uint64_t version) {
  return release_owned(owner, &job, version);
}

// Only OWNER's own slots are visited (owned_), however many regions others
// hold: a job of thousands of ranks that dies costs one pass per region.
uint32_t Catalogue::release_owned(Owner owner, const std::string* job, uint64_t version) {
  auto o = owned_.find(owner);
  if (owner == 0 || o == owned_.end()) return 0;
  const std::vector<uint32_t> slots(o->second.begin(), o->second.end());
  uint32_t n = 0;
  for (uint32_t slot : slots) {
    const Record& r = rec(slot);
    const std::string name = record_job(r);
    const uint64_t ver = r.version;
    if (job && (name != *job || ver != version)) continue;
    Version* v = find_version(name, ver);
    if (!v || v->sealed) continue;
    v->regions.erase({r.rank, r.id});
    free_region(slot);
    n++;
    CRASH_POINT("reclaim.region");
    prune(name, ver);
  }
  return n;
}

// ---------------------------------------------------------------- queries

std::vector<VersionSummary> Catalogue::list_versions(const std::string& job) const {
  std::vector<VersionSummary> out;
  for (const auto& [name, versions] : jobs_) {
    if (!job.empty() && name != job) continue;
    for (const auto& [ver, v] : versions) {
      VersionSummary s;
      s.job = name;
      s.version = ver;
      s.sealed = v.sealed;
      s.quarantine = v.quarantine;
      std::set<uint32_t> ranks;
      for (const auto& [key, slot] : v.regions) {
        ranks.insert(key.first);
        s.bytes += rec(slot).size;
      }
      s.nregions = static_cast<uint32_t>(v.regions.size());
      s.nranks = v.seal_slot != UINT32_MAX ? rec(v.seal_slot).rank : static_cast<uint32_t>(ranks.size());
      s.part_ranks = static_cast<uint32_t>(ranks.size());
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::vector<std::pair<std::string, uint64_t>> Catalogue::sealed_versions() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [name, versions] : jobs_)
    for (const auto& [ver, v] : versions)
      if (v.sealed) out.emplace_back(name, ver);
  return out;
}

std::pair<bool, std::vector<RegionSummary>> Catalogue::list_regions(const std::string& job, uint64_t version) const {
  const Version* v = find_version(job, version);
  if (!v) throw Error(PMCR_E_NOT_FOUND, describe(job, version) + " does not exist");
  std::vector<RegionSummary> out;
  for (const auto& [key, slot] : v->regions) {
    const Record& r = rec(slot);
    out.push_back(RegionSummary{key.first, key.second, r.size, r.checksum,
                                r.state == kRegionCommitted || r.state == kRegionMapped});
  }
  return {v->sealed, std::move(out)};
}

CatalogueStats Catalogue::stats() const {
  CatalogueStats s;
  s.data_size = alloc_.capacity();
  s.used_bytes = alloc_.used_bytes();
  s.free_bytes = alloc_.free_bytes();
  s.regions = regions_;
  s.slots = static_cast<uint32_t>(slots_.size());
  s.slots_used = static_cast<uint32_t>(slots_.size() - free_slots_.size());
  for (const auto& [slot, extent] : kept_extents_) s.kept_bytes += extent.second;
  for (const auto& [job, regions] : named_) s.named_regions += static_cast<uint32_t>(regions.size());
  for (const auto& [job, versions] : jobs_) {
    bool any = false;
    for (const auto& [ver, v] : versions) {
      if (v.sealed) {
        s.sealed_versions++;
        any = true;
      }
      if (!v.quarantine.empty()) s.quarantined_versions++;
    }
    if (any) s.jobs++;
  }
  return s;
}

// ---------------------------------------------------------------- recovery

void Catalogue::recover() {
  const uint32_t n = static_cast<uint32_t>(slots_.size());
  std::vector<uint32_t> committed, reclaim, deleting, generations;
  std::vector<bool> used(n, false);
  // A damaged record that is not a region record may have been the seal of
  // some committed regions: then regions without a seal are kept
  // (quarantined), never freed as if they had never been sealed.
  uint32_t suspect_seals = 0;
  std::vector<uint32_t> damaged;  // kept; attributed to their version at the end, if they name one
  for (uint32_t slot = 0; slot < n; ++slot) {
    const Record& r = rec(slot);
    if (r.state == kStateFree) continue;
    used[slot] = true;
    if (r.sequence >= next_sequence_) next_sequence_ = r.sequence + 1;
    switch (r.state) {
      case kRegionCreated: reclaim.push_back(slot); break;
      case kGeneration: generations.push_back(slot); break;
      case kRegionCommitted:
      case kRegionMapped:
      case kVersionSealed:
      case kVersionQuarantined:
      case kVersionDeleting:
        if (!body_ok(slot)) {
          spdlog::error("catalogue record {} (state {:#x}) is damaged (body checksum mismatch); kept, never served",
                        slot, r.state);
          recovery_.damaged++;
          damaged.push_back(slot);
          if (r.state != kRegionCommitted && r.state != kRegionMapped) suspect_seals++;
        } else if (r.state == kRegionCommitted || r.state == kRegionMapped) {
          committed.push_back(slot);
        } else if (r.state == kVersionDeleting) {
          deleting.push_back(slot);
        } else {
          const std::string job = record_job(r);
          Version& v = jobs_[job][r.version];
          if (v.seal_slot != UINT32_MAX) {
            v.quarantine = "sealed twice in the catalogue (records " + std::to_string(v.seal_slot) + " and " +
                           std::to_string(slot) + ")";
            v.sealed = false;
            v.damaged_slots.push_back(slot);
            recovery_.damaged++;
          } else {
            v.seal_slot = slot;
            v.sealed = r.state == kVersionSealed;
            if (r.state == kVersionQuarantined) v.quarantine = "found damaged before the last restart";
          }
        }
        break;
      case kJobOwned:
        if (!body_ok(slot)) {
          // Which job it named is unknown: that job is left to the admins
          // below (it has versions but no owner), never made claimable.
          spdlog::error("catalogue record {} (a job's owner) is damaged; kept, never trusted", slot);
          recovery_.damaged++;
        } else if (!owners_.emplace(record_job(r), JobOwner{static_cast<uint32_t>(r.version), r.rank, slot}).second) {
          spdlog::error("catalogue record {}: a second owner of job '{}'; the job is left to the admins", slot,
                        record_job(r));
          owners_[record_job(r)] = JobOwner{kUnknownOwner, 0, UINT32_MAX};
          recovery_.damaged++;
        }
        break;
      default:
        spdlog::error("catalogue record {} has an unknown state {:#x}; kept, never served", slot, r.state);
        recovery_.damaged++;
        damaged.push_back(slot);
        suspect_seals++;
    }
  }
  // Regions of sealed (or quarantined) versions stay; every other committed
  // region belonged to a version that never sealed, or whose deletion was
  // interrupted, unless a damaged record may have been its seal.
  std::set<std::pair<std::string, uint64_t>> being_deleted;
  for (uint32_t slot : deleting) being_deleted.emplace(record_job(rec(slot)), rec(slot).version);
  const auto spoil = [&](Version& v, const std::string& why) {
    if (!v.quarantine.empty()) return;
    v.quarantine = why;
    v.sealed = false;
  };
  for (uint32_t slot : committed) {
    const Record& r = rec(slot);
    const std::string job = record_job(r);
    Version* v = find_version(job, r.version);
    if (being_deleted.count({job, r.version}) || ((!v || v->seal_slot == UINT32_MAX) && suspect_seals == 0)) {
      reclaim.push_back(slot);
      continue;
    }
    if (!v) {
      v = &jobs_[job][r.version];
      spoil(*v, "committed regions without a seal record, while " + std::to_string(suspect_seals) +
                    " damaged catalogue record(s) may have been its seal");
    }
    // A region kept in blocks: its map checked, its blocks counted (shared
    // with the other versions' regions that name them).
    GenerationRef blocks;
    std::string why = "has an extent outside the data area or overlapping another";
    if (r.state == kRegionMapped && (blocks = read_map(slot, &why, nullptr)) && !count_blocks(*blocks)) {
      why = "has blocks outside the data area or overlapping other data";
      blocks.reset();
    }
    if (r.state == kRegionMapped ? !blocks : !alloc_.reserve(r.offset, extent_size(r.size))) {
      spdlog::error("{}: region rank {} id {} (record {}) {}", describe(job, r.version), r.rank, r.id, slot, why);
      recovery_.damaged++;
      spoil(*v, "region rank " + std::to_string(r.rank) + " id " + std::to_string(r.id) + " " + why);
      continue;  // its record stays used, its extent unowned
    }
    slots_[slot].blocks = blocks;
    if (!v->regions.emplace(std::make_pair(r.rank, r.id), slot).second) {
      if (blocks) free_blocks(*blocks);
      else alloc_.release(r.offset, extent_size(r.size));
      slots_[slot].blocks.reset();
      recovery_.damaged++;
      spoil(*v, "holds region rank " + std::to_string(r.rank) + " id " + std::to_string(r.id) + " twice");
      continue;
    }
    regions_++;
  }
  // A damaged record whose job and version name a version here goes with
  // that version (deleted with it, or with the deletion a crash
  // interrupted); if it looks like a region record, its extent is kept
  // (when it lies in free space: the valid regions were placed first).
  for (uint32_t slot : damaged) {
    const Record& r = rec(slot);
    const std::string job = record_job(r);
    if (being_deleted.count({job, r.version})) {
      reclaim.push_back(slot);
      continue;
    }
    Version* v = find_version(job, r.version);
    if (!v) continue;
    v->damaged_slots.push_back(slot);
    spoil(*v, "catalogue record " + std::to_string(slot) + " of this version is damaged");
    if (r.state == kRegionCommitted && r.size > 0 && alloc_.reserve(r.offset, extent_size(r.size)))
      kept_extents_[slot] = {r.offset, extent_size(r.size)};
  }
  recover_named(generations, used);
  recovered_lengths_.clear();
  for (uint32_t slot : reclaim) {
    pool_.store_persist(&rec(slot).state, kStateFree);
    used[slot] = false;
    recovery_.reclaimed_regions++;
  }
  for (uint32_t slot : deleting) {
    pool_.store_persist(&rec(slot).state, kStateFree);
    used[slot] = false;
    recovery_.finished_deletions++;
  }
  // A sealed version must hold exactly the regions its seal names.
  for (auto& [job, versions] : jobs_) {
    for (auto& [ver, v] : versions) {
      if (v.seal_slot != UINT32_MAX && v.quarantine.empty()) {
        const Record& s = rec(v.seal_slot);
        std::set<uint32_t> ranks;
        for (const auto& [key, slot] : v.regions) ranks.insert(key.first);
        const uint64_t held = s.offset ? s.offset : s.rank;  // a part's ranks, or all
        if (v.regions.size() != s.id || ranks.size() != held || (!ranks.empty() && *ranks.rbegin() >= s.rank) ||
            manifest_digest(v) != s.checksum)
          spoil(v, "holds " + std::to_string(v.regions.size()) + " of the " + std::to_string(s.id) +
                       " regions its seal names, or regions that differ from them");
      }
      if (!v.quarantine.empty()) {
        // Durable where there is a seal record to mark.
        if (v.seal_slot != UINT32_MAX && rec(v.seal_slot).state == kVersionSealed)
          pool_.store_persist(&rec(v.seal_slot).state, kVersionQuarantined);
        spdlog::error("{} is quarantined: {}; it is never served (inspect with 'pmcr ls', delete with 'pmcr rm')",
                      describe(job, ver), v.quarantine);
        recovery_.quarantined++;
      } else if (v.sealed) {
        recovery_.sealed_versions++;
        recovery_.regions += static_cast<uint32_t>(v.regions.size());
      }
    }
  }
  // Owners: the record of a job with nothing left is freed. A job with
  // something left but no (trustworthy) owner record is the admins', unless
  // the pool predates owners (layout version 1): then its jobs were
  // everyone's, and go to the one principal of --auth key and none.
  for (auto it = owners_.begin(); it != owners_.end();) {
    if (!job_empty(it->first)) {
      ++it;
      continue;
    }
    if (it->second.slot != UINT32_MAX) {
      pool_.store_persist(&rec(it->second.slot).state, kStateFree);
      used[it->second.slot] = false;
    }
    it = owners_.erase(it);
  }
  for (auto slot = n; slot-- > 0;)
    if (!used[slot]) free_slots_.push_back(slot);
  std::set<std::string> held;
  for (const auto& [job, versions] : jobs_) held.insert(job);
  for (const auto& [job, regions] : named_) held.insert(job);
  for (const std::string& job : held) {
    if (owners_.count(job)) continue;
    if (pool_.upgraded()) {
      owners_[job] = JobOwner{proto::kSharedPrincipal, proto::kSharedPrincipal, UINT32_MAX};
      try {
        persist_owner(job);
      } catch (const Error& e) {
        spdlog::error("job '{}': cannot record its owner: {}", job, e.what());
      }
      continue;
    }
    spdlog::warn("job '{}' has no owner record; only admins may see or delete it", job);
    owners_[job] = JobOwner{kUnknownOwner, 0, UINT32_MAX};
  }
  for (const auto& [job, owner] : owners_) claims_[owner.uid]++;
}

}  // namespace pmcr::server
