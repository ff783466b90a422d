// Verification of stored data. Sealed data is checked against its
// checksums (by the Verifier's thread) before a reader gets it (OPEN), when
// a client asks (VERIFY: pmcr_restart_test checks its candidate), and by a
// rate-limited background scrub of every sealed version after start-up and
// every --scrub-interval. A version with a region that fails is quarantined
// at once: never served again, listed with the reason.
#include <spdlog/spdlog.h>

#include <cinttypes>
#include <cstdio>

#include "error.hpp"
#include "server.hpp"

namespace pmcr::server {

uint64_t Server::start_task(Task task, std::vector<RegionView> regions) {
  const uint64_t id = next_id_++;
  Task& t = tasks_.emplace(id, std::move(task)).first->second;
  if (t.kind == TaskKind::Scrub) {
    // One region at a time: a version deleted meanwhile is given up at
    // once, and its memory is never held back for long by the scrub.
    t.later.assign(regions.rbegin(), regions.rend());
    if (!t.later.empty()) {
      const RegionView first = t.later.back();
      t.later.pop_back();
      check(id, t, first);
    }
  } else {
    for (const RegionView& r : regions) check(id, t, r);
  }
  if (t.pending == 0) {
    Task done = std::move(t);
    tasks_.erase(id);
    finish_task(done);
  }
  return id;
}

namespace {
// How long a passed check spares an OPEN of the same bytes another pass.
constexpr auto kFreshCheck = std::chrono::seconds(5);
}  // namespace

void Server::check(uint64_t task, Task& t, const RegionView& region) {
  const auto submit = [&](uint64_t offset, uint64_t size, uint64_t expected) {
    if (t.kind == TaskKind::Open) {
      auto it = passed_.find({offset, size, expected});
      if (it != passed_.end() && Clock::now() - it->second < kFreshCheck) {
        t.fresh++;
        return;
      }
    }
    catalogue_.pin(region.handle);  // released when its check is done
    const uint64_t id = next_id_++;
    checks_.emplace(id, CheckRef{task, region, expected, offset, size, Clock::now()});
    verifier_.submit(Verifier::Check{id, pool_.base() + offset, size, expected, t.kind == TaskKind::Scrub});
    t.pending++;
  };
  if (!region.blocks) {
    submit(region.offset, region.size, region.checksum);
    return;
  }
  // Kept in blocks: each block against its hash, and the hashes against the
  // region's checksum (here: they are in DRAM).
  if (combine_hashes(region.blocks->blocks) != region.checksum) {
    const std::string why = "region rank " + std::to_string(region.rank) + " id " + std::to_string(region.id) +
                            ": its blocks' hashes do not add up to its checksum";
    if (t.failure.empty()) t.failure = why;
    catalogue_.quarantine(t.job, t.version, t.version_id, why);
    return;
  }
  for (const Block& b : region.blocks->blocks) submit(b.offset, b.valid, b.hash);
}

void Server::forget_stale_checks() {
  const auto now = Clock::now();
  for (auto p = passed_.begin(); p != passed_.end();) p = now - p->second >= kFreshCheck ? passed_.erase(p) : std::next(p);
}

void Server::verified() {
  for (const Verifier::Result& res : verifier_.take()) {
    auto c = checks_.find(res.id);
    if (c == checks_.end()) continue;
    const CheckRef ref = c->second;
    checks_.erase(c);
    try {
      catalogue_.unpin(ref.region.handle);
    } catch (const Error& e) {
      spdlog::error("releasing a verified region: {}", e.what());
    }
    // (As of when the check was asked for: the bytes were as hashed then.)
    if (res.ok) passed_[{ref.offset, ref.size, ref.expected}] = ref.submitted;
    else if (!res.cancelled) passed_.erase({ref.offset, ref.size, ref.expected});
    auto it = tasks_.find(ref.task);
    if (it == tasks_.end()) continue;
    Task& t = it->second;
    t.pending--;
    if (res.cancelled) {
      // (The scrub gave it up: its version is gone.)
    } else if (!res.ok) {
      char sums[80];
      std::snprintf(sums, sizeof sums, "pool holds %016" PRIx64 ", committed %016" PRIx64, res.actual, ref.expected);
      const std::string why = "region rank " + std::to_string(ref.region.rank) + " id " +
                              std::to_string(ref.region.id) + (ref.region.blocks ? " has a block that" : "") +
                              " fails its checksum (" + sums + ")";
      if (t.failure.empty()) t.failure = why;
      catalogue_.quarantine(t.job, t.version, t.version_id, why);
    } else if (t.pending == 0 && !t.later.empty() && catalogue_.version_id(t.job, t.version) == t.version_id) {
      const RegionView next = t.later.back();
      t.later.pop_back();
      check(ref.task, t, next);
    }
    if (t.pending == 0) {
      Task done = std::move(t);
      tasks_.erase(it);
      finish_task(done);
    }
  }
}

void Server::abandon_stale_scrub() {
  if (!scrubbing_) return;
  for (auto& [id, t] : tasks_) {
    if (t.kind != TaskKind::Scrub || t.given_up || catalogue_.version_id(t.job, t.version) == t.version_id) continue;
    t.given_up = true;
    t.later.clear();
    std::vector<uint64_t> checks;
    for (const auto& [check, ref] : checks_)
      if (ref.task == id) checks.push_back(check);
    verifier_.cancel(checks);
  }
}

void Server::finish_task(Task& t) {
  const std::string what = "version " + std::to_string(t.version) + " of job '" + t.job + "'";
  if (t.kind == TaskKind::Scrub) {
    scrubbing_ = false;
    spdlog::debug("scrub: {} {}", what,
                  t.given_up ? "given up: deleted or quarantined meanwhile"
                             : t.failure.empty() ? "verified" : "is damaged: " + t.failure);
    return;
  }
  Connection* c = connection(t.conn);
  if (!c) {
    // The reader went meanwhile: its open was never granted, so release it here.
    if (t.kind == TaskKind::Open) catalogue_.close_region(t.open.handle);
    return;
  }
  c->checks--;
  if (t.kind == TaskKind::Open) {
    // The reader gets the region (a read grant: its handle, and on RMA its
    // key) only now that it verified: no byte is served before that.
    if (t.failure.empty()) {
      try {
        t.open.rkey = c->grants->allow_read(t.opened).rkey;
      } catch (const Error& e) {
        catalogue_.close_region(t.open.handle);
        reply_error(*c, proto::Type::Open, t.tag, e.code(), e.what());
        return;
      }
      if (t.fresh)
        spdlog::debug("connection {}: open of region rank {} id {} of {}: {} checks not repeated (passed under {} s ago)",
                      c->id, t.opened.rank, t.opened.id, what, t.fresh,
                      std::chrono::duration_cast<std::chrono::seconds>(kFreshCheck).count());
      send(*c, proto::Reply{proto::Type::Open, t.tag, 0, "", t.open});
      return;
    }
    // The reader does not get the region: take back its open.
    catalogue_.close_region(t.open.handle);
    reply_error(*c, proto::Type::Open, t.tag, PMCR_E_CORRUPT,
                what + " is damaged (" + t.failure + ") and now quarantined: restart from an older version");
    return;
  }
  if (t.failure.empty()) send(*c, proto::Reply{proto::Type::Verify, t.tag, 0, "", proto::Empty{}});
  else reply_error(*c, proto::Type::Verify, t.tag, PMCR_E_CORRUPT, what + " is damaged (" + t.failure + ") and now quarantined");
}

// One version at a time, in the background: its checks run only when no
// reader waits, at --scrub-rate.
void Server::schedule_scrub() {
  if (options_.scrub_rate == 0 || scrubbing_) return;
  const auto now = Clock::now();
  if (scrub_queue_.empty()) {
    if (now < next_scrub_pass_) return;
    next_scrub_pass_ = now + options_.scrub_interval;
    for (auto& v : catalogue_.sealed_versions()) scrub_queue_.push_back(std::move(v));
    if (!scrub_queue_.empty())
      spdlog::info("scrub: verifying {} sealed versions in the background (at most {}/s)", scrub_queue_.size(),
                   format_size(options_.scrub_rate));
  }
  while (!scrub_queue_.empty() && !scrubbing_) {
    auto [job, version] = std::move(scrub_queue_.front());
    scrub_queue_.pop_front();
    std::vector<RegionView> regions;
    try {
      regions = catalogue_.version_regions(job, version);
    } catch (const Error&) {
      continue;  // deleted or quarantined since
    }
    scrubbing_ = true;
    start_task(Task{TaskKind::Scrub, 0, 0, job, version, catalogue_.version_id(job, version)}, std::move(regions));
  }
}

}  // namespace pmcr::server
