#include "survey.hpp"

#include <algorithm>
#include <set>

#include "error.hpp"
#include "placement.hpp"
#include "text.hpp"

namespace pmcr::client {
bool server_lost(int code) {
  return code == PMCR_E_SERVER_LOST || code == PMCR_E_TIMEDOUT || code == PMCR_E_UNREACHABLE ||
         code == PMCR_E_TRANSPORT;
}

std::string Survey::lost_text() const {
  std::vector<std::string> out;
  for (const auto& l : lost)
    if (!l.empty()) out.push_back(l);
  return join(out);
}

std::vector<uint64_t> Survey::sealed(std::optional<uint32_t> nranks) const {
  std::set<uint64_t> all;
  for (const auto& on : versions)
    for (const auto& [ver, v] : on)
      if (v.sealed && (!nranks || v.nranks == *nranks)) all.insert(ver);
  return {all.rbegin(), all.rend()};
}

Survey survey(size_t n, const std::string& job, const Connector& connect, const Dropper& drop,
              const std::vector<std::string>& addresses) {
  Survey s;
  s.versions.resize(n);
  s.lost.resize(n);
  for (size_t i = 0; i < n; ++i) {
    try {
      for (auto& v : connect(i).list_versions(job))
        if (v.job == job) s.versions[i][v.version] = std::move(v);
    } catch (const Error& e) {
      if (n == 1 || !server_lost(e.code())) throw;
      s.lost[i] = addresses.at(i) + " (" + e.what() + ")";
      drop(i);
    }
  }
  return s;
}

void in_replica_order(std::vector<size_t>& servers, uint32_t rank, size_t n) {
  const size_t first = rank % n;
  std::sort(servers.begin(), servers.end(), [&](size_t a, size_t b) { return (a + n - first) % n < (b + n - first) % n; });
}

std::vector<std::vector<size_t>> holders(const Survey& s, const std::string& job, uint64_t version, uint32_t nranks,
                                         const Connector& connect) {
  const size_t n = s.versions.size();
  std::vector<std::vector<size_t>> out(nranks);
  for (size_t i = 0; i < n; ++i) {
    auto v = s.versions[i].find(version);
    if (v == s.versions[i].end() || !v->second.sealed || v->second.nranks != nranks) continue;
    std::set<uint32_t> ranks;
    if (v->second.part_ranks == v->second.nranks) {
      for (uint32_t r = 0; r < nranks; ++r) ranks.insert(r);  // the whole version
    } else {
      try {
        for (const auto& g : connect(i).list_regions(job, version).regions) ranks.insert(g.rank);
      } catch (const Error& e) {
        if (!server_lost(e.code()) && e.code() != PMCR_E_NOT_FOUND) throw;
        continue;  // lost, or the part deleted since the listing
      }
    }
    for (uint32_t r : ranks)
      if (r < nranks) out[r].push_back(i);
  }
  for (uint32_t r = 0; r < nranks; ++r) in_replica_order(out[r], r, n);
  return out;
}

Fleet::Fleet(const std::vector<std::string>& servers, Options options)
    : addresses_(placement::order(servers)), options_(std::move(options)), clients_(addresses_.size()) {}

Client& Fleet::operator()(size_t i) {
  auto& c = clients_.at(i);
  if (!c) {
    Options o = options_;
    o.server = addresses_[i];
    c = std::make_unique<Client>(o);
  }
  return *c;
}

Survey Fleet::survey(const std::string& job) {
  return client::survey(
      size(), job, [this](size_t i) -> Client& { return (*this)(i); }, [this](size_t i) { drop(i); }, addresses_);
}

std::vector<std::vector<size_t>> Fleet::holders(const Survey& s, const std::string& job, uint64_t version,
                                                uint32_t nranks) {
  return client::holders(s, job, version, nranks, [this](size_t i) -> Client& { return (*this)(i); });
}

std::optional<uint64_t> Fleet::newest_complete(const Survey& s, const std::string& job) {
  for (uint64_t v : s.sealed()) {
    uint32_t nranks = 0;
    for (const auto& on : s.versions)
      if (auto e = on.find(v); e != on.end() && e->second.sealed) nranks = e->second.nranks;
    const auto h = holders(s, job, v, nranks);
    if (std::none_of(h.begin(), h.end(), [](const std::vector<size_t>& x) { return x.empty(); })) return v;
  }
  return std::nullopt;
}

}  // namespace pmcr::client
