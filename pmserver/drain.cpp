// The capacity tier on the server's side (README, "A capacity tier"): the
// event loop hands the Drainer one sealed version (this server's part of
// it) at a time, its regions pinned, and unpins them when it is done.
#include <spdlog/spdlog.h>

#include "error.hpp"
#include "server.hpp"

namespace pmcr::server {

void Server::schedule_drain() {
  if (!drainer_ || drainer_->busy()) return;
  const auto now = Clock::now();
  const auto sealed = catalogue_.sealed_versions();
  // Versions deleted since are forgotten.
  const std::set<std::pair<std::string, uint64_t>> live(sealed.begin(), sealed.end());
  for (auto it = drained_.begin(); it != drained_.end();) it = live.count(*it) ? std::next(it) : drained_.erase(it);
  for (auto it = drain_retry_.begin(); it != drain_retry_.end();)
    it = live.count(it->first) ? std::next(it) : drain_retry_.erase(it);
  for (const auto& key : sealed) {
    if (drained_.count(key)) continue;
    if (auto r = drain_retry_.find(key); r != drain_retry_.end() && now < r->second) continue;
    const auto& [job, version] = key;
    Drainer::Job work;
    work.job = job;
    work.version = version;
    bool damaged = false;
    for (const auto& v : catalogue_.list_versions(job))
      if (v.version == version) {
        work.nranks = v.nranks;
        damaged = !v.quarantine.empty();
      }
    if (damaged) continue;  // quarantined: never drained (and not tried again and again)
    try {
      for (const auto& g : catalogue_.list_regions(job, version).second) {
        const RegionView view = catalogue_.open_region({job, version, g.rank, g.id});  // pinned
        Drainer::Region region{g.rank, view.id, view.size, view.checksum, view.block_size, view.handle, {}};
        work.regions.push_back(region);
        for (const Segment& s : catalogue_.segments(view, 0, view.size))
          work.regions.back().pieces.emplace_back(pool_.base() + s.offset, s.length);
      }
    } catch (const pmcr::Error& e) {
      for (const auto& g : work.regions) catalogue_.close_region(g.handle);
      drain_retry_[key] = now + std::chrono::seconds(10);
      spdlog::warn("drain of version {} of job '{}': {}; trying again in 10 s", version, job, e.what());
      continue;
    }
    drainer_->submit(std::move(work));
    return;  // one at a time
  }
}

void Server::drained() {
  if (!drainer_) return;
  const auto results = drainer_->take();
  for (const Drainer::Result& r : results) {
    for (uint64_t h : r.handles) catalogue_.close_region(h);
    const auto key = std::make_pair(r.job, r.version);
    if (r.drained) {
      drained_.insert(key);
      drain_retry_.erase(key);
      if (r.bytes)
        spdlog::info("drained version {} of job '{}' to {} ({} bytes)", r.version, r.job, drainer_->dir(), r.bytes);
      continue;
    }
    drain_retry_[key] = Clock::now() + std::chrono::seconds(10);
    spdlog::warn("drain of version {} of job '{}' to {} failed: {}; trying again in 10 s", r.version, r.job,
                 drainer_->dir(), r.error);
  }
  // The next version at once, not at the next housekeeping (the loop may
  // sleep a second): the drain keeps up with the checkpoints.
  if (!results.empty()) schedule_drain();
}

}  // namespace pmcr::server
