#include "repair.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "error.hpp"
#include "placement.hpp"
#include "text.hpp"

namespace pmcr::client {
namespace {

struct Region {
  uint32_t id = 0;
  uint64_t size = 0;
};

// What one target server holds of a (rank, id) after an earlier version's
// repair or its own checkpoints: the base of the next version's copy.
struct Held {
  uint64_t version = 0;
  uint64_t block_size = 0;
  std::vector<uint64_t> hashes;
};

class Repairer {
 public:
  Repairer(Fleet& fleet, const std::string& job, unsigned replicas,
           const std::function<void(const std::string&)>& say, const std::function<bool(uint64_t)>& skip_newest)
      : fleet_(fleet), job_(job), replicas_(replicas), say_(say), skip_newest_(skip_newest) {}

  RepairReport run() {
    const size_t n = fleet_.size();
    if (replicas_ < 1 || replicas_ > n)
      throw Error(PMCR_E_INVAL, std::to_string(replicas_) + " copies on " + std::to_string(n) +
                                    " servers: each copy needs a server of its own (--replicas 1 to " +
                                    std::to_string(n) + ")");
    survey_ = fleet_.survey(job_);
    for (size_t i = 0; i < n; ++i)
      if (!survey_.lost[i].empty()) report_.problems.push_back("server " + survey_.lost[i] + " does not answer: not repaired");
    std::map<uint64_t, uint32_t> versions;  // sealed somewhere, with its rank count
    for (const auto& on : survey_.versions)
      for (const auto& [v, e] : on)
        if (e.sealed) versions[v] = e.nranks;
    // A version with regions open on a server is being written (or was
    // left so by a failure the job's next BEGIN cleans up): not touched.
    for (size_t i = 0; i < survey_.versions.size(); ++i)
      for (const auto& [v, e] : survey_.versions[i])
        if (!e.sealed && !e.quarantined && versions.erase(v))
          report_.skipped.push_back("version " + std::to_string(v) + ": regions of it are open on " +
                                    fleet_.addresses()[i] + " (being written): left to its job");
    // The newest may still be being written where no region of it is yet.
    if (!versions.empty() && skip_newest_ && skip_newest_(versions.rbegin()->first)) {
      report_.skipped.push_back("version " + std::to_string(versions.rbegin()->first) +
                                ": the newest, next time (its job may be writing it)");
      versions.erase(std::prev(versions.end()));
    }
    for (const auto& [v, nranks] : versions) {  // oldest first: each can be the next one's base
      report_.versions++;
      try {
        version(v, nranks);
      } catch (const Error& e) {
        report_.problems.push_back("version " + std::to_string(v) + ": " + e.what());
      }
    }
    return report_;
  }

 private:
  void version(uint64_t v, uint32_t nranks) {
    const size_t n = fleet_.size();
    const auto holders = fleet_.holders(survey_, job_, v, nranks);
    std::vector<std::string> gone;
    for (uint32_t r = 0; r < nranks; ++r)
      if (holders[r].empty()) gone.push_back(std::to_string(r));
    if (!gone.empty())
      throw Error(PMCR_E_SERVER_LOST, "rank" + std::string(gone.size() > 1 ? "s " : " ") + join(gone, ", ") +
                                          " have no copy on a server that answers: it cannot be repaired");
    // Each rank's regions, from the first server that holds them.
    std::vector<std::vector<Region>> regions(nranks);
    std::map<size_t, proto::ListRegionsReply> listed;
    for (uint32_t r = 0; r < nranks; ++r) {
      const size_t h = holders[r].front();
      if (!listed.count(h)) listed[h] = fleet_(h).list_regions(job_, v);
      for (const auto& g : listed[h].regions)
        if (g.rank == r) regions[r].push_back({g.id, g.size});
    }
    std::vector<uint32_t> counts(nranks);
    for (uint32_t r = 0; r < nranks; ++r) counts[r] = static_cast<uint32_t>(regions[r].size());
    const auto parts = placement::parts(counts, n, replicas_);
    bool healthy = true;
    for (size_t t = 0; t < n; ++t) {
      if (!survey_.lost[t].empty() || !parts[t].ranks) continue;
      std::vector<uint32_t> placed, missing;
      for (uint32_t r = 0; r < nranks; ++r) {
        const auto s = placement::replicas(r, n, replicas_);
        if (std::find(s.begin(), s.end(), t) == s.end()) continue;
        placed.push_back(r);
        if (std::find(holders[r].begin(), holders[r].end(), t) == holders[r].end()) missing.push_back(r);
      }
      if (missing.empty()) {
        held_.erase(t);  // its own part: the next version's copy there is sent whole
        continue;
      }
      healthy = false;
      const auto on = survey_.versions[t].find(v);
      if (on != survey_.versions[t].end() && on->second.sealed) {
        report_.problems.push_back("version " + std::to_string(v) + " on " + fleet_.addresses()[t] +
                                   ": sealed with other ranks than " + std::to_string(replicas_) +
                                   " copies place there (written with another server list or --replicas?): left as it is");
        continue;
      }
      try {
        write_part(t, v, nranks, parts[t], placed, regions, holders);
      } catch (const Error& e) {
        report_.problems.push_back("version " + std::to_string(v) + " on " + fleet_.addresses()[t] + ": " + e.what());
        fleet_.drop(t);
        held_.erase(t);
      }
    }
    if (healthy) report_.healthy++;
  }

