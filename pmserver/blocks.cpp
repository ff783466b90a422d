// Copy-on-write blocks, shared by named regions (named.cpp) and the regions
// of incremental checkpoints (catalogue.cpp): a writer's shadow blocks, the
// reference counts of committed blocks, block maps in and out of the pool.
//
// Reference counts live in DRAM: a committed map names each of its blocks
// once, and a writer holds the blocks it starts from (so a generation or a
// base version deleted under it cannot free them). Recovery rebuilds the
// counts from the maps of committed records alone.
#include <spdlog/spdlog.h>

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

uint64_t combine_hashes(const std::vector<Block>& blocks) {
  std::vector<uint64_t> hashes;
  hashes.reserve(blocks.size());
  for (const Block& b : blocks) hashes.push_back(b.hash);
  return pmcr::combine_hashes(hashes.data(), hashes.size());
}

void Catalogue::hold_blocks(const Working& w) {
  for (const Block& b : w.blocks)
    if (b.offset && !b.fresh) block_refs_[b.offset]++;
}

void Catalogue::unref_block(uint64_t offset, uint64_t length) {
  auto r = block_refs_.find(offset);
  if (r == block_refs_.end()) return;
  if (--r->second > 0) return;
  block_refs_.erase(r);
  verified_blocks_.erase(offset);
  release_extent(offset, length);
  PMCR_FAULT_POINT("region.block.free");
}

void Catalogue::free_blocks(Generation& g) {
  for (const Block& b : g.blocks) unref_block(b.offset, b.length);
  g.blocks.clear();
  if (g.map_length) release_extent(g.map_offset, g.map_length);
  g.map_length = 0;
}

void Catalogue::empty_working(Working& w) {
  uint64_t fresh = 0;
  for (const Block& b : w.blocks) {
    if (!b.offset) continue;
    if (b.fresh) {
      release_extent(b.offset, b.length);
      fresh += b.length;
    } else {
      unref_block(b.offset, b.length);
    }
  }
  for (const Block& b : w.retired) release_extent(b.offset, b.length);
  w.retired.clear();
  w.blocks.clear();
  if (!w.counted) return;
  if (auto u = usage_.find(w.writer); u != usage_.end()) {
    u->second.bytes -= std::min(u->second.bytes, fresh);
    if (u->second.bytes == 0 && u->second.regions == 0) usage_.erase(u);
  }
}

void Catalogue::drop_working(const WorkingRef& w) {
  if (!w || w->abandoned) return;
  w->abandoned = true;
  if (w->landing == 0) empty_working(*w);
  else landing_.push_back(w);  // emptied when its last write has landed
}

