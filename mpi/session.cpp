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
#include "report.hpp"

namespace pmcr {
namespace {

// A rank with nothing protected still writes one empty region, under an id
// no program can use (ids are ints >= 0), so the server sees that the rank
// took part when the version is sealed.
constexpr uint32_t kRankMarkerId = 0xffffffffu;

}  // namespace

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
    if (config_.servers.size() > 1 && comm_.rank() == 0)
      log()->warn("PMCR_SERVERS lists {} servers; this version uses only the first, {}", config_.servers.size(),
                  config_.servers.front());
  });
  collectively([&] { client_ = std::make_unique<client::Client>(client_options()); });
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
    int64_t attempt = 0;
    collectively([&] {
      if (comm_.rank() == 0) attempt = static_cast<int64_t>(client_->begin(config_.job, instance_));
    });
    attempt_ = static_cast<uint64_t>(comm_.broadcast(attempt));
    client_->join(config_.job, attempt_);
    if (config_.role == Config::Role::Primary) start_lease();
  } else {
    // Connected now, so that taking the job over costs one round trip.
    collectively([&] { lease_ = std::make_unique<client::LeaseHolder>(client_options(), config_.lease); });
  }
  collectively([&] {
    if (config_.track_writes && incremental()) {
      tracker_ = std::make_unique<client::WriteTracker>();
      log()->debug("PMCR_TRACK_WRITES=1: writes tracked with {}", tracker_->name());
    }
  });
  PMCR_FAULT_POINT("init.connected");
  log()->debug("rank {}/{} of job {} connected to {} over {}", comm_.rank(), comm_.size(), config_.job,
               client_->address(), client_->transports());
}

Session::~Session() = default;

client::Options Session::client_options() const {
  client::Options o;
  o.server = config_.servers.front();
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
  const auto rank = static_cast<uint32_t>(comm_.rank());
  next_hashes_.clear();
  track_writes();
  // The server seals the version itself when the last of all the ranks'
  // regions commits: every CREATE says how many there are in all.
  const uint64_t total = comm_.sum(buffers_.empty() ? 1 : buffers_.size());
  try {
    collectively([&] {
      if (total > UINT32_MAX) throw Error(PMCR_E_INVAL, "more than 2^32 buffers in one checkpoint");
      client_->expect(config_.job, static_cast<uint64_t>(version), static_cast<uint32_t>(comm_.size()),
                      static_cast<uint32_t>(total));
      if (PMCR_FAULT_POINT("ckpt.begin")) throw Error(PMCR_E_IO, "fault injected at ckpt.begin");
      for (const auto& [id, b] : buffers_) write_buffer(static_cast<uint64_t>(version), static_cast<uint32_t>(id), b);
      if (buffers_.empty())
        client_->write_region(config_.job, static_cast<uint64_t>(version), rank, kRankMarkerId, nullptr, 0);
      if (PMCR_FAULT_POINT("ckpt.committed")) throw Error(PMCR_E_IO, "fault injected at ckpt.committed");
    });
    // Every rank's regions committed: the last commit sealed the version.
    log()->debug("job {} version {} sealed: {} regions of {} ranks", config_.job, version, total, comm_.size());
  } catch (const Error&) {
    abandon(version);
    tracking_ = false;  // the bits were cleared for a checkpoint that is not the base
    throw;
  }
  last_version_ = version;
  // The next checkpoint sends what changed since this one.
  hashes_ = std::move(next_hashes_);
  next_hashes_.clear();
  base_ = static_cast<uint64_t>(version);
  PMCR_FAULT_POINT("ckpt.sealed");
  if (comm_.rank() == 0) apply_retention();
}

void Session::abandon(int version) noexcept {
  try {
    const uint32_t n = client_->abort(config_.job, static_cast<uint64_t>(version));
    if (n) log()->debug("job {}: freed this rank's {} unsealed regions of failed version {}", config_.job, n, version);
  } catch (const std::exception& e) {
    // The connection is gone (the server frees the regions itself then) or
    // the server does not answer.
    log()->debug("job {}: could not free the unsealed regions of failed version {}: {}", config_.job, version, e.what());
  }
}

// Deletes this job's sealed versions beyond the newest KEEP. The checkpoint
// is already sealed: a failure here is logged, not returned, and the next
// checkpoint tries again.
void Session::apply_retention() {
  try {
    std::vector<uint64_t> sealed;
    for (const auto& v : client_->list_versions(config_.job))
      if (v.sealed && v.job == config_.job) sealed.push_back(v.version);
    std::sort(sealed.rbegin(), sealed.rend());
    for (size_t i = config_.keep; i < sealed.size(); ++i) {
      client_->remove(config_.job, sealed[i]);
      log()->debug("job {}: deleted version {} (PMCR_KEEP={})", config_.job, sealed[i], config_.keep);
    }
  } catch (const Error& e) {
    log()->warn("job {}: could not delete old versions (PMCR_KEEP={}): {}", config_.job, config_.keep, e.what());
  }
}

