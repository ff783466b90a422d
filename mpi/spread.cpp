// Session over several servers (README, "Several servers"): every entry of
// PMCR_SERVERS holds a part of each version, each rank's data on
// PMCR_REPLICAS of them (placement.hpp), written in parallel. Each server
// seals its part itself at the commit of the part's last region (it is
// told how many regions of how many ranks to expect), so a checkpoint costs
// no extra round trip; the version is complete when every rank's regions
// are in at least one sealed part, which every rank learns from one
// reduction. A server that fails is lost to the job: checkpoints go on to
// the others (with fewer copies, and a warning naming it) while any rank's
// data still has a copy, and rank 0 tries it again every PMCR_SERVER_RETRY.
// A restart finds, for the version it wants, which servers hold each rank's
// regions, and reads each rank's from the least loaded of them.
//
// With one server all of this reduces to what it always was: one part,
// the whole version, and no server is ever dropped (its loss fails the
// checkpoint, and pmcr-run relaunches the job).
#include <algorithm>
#include <thread>

#include "error.hpp"
#include "fault.hpp"
#include "log.hpp"
#include "placement.hpp"
#include "session.hpp"
#include "text.hpp"

namespace pmcr {
namespace {

// A rank with nothing protected still writes one empty region, under an id
// no program can use (ids are ints >= 0), so the server sees that the rank
// took part when the version is sealed.
constexpr uint32_t kRankMarkerId = 0xffffffffu;

}  // namespace

std::string Session::retry_text() const {
  const auto ms = config_.server_retry.count();
  return std::to_string(ms / 1000) + (ms % 1000 ? "." + std::to_string(ms % 1000 / 100) : "") + " s";
}

client::Client& Session::connect(size_t i) {
  Server& s = servers_.at(i);
  if (!s.client) {
    s.client = std::make_unique<client::Client>(client_options(i));
    s.joined = 0;
  }
  if (s.attempt && s.joined != s.attempt) {
    s.client->join(config_.job, s.attempt);
    s.joined = s.attempt;
  }
  return *s.client;
}

void Session::drop(size_t i) noexcept {
  try {
    servers_.at(i).client.reset();
  } catch (const std::exception&) {  // closing a broken connection: nothing left to do
  }
  servers_.at(i).joined = 0;
}

void Session::begin_attempts() {
  const size_t n = servers_.size();
  std::vector<int64_t> attempts(n, 0);
  collectively([&] {
    if (comm_.rank() != 0) return;
    std::vector<std::string> lost;
    for (size_t i = 0; i < n; ++i) {
      try {
        attempts[i] = static_cast<int64_t>(connect(i).begin(config_.job, instance_));
        servers_[i].joined = static_cast<uint64_t>(attempts[i]);
      } catch (const Error& e) {
        if (n == 1 || !server_lost(e.code())) throw;
        lost.push_back(servers_[i].address + ": " + e.what());
        drop(i);
      }
    }
    if (lost.size() == n)
      throw Error(PMCR_E_UNREACHABLE, "none of the " + std::to_string(n) + " servers of PMCR_SERVERS answers: " + join(lost));
    if (!lost.empty())
      log()->warn("job {}: {} of {} servers do not answer ({}); checkpoints go to the others, with fewer copies, and "
                  "each lost one is tried again every {} (PMCR_SERVER_RETRY)",
                  config_.job, lost.size(), n, join(lost), retry_text());
    next_retry_ = std::chrono::steady_clock::now() + config_.server_retry;
  });
  comm_.broadcast(attempts);
  for (size_t i = 0; i < n; ++i) servers_[i].attempt = static_cast<uint64_t>(attempts[i]);
  collectively([&] {
    for (size_t i : mine_) {
      if (!servers_[i].attempt) continue;
      try {
        connect(i);
      } catch (const Error& e) {
        if (n == 1 || !server_lost(e.code())) throw;
        // Its first checkpoint finds this copy missing and says so.
        log()->debug("rank {}: server {} does not answer: {}", comm_.rank(), servers_[i].address, e.what());
        drop(i);
      }
    }
  });
}

void Session::retry_lost() {
  const size_t n = servers_.size();
  if (n == 1) return;
  std::vector<int64_t> attempts(n);
  for (size_t i = 0; i < n; ++i) attempts[i] = static_cast<int64_t>(servers_[i].attempt);
  if (comm_.rank() == 0 && std::chrono::steady_clock::now() >= next_retry_) {
    for (size_t i = 0; i < n; ++i) {
      if (attempts[i]) continue;
      try {
        drop(i);
        attempts[i] = static_cast<int64_t>(connect(i).begin(config_.job, instance_));
        servers_[i].joined = static_cast<uint64_t>(attempts[i]);
        log()->warn("job {}: server {} answers again; checkpoints are written to it from version {} on (older "
                    "versions: 'pmcr repair --job {}')",
                    config_.job, servers_[i].address, last_version_ + 1, config_.job);
      } catch (const Error& e) {
        log()->debug("job {}: server {} is still lost: {}", config_.job, servers_[i].address, e.what());
        drop(i);
      }
    }
    next_retry_ = std::chrono::steady_clock::now() + config_.server_retry;
  }
  comm_.broadcast(attempts);
  for (size_t i = 0; i < n; ++i) {
    const auto a = static_cast<uint64_t>(attempts[i]);
    if (a == servers_[i].attempt) continue;
    servers_[i].attempt = a;
    if (comm_.rank() != 0) drop(i);  // a new connection joins the new attempt
  }
}

void Session::write_to(client::Client& c, uint64_t version, const std::map<int, Buffer>& from,
                       std::vector<uint8_t>& scratch, const SharedSums& sums) {
  for (const auto& [id, b] : from) {
    const auto shared = sums.find(id);
    write_buffer(c, version, static_cast<uint32_t>(id), b, scratch, shared == sums.end() ? nullptr : shared->second.get());
  }
  if (from.empty())
    c.write_region(config_.job, version, static_cast<uint32_t>(comm_.rank()), kRankMarkerId, nullptr, 0);
}

std::vector<Session::Outcome> Session::run_copies(uint64_t version, const std::vector<uint64_t>& regions,
                                                  const std::map<int, Buffer>& from) {
  const size_t n = servers_.size();
  const auto nranks = static_cast<uint32_t>(comm_.size());
  std::vector<uint32_t> counts(regions.begin(), regions.end());
  const auto parts = placement::parts(counts, n, config_.replicas);
  std::vector<Outcome> out(mine_.size());
  if (sealed_.size() < mine_.size()) sealed_.resize(mine_.size());
  const SharedSums sums = shared_sums(from);
  const auto write_copy = [&](size_t k) {
    const size_t s = mine_[k];
    out[k].code = capture(
        [&] {
          if (!servers_[s].attempt) throw Error(PMCR_E_SERVER_LOST, "lost to the job earlier");
          client::Client& c = connect(s);
          c.expect(config_.job, version, nranks, parts[s].regions, n > 1 ? parts[s].ranks : 0);
          write_to(c, version, from, sealed_[k], sums);
        },
        &out[k].message);
  };
  // Each copy from a thread of its own: a connection is used by one thread.
  std::vector<std::thread> threads;
  for (size_t k = 1; k < mine_.size(); ++k) threads.emplace_back(write_copy, k);
  write_copy(0);
  for (auto& t : threads) t.join();
  return out;
}

void Session::conclude_copies(uint64_t version, const std::vector<uint64_t>& regions, const std::vector<Outcome>& out) {
  const size_t n = servers_.size();
  const auto rank = static_cast<uint32_t>(comm_.rank());
  const auto nranks = static_cast<uint32_t>(comm_.size());
  std::vector<uint32_t> counts(regions.begin(), regions.end());
  const auto parts = placement::parts(counts, n, config_.replicas);
  std::vector<int64_t> ok(n, 1);
  for (size_t i = 0; i < n; ++i)
    if (!servers_[i].attempt) ok[i] = 0;
  collectively([&] {
    std::vector<std::string> lost;
    int first = 0;
    size_t copies = 0;
    for (size_t k = 0; k < mine_.size(); ++k) {
      const size_t s = mine_[k];
      ok[s] = out[k].code == 0;
      if (out[k].code == 0) {
        copies++;
        continue;
      }
      if (n == 1) throw Error(out[k].code, out[k].message);
      if (!server_lost(out[k].code))
        throw Error(out[k].code, "server " + servers_[s].address + ": " + out[k].message);
      if (!first) first = out[k].code;
      lost.push_back(servers_[s].address + " (" + out[k].message + ")");
    }
    if (!copies)
      throw Error(first, "no copy of rank " + std::to_string(rank) + "'s data could be written to its " +
                             std::to_string(mine_.size()) + " servers: " + join(lost));
    for (const auto& l : lost)
      log()->debug("rank {}: version {}: one copy fewer, server {}", rank, version, l);
  });
  // Which parts sealed: a server's part did when every rank placed there
  // committed its regions to it.
  const std::vector<int64_t> sealed = comm_.min(ok);
  std::vector<std::string> failed;
  for (size_t i = 0; i < n; ++i) {
    if (sealed[i] || !parts[i].ranks) continue;
    if (servers_[i].attempt) {
      failed.push_back(servers_[i].address);
      // This rank's regions of the part that did not seal, if it wrote any.
      if (servers_[i].client && std::find(mine_.begin(), mine_.end(), i) != mine_.end()) {
        try {
          servers_[i].client->abort(config_.job, version);
        } catch (const Error&) {  // it is gone: it frees them itself
        }
      }
      servers_[i].attempt = 0;
      drop(i);
    }
  }
  std::vector<uint32_t> missing;
  for (uint32_t r = 0; r < nranks; ++r) {
    bool held = false;
    for (size_t s : placement::replicas(r, n, config_.replicas)) held = held || sealed[s];
    if (!held) missing.push_back(r);
  }
  if (comm_.rank() == 0 && !failed.empty())
    log()->warn("job {}: server{} {} lost at version {}: {}", config_.job, failed.size() > 1 ? "s" : "", join(failed),
                version,
                missing.empty() ? "checkpoints go on with fewer copies on the others; rank 0 tries it again every " +
                                      retry_text() + " (PMCR_SERVER_RETRY)"
                                : "the version is incomplete");
  if (!missing.empty()) {
    std::string ranks;
    for (size_t i = 0; i < missing.size() && i < 8; ++i) ranks += (i ? ", " : "") + std::to_string(missing[i]);
    if (missing.size() > 8) ranks += ", ...";
    throw Error(PMCR_E_SERVER_LOST, "version " + std::to_string(version) + " of job " + config_.job + " is incomplete: " +
                                        std::to_string(missing.size()) + " ranks (" + ranks +
                                        ") have no copy on a server that sealed its part" +
                                        (failed.empty() ? "" : " (lost: " + join(failed) + ")") +
                                        (config_.replicas == 1 && n > 1
                                             ? "; with PMCR_REPLICAS=2 each rank's data has a copy on two servers"
                                             : ""));
  }
}

client::Survey Session::list_all() {
  std::vector<std::string> addresses;
  for (const auto& s : servers_) addresses.push_back(s.address);
  return client::survey(
      servers_.size(), config_.job, [this](size_t i) -> client::Client& { return connect(i); },
      [this](size_t i) { drop(i); }, addresses);
}

std::vector<std::vector<size_t>> Session::locate(uint64_t version, const client::Survey& listing) {
  return client::holders(listing, config_.job, version, static_cast<uint32_t>(comm_.size()),
                         [this](size_t i) -> client::Client& { return connect(i); });
}

void Session::share_holders(uint64_t version, std::vector<std::vector<size_t>>* holders) {
  const size_t n = servers_.size();
  std::string text;
  if (comm_.rank() == 0)
    for (const auto& h : *holders) {
      std::string row(n, '0');
      for (size_t s : h) row[s] = '1';
      text += row;
    }
  text = comm_.broadcast(text);
  holders->assign(static_cast<size_t>(comm_.size()), {});
  for (size_t r = 0; r < holders->size(); ++r)
    for (size_t s = 0; s < n; ++s)
      if (text.size() >= (r + 1) * n && text[r * n + s] == '1') (*holders)[r].push_back(s);
  for (size_t r = 0; r < holders->size(); ++r) client::in_replica_order((*holders)[r], static_cast<uint32_t>(r), n);
  // The least loaded holder first for this rank, then the others.
  uint64_t bytes = 0;
  for (const auto& [id, b] : buffers_) bytes += b.size;
  const auto readers = placement::readers(*holders, comm_.gather(bytes), n);
  const auto& mine = (*holders)[static_cast<size_t>(comm_.rank())];
  read_order_.clear();
  if (readers[static_cast<size_t>(comm_.rank())] >= 0) read_order_.push_back(static_cast<size_t>(readers[static_cast<size_t>(comm_.rank())]));
  for (size_t s : mine)
    if (read_order_.empty() || s != read_order_.front()) read_order_.push_back(s);
  located_version_ = version;
}

void Session::read_copy(uint64_t version, uint32_t id, const Buffer& b) {
  std::vector<std::string> lost;
  for (size_t k = 0; k < read_order_.size(); ++k) {
    const size_t s = read_order_[k];
    try {
      read_buffer(connect(s), version, id, b);
      if (k) log()->debug("rank {}: buffer id {} of version {} read from {} ({} lost)", comm_.rank(), id, version,
                          servers_[s].address, join(lost));
      return;
    } catch (const Error& e) {
      if (servers_.size() == 1 || !server_lost(e.code()) || k + 1 == read_order_.size()) {
        if (lost.empty()) throw;
        throw Error(e.code(), std::string(e.what()) + " (and before it: " + join(lost) + ")");
      }
      lost.push_back(servers_[s].address + ": " + e.what());
      drop(s);
    }
  }
  throw Error(PMCR_E_SERVER_LOST, "no server that answers holds rank " + std::to_string(comm_.rank()) +
                                      "'s regions of version " + std::to_string(version));
}

// Deletes this job's sealed versions beyond the newest KEEP, on every server.
// The newest KEEP versions this job made complete are kept in any case (an
// older run's partial leftovers never push them out). The checkpoint is
// already sealed: a failure here is logged, not returned, and the next
// checkpoint tries again.
void Session::apply_retention() {
  try {
    std::vector<std::vector<uint64_t>> on(servers_.size());
    std::set<uint64_t> all;
    for (size_t i = 0; i < servers_.size(); ++i) {
      if (!servers_[i].attempt) continue;
      try {
        for (const auto& v : connect(i).list_versions(config_.job))
          if (v.sealed && v.job == config_.job) {
            on[i].push_back(v.version);
            all.insert(v.version);
          }
      } catch (const Error& e) {
        if (servers_.size() == 1 || !server_lost(e.code())) throw;  // the next checkpoint finds it lost
      }
    }
    std::set<uint64_t> keep;
    const auto newest = [&](const std::set<uint64_t>& from) {
      size_t k = 0;
      for (auto it = from.rbegin(); it != from.rend() && k < config_.keep; ++it, ++k) keep.insert(*it);
    };
    newest(all);
    newest(complete_);
    while (complete_.size() > config_.keep) complete_.erase(complete_.begin());
    for (size_t i = 0; i < servers_.size(); ++i)
      for (uint64_t v : on[i]) {
        if (keep.count(v)) continue;
        connect(i).remove(config_.job, v);
        log()->debug("job {}: deleted version {} on {} (PMCR_KEEP={})", config_.job, v, servers_[i].address,
                     config_.keep);
      }
  } catch (const Error& e) {
    log()->warn("job {}: could not delete old versions (PMCR_KEEP={}): {}", config_.job, config_.keep, e.what());
  }
}

}  // namespace pmcr
