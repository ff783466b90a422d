#include "session.hpp"

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "log.hpp"
#include "placement.hpp"
#include "report.hpp"
#include "text.hpp"

namespace pmcr {

Session::Session(MPI_Comm comm, const char* config_path) : comm_(comm) {
#ifdef PMCR_FAULT_INJECTION
  // Tests: PMCR_FAULT_RANK=R arms PMCR_FAULT on rank R only.
  // PMCR_STANDBY_FAULT arms a standby's own fault instead (pmcr-run gives
  // both launches the same environment).
  if (const char* f = std::getenv("PMCR_STANDBY_FAULT"); f && *f && std::getenv("PMCR_ROLE") &&
                                                         std::string(std::getenv("PMCR_ROLE")) == "standby")
    fault::arm_spec(f);
  if (const char* r = std::getenv("PMCR_FAULT_RANK"); r && std::atoi(r) != comm_.rank()) fault::arm("", 0, false);
#endif
  collectively([&] {
    config_ = load_config(config_path);
    if (!config_.log_level.empty()) set_log_level(config_.log_level);
    if (config_.encrypt) key_ = crypt::DataKey::load(config_.data_key_file);
    for (const auto& address : placement::order(config_.servers)) servers_.push_back(Server{address, nullptr, 0, 0});
    mine_ = placement::replicas(static_cast<uint32_t>(comm_.rank()), servers_.size(), config_.replicas);
  });
  // This launch's token: pmcr-run's, or one of its own.
  int64_t token = 0;
  if (comm_.rank() == 0) {
    token = static_cast<int64_t>(config_.instance);
    std::random_device random;
    while (token == 0) token = static_cast<int64_t>((static_cast<uint64_t>(random()) << 32) | random());
  }
  instance_ = static_cast<uint64_t>(comm_.broadcast(token));
  standby_ = config_.role == Config::Role::Standby;
  // One attempt for the whole job: it supersedes earlier runs of the job
  // (a relaunch, a stale rank of one), whose unsealed regions the server
  // drops and whose writes it refuses from now on. A standby begins its
  // attempt only when it takes over.
  if (!standby_) {
    begin_attempts();
    attempt_ = servers_[0].attempt;
    if (config_.role == Config::Role::Primary) start_lease();
  } else {
    // Connected now, so that taking the job over costs one round trip.
    collectively([&] {
      home();
      lease_ = std::make_unique<client::LeaseHolder>(client_options(), config_.lease);
    });
  }
  collectively([&] {
    if (config_.track_writes && incremental()) {
      tracker_ = std::make_unique<client::WriteTracker>();
      log()->debug("PMCR_TRACK_WRITES=1: writes tracked with {}", tracker_->name());
    }
  });
  PMCR_FAULT_POINT("init.connected");
  if (Server& s = servers_[mine_.front()]; s.client)
    log()->debug("rank {}/{} of job {} connected to {} over {}", comm_.rank(), comm_.size(), config_.job, s.address,
                 s.client->transports());
}

Session::~Session() { join_drain(); }

client::Options Session::client_options(size_t server) const {
  client::Options o;
  o.server = servers_.at(server).address;
  o.name = config_.job + "/rank" + std::to_string(comm_.rank());
  o.timeout = config_.timeout;
  o.connect_timeout = config_.connect_timeout;
  o.data_path = config_.rma ? client::DataPath::Rma : client::DataPath::Am;
  o.credential = config_.credential;
  return o;
}

void Session::protect(int id, void* ptr, size_t size) {
  if (id < 0) throw Error(PMCR_E_INVAL, "id " + std::to_string(id) + " is negative: ids are ints >= 0");
  if (!ptr && size > 0) throw Error(PMCR_E_INVAL, "id " + std::to_string(id) + ": ptr is NULL but size is " + std::to_string(size));
  const auto begin = reinterpret_cast<uintptr_t>(ptr);
  for (const auto& [other, b] : buffers_) {
    if (other == id || size == 0 || b.size == 0) continue;
    const auto ob = reinterpret_cast<uintptr_t>(b.ptr);
    if (begin < ob + b.size && ob < begin + size)
      throw Error(PMCR_E_EXISTS, "the buffer of id " + std::to_string(id) + " overlaps the buffer of id " +
                                     std::to_string(other) + ": unprotect id " + std::to_string(other) +
                                     " first, or protect each byte under one id only");
  }
  buffers_[id] = Buffer{ptr, size};
  // A buffer's writes count from the next checkpoint on.
  if (tracker_ && !tracker_->track({ptr, size})) {
    log()->warn("PMCR_TRACK_WRITES=1: the kernel cannot track writes to buffer id {}; it is hashed whole", id);
    untracked_.insert(id);
  } else {
    untracked_.erase(id);
  }
}

void Session::unprotect(int id) {
  if (buffers_.erase(id) == 0) throw Error(PMCR_E_NOT_FOUND, "id " + std::to_string(id) + " is not protected");
}

void Session::check_version(int version, const char* what) {
  if (!comm_.same(version))
    throw Error(PMCR_E_INVAL, std::string(what) + ": the ranks passed different versions; pass the same one on every rank");
  if (version < 0) throw Error(PMCR_E_INVAL, std::string(what) + ": version " + std::to_string(version) + " is negative");
}

void Session::checkpoint(int version) {
  collectively([&] {
    if (standby_)
      throw Error(PMCR_E_STATE, "pmcr_checkpoint in a standby (PMCR_ROLE=standby) before it took the job over: call "
                                "pmcr_restart_test first, which returns when the standby becomes the primary");
    check_version(version, "pmcr_checkpoint");
    if (version <= last_version_)
      throw Error(PMCR_E_INVAL, "pmcr_checkpoint: version " + std::to_string(version) + " is not greater than " +
                                    std::to_string(last_version_) + ", the last version checkpointed or restarted: versions must grow");
  });
  // An asynchronous checkpoint still in flight is finished first (its
  // error, if it failed, is this call's: this version is not taken).
  finish_drain();
  next_hashes_.clear();
  track_writes();
  // Each server seals its part of the version itself when the last of its
  // regions commits: every CREATE says how many there are (the ranks'
  // counts, from one gather).
  const std::vector<uint64_t> regions = comm_.gather(buffers_.empty() ? 1 : buffers_.size());
  uint64_t total = 0;
  for (uint64_t r : regions) total += r;
  bool staged = false;
  try {
    retry_lost();
    collectively([&] {
      if (total > UINT32_MAX) throw Error(PMCR_E_INVAL, "more than 2^32 buffers in one checkpoint");
      if (PMCR_FAULT_POINT("ckpt.begin")) throw Error(PMCR_E_IO, "fault injected at ckpt.begin");
      hash_buffers();
    });
    // PMCR_ASYNC=1: what changed is copied into staging memory, a thread
    // sends it, and pmcr_wait (or the next checkpoint) finishes it.
    if (config_.async && comm_.min({fits_staging() ? 1 : 0}).front()) {
      collectively([&] { stage(); });
      start_drain(static_cast<uint64_t>(version), regions);
      staged = true;
    } else {
      conclude(static_cast<uint64_t>(version), regions, run_copies(static_cast<uint64_t>(version), regions, buffers_));
    }
  } catch (const Error&) {
    abandon(version);
    tracking_ = false;  // the bits were cleared for a checkpoint that is not the base
    throw;
  }
  last_version_ = version;
  if (staged) log()->debug("job {} version {} staged: {} regions of {} ranks", config_.job, version, total, comm_.size());
}

void Session::conclude(uint64_t version, const std::vector<uint64_t>& regions, const std::vector<Outcome>& out) {
  conclude_copies(version, regions, out);
  collectively([&] {
    if (PMCR_FAULT_POINT("ckpt.committed")) throw Error(PMCR_E_IO, "fault injected at ckpt.committed");
  });
  // Every rank's regions committed: the last commits sealed the version.
  log()->debug("job {} version {} sealed: {} ranks", config_.job, version, comm_.size());
  // The next checkpoint sends what changed since this one.
  hashes_ = std::move(next_hashes_);
  next_hashes_.clear();
  base_ = version;
  sealed_here_.insert(version);
  if (sealed_here_.size() > 64) sealed_here_.erase(sealed_here_.begin());
  PMCR_FAULT_POINT("ckpt.sealed");
  if (comm_.rank() == 0) {
    complete_.insert(version);
    apply_retention();
  }
}

void Session::abandon(int version) noexcept {
  for (size_t i : mine_) {
    if (!servers_[i].client) continue;
    try {
      const uint32_t n = servers_[i].client->abort(config_.job, static_cast<uint64_t>(version));
      if (n)
        log()->debug("job {}: freed this rank's {} unsealed regions of failed version {} on {}", config_.job, n,
                     version, servers_[i].address);
    } catch (const std::exception& e) {
      // The connection is gone (the server frees the regions itself then) or
      // the server does not answer.
      log()->debug("job {}: could not free the unsealed regions of failed version {} on {}: {}", config_.job, version,
                   servers_[i].address, e.what());
    }
  }
}

int Session::restart_test(std::string* notice) {
  finish_drain();
  if (standby_) {
    collectively([&] { follow(); });
    return take_over(notice);
  }
  int64_t found = -1;
  std::string note;
  std::vector<std::vector<size_t>> holders;
  std::vector<int64_t> candidates;  // drained versions newer than FOUND, newest first
  std::optional<Error> lost;        // rank 0: every server holding the newest lost
  collectively([&] {
    if (comm_.rank() != 0) return;
    try {
      found_on_servers(&found, &note, &holders);
    } catch (const Error& e) {
      if (e.code() != PMCR_E_SERVER_LOST && e.code() != PMCR_E_UNREACHABLE) throw;
      lost = e;
      note = e.what();
    }
    candidates = drained_since(found);
    if (lost && candidates.empty()) throw *lost;
  });
  found = comm_.broadcast(found);
  candidates.resize(static_cast<size_t>(comm_.broadcast(static_cast<int64_t>(candidates.size()))));
  comm_.broadcast(candidates);
  // The newest drained version whose files are intact on every rank.
  bool drained = false;
  for (int64_t v : candidates) {
    const std::string damage = drained_damage(static_cast<uint64_t>(v));
    if (!damage.empty()) log()->warn("job {}: rank {}: {}", config_.job, comm_.rank(), damage);
    const bool intact = comm_.min(std::vector<int64_t>{damage.empty() ? 1 : 0}).front() != 0;
    if (intact) {
      note += (note.empty() ? "" : "; ") + std::string("version ") + std::to_string(v) + " is restarted from " +
              config_.drain_dir + " (no server holds it whole)";
      found = v;
      drained = true;
      break;
    }
    note += (note.empty() ? "" : "; ") + std::string("the drained copy of version ") + std::to_string(v) + " in " +
            config_.drain_dir + " is damaged (the ranks' warnings name the files): skipped";
  }
  collectively([&] {
    if (lost && !drained) throw *lost;  // (rank 0's: every rank throws it)
  });
  if (comm_.rank() == 0 && !note.empty()) {
    note = "job " + config_.job + ": " + note;
    log()->warn("{}", note);
  }
  drained_version_ = drained ? static_cast<uint64_t>(found) : UINT64_MAX;
  if (found >= 0 && !drained) share_holders(static_cast<uint64_t>(found), &holders);
  const std::string text = comm_.broadcast(note);
  if (notice) *notice = text;
  return static_cast<int>(found);
}

// Rank 0: the newest version every rank has an intact copy of on the
// servers that answer (-1: none), and a note of what was skipped.
void Session::found_on_servers(int64_t* found_out, std::string* note_out,
                               std::vector<std::vector<size_t>>* holders_out) {
  int64_t& found = *found_out;
  std::string& note = *note_out;
  std::vector<std::vector<size_t>>& holders = *holders_out;
  {
    client::Survey listing = list_all();
    std::vector<uint64_t> candidates;
    for (uint64_t v : listing.sealed(static_cast<uint32_t>(comm_.size())))
      if (v <= INT32_MAX) candidates.push_back(v);
    // The newest intact and complete one: each server checks every region
    // of its part against its checksum, and quarantines the part if one
    // fails; every rank's regions must be in a good part on a server that
    // answers.
    std::vector<std::string> unreachable;
    for (uint64_t v : candidates) {
      holders = locate(v, listing);
      std::set<size_t> used;
      for (const auto& h : holders) used.insert(h.begin(), h.end());
      bool damaged = false;
      for (size_t i : used) {
        try {
          connect(i).verify(config_.job, v);
        } catch (const Error& e) {
          if (e.code() != PMCR_E_CORRUPT && e.code() != PMCR_E_NOT_FOUND && !(servers_.size() > 1 && server_lost(e.code())))
            throw;
          note += (note.empty() ? "" : "; ") + std::string(e.what()) +
                  (servers_.size() > 1 ? " (on " + servers_[i].address + ")" : "");
          for (auto& h : holders) h.erase(std::remove(h.begin(), h.end(), i), h.end());
          listing.versions[i].erase(v);
          damaged = true;
        }
      }
      size_t missing = 0;
      for (const auto& h : holders) missing += h.empty();
      if (missing) {
        // (A damaged part's note says why already.)
        if (!damaged)
          unreachable.push_back("version " + std::to_string(v) + " (" + std::to_string(missing) + " ranks' data)");
        continue;
      }
      found = static_cast<int64_t>(v);
      break;
    }
    if (!unreachable.empty()) {
      const std::string lost = listing.lost_text();
      const std::string what = join(unreachable) + " of job " + config_.job +
                               " cannot be restarted from the servers that answer" +
                               (lost.empty() ? "" : "; lost: " + lost);
      if (found < 0 && !lost.empty())
        throw Error(PMCR_E_SERVER_LOST, what + ": bring the lost servers back (with their pools) and try again");
      note += (note.empty() ? "" : "; ") + what;
    }
    if (!note.empty())
      note = note + "; " + (found >= 0 ? "falling back to version " + std::to_string(found) : "no intact version is left");
  }
}

size_t Session::recover_size(int version, int id) {
  if (version < 0 || id < 0) throw Error(PMCR_E_INVAL, "version and id must be >= 0");
  join_drain();  // its connections are this call's now (it is concluded at the next collective call)
  // Where restart_test found this rank's regions, else its own servers.
  std::vector<size_t> from = located_version_ == static_cast<uint64_t>(version) ? read_order_ : mine_;
  for (size_t k = 0;; ++k) {
    try {
      client::Client& c = connect(from.at(k));
      const client::ReadSource src =
          c.open(config_.job, static_cast<uint64_t>(version), static_cast<uint32_t>(comm_.rank()), static_cast<uint32_t>(id));
      c.close(src);
      return stored_plain_size(src.size, static_cast<uint64_t>(version), static_cast<uint32_t>(id));
    } catch (const Error& e) {
      if (k + 1 >= from.size() || (!server_lost(e.code()) && e.code() != PMCR_E_NOT_FOUND)) throw;
      drop(from[k]);
    }
  }
}

uint64_t Session::stored_plain_size(uint64_t stored, uint64_t version, uint32_t id) const {
  if (!key_) return stored;
  if (const auto plain = crypt::plain_size(stored)) return *plain;
  throw Error(PMCR_E_CORRUPT, "buffer id " + std::to_string(id) + " of version " + std::to_string(version) +
                                  " is not an encrypted region (PMCR_ENCRYPT=1, but it was written without encryption)");
}

// Several copies of buffers sent as they are send the same bytes: each
// buffer's checksum is computed once for all of them (none otherwise).
Session::SharedSums Session::shared_sums(const std::map<int, Buffer>& from) const {
  SharedSums sums;
  if (mine_.size() > 1 && sent_as_is())
    for (const auto& [id, b] : from) sums.emplace(id, std::make_unique<SharedChecksummer>(b.ptr, b.size));
  return sums;
}

void Session::write_buffer(client::Client& c, uint64_t version, uint32_t id, const Buffer& b,
                           std::vector<uint8_t>& scratch, SharedChecksummer* shared) {
  const auto rank = static_cast<uint32_t>(comm_.rank());
  if (sent_as_is()) {
    c.write_region(config_.job, version, rank, id, b.ptr, b.size, shared);
    return;
  }
  if (incremental()) return write_blocks(c, version, id, b);
  const uint64_t size = crypt::encrypted_size(b.size);
  if (scratch.size() < size) scratch.resize(size);
  crypt::encrypt(*key_, {config_.job, version, rank, id}, b.ptr, b.size, scratch.data());
  c.write_region(config_.job, version, rank, id, scratch.data(), size);
}

// Incremental checkpoints: each buffer's blocks hashed once (only those
// whose pages were written, with PMCR_TRACK_WRITES), for every copy.
void Session::hash_buffers() {
  if (!incremental()) return;
  const uint64_t bs = block_size();
  for (const auto& [id, b] : buffers_) {
    auto old = hashes_.find(id);
    const bool have = base_ && old != hashes_.end() && old->second.size == b.size && old->second.block_size == bs;
    Hashes now{b.size, bs, {}, b.ptr};
    auto dirty = dirty_.find(id);
    if (have && old->second.ptr == b.ptr && dirty != dirty_.end()) {
      // Only the blocks whose pages were written are read.
      now.blocks = old->second.blocks;
      const auto* p = static_cast<const uint8_t*>(b.ptr);
      for (uint64_t i = 0; i < now.blocks.size(); ++i)
        if (dirty->second[i]) now.blocks[i] = checksum(p + i * bs, std::min(bs, b.size - i * bs));
    } else {
      now.blocks = block_hashes(b.ptr, b.size, bs);
    }
    next_hashes_[id] = std::move(now);
  }
}

// An incremental checkpoint of one buffer to one server: only the blocks
// whose hash differs from the base version's are sent; the server keeps
// the others (shared with the base) and checks the whole against the
// checksum over every block's hash. If the server's base turns out not to
// be what this rank believes (or it has none: a server that missed the
// base), the buffer is sent whole.
void Session::write_blocks(client::Client& c, uint64_t version, uint32_t id, const Buffer& b) {
  const auto rank = static_cast<uint32_t>(comm_.rank());
  const uint64_t bs = block_size();
  auto old = hashes_.find(static_cast<int>(id));
  const bool have = base_ && old != hashes_.end() && old->second.size == b.size && old->second.block_size == bs;
  std::vector<uint64_t> blocks;
  {
    std::lock_guard<std::mutex> lock(hashes_mutex_);
    blocks = next_hashes_.at(static_cast<int>(id)).blocks;
  }
  uint64_t sum = combine_hashes(blocks.data(), blocks.size());
  client::WriteTarget t = c.create(config_.job, version, rank, id, b.size, bs, have ? base_ : std::nullopt);
  PMCR_FAULT_POINT("ckpt.created");
  bool whole = !t.based;
  if (t.based) {
    std::vector<uint64_t> changed;
    for (uint64_t i = 0; i < blocks.size(); ++i)
      if (blocks[i] != old->second.blocks[i]) changed.push_back(i);
    c.put_blocks(t, b.ptr, changed);
    PMCR_FAULT_POINT("ckpt.blocks");
    try {
      c.commit(t, sum);
    } catch (const Error& e) {
      if (e.code() != PMCR_E_CHECKSUM) throw;
      log()->warn("job {} version {}: buffer id {}: the server's copy of version {} is not what this rank holds ({}); "
                  "sending the buffer whole", config_.job, version, id, *base_, e.what());
      t = c.create(config_.job, version, rank, id, b.size, bs, std::nullopt);
      blocks = block_hashes(b.ptr, b.size, bs);  // every byte read again: trust nothing remembered
      sum = combine_hashes(blocks.data(), blocks.size());
      std::lock_guard<std::mutex> lock(hashes_mutex_);
      next_hashes_[static_cast<int>(id)].blocks = blocks;
      whole = true;
    }
  }
  if (whole) {
    c.put(t, b.ptr);
    PMCR_FAULT_POINT("ckpt.blocks");
    c.commit(t, sum);
  }
}

void Session::read_buffer(client::Client& c, uint64_t version, uint32_t id, const Buffer& b) {
  const auto rank = static_cast<uint32_t>(comm_.rank());
  if (!key_) {
    // The server's data, verified: with its blocks' hashes, the base of
    // the next incremental checkpoint (hashed here again only if the block
    // size changed since it was written).
    client::ReadSource src;
    Hashes h{b.size, block_size(), {}, b.ptr};
    c.read_region(config_.job, version, rank, id, b.ptr, b.size, &src, &h.blocks);
    if (incremental()) {
      if (src.block_size != h.block_size) h.blocks = block_hashes(b.ptr, b.size, h.block_size);
      hashes_[static_cast<int>(id)] = std::move(h);
    }
    return;
  }
  const client::ReadSource src = c.open(config_.job, version, rank, id);
  struct Close {
    client::Client& c;
    const client::ReadSource& s;
    ~Close() {
      try {
        c.close(s);
      } catch (const std::exception&) {  // the restart's own error matters more
      }
    }
  } close{c, src};
  const uint64_t plain = stored_plain_size(src.size, version, id);
  if (plain != b.size)
    throw Error(PMCR_E_SIZE, "the buffer holds " + std::to_string(b.size) + " bytes, the stored one " +
                                 std::to_string(plain));
  if (sealed_.empty()) sealed_.resize(1);
  if (sealed_[0].size() < src.size) sealed_[0].resize(src.size);
  c.get(src, sealed_[0].data());  // checksum verified
  crypt::decrypt(*key_, {config_.job, version, rank, id}, sealed_[0].data(), src.size, b.ptr);
}

// PMCR_TRACK_WRITES=1: which blocks of each buffer were written since the
// last checkpoint (or restart); the next interval starts now.
// It is only a saving: a failure here (on one rank, outside any
// collective) turns it off for the rest of the job, and every block is
// hashed.
void Session::track_writes() noexcept {
  dirty_.clear();
  if (!tracker_) return;
  try {
    std::vector<client::WriteTracker::Range> ranges;
    for (const auto& [id, b] : buffers_) ranges.push_back({b.ptr, b.size});
    const auto written = tracker_->take(ranges, block_size());
    size_t k = 0;
    for (const auto& [id, b] : buffers_) {
      if (tracking_ && !untracked_.count(id)) dirty_[id] = written[k];
      ++k;
    }
    tracking_ = true;
  } catch (const std::exception& e) {
    log()->warn("PMCR_TRACK_WRITES=1: {}; every block is hashed from now on", e.what());
    dirty_.clear();
    tracker_.reset();
    tracking_ = false;
  }
}

void Session::restart(int version) {
  collectively([&] { check_version(version, "pmcr_restart"); });
  finish_drain();
  hashes_.clear();
  base_.reset();
  tracking_ = false;
  // From the capacity tier: restart_test chose it there, or no server has
  // it and PMCR_DRAIN does (agreed by every rank).
  bool drained = drained_version_ == static_cast<uint64_t>(version);
  // Where each rank's regions are: as restart_test found them, or found now.
  std::vector<std::vector<size_t>> holders;
  // (located_version_ is the same on every rank: share_holders is collective.)
  if (!drained && located_version_ != static_cast<uint64_t>(version)) {
    int64_t from_drain = 0;
    collectively([&] {
      if (comm_.rank() != 0 || config_.drain_dir.empty()) return;
      for (const auto& on : list_all().versions)
        if (auto v = on.find(static_cast<uint64_t>(version)); v != on.end() && v->second.sealed) return;
      from_drain = drained_whole(static_cast<uint64_t>(version));
    });
    drained = comm_.broadcast(from_drain) != 0;
  }
  if (!drained && located_version_ != static_cast<uint64_t>(version)) {
    collectively([&] {
      if (comm_.rank() != 0) return;
      const client::Survey listing = list_all();
      const std::string where = servers_.size() == 1 ? " on " + servers_[0].address : " on the servers that answer";
      bool sealed = false;
      for (const auto& on : listing.versions) {
        auto v = on.find(static_cast<uint64_t>(version));
        if (v == on.end() || !v->second.sealed) continue;
        if (v->second.nranks != static_cast<uint32_t>(comm_.size()))
          throw Error(PMCR_E_NRANKS, "pmcr_restart: version " + std::to_string(version) + " of job " + config_.job +
                                         " was written by " + std::to_string(v->second.nranks) + " ranks, this job has " +
                                         std::to_string(comm_.size()) + ": relaunch with " +
                                         std::to_string(v->second.nranks) +
                                         " ranks, or use pmcr_restart_test to find a version of this size");
        sealed = true;
      }
      if (!sealed)
        throw Error(PMCR_E_NOT_FOUND, "pmcr_restart: job " + config_.job + " has no sealed version " +
                                          std::to_string(version) + where + " (pmcr_restart_test finds the latest)" +
                                          (listing.lost_text().empty() ? "" : "; lost: " + listing.lost_text()));
      holders = locate(static_cast<uint64_t>(version), listing);
      std::vector<std::string> missing;
      for (size_t r = 0; r < holders.size(); ++r)
        if (holders[r].empty()) missing.push_back(std::to_string(r));
      if (!missing.empty())
        throw Error(PMCR_E_SERVER_LOST, "pmcr_restart: version " + std::to_string(version) + " of job " + config_.job +
                                            ": no server that answers holds the data of rank" +
                                            (missing.size() > 1 ? "s " : " ") + join(missing, ", ") +
                                            (listing.lost_text().empty() ? "" : "; lost: " + listing.lost_text()));
    });
    share_holders(static_cast<uint64_t>(version), &holders);
  }
  collectively([&] {
    const auto rank = static_cast<uint32_t>(comm_.rank());
    for (const auto& [id, b] : buffers_) {
      if (holds(id, b, version)) continue;  // a standby's buffer: fetched while it followed
      try {
        if (drained) read_drained(static_cast<uint64_t>(version), static_cast<uint32_t>(id), b);
        else read_copy(static_cast<uint64_t>(version), static_cast<uint32_t>(id), b);
        bytes_read_ += b.size;
        PMCR_FAULT_POINT("restart.read");
      } catch (const Error& e) {
        if (e.code() == PMCR_E_NOT_FOUND)
          throw Error(e.code(), "pmcr_restart: version " + std::to_string(version) + " has no buffer with id " +
                                    std::to_string(id) + " for rank " + std::to_string(rank) +
                                    ": unprotect it before restarting, or restart from a version that has it");
        if (e.code() == PMCR_E_SIZE)
          throw Error(e.code(), "pmcr_restart: id " + std::to_string(id) + " is protected with " + std::to_string(b.size) +
                                    " bytes but version " + std::to_string(version) + " holds a different size (" + e.what() +
                                    "): resize the buffer with pmcr_recover_size and pmcr_protect first");
        throw;
      }
    }
    PMCR_FAULT_POINT("restart.done");
  });
  last_version_ = version;
  // A drained copy is on no server: the next checkpoint is a full one.
  if (drained) hashes_.clear();
  else base_ = static_cast<uint64_t>(version);
  if (comm_.rank() == 0 && !drained) complete_.insert(static_cast<uint64_t>(version));
  located_version_ = UINT64_MAX;
  drained_version_ = UINT64_MAX;
  // The buffers now hold the version restored: writes from here on are the changes.
  tracking_ = false;
  if (tracker_) {
    track_writes();
    dirty_.clear();
  }
  log()->debug("job {}: rank {} restarted from version {}", config_.job, comm_.rank(), version);
  if (failure_seen_) report_takeover(version);
}

void Session::finalize() {
  int code = 0;
  std::string message;
  try {
    finish_drain();
    comm_.barrier();
  } catch (const Error& e) {
    code = e.code();
    message = e.what();
  }
  // This rank finished: its lease is given up, not lost (a standby does
  // not take over a job that ended; pmcr-run stops it).
  if (lease_ && !code) lease_->leave();
  lease_.reset();
  servers_.clear();
  buffers_.clear();
  if (code) throw Error(code, message);
}

}  // namespace pmcr