int Session::restart_test(std::string* notice) {
  if (standby_) {
    collectively([&] { follow(); });
    return take_over(notice);
  }
  int64_t found = -1;
  std::string note;
  collectively([&] {
    if (comm_.rank() != 0) return;
    std::vector<uint64_t> candidates;
    for (const auto& v : client_->list_versions(config_.job))
      if (v.sealed && v.job == config_.job && v.nranks == static_cast<uint32_t>(comm_.size()) && v.version <= INT32_MAX)
        candidates.push_back(v.version);
    std::sort(candidates.rbegin(), candidates.rend());
    // The newest intact one: the server checks every region of a candidate
    // against its checksum, and quarantines it if one fails.
    for (uint64_t v : candidates) {
      try {
        client_->verify(config_.job, v);
      } catch (const Error& e) {
        if (e.code() != PMCR_E_CORRUPT && e.code() != PMCR_E_NOT_FOUND) throw;
        note += (note.empty() ? "" : "; ") + std::string(e.what());
        continue;
      }
      found = static_cast<int64_t>(v);
      break;
    }
    if (!note.empty()) {
      note = "job " + config_.job + ": " + note + "; " +
             (found >= 0 ? "falling back to version " + std::to_string(found) : "no intact version is left");
      log()->warn("{}", note);
    }
  });
  found = comm_.broadcast(found);
  const std::string text = comm_.broadcast(note);
  if (notice) *notice = text;
  return static_cast<int>(found);
}

size_t Session::recover_size(int version, int id) {
  if (version < 0 || id < 0) throw Error(PMCR_E_INVAL, "version and id must be >= 0");
  const client::ReadSource src =
      client_->open(config_.job, static_cast<uint64_t>(version), static_cast<uint32_t>(comm_.rank()), static_cast<uint32_t>(id));
  client_->close(src);
  return stored_plain_size(src.size, static_cast<uint64_t>(version), static_cast<uint32_t>(id));
}

uint64_t Session::stored_plain_size(uint64_t stored, uint64_t version, uint32_t id) const {
  if (!key_) return stored;
  if (const auto plain = crypt::plain_size(stored)) return *plain;
  throw Error(PMCR_E_CORRUPT, "buffer id " + std::to_string(id) + " of version " + std::to_string(version) +
                                  " is not an encrypted region (PMCR_ENCRYPT=1, but it was written without encryption)");
}

void Session::write_buffer(uint64_t version, uint32_t id, const Buffer& b) {
  const auto rank = static_cast<uint32_t>(comm_.rank());
  if (incremental()) return write_blocks(version, id, b);
  if (!key_) {
    client_->write_region(config_.job, version, rank, id, b.ptr, b.size);
    return;
  }
  const uint64_t size = crypt::encrypted_size(b.size);
  if (sealed_.size() < size) sealed_.resize(size);
  crypt::encrypt(*key_, {config_.job, version, rank, id}, b.ptr, b.size, sealed_.data());
  client_->write_region(config_.job, version, rank, id, sealed_.data(), size);
}

// An incremental checkpoint of one buffer: its blocks hashed here, only
// those whose hash differs from the base version's sent; the server keeps
// the others (shared with the base) and checks the whole against the
// checksum over every block's hash. If the server's base turns out not to
// be what this rank believes, the buffer is sent whole.
void Session::write_blocks(uint64_t version, uint32_t id, const Buffer& b) {
  const auto rank = static_cast<uint32_t>(comm_.rank());
  const uint64_t bs = block_size();
  auto old = hashes_.find(static_cast<int>(id));
  const bool have = base_ && old != hashes_.end() && old->second.size == b.size && old->second.block_size == bs;
  Hashes now{b.size, bs, {}, b.ptr};
  auto dirty = dirty_.find(static_cast<int>(id));
  if (have && old->second.ptr == b.ptr && dirty != dirty_.end()) {
    // Only the blocks whose pages were written are read.
    now.blocks = old->second.blocks;
    const auto* p = static_cast<const uint8_t*>(b.ptr);
    for (uint64_t i = 0; i < now.blocks.size(); ++i)
      if (dirty->second[i]) now.blocks[i] = checksum(p + i * bs, std::min(bs, b.size - i * bs));
  } else {
    now.blocks = block_hashes(b.ptr, b.size, bs);
  }
  uint64_t sum = combine_hashes(now.blocks.data(), now.blocks.size());
  client::WriteTarget t = client_->create(config_.job, version, rank, id, b.size, bs, have ? base_ : std::nullopt);
  PMCR_FAULT_POINT("ckpt.created");
  bool whole = !t.based;
  if (t.based) {
    std::vector<uint64_t> changed;
    for (uint64_t i = 0; i < now.blocks.size(); ++i)
      if (now.blocks[i] != old->second.blocks[i]) changed.push_back(i);
    client_->put_blocks(t, b.ptr, changed);
    PMCR_FAULT_POINT("ckpt.blocks");
    try {
      client_->commit(t, sum);
    } catch (const Error& e) {
      if (e.code() != PMCR_E_CHECKSUM) throw;
      log()->warn("job {} version {}: buffer id {}: the server's copy of version {} is not what this rank holds ({}); "
                  "sending the buffer whole", config_.job, version, id, *base_, e.what());
      t = client_->create(config_.job, version, rank, id, b.size, bs, std::nullopt);
      now.blocks = block_hashes(b.ptr, b.size, bs);  // every byte read again: trust nothing remembered
      sum = combine_hashes(now.blocks.data(), now.blocks.size());
      whole = true;
    }
  }
  if (whole) {
    client_->put(t, b.ptr);
    PMCR_FAULT_POINT("ckpt.blocks");
    client_->commit(t, sum);
  }
  next_hashes_[static_cast<int>(id)] = std::move(now);
}

