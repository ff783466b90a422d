// Liveness: what a standby job follows. Each rank of a job's current
// attempt may hold a lease (JOIN, then RENEW within its length); the attempt
// is alive while every holder keeps it. It fails at once when a holder's
// connection is lost (the process died: its sockets closed), when a holder
// is silent longer than its lease (stopped, hung, cut off), or when the
// launcher that started it says so (FAIL, from pmcr-run). Connections that
// WATCH a job are told of every attempt begun, version sealed, attempt
// failed or ended, as events pushed to them (kAmEvent): a standby sleeps
// between them.
//
// A failed attempt may write nothing more (FENCED), and a standby's
// takeover (BEGIN with takeover) fences every earlier attempt for good
// (catalogue). Liveness lives in memory: after a restart of the server
// every attempt is gone, and so is every writer's right to write.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "error.hpp"
#include "server.hpp"

namespace pmcr::server {
namespace {

constexpr size_t kMaxLives = 1u << 16;        // jobs with liveness state
constexpr size_t kMaxLeasesPerJob = 1u << 20;  // ranks of one attempt holding a lease
constexpr size_t kMaxFailedInstances = 16;     // launches remembered as failed, per job

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

}  // namespace

Server::JobLife& Server::life_of(const std::string& job) {
  if (auto it = lives_.find(job); it != lives_.end()) return it->second;
  if (lives_.size() >= kMaxLives) {
    // Forget the jobs nobody follows and that nobody runs.
    for (auto it = lives_.begin(); it != lives_.end();)
      it = it->second.watchers.empty() && it->second.leases.empty() && it->second.life != proto::Life::Running
               ? lives_.erase(it)
               : std::next(it);
    if (lives_.size() >= kMaxLives)
      throw Error(PMCR_E_BUSY, "pmserver follows " + std::to_string(lives_.size()) +
                                   " running or watched jobs, its limit; try again once some have ended");
  }
  return lives_[job];
}

void Server::check_alive(const std::string& job, uint64_t attempt) const {
  auto it = lives_.find(job);
  if (it == lives_.end() || it->second.attempt != attempt || it->second.life != proto::Life::Failed) return;
  throw Error(PMCR_E_FENCED, "job '" + job + "': attempt " + std::to_string(attempt) + " was declared failed (" +
                                 it->second.reason + "); a standby may take the job over, so this run may write, "
                                 "seal or delete nothing more");
}

void Server::notify(const std::string& job, JobLife& l, const proto::Event& ev) {
  if (l.watchers.empty()) return;
  const std::vector<uint8_t> bytes = proto::encode(ev);
  spdlog::debug("job '{}': event {} (attempt {}, version {}) to {} watchers", job, proto::event_name(ev.kind),
                ev.attempt, ev.version, l.watchers.size());
  for (Owner id : std::vector<Owner>(l.watchers.begin(), l.watchers.end()))
    if (Connection* c = connection(id)) send_message(*c, proto::kAmEvent, bytes);
}

void Server::began(const std::string& job, uint64_t attempt, uint64_t instance, bool takeover) {
  JobLife* l = nullptr;
  try {
    l = &life_of(job);
  } catch (const Error& e) {
    spdlog::warn("job '{}': attempt {} is not followed: {}", job, attempt, e.what());
    return;
  }
  // The earlier attempt's leases end with it: it is superseded or fenced.
  for (const auto& [id, lease] : l->leases)
    if (Connection* c = connection(id)) c->leases.erase(job);
  l->leases.clear();
  l->attempt = attempt;
  l->instance = instance;
  l->life = proto::Life::Running;
  l->reason.clear();
  proto::Event ev;
  ev.kind = proto::EventKind::Begun;
  ev.job = job;
  ev.attempt = attempt;
  ev.instance = instance;
  ev.takeover = takeover;
  notify(job, *l, ev);
}

void Server::sealed(const std::string& job, uint64_t version, uint32_t nranks) {
  if (options_.metrics) {
    uint64_t bytes = 0;
    for (const auto& v : catalogue_.list_versions(job))
      if (v.version == version) bytes = v.bytes;
    options_.metrics->sealed(job, bytes);
  }
  auto it = lives_.find(job);
  if (it == lives_.end()) return;
  proto::Event ev;
  ev.kind = proto::EventKind::Sealed;
  ev.job = job;
  ev.attempt = it->second.attempt;
  ev.instance = it->second.instance;
  ev.version = version;
  ev.nranks = nranks;
  notify(job, it->second, ev);
}

void Server::fail_attempt(const std::string& job, JobLife& l, const std::string& reason) {
  spdlog::warn("job '{}': attempt {} failed: {}{}", job, l.attempt, reason,
               l.watchers.empty() ? "" : "; telling " + std::to_string(l.watchers.size()) + " watchers");
  l.life = proto::Life::Failed;
  l.reason = reason;
  for (const auto& [id, lease] : l.leases)
    if (Connection* c = connection(id)) c->leases.erase(job);
  l.leases.clear();
  proto::Event ev;
  ev.kind = proto::EventKind::Failed;
  ev.job = job;
  ev.attempt = l.attempt;
  ev.instance = l.instance;
  ev.reason = reason;
  notify(job, l, ev);
}

void Server::join(Connection& c, const proto::Join& m) {
  catalogue_.check_attempt(m.job, m.attempt);
  check_alive(m.job, m.attempt);
  if (m.lease_ms < proto::kMinLeaseMs || m.lease_ms > proto::kMaxLeaseMs)
    throw Error(PMCR_E_INVAL, "a lease of " + std::to_string(m.lease_ms) + " ms: it must be " +
                                  std::to_string(proto::kMinLeaseMs) + " to " + std::to_string(proto::kMaxLeaseMs) +
                                  " ms (PMCR_LEASE)");
  if (m.nranks == 0 || m.rank >= m.nranks)
    throw Error(PMCR_E_INVAL, "JOIN as rank " + std::to_string(m.rank) + " of " + std::to_string(m.nranks));
  JobLife& l = life_of(m.job);
  if (l.attempt != m.attempt || l.life != proto::Life::Running)
    throw Error(PMCR_E_STATE, "job '" + m.job + "': attempt " + std::to_string(m.attempt) + " is " +
                                  proto::life_name(l.attempt == m.attempt ? l.life : proto::Life::None) +
                                  ", not running: a lease can only be taken on a running attempt");
  if (!l.leases.count(c.id)) {
    if (c.leases.size() >= kMaxPending)
      throw Error(PMCR_E_BUSY, "this connection holds leases of " + std::to_string(c.leases.size()) +
                                   " jobs already, the most one may");
    if (l.leases.size() >= kMaxLeasesPerJob)
      throw Error(PMCR_E_BUSY, "job '" + m.job + "' has " + std::to_string(l.leases.size()) + " leases already");
  }
  const std::chrono::milliseconds length{m.lease_ms};
  l.leases[c.id] = Lease{m.rank, length, Clock::now() + length};
  next_lease_ = std::min(next_lease_, Clock::now() + length);
  c.leases.insert(m.job);
  spdlog::debug("job '{}': connection {} holds the lease of rank {}/{} ({} ms)", m.job, c.id, m.rank, m.nranks,
                m.lease_ms);
}

void Server::renew(Connection& c, const proto::Renew& m) {
  catalogue_.check_attempt(m.job, m.attempt);
  check_alive(m.job, m.attempt);
  auto it = lives_.find(m.job);
  Lease* lease = nullptr;
  if (it != lives_.end() && it->second.attempt == m.attempt)
    if (auto l = it->second.leases.find(c.id); l != it->second.leases.end()) lease = &l->second;
  if (!lease)
    throw Error(PMCR_E_NOT_FOUND, "this connection holds no lease of job '" + m.job + "' attempt " +
                                      std::to_string(m.attempt) + ": JOIN first");
  lease->deadline = Clock::now() + lease->length;
}

void Server::leave(Connection& c, const proto::Leave& m) {
  renew(c, proto::Renew{m.job, m.attempt});  // the same checks
  JobLife& l = lives_.at(m.job);
  l.leases.erase(c.id);
  c.leases.erase(m.job);
  if (!l.leases.empty()) return;
  l.life = proto::Life::Ended;
  spdlog::info("job '{}': attempt {} ended: every rank left", m.job, l.attempt);
  proto::Event ev;
  ev.kind = proto::EventKind::Ended;
  ev.job = m.job;
  ev.attempt = l.attempt;
  ev.instance = l.instance;
  notify(m.job, l, ev);
}

proto::WatchReply Server::watch(Connection& c, const proto::Watch& m) {
  check_job_name(m.job);
  if (!c.watching.count(m.job) && c.watching.size() >= kMaxPending)
    throw Error(PMCR_E_BUSY, "this connection watches " + std::to_string(c.watching.size()) +
                                 " jobs already, the most one may");
  JobLife& l = life_of(m.job);
  l.watchers.insert(c.id);
  c.watching.insert(m.job);
  proto::WatchReply r;
  r.attempt = l.attempt;
  r.instance = l.instance;
  r.life = l.life;
  r.reason = l.reason;
  r.instance_failed =
      m.instance != 0 && ((l.instance == m.instance && l.life == proto::Life::Failed) ||
                          std::find(l.failed_instances.begin(), l.failed_instances.end(), m.instance) !=
                              l.failed_instances.end());
  for (const auto& v : catalogue_.list_versions(m.job))
    if (v.sealed && v.quarantine.empty() && v.job == m.job && (!r.has_sealed || v.version > r.sealed)) {
      r.has_sealed = true;
      r.sealed = v.version;
    }
  spdlog::debug("job '{}': connection {} ({}) watches it (attempt {}, {})", m.job, c.id, c.client, l.attempt,
                proto::life_name(l.life));
  return r;
}

proto::FailReply Server::fail(const proto::Fail& m) {
  check_job_name(m.job);
  if (m.instance == 0) throw Error(PMCR_E_INVAL, "FAIL of launch 0: name the launch that failed");
  JobLife& l = life_of(m.job);
  const std::string reason = m.reason.empty() ? "its launcher said it failed" : m.reason;
  if (l.instance == m.instance && l.attempt != 0) {
    if (l.life == proto::Life::Failed) return proto::FailReply{false, l.attempt};
    fail_attempt(m.job, l, reason);
    return proto::FailReply{true, l.attempt};
  }
  // A launch that never began an attempt (it died first), or one long
  // superseded: its watchers are told, and a standby that WATCHes later
  // learns it from the reply.
  if (std::find(l.failed_instances.begin(), l.failed_instances.end(), m.instance) == l.failed_instances.end()) {
    l.failed_instances.push_back(m.instance);
    if (l.failed_instances.size() > kMaxFailedInstances) l.failed_instances.pop_front();
  }
  spdlog::warn("job '{}': launch {:x} failed before it began an attempt here: {}", m.job, m.instance, reason);
  proto::Event ev;
  ev.kind = proto::EventKind::Failed;
  ev.job = m.job;
  ev.instance = m.instance;
  ev.reason = reason;
  notify(m.job, l, ev);
  return proto::FailReply{false, 0};
}

void Server::forget_liveness(Connection& c) {
  for (const std::string& job : c.watching)
    if (auto it = lives_.find(job); it != lives_.end()) it->second.watchers.erase(c.id);
  for (const std::string& job : std::vector<std::string>(c.leases.begin(), c.leases.end())) {
    auto it = lives_.find(job);
    if (it == lives_.end()) continue;
    auto lease = it->second.leases.find(c.id);
    if (lease == it->second.leases.end()) continue;
    const uint32_t rank = lease->second.rank;
    it->second.leases.erase(lease);
    if (it->second.life == proto::Life::Running)
      fail_attempt(job, it->second, "the connection of rank " + std::to_string(rank) + " (" + c.client +
                                        ") was lost: the rank died or was cut off");
  }
  c.leases.clear();
  c.watching.clear();
}

void Server::check_leases() {
  const auto now = Clock::now();
  next_lease_ = Clock::time_point::max();
  for (auto& [job, l] : lives_) {
    if (l.life != proto::Life::Running) continue;
    for (const auto& [id, lease] : l.leases) {
      if (now <= lease.deadline) {
        next_lease_ = std::min(next_lease_, lease.deadline);
        continue;
      }
      const auto late = std::chrono::duration_cast<std::chrono::milliseconds>(now - lease.deadline);
      fail_attempt(job, l, "rank " + std::to_string(lease.rank) + " did not renew its lease of " +
                               ms_text(lease.length) + " (PMCR_LEASE) for " + ms_text(lease.length + late) +
                               ": it is stopped, hung or cut off");
      break;
    }
  }
}

}  // namespace pmcr::server
