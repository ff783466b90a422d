// The standby side of Session (README, "Hot standby"): a job started with
// PMCR_ROLE=standby follows the primary's checkpoints into its protected
// buffers while the primary runs, and takes the job over when it fails.
//
// Following is rank-local: each rank watches the job on its own connection
// and sleeps until the server pushes an event (no MPI, no polling). On
// "sealed" it fetches only the blocks of its buffers whose hashes differ
// from what it holds. A version is applied to the end or not at all (a
// failure forgets what the buffer held, so it is fetched whole next time);
// and a version being applied cannot disappear at a takeover, because the
// takeover fences the old primary (no more deletes) before it fetches the
// version it resumes from. So the buffers are never torn when the
// standby returns from pmcr_restart_test, without a second copy of them.
#include <algorithm>

#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "log.hpp"
#include "report.hpp"
#include "session.hpp"

namespace pmcr {
namespace {

// Failures of the connection itself end the standby; anything else about
// one version (deleted by the primary's retention meanwhile, damaged) just
// skips it.
bool connection_failure(int code) {
  return server_lost(code) || code == PMCR_E_AUTH || code == PMCR_E_PROTOCOL;
}

std::string token_text(uint64_t t) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(t));
  return hex;
}

}  // namespace

void Session::start_lease() {
  collectively([&] {
    if (!lease_) lease_ = std::make_unique<client::LeaseHolder>(client_options(), config_.lease);
    lease_->hold(config_.job, attempt_, static_cast<uint32_t>(comm_.rank()), static_cast<uint32_t>(comm_.size()));
  });
}

void Session::follow() {
  uint64_t primary = config_.primary_instance;
  const proto::WatchReply w = home().watch(config_.job, primary);
  if (!primary && w.life == proto::Life::Running) primary = w.instance;
  // Without a launch to follow, any failure of the job's attempt counts.
  bool failed = w.instance_failed || (w.life == proto::Life::Failed && (!primary || w.instance == primary));
  if (comm_.rank() == 0)
    log()->info("standby of job {}: following {} (attempt {}, {}){}", config_.job,
                primary ? "launch " + token_text(primary) : std::string("the next launch"), w.attempt,
                proto::life_name(w.life), failed ? ": it failed already, taking over" : "");
  if (!failed && w.has_sealed) apply(w.sealed, false);
  while (!failed) {
    std::optional<proto::Event> ev = home().next_event(std::chrono::seconds(1));
    std::optional<uint64_t> newest;
    // Everything queued at once: only the newest sealed version is applied.
    for (; ev; ev = home().next_event(std::chrono::milliseconds(0))) {
      if (ev->job != config_.job) continue;
      switch (ev->kind) {
        case proto::EventKind::Sealed:
          if (ev->nranks == static_cast<uint32_t>(comm_.size()) && (!newest || ev->version > *newest))
            newest = ev->version;
          break;
        case proto::EventKind::Begun:
          if (!primary) {
            primary = ev->instance;
          } else if (ev->instance != primary && ev->instance != instance_) {
            throw Error(PMCR_E_SUPERSEDED, "standby of job " + config_.job + ": another launch (" +
                                               token_text(ev->instance) + ") began the job while this standby follows "
                                               "launch " + token_text(primary) + "; it has nothing to take over");
          }
          break;
        case proto::EventKind::Failed:
          if (!primary || ev->instance == primary) {
            failed = true;
            if (comm_.rank() == 0)
              log()->warn("standby of job {}: the primary failed ({}); taking over", config_.job, ev->reason);
          }
          break;
        case proto::EventKind::Ended:  // it finished, or will be declared failed by its launcher
          break;
      }
    }
    if (failed) break;  // the takeover fetches the newest version, on every rank
    if (newest) apply(*newest, false);
  }
  failure_seen_ = std::chrono::steady_clock::now();
  bytes_at_failure_ = bytes_read_;
}

