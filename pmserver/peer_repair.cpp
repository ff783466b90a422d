#include "peer_repair.hpp"

#include <spdlog/spdlog.h>

#include <set>

#include "error.hpp"
#include "repair.hpp"
#include "survey.hpp"

namespace pmcr::server {

PeerRepair::PeerRepair(std::vector<std::string> peers, unsigned replicas, std::chrono::milliseconds interval,
                       client::Credential credential)
    : peers_(std::move(peers)),
      replicas_(replicas),
      credential_(std::move(credential)),
      ticker_(interval, [this] { tick(); }) {}

void PeerRepair::tick() {
  try {
    pass();
  } catch (const std::exception& e) {
    spdlog::warn("repair of the peers' copies: {}", e.what());
  }
}

// One pass: every job some peer holds, repaired. (A pass takes the
// servers' time only where a copy is missing: the listings are small.)
void PeerRepair::pass() {
  client::Options o;
  o.name = "pmserver-repair";
  o.credential = credential_;
  o.connect_timeout = std::chrono::seconds(3);
  o.cancelled = [this] { return ticker_.stopping(); };  // a stalled peer does not hold up pmserver's exit
  client::Fleet fleet(peers_, o);
  std::set<std::string> jobs, reported;
  for (size_t i = 0; i < fleet.size(); ++i) {
    try {
      for (const auto& v : fleet(i).list_versions("")) jobs.insert(v.job);
    } catch (const Error& e) {
      if (!client::server_lost(e.code())) throw;
      fleet.drop(i);
    }
  }
  for (const auto& job : jobs) {
    if (ticker_.stopping()) return;
    // The newest version waits a pass: the job may still be writing it.
    const client::RepairReport r = client::repair(
        fleet, job, replicas_, [&](const std::string& line) { spdlog::info("repair of job '{}': {}", job, line); },
        [&](uint64_t newest) {
          auto [it, fresh] = newest_.emplace(job, newest);
          const bool skip = fresh || it->second != newest;
          it->second = newest;
          return skip;
        });
    if (ticker_.stopping()) return;  // (what failed, failed because pmserver is stopping)
    // A problem is logged once while it lasts, not at every pass.
    for (const auto& p : r.problems) {
      const std::string key = job + '\0' + p;
      if (!reported_.count(key)) spdlog::warn("repair of job '{}': {}", job, p);
      reported.insert(key);
    }
    if (!r.parts.empty())
      spdlog::info("repair of job '{}': {} parts written back to {} copies", job, r.parts.size(), replicas_);
  }
  reported_ = std::move(reported);
}

}  // namespace pmcr::server