uint8_t* Catalogue::write_into(Working& w, uint64_t offset, uint64_t length, uint64_t byte_quota) {
  if (!w.broken.empty()) throw Error(PMCR_E_STATE, "this generation cannot be committed any more: " + w.broken);
  const uint64_t bs = w.block_size;
  const auto fail = [&](int code, const std::string& why) {
    w.broken = why;
    return Error(code, why);
  };
  if (w.committing)
    throw fail(PMCR_E_STATE, "data arrived for the region while its COMMIT was in progress; write all of it, then "
                             "commit");
  if (length == 0) return nullptr;
  if (w.fixed ? (length > w.size || offset > w.size - length) : offset > w.size)
    throw fail(PMCR_E_RANGE, std::to_string(length) + " bytes at offset " + std::to_string(offset) +
                                 (w.fixed ? " are outside the region's " : " start past the end of the region's ") +
                                 std::to_string(w.size) + " bytes" + (w.fixed ? "" : ": regions have no holes"));
  if (length > alloc_.capacity() || offset > alloc_.capacity() - length)
    throw fail(PMCR_E_NOSPACE, "a region cannot grow past the pool's data area (" + format_size(alloc_.capacity()) + ")");
  const uint64_t i = offset / bs;
  if ((offset + length - 1) / bs != i)
    throw fail(PMCR_E_INVAL, "region data must not straddle blocks of " + std::to_string(bs) + " bytes");
  if (i >= w.blocks.size()) w.blocks.resize(i + 1);
  Block& b = w.blocks[i];
  const uint64_t lo = offset - i * bs, hi = lo + length;
  if (!b.fresh || b.length < hi) {
    // The first write of this block by this writer (or one past what its
    // shadow holds): a new extent, filled with what the block holds now
    // except where this write covers it, and zeros past that (never a
    // previous owner's bytes).
    if (b.fresh && w.landing > 0)
      throw fail(PMCR_E_STATE, "a write into block " + std::to_string(i) +
                                   " grew it while another write into the region was still arriving; "
                                   "write each block's bytes in order");
    const uint64_t old_valid = !b.offset ? 0 : b.fresh ? std::min(b.length, valid_bytes(w.size, bs, i)) : b.valid;
    uint64_t want = extent_size(std::max(hi, old_valid));
    if (b.fresh) want = std::min(extent_size(bs), std::max(want, 2 * b.length));  // appends: amortised
    const uint64_t was = b.fresh ? b.length : 0;
    if (w.counted) {
      OwnerUsage& u = usage_[w.writer];
      if (u.bytes - std::min(u.bytes, was) + want > byte_quota) {
        if (u.regions == 0 && u.bytes == 0) usage_.erase(w.writer);
        throw fail(PMCR_E_QUOTA, "this connection's uncommitted data would pass its quota of " +
                                     format_size(byte_quota) +
                                     " (pmserver --quota-bytes): commit more often, or ask for a larger quota");
      }
    }
    auto got = alloc_.allocate(want);
    if (!got)
      throw fail(PMCR_E_NOSPACE, "no space in the pool for a block of " + format_size(want) + ": " +
                                     format_size(alloc_.free_bytes()) + " free; delete old regions or versions");
    uint8_t* dst = pool_.base() + *got;
    const uint8_t* src = b.offset ? pool_.base() + b.offset : nullptr;
    if (src && lo > 0) std::memcpy(dst, src, std::min(lo, old_valid));
    if (src && hi < old_valid) std::memcpy(dst + hi, src + hi, old_valid - hi);
    const uint64_t tail = std::max(hi, old_valid);
    if (tail < want) std::memset(dst + tail, 0, want - tail);
    if (b.fresh) {
      w.retired.push_back(b);  // freed once nothing lands in it
      if (w.landing == 0) {
        release_extent(b.offset, b.length);
        w.retired.pop_back();
      }
    } else if (b.offset) {
      unref_block(b.offset, b.length);  // the writer no longer needs the block it started from
    }
    if (w.counted) usage_[w.writer].bytes += want - was;
    b = Block{*got, want, 0, 0, true};
    PMCR_FAULT_POINT("region.write");  // tests: a crash with a shadow block made, nothing committed
  }
  if (!w.fixed) w.size = std::max(w.size, offset + length);
  w.landing++;
  return pool_.base() + b.offset + lo;
}

void Catalogue::release_write(const WorkingRef& pin, bool arrived) {
  Working& w = *pin;
  if (w.landing > 0) w.landing--;
  if (!arrived && w.broken.empty()) w.broken = "a write did not arrive whole";
  if (w.landing > 0) return;
  for (const Block& b : w.retired) release_extent(b.offset, b.length);
  w.retired.clear();
  if (w.abandoned) {
    empty_working(w);
    landing_.erase(std::remove(landing_.begin(), landing_.end(), pin), landing_.end());
  }
}

void Catalogue::hash_blocks(Working& w, bool named) {
  std::vector<uint64_t> hashes;
  for (const auto& [p, n] : fresh_blocks(w)) {
    pool_.persist(p, n);
    hashes.push_back(checksum(p, n));
  }
  hashed_blocks(w, hashes);
  if (named) CRASH_POINT("region.commit.data");
  else CRASH_POINT("commit.data");
}

