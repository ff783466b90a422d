// Named regions with generations: copy-on-write block maps in the pool
// (layout.hpp), one writer building the next generation, readers holding
// what they read. See catalogue.hpp for the model.
//
// Crash consistency keeps the catalogue's one rule: the blocks a commit
// wrote and its block map are persisted while nothing names them, then one
// persisted 8-byte state word (the generation's record) makes the
// generation exist. Dropping a generation is one store of its state word;
// the blocks no kept generation names are free in DRAM at once, and at the
// next start-up, where the allocator is rebuilt from the maps of the
// committed generations alone.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "catalogue.hpp"
#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "text.hpp"

#define CRASH_POINT(name)                                                         \
  do {                                                                            \
    if (PMCR_FAULT_POINT(name)) throw Error(PMCR_E_IO, "fault injected at " name); \
  } while (0)

namespace pmcr::server {

struct Catalogue::Named {
  std::string job, name;
  uint64_t block_size = 0;
  uint32_t keep = 0;
  std::map<uint64_t, GenerationRef> generations;  // kept, by number
  uint64_t latest = 0;
  WorkingRef writer;
  uint32_t handles = 0;
  std::string damaged;                 // non-empty: never served, until removed
  std::vector<uint32_t> damaged_slots;
  bool removed = false;
};

namespace {

uint64_t name_hash(const std::string& name) { return checksum(name.data(), name.size()); }

std::string describe(const std::string& job, const std::string& name) { return "region '" + name + "' of job '" + job + "'"; }

}  // namespace

void Catalogue::set_region_defaults(uint64_t block_size, uint32_t keep) {
  if (!valid_block_size(block_size))
    throw Error(PMCR_E_INVAL, "block size " + std::to_string(block_size) + " must be a power of two from 4 KiB to 64 MiB");
  if (keep < 1 || keep > kMaxKeep)
    throw Error(PMCR_E_INVAL, "generations kept must be 1 to " + std::to_string(kMaxKeep));
  default_block_size_ = block_size;
  default_keep_ = keep;
}

// ---------------------------------------------------------------- handles

Catalogue::NamedHandle& Catalogue::named_handle(uint64_t handle, Owner owner) {
  auto it = named_handles_.find(handle);
  if (it == named_handles_.end() || it->second.owner != owner)
    throw Error(PMCR_E_NOT_FOUND, "this connection has no open region with that handle (handles are valid only on "
                                  "the connection they were given to)");
  return it->second;
}

NamedInfo Catalogue::info_of(const Named& n, uint64_t handle) const {
  NamedInfo i;
  i.handle = handle;
  i.block_size = n.block_size;
  i.keep = n.keep;
  if (!n.generations.empty()) {
    i.generation = n.latest;
    i.size = n.generations.rbegin()->second->size;
  }
  return i;
}

uint32_t Catalogue::named_handles(Owner owner) const {
  auto it = named_by_owner_.find(owner);
  return it == named_by_owner_.end() ? 0 : static_cast<uint32_t>(it->second.size());
}

NamedInfo Catalogue::region_create(const std::string& job, const std::string& name, uint64_t block_size,
                                   uint32_t keep, Owner owner) {
  check_job_name(job);
  check_region_name(name);
  if (block_size == 0) block_size = default_block_size_;
  if (keep == 0) keep = default_keep_;
  if (!valid_block_size(block_size))
    throw Error(PMCR_E_INVAL, "block size " + std::to_string(block_size) +
                                  " is not a power of two from 4 KiB to 64 MiB (PMCR_BLOCK_SIZE)");
  if (keep > kMaxKeep)
    throw Error(PMCR_E_INVAL, "a region keeps at most " + std::to_string(kMaxKeep) + " generations, not " +
                                  std::to_string(keep));
  auto& slot = named_[job][name];
  if (!slot) {
    slot = std::make_shared<Named>();
    slot->job = job;
    slot->name = name;
    slot->block_size = block_size;
    slot->keep = keep;
  }
  const std::shared_ptr<Named> n = slot;
  try {
    if (!n->damaged.empty())
      throw Error(PMCR_E_CORRUPT, describe(job, name) + " is damaged (" + n->damaged +
                                      ") and never served: remove it (pmcr_region_remove) and write it again");
    if (n->writer)
      throw Error(PMCR_E_BUSY, describe(job, name) + " is being written by another handle (connection " +
                                   std::to_string(n->writer->writer) + "); a region has one writer at a time");
    persist_owner(job);  // durable before the job's first generation
  } catch (...) {
    forget_if_unused(n);
    throw;
  }
  const uint64_t handle = kNamedHandleBit | next_named_handle_++;
  auto w = std::make_shared<Working>();
  w->handle = handle;
  w->writer = owner;
  w->block_size = n->block_size;
  w->counted = true;
  if (!n->generations.empty()) {
    const Generation& g = *n->generations.rbegin()->second;
    w->size = g.size;
    w->blocks = g.blocks;
    hold_blocks(*w);
  }
  n->writer = w;
  n->handles++;
  named_handles_[handle] = NamedHandle{n, owner, true, {}};
  named_by_owner_[owner].insert(handle);
  return info_of(*n, handle);
}

std::shared_ptr<Catalogue::Named> Catalogue::find_named(const std::string& job, const std::string& name) const {
  check_job_name(job);
  check_region_name(name);
  auto j = named_.find(job);
  if (j == named_.end() || !j->second.count(name))
    throw Error(PMCR_E_NOT_FOUND, describe(job, name) + " does not exist in this pool");
  return j->second.at(name);
}

NamedInfo Catalogue::region_open(const std::string& job, const std::string& name, Owner owner) {
  const std::shared_ptr<Named> n = find_named(job, name);
  if (!n->damaged.empty())
    throw Error(PMCR_E_CORRUPT, describe(job, name) + " is damaged (" + n->damaged + ") and never served");
  const uint64_t handle = kNamedHandleBit | next_named_handle_++;
  NamedHandle h{n, owner, false, {}};
  if (!n->generations.empty()) {
    h.held[0] = n->generations.rbegin()->second;
    h.held[0]->pins++;
  }
  n->handles++;
  named_handles_[handle] = std::move(h);
  named_by_owner_[owner].insert(handle);
  return info_of(*n, handle);
}

NamedInfo Catalogue::region_stat(uint64_t handle, Owner owner) {
  NamedHandle& h = named_handle(handle, owner);
  Named& n = *h.region;
  if (n.removed) throw Error(PMCR_E_NOT_FOUND, describe(n.job, n.name) + " was removed");
  if (!h.writer && !n.generations.empty()) {
    const GenerationRef& latest = n.generations.rbegin()->second;
    if (h.held[0] != latest) {
      unhold(h.held[1]);
      h.held[1] = std::move(h.held[0]);
      h.held[0] = latest;
      latest->pins++;
    }
  }
  return info_of(n, handle);
}

void Catalogue::unhold(GenerationRef& g) {
  if (!g) return;
  release(g);
  g.reset();
}

void Catalogue::hold(const GenerationRef& g) { g->pins++; }

void Catalogue::release(const GenerationRef& g) {
  if (g->pins > 0) g->pins--;
  if (g->pins == 0 && !g->kept) free_blocks(*g);
}

void Catalogue::region_close(uint64_t handle, Owner owner) {
  NamedHandle& h = named_handle(handle, owner);
  const std::shared_ptr<Named> n = h.region;
  if (h.writer && n->writer && n->writer->handle == handle) abandon(*n);
  unhold(h.held[0]);
  unhold(h.held[1]);
  n->handles--;
  named_handles_.erase(handle);
  if (auto o = named_by_owner_.find(owner); o != named_by_owner_.end()) {
    o->second.erase(handle);
    if (o->second.empty()) named_by_owner_.erase(o);
  }
  forget_if_unused(n);
}

uint32_t Catalogue::release_named(Owner owner) {
  auto o = named_by_owner_.find(owner);
  if (o == named_by_owner_.end()) return 0;
  const std::vector<uint64_t> handles(o->second.begin(), o->second.end());
  for (uint64_t h : handles) region_close(h, owner);
  return static_cast<uint32_t>(handles.size());
}

// A region nobody writes, with no generation and no damage, exists only in
// DRAM: it goes once no handle names it.
void Catalogue::forget_if_unused(const std::shared_ptr<Named>& n) {
  if (n->removed || n->writer || n->handles || !n->generations.empty() || !n->damaged_slots.empty()) return;
  auto j = named_.find(n->job);
  if (j == named_.end()) return;
  if (auto it = j->second.find(n->name); it != j->second.end() && it->second == n) j->second.erase(it);
  if (j->second.empty()) {
    const std::string job = n->job;
    named_.erase(j);
    release_job(job, false);
  }
}

// ---------------------------------------------------------------- writing

uint8_t* Catalogue::region_write(uint64_t handle, Owner owner, uint64_t offset, uint64_t length, uint64_t byte_quota,
                                 WorkingRef* pin) {
  NamedHandle& h = named_handle(handle, owner);
  Named& n = *h.region;
  if (!h.writer) throw Error(PMCR_E_PERM, describe(n.job, n.name) + " is open for reading only");
  if (n.removed || !n.writer || n.writer->handle != handle)
    throw Error(PMCR_E_NOT_FOUND, describe(n.job, n.name) + " was removed while being written");
  uint8_t* dest = write_into(*n.writer, offset, length, byte_quota);
  if (dest) *pin = n.writer;
  return dest;
}

// The writer goes (closed, its connection gone, the region removed).
void Catalogue::abandon(Named& n) {
  drop_working(n.writer);
  n.writer.reset();
}

void Catalogue::region_clear(uint64_t handle, Owner owner) {
  NamedHandle& h = named_handle(handle, owner);
  Named& n = *h.region;
  if (!h.writer) throw Error(PMCR_E_PERM, describe(n.job, n.name) + " is open for reading only");
  if (n.removed || !n.writer || n.writer->handle != handle)
    throw Error(PMCR_E_NOT_FOUND, describe(n.job, n.name) + " was removed while being written");
  Working& w = *n.writer;
  if (w.landing > 0) throw Error(PMCR_E_BUSY, "writes into the region are still arriving; clear it after them");
  empty_working(w);
  w.size = 0;
  PMCR_FAULT_POINT("region.clear");
}

NamedInfo Catalogue::region_commit(uint64_t handle, Owner owner, uint64_t size) {
  NamedHandle& h = named_handle(handle, owner);
  Named& n = *h.region;
  if (!h.writer) throw Error(PMCR_E_PERM, describe(n.job, n.name) + " is open for reading only");
  if (n.removed || !n.writer || n.writer->handle != handle)
    throw Error(PMCR_E_NOT_FOUND, describe(n.job, n.name) + " was removed while being written");
  Working& w = *n.writer;
  if (!w.broken.empty()) throw Error(PMCR_E_IO, "this generation cannot be committed: " + w.broken +
                                                    "; close the region and write the changes again");
  if (w.landing > 0) throw Error(PMCR_E_BUSY, "writes into the region are still arriving; commit after them");
  if (size != w.size)
    throw Error(PMCR_E_SIZE, "commit of " + std::to_string(size) + " bytes, but the writes add up to " +
                                 std::to_string(w.size) + " bytes");
  hash_blocks(w, true);
  const uint32_t slot = take_slot();
  std::pair<uint64_t, uint64_t> map;
  try {
    map = write_map(w, n.job, n.name, n.latest + 1, n.keep);
  } catch (...) {
    free_slots_.push_back(slot);
    throw;
  }
  CRASH_POINT("region.commit.map");
  const uint64_t hash = name_hash(n.name);
  write_body(slot, n.job, n.latest + 1, static_cast<uint32_t>(hash), static_cast<uint32_t>(hash >> 32), map.first,
             size, checksum(pool_.base() + map.first, map_bytes(w.blocks.size())));
  pool_.store_persist(&rec(slot).state, kGeneration);
  // Committed: the blocks now belong to the generation; the writer goes on
  // from it, holding them too.
  GenerationRef g = adopt(w, slot, n.latest + 1, map);
  hold_blocks(w);
  n.latest = g->number;
  n.generations[g->number] = g;
  CRASH_POINT("region.commit.state");
  // Retention: the oldest generations beyond `keep` go (a crash before
  // this is finished at the next start).
  while (n.generations.size() > n.keep) drop_generation(n, n.generations.begin()->first);
  return info_of(n, handle);
}

void Catalogue::drop_generation(Named& n, uint64_t number) {
  auto it = n.generations.find(number);
  if (it == n.generations.end()) return;
  GenerationRef g = it->second;
  n.generations.erase(it);
  free_record(g->slot);
  g->slot = UINT32_MAX;
  g->kept = false;
  if (g->pins == 0) free_blocks(*g);
  CRASH_POINT("region.drop");
}

void Catalogue::region_remove(const std::string& job, const std::string& name) {
  const std::shared_ptr<Named> n = find_named(job, name);
  auto j = named_.find(job);
  abandon(*n);
  // Oldest first: a crash part-way leaves the newest generations, never an
  // older one posing as the latest.
  while (!n->generations.empty()) {
    drop_generation(*n, n->generations.begin()->first);
    CRASH_POINT("region.remove");
  }
  for (uint32_t slot : n->damaged_slots) free_record(slot);
  n->damaged_slots.clear();
  n->removed = true;
  j->second.erase(name);
  if (j->second.empty()) {
    named_.erase(j);
    release_job(job, false);
  }
  spdlog::info("removed {}", describe(job, name));
}

// ---------------------------------------------------------------- reading

GenerationRef Catalogue::readable(const NamedHandle& h, uint64_t generation) const {
  const Named& n = *h.region;
  for (const GenerationRef& g : h.held)
    if (g && g->number == generation) return g;
  if (!n.removed)
    if (auto it = n.generations.find(generation); it != n.generations.end()) return it->second;
  if (n.removed) throw Error(PMCR_E_NOT_FOUND, describe(n.job, n.name) + " was removed");
  if (generation == 0 || generation > n.latest)
    throw Error(PMCR_E_NOT_FOUND, describe(n.job, n.name) + " has no generation " + std::to_string(generation) +
                                      " (its latest is " + std::to_string(n.latest) + ")");
  throw Error(PMCR_E_NOT_FOUND, "generation " + std::to_string(generation) + " of " + describe(n.job, n.name) +
                                    " is no longer kept (the region keeps its newest " + std::to_string(n.keep) +
                                    "; a reader also holds the last two it was told of)");
}

std::vector<Segment> Catalogue::region_read(uint64_t handle, Owner owner, uint64_t generation, uint64_t offset,
                                            uint64_t length, GenerationRef* generation_ref) {
  NamedHandle& h = named_handle(handle, owner);
  const uint64_t bs = h.region->block_size;
  if (!h.region->damaged.empty())
    throw Error(PMCR_E_CORRUPT, describe(h.region->job, h.region->name) + " is damaged (" + h.region->damaged +
                                    ") and never served");
  if (generation == 0 && offset == 0 && length == 0) return {};
  GenerationRef g = readable(h, generation);
  if (offset > g->size || length > g->size - offset)
    throw Error(PMCR_E_RANGE, std::to_string(length) + " bytes at offset " + std::to_string(offset) +
                                  " are outside generation " + std::to_string(generation) + "'s " +
                                  std::to_string(g->size) + " bytes");
  Named& n = *h.region;
  for (uint64_t i = offset / bs; length && i <= (offset + length - 1) / bs; ++i) {
    const Block& b = g->blocks[i];
    if (verified_blocks_.count(b.offset)) continue;
    if (checksum(pool_.base() + b.offset, b.valid) != b.hash) {
      n.damaged = "block " + std::to_string(i) + " of generation " + std::to_string(generation) +
                  " does not match its checksum";
      spdlog::error("{}: {}; the region is never served again (remove it and write it again)", describe(n.job, n.name),
                    n.damaged);
      throw Error(PMCR_E_CORRUPT, describe(n.job, n.name) + ": " + n.damaged);
    }
    verified_blocks_.insert(b.offset);
  }
  std::vector<Segment> out;
  for (uint64_t at = offset; at < offset + length;) {
    const uint64_t i = at / bs, lo = at - i * bs;
    const uint64_t n = std::min(bs - lo, offset + length - at);
    out.push_back(Segment{g->blocks[i].offset + lo, n, at - offset});
    at += n;
  }
  *generation_ref = std::move(g);
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> Catalogue::region_changed(uint64_t handle, Owner owner, uint64_t since,
                                                                     uint64_t generation) {
  NamedHandle& h = named_handle(handle, owner);
  if (since > generation)
    throw Error(PMCR_E_INVAL, "changes since generation " + std::to_string(since) + " asked of the older generation " +
                                  std::to_string(generation));
  const GenerationRef g = readable(h, generation);
  const GenerationRef old = since ? readable(h, since) : nullptr;
  const uint64_t bs = h.region->block_size;
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (uint64_t i = 0; i < g->blocks.size(); ++i) {
    const bool same = old && i < old->blocks.size() && old->blocks[i].offset == g->blocks[i].offset;
    if (same) continue;
    const uint64_t start = i * bs, len = g->blocks[i].valid;
    if (!out.empty() && out.back().first + out.back().second == start) out.back().second += len;
    else out.emplace_back(start, len);
  }
  return out;
}

std::vector<NamedSummary> Catalogue::list_named(const std::string& job) const {
  std::vector<NamedSummary> out;
  for (const auto& [j, regions] : named_) {
    if (!job.empty() && j != job) continue;
    for (const auto& [name, n] : regions) {
      NamedSummary s{j, name, 0, 0, n->block_size, n->keep, static_cast<uint32_t>(n->generations.size()),
                     n->writer != nullptr, n->damaged};
      if (!n->generations.empty()) {
        s.generation = n->latest;
        s.size = n->generations.rbegin()->second->size;
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

// ---------------------------------------------------------------- recovery

// The committed generations in SLOTS: their maps checked against their
// records, the newest `keep` of each region kept (older ones are what a
// crash left between a commit and its retention), their blocks counted and
// reserved. A generation that fails a check marks its region damaged.
void Catalogue::recover_named(const std::vector<uint32_t>& slots, std::vector<bool>& used) {
  struct Found {
    uint32_t slot;
    GenerationRef g;
    uint32_t keep;
  };
  std::map<std::pair<std::string, std::string>, std::vector<Found>> regions;
  std::vector<std::pair<std::string, uint64_t>> bad;  // (job, name hash) of a damaged generation
  std::vector<uint32_t> bad_slots;
  for (uint32_t slot : slots) {
    const Record& r = rec(slot);
    if (!body_ok(slot)) {
      spdlog::error("catalogue record {} (a region generation) is damaged; kept, never served", slot);
      recovery_.damaged++;
      continue;
    }
    const std::string job(r.job, strnlen(r.job, kJobNameMax));
    const uint64_t hash = r.rank | (static_cast<uint64_t>(r.id) << 32);
    std::string why, name;
    GenerationRef g = read_map(slot, &why, &name);
    if (g && (name.empty() || name_hash(name) != hash)) {
      why = "its block map names another region";
      g.reset();
    }
    uint32_t keep = 0;
    if (g) {  // (the map lies in the data area: read_map checked)
      keep = reinterpret_cast<const MapHeader*>(pool_.base() + r.offset)->keep;
      if (keep < 1) {
        why = "its block map header is damaged";
        g.reset();
      }
    }
    if (!g) {
      spdlog::error("catalogue record {}: generation {} of a region of job '{}': {}; kept, never served", slot,
                    r.version, job, why);
      recovery_.damaged++;
      bad.emplace_back(job, hash);
      bad_slots.push_back(slot);
      continue;
    }
    regions[{job, name}].push_back(Found{slot, std::move(g), keep});
  }
  for (auto& [key, found] : regions) {
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.g->number < b.g->number; });
    auto n = std::make_shared<Named>();
    n->job = key.first;
    n->name = key.second;
    n->block_size = found.back().g->block_size;
    n->keep = found.back().keep;
    for (size_t k = 0; k < found.size(); ++k) {
      Found& f = found[k];
      if (found.size() - k > n->keep) {
        // Older than the region keeps: a crash came between a commit and
        // its retention.
        pool_.store_persist(&rec(f.slot).state, kStateFree);
        used[f.slot] = false;
        recovery_.reclaimed_regions++;
        continue;
      }
      if (f.g->block_size == n->block_size && count_blocks(*f.g)) {
        n->generations[f.g->number] = f.g;
        n->latest = f.g->number;
        continue;
      }
      spdlog::error("generation {} of {}: its blocks overlap other data; kept, never served", f.g->number,
                    describe(key.first, key.second));
      recovery_.damaged++;
      n->damaged = "generation " + std::to_string(f.g->number) + "'s blocks overlap other data";
      n->damaged_slots.push_back(f.slot);
    }
    named_[key.first][key.second] = std::move(n);
  }
  // Damaged generations go with their region (removed with it).
  for (size_t k = 0; k < bad.size(); ++k) {
    bool attributed = false;
    if (auto j = named_.find(bad[k].first); j != named_.end())
      for (auto& [name, n] : j->second)
        if (name_hash(name) == bad[k].second) {
          n->damaged = "a generation's record or block map is damaged (record " + std::to_string(bad_slots[k]) + ")";
          n->damaged_slots.push_back(bad_slots[k]);
          attributed = true;
        }
    if (!attributed) spdlog::error("catalogue record {}: its region has no intact generation; kept", bad_slots[k]);
  }
}

}  // namespace pmcr::server