int Session::take_over(std::string* notice) {
  PMCR_FAULT_POINT("standby.takeover");
  // The old primary is fenced first: from here on it can seal or delete
  // nothing, so the version chosen below stays as it is.
  int64_t attempt = 0;
  collectively([&] {
    if (comm_.rank() == 0) attempt = static_cast<int64_t>(home().begin(config_.job, instance_, true));
  });
  attempt_ = static_cast<uint64_t>(comm_.broadcast(attempt));
  servers_[0].attempt = attempt_;
  if (comm_.rank() == 0) servers_[0].joined = attempt_;
  home();  // joins the attempt
  standby_ = false;
  if (comm_.rank() == 0) log()->debug("standby of job {}: attempt {} begun, the old primary fenced", config_.job, attempt_);
  if (config_.role != Config::Role::None) start_lease();  // the next standby follows this job
  if (comm_.rank() == 0) log()->debug("standby of job {}: leases held", config_.job);
  int64_t found = -1;
  collectively([&] {
    if (comm_.rank() != 0) return;
    for (const auto& v : home().list_versions(config_.job))
      if (v.sealed && v.job == config_.job && v.nranks == static_cast<uint32_t>(comm_.size()) &&
          v.version <= INT32_MAX && static_cast<int64_t>(v.version) > found)
        found = static_cast<int64_t>(v.version);
  });
  found = comm_.broadcast(found);
  if (found < 0) {
    if (failure_seen_) report_takeover(-1);
    return -1;
  }
  try {
    // Usually only what the last seal changed, if anything.
    collectively([&] { apply(static_cast<uint64_t>(found), true); });
  } catch (const Error& e) {
    if (e.code() != PMCR_E_CHECKSUM && e.code() != PMCR_E_CORRUPT && e.code() != PMCR_E_NOT_FOUND) throw;
    if (comm_.rank() == 0)
      log()->warn("standby of job {}: version {} could not be fetched ({}); looking for an intact version",
                  config_.job, found, e.what());
    held_.clear();
    return restart_test(notice);  // with the server's verification, as any restart
  }
  return static_cast<int>(found);
}

void Session::apply(uint64_t version, bool strict) {
  const auto rank = static_cast<uint32_t>(comm_.rank());
  bool first = true;
  for (const auto& [id, b] : buffers_) {
    if (!first) PMCR_FAULT_POINT("standby.apply");  // between two buffers: the version half applied
    first = false;
    Held& h = held_[id];
    if (h.version == static_cast<int64_t>(version) && h.ptr == b.ptr && h.size == b.size) continue;
    const bool had = h.version >= 0 && h.ptr == b.ptr && h.size == b.size;
    Held was = std::move(h);
    h = Held{};  // until this version is in, whole
    try {
      if (key_) {
        read_buffer(home(), version, static_cast<uint32_t>(id), b);
        bytes_read_ += b.size;
        h = Held{static_cast<int64_t>(version), b.ptr, b.size, 0, {}};
        continue;
      }
      const client::ReadSource src = home().open(config_.job, version, rank, static_cast<uint32_t>(id));
      std::vector<uint64_t> hashes;
      try {
        if (src.size != b.size) {
          // Another size: pmcr_restart reads it (or says to resize the buffer first).
          home().close(src);
          continue;
        }
        if (had && src.block_size && src.block_size == was.block_size && !src.hashes.empty() &&
            src.hashes.size() == was.hashes.size()) {
          std::vector<uint64_t> changed;
          for (uint64_t i = 0; i < src.hashes.size(); ++i)
            if (src.hashes[i] != was.hashes[i]) changed.push_back(i);
          home().get_blocks(src, b.ptr, changed, true);
          for (uint64_t i : changed) bytes_read_ += std::min<uint64_t>(src.block_size, b.size - i * src.block_size);
          hashes = src.hashes;
        } else {
          home().get(src, b.ptr, &hashes);
          bytes_read_ += b.size;
        }
      } catch (...) {
        try {
          home().close(src);
        } catch (const Error&) {  // the first failure matters
        }
        throw;
      }
      home().close(src);
      h = Held{static_cast<int64_t>(version), b.ptr, b.size, src.block_size, std::move(hashes)};
    } catch (const Error& e) {
      if (strict || connection_failure(e.code())) throw;
      log()->debug("standby of job {}: version {} not applied to buffer id {} ({}); waiting for the next", config_.job,
                   version, id, e.what());
      return;
    }
  }
}

bool Session::holds(int id, const Buffer& b, int version) {
  auto h = held_.find(id);
  if (h == held_.end() || h->second.version != version || h->second.ptr != b.ptr || h->second.size != b.size) return false;
  if (incremental()) {
    Hashes x{b.size, block_size(), {}, b.ptr};
    x.blocks = h->second.block_size == x.block_size ? h->second.hashes : block_hashes(b.ptr, b.size, x.block_size);
    hashes_[id] = std::move(x);
  }
  return true;
}

void Session::report_takeover(int version) {
  const uint64_t bytes = comm_.sum(bytes_read_ - bytes_at_failure_);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - *failure_seen_);
  failure_seen_.reset();
  held_.clear();
  if (comm_.rank() != 0) return;
  log()->info("standby of job {} took over at version {}, {} ms after the failure reached it, {} bytes read after it",
              config_.job, version, ms.count(), bytes);
  report::takeover({version, static_cast<long long>(ms.count()), bytes});
}

}  // namespace pmcr