std::vector<std::pair<uint8_t*, uint64_t>> Catalogue::fresh_blocks(Working& w) {
  const uint64_t bs = w.block_size, nb = blocks_for(w.size, bs);
  for (auto i = w.blocks.size(); i-- > nb;) {  // past the end (nothing shrinks a region but a clear)
    const Block& b = w.blocks[i];
    if (b.fresh) release_extent(b.offset, b.length);
    else if (b.offset) unref_block(b.offset, b.length);
  }
  w.blocks.resize(nb);
  std::vector<std::pair<uint8_t*, uint64_t>> fresh;
  for (uint64_t i = 0; i < nb; ++i) {
    Block& b = w.blocks[i];
    const uint64_t valid = valid_bytes(w.size, bs, i);
    if (b.offset == 0 || (!b.fresh && b.valid != valid))
      throw Error(PMCR_E_RANGE, "bytes " + std::to_string(i * bs + (b.offset ? b.valid : 0)) + " to " +
                                    std::to_string(i * bs + valid) + " of the region were never written");
    if (b.fresh) fresh.emplace_back(pool_.base() + b.offset, valid);
  }
  return fresh;
}

void Catalogue::hashed_blocks(Working& w, const std::vector<uint64_t>& hashes) {
  size_t next = 0;
  for (uint64_t i = 0; i < w.blocks.size(); ++i) {
    Block& b = w.blocks[i];
    if (!b.fresh) continue;
    if (next == hashes.size()) throw Error(PMCR_E_INTERNAL, "fewer block hashes than new blocks");
    b.hash = hashes[next++];
    b.valid = valid_bytes(w.size, w.block_size, i);
  }
  if (next != hashes.size()) throw Error(PMCR_E_INTERNAL, "more block hashes than new blocks");
}

std::pair<uint64_t, uint64_t> Catalogue::write_map(const Working& w, const std::string& job, const std::string& name,
                                                   uint64_t number, uint32_t keep) {
  const uint64_t nb = w.blocks.size();
  const uint64_t length = extent_size(map_bytes(nb));
  auto got = alloc_.allocate(length);
  if (!got)
    throw Error(PMCR_E_NOSPACE, "no space in the pool for a block map of " + format_size(length) +
                                    "; delete old regions or versions");
  auto* head = reinterpret_cast<MapHeader*>(pool_.base() + *got);
  std::memset(head, 0, sizeof(MapHeader));
  head->magic = kMapMagic;
  head->generation = number;
  head->size = w.size;
  head->block_size = w.block_size;
  head->blocks = nb;
  head->keep = keep;
  head->name_length = static_cast<uint32_t>(name.size());
  std::memcpy(head->name, name.data(), name.size());
  std::memcpy(head->job, job.data(), job.size());
  auto* entries = reinterpret_cast<MapEntry*>(head + 1);
  for (uint64_t i = 0; i < nb; ++i) entries[i] = MapEntry{w.blocks[i].offset, w.blocks[i].length, w.blocks[i].hash};
  head->entries_sum = checksum(entries, nb * sizeof(MapEntry));
  pool_.persist(head, map_bytes(nb));
  return {*got, length};
}

GenerationRef Catalogue::adopt(Working& w, uint32_t slot, uint64_t number, std::pair<uint64_t, uint64_t> map) {
  auto g = std::make_shared<Generation>();
  g->number = number;
  g->slot = slot;
  g->map_offset = map.first;
  g->map_length = map.second;
  g->size = w.size;
  g->block_size = w.block_size;
  uint64_t fresh = 0;
  for (Block& b : w.blocks) {
    if (b.fresh) {
      fresh += b.length;
      block_refs_[b.offset] = 1;          // the writer's hold becomes the generation's
      verified_blocks_.insert(b.offset);  // hashed from pool memory just now
      b.fresh = false;
    }
  }
  g->blocks = w.blocks;
  if (w.counted)
    if (auto u = usage_.find(w.writer); u != usage_.end()) {
      u->second.bytes -= std::min(u->second.bytes, fresh);
      if (u->second.bytes == 0 && u->second.regions == 0) usage_.erase(u);
    }
  return g;
}