  // The attempt T's writes go under: the job's current one there (a running
  // job's, joined), or a new one.
  void attempt(size_t t) {
    if (joined_.count(t)) return;
    Client& c = fleet_(t);
    const proto::WatchReply w = c.watch(job_, 0);
    if (w.attempt) c.join(job_, w.attempt);
    else c.begin(job_);
    joined_.insert(t);
  }

  void write_part(size_t t, uint64_t v, uint32_t nranks, const placement::Part& part, const std::vector<uint32_t>& placed,
                  const std::vector<std::vector<Region>>& regions, const std::vector<std::vector<size_t>>& holders) {
    attempt(t);
    Client& to = fleet_(t);
    to.expect(job_, v, nranks, part.regions, part.ranks == nranks ? 0 : part.ranks);
    RepairReport::Part done{v, fleet_.addresses()[t], part.ranks, part.regions, 0, 0};
    auto& held = held_[t];
    std::map<std::pair<uint32_t, uint32_t>, Held> next;
    std::vector<uint8_t> buf;
    for (uint32_t r : placed) {
      for (const Region& g : regions[r]) {
        Client& from = fleet_(holders[r].front());
        const ReadSource src = from.open(job_, v, r, g.id);
        try {
          buf.resize(src.size);
          from.get(src, buf.data());  // verified against its checksum
        } catch (...) {
          from.close(src);
          throw;
        }
        from.close(src);
        // Incremental when T holds this region's previous version as this
        // pass wrote it, in the same blocks.
        const auto base = held.find({r, g.id});
        const bool can_base = src.block_size && base != held.end() && base->second.version &&
                              base->second.block_size == src.block_size &&
                              base->second.hashes.size() == src.hashes.size();
        WriteTarget w = to.create(job_, v, r, g.id, src.size, src.block_size,
                                          can_base ? std::optional<uint64_t>(base->second.version) : std::nullopt);
        if (w.based) {
          std::vector<uint64_t> changed;
          for (uint64_t i = 0; i < src.hashes.size(); ++i)
            if (src.hashes[i] != base->second.hashes[i]) changed.push_back(i);
          to.put_blocks(w, buf.data(), changed);
          for (uint64_t i : changed) done.sent += std::min<uint64_t>(src.block_size, src.size - i * src.block_size);
        } else {
          to.put(w, buf.data());
          done.sent += src.size;
        }
        to.commit(w, src.checksum);  // the part's last commit seals it
        done.bytes += src.size;
        if (src.block_size) next[{r, g.id}] = Held{v, src.block_size, src.hashes};
      }
    }
    bool sealed = false;
    for (const auto& e : to.list_versions(job_))
      if (e.version == v) sealed = e.sealed;
    if (!sealed) throw Error(PMCR_E_INCOMPLETE, "every region was written but the part is not sealed");
    held = std::move(next);
    report_.parts.push_back(done);
    say_("version " + std::to_string(v) + ": " + std::to_string(done.regions) + " regions of " +
         std::to_string(done.ranks) + " ranks copied to " + done.server + " (" + format_size(done.bytes) + ", " +
         format_size(done.sent) + " sent)");
  }

  Fleet& fleet_;
  std::string job_;
  unsigned replicas_;
  const std::function<void(const std::string&)>& say_;
  const std::function<bool(uint64_t)>& skip_newest_;
  Survey survey_;
  RepairReport report_;
  std::set<size_t> joined_;
  std::map<size_t, std::map<std::pair<uint32_t, uint32_t>, Held>> held_;  // by target server
};

}  // namespace

RepairReport repair(Fleet& fleet, const std::string& job, unsigned replicas,
                    const std::function<void(const std::string&)>& say,
                    const std::function<bool(uint64_t)>& skip_newest) {
  return Repairer(fleet, job, replicas, say, skip_newest).run();
}

}  // namespace pmcr::client