void Session::read_buffer(uint64_t version, uint32_t id, const Buffer& b) {
  const auto rank = static_cast<uint32_t>(comm_.rank());
  if (!key_) {
    // The server's data, verified: with its blocks' hashes, the base of
    // the next incremental checkpoint (hashed here again only if the block
    // size changed since it was written).
    client::ReadSource src;
    Hashes h{b.size, block_size(), {}, b.ptr};
    client_->read_region(config_.job, version, rank, id, b.ptr, b.size, &src, &h.blocks);
    if (incremental()) {
      if (src.block_size != h.block_size) h.blocks = block_hashes(b.ptr, b.size, h.block_size);
      hashes_[static_cast<int>(id)] = std::move(h);
    }
    return;
  }
  const client::ReadSource src = client_->open(config_.job, version, rank, id);
  struct Close {
    client::Client& c;
    const client::ReadSource& s;
    ~Close() {
      try {
        c.close(s);
      } catch (const std::exception&) {  // the restart's own error matters more
      }
    }
  } close{*client_, src};
  const uint64_t plain = stored_plain_size(src.size, version, id);
  if (plain != b.size)
    throw Error(PMCR_E_SIZE, "the buffer holds " + std::to_string(b.size) + " bytes, the stored one " +
                                 std::to_string(plain));
  if (sealed_.size() < src.size) sealed_.resize(src.size);
  client_->get(src, sealed_.data());  // checksum verified
  crypt::decrypt(*key_, {config_.job, version, rank, id}, sealed_.data(), src.size, b.ptr);
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
  hashes_.clear();
  base_.reset();
  tracking_ = false;
  collectively([&] {
    if (comm_.rank() != 0) return;
    for (const auto& v : client_->list_versions(config_.job)) {
      if (v.job != config_.job || v.version != static_cast<uint64_t>(version) || !v.sealed) continue;
      if (v.nranks != static_cast<uint32_t>(comm_.size()))
        throw Error(PMCR_E_NRANKS, "pmcr_restart: version " + std::to_string(version) + " of job " + config_.job +
                                       " was written by " + std::to_string(v.nranks) + " ranks, this job has " +
                                       std::to_string(comm_.size()) + ": relaunch with " + std::to_string(v.nranks) +
                                       " ranks, or use pmcr_restart_test to find a version of this size");
      return;
    }
    throw Error(PMCR_E_NOT_FOUND, "pmcr_restart: job " + config_.job + " has no sealed version " + std::to_string(version) +
                                      " on " + client_->address() + " (pmcr_restart_test finds the latest)");
  });
  collectively([&] {
    const auto rank = static_cast<uint32_t>(comm_.rank());
    for (const auto& [id, b] : buffers_) {
      if (holds(id, b, version)) continue;  // a standby's buffer: fetched while it followed
      try {
        read_buffer(static_cast<uint64_t>(version), static_cast<uint32_t>(id), b);
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
  base_ = static_cast<uint64_t>(version);
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
    comm_.barrier();
  } catch (const Error& e) {
    code = e.code();
    message = e.what();
  }
  // This rank finished: its lease is given up, not lost (a standby does
  // not take over a job that ended; pmcr-run stops it).
  if (lease_ && !code) lease_->leave();
  lease_.reset();
  client_.reset();
  buffers_.clear();
  if (code) throw Error(code, message);
}

}  // namespace pmcr