std::vector<Segment> Catalogue::segments(const RegionView& v, uint64_t offset, uint64_t length) const {
  if (!v.block_size) return {Segment{v.offset + offset, length, 0}};
  std::vector<Segment> out;
  const uint64_t bs = v.block_size;
  for (uint64_t at = offset; at < offset + length;) {
    const uint64_t i = at / bs, lo = at - i * bs;
    const uint64_t n = std::min(bs - lo, offset + length - at);
    out.push_back(Segment{v.blocks->blocks[i].offset + lo, n, at - offset});
    at += n;
  }
  return out;
}

// ---------------------------------------------------------------- recovery

GenerationRef Catalogue::read_map(uint32_t slot, std::string* why, std::string* name) const {
  const Record& r = rec(slot);
  const PoolHeader* ph = pool_.header();
  const uint64_t data_begin = ph->data_offset, data_end = ph->data_offset + ph->data_size;
  const auto in_data = [&](uint64_t off, uint64_t len) {
    return off >= data_begin && off <= data_end && len <= data_end - off && off % kExtentAlign == 0 &&
           len % kExtentAlign == 0;
  };
  if (r.offset < data_begin || r.offset > data_end || data_end - r.offset < sizeof(MapHeader)) {
    *why = "its block map lies outside the data area";
    return nullptr;
  }
  const auto* head = reinterpret_cast<const MapHeader*>(pool_.base() + r.offset);
  const uint64_t bs = head->block_size;
  if (head->magic != kMapMagic || !valid_block_size(bs) ||
      head->blocks != blocks_for(head->size, bs) || head->size != r.size || head->generation != r.version ||
      head->keep > kMaxKeep || head->name_length > kRegionNameMax ||
      !in_data(r.offset, extent_size(map_bytes(head->blocks))) ||
      std::string(head->job, strnlen(head->job, kJobNameMax)) != std::string(r.job, strnlen(r.job, kJobNameMax))) {
    *why = "its block map header is damaged";
    return nullptr;
  }
  const auto* entries = reinterpret_cast<const MapEntry*>(head + 1);
  if (checksum(entries, head->blocks * sizeof(MapEntry)) != head->entries_sum ||
      (r.state == kGeneration && checksum(head, map_bytes(head->blocks)) != r.checksum)) {
    *why = "its block map does not match its checksum";
    return nullptr;
  }
  auto g = std::make_shared<Generation>();
  g->number = r.version;
  g->slot = slot;
  g->map_offset = r.offset;
  g->map_length = extent_size(map_bytes(head->blocks));
  g->size = r.size;
  g->block_size = bs;
  for (uint64_t i = 0; i < head->blocks; ++i) {
    const uint64_t valid = valid_bytes(r.size, bs, i);
    if (!in_data(entries[i].offset, entries[i].length) || entries[i].length < valid || entries[i].length == 0) {
      *why = "its block map names a block outside the data area";
      return nullptr;
    }
    g->blocks.push_back(Block{entries[i].offset, entries[i].length, valid, entries[i].hash, false});
  }
  if (r.state == kRegionMapped && combine_hashes(g->blocks) != r.checksum) {
    *why = "its blocks' hashes do not add up to its checksum";
    return nullptr;
  }
  if (name) name->assign(head->name, head->name_length);
  return g;
}

bool Catalogue::count_blocks(const Generation& g) {
  if (!alloc_.reserve(g.map_offset, g.map_length)) return false;
  std::vector<const Block*> counted;
  bool ok = true;
  for (const Block& b : g.blocks) {
    auto r = block_refs_.find(b.offset);
    if (r == block_refs_.end()) {
      if (!alloc_.reserve(b.offset, b.length)) {
        ok = false;
        break;
      }
      block_refs_[b.offset] = 1;
      recovered_lengths_[b.offset] = b.length;
    } else if (recovered_lengths_[b.offset] != b.length) {
      ok = false;  // a shared block is the same extent in every map that names it
      break;
    } else {
      r->second++;
    }
    counted.push_back(&b);
  }
  if (ok) return true;
  for (const Block* b : counted) {
    auto r = block_refs_.find(b->offset);
    if (--r->second == 0) {
      alloc_.release(b->offset, b->length);
      block_refs_.erase(r);
    }
  }
  alloc_.release(g.map_offset, g.map_length);
  return false;
}

}  // namespace pmcr::server
