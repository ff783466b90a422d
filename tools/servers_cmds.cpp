#include "servers_cmds.hpp"

#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "drain_dir.hpp"
#include "error.hpp"
#include "repair.hpp"
#include "survey.hpp"
#include "text.hpp"

namespace pmcr::tools {
namespace {

using json = nlohmann::json;

client::Options options() {
  client::Options o;
  o.name = "pmcr-cli";
  o.credential = client::Credential::from_environment();
  return o;
}

// "0-3,5": a set of ranks, short.
std::string ranks_text(const std::set<uint32_t>& ranks) {
  std::vector<std::string> out;
  for (auto it = ranks.begin(); it != ranks.end();) {
    const uint32_t first = *it;
    uint32_t last = first;
    for (++it; it != ranks.end() && *it == last + 1; ++it) last = *it;
    out.push_back(first == last ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(last));
  }
  return join(out, ",");
}

}  // namespace

void cmd_stat_servers(const std::vector<std::string>& servers, bool as_json) {
  client::Fleet fleet(servers, options());
  json arr = json::array();
  uint64_t size = 0, used = 0, free = 0;
  size_t answering = 0;
  for (size_t i = 0; i < fleet.size(); ++i) {
    json e = {{"server", fleet.addresses()[i]}};
    try {
      const auto s = fleet(i).stat();
      e.update({{"pool_path", s.pool_path}, {"pool_size", s.pool_size}, {"data_size", s.data_size},
                {"used", s.used_bytes},     {"free", s.free_bytes},     {"regions", s.regions},
                {"versions", s.versions},   {"jobs", s.jobs},           {"connections", s.connections}});
      size += s.data_size;
      used += s.used_bytes;
      free += s.free_bytes;
      answering++;
    } catch (const Error& e2) {
      if (!client::server_lost(e2.code())) throw;
      e["lost"] = e2.what();
    }
    arr.push_back(std::move(e));
  }
  if (as_json) {
    std::cout << json{{"servers", arr}, {"answering", answering}, {"data_size", size}, {"used", used}, {"free", free}}
                     .dump(2)
              << "\n";
    return;
  }
  std::printf("%-22s %10s %10s %10s %8s %8s %5s\n", "SERVER", "SIZE", "USED", "FREE", "REGIONS", "VERSIONS", "CONNS");
  for (const auto& e : arr) {
    if (e.contains("lost")) {
      std::printf("%-22s lost: %s\n", e["server"].get<std::string>().c_str(), e["lost"].get<std::string>().c_str());
      continue;
    }
    std::printf("%-22s %10s %10s %10s %8u %8u %5u\n", e["server"].get<std::string>().c_str(),
                format_size(e["data_size"]).c_str(), format_size(e["used"]).c_str(), format_size(e["free"]).c_str(),
                e["regions"].get<uint32_t>(), e["versions"].get<uint32_t>(), e["connections"].get<uint32_t>());
  }
  std::printf("%zu of %zu servers answer: %s used, %s free of %s\n", answering, fleet.size(), format_size(used).c_str(),
              format_size(free).c_str(), format_size(size).c_str());
}

void cmd_ls_servers(const std::vector<std::string>& servers, const std::string& job, unsigned replicas,
                    const std::string& drain, bool as_json) {
  client::Fleet fleet(servers, options());
  const size_t n = fleet.size();
  // The jobs: this one, or every job some server holds.
  std::set<std::string> jobs;
  std::vector<std::string> lost(n);
  if (!job.empty()) {
    jobs.insert(job);
  } else {
    std::error_code ec;
    if (!drain.empty())
      for (const auto& e : std::filesystem::directory_iterator(drain, ec)) jobs.insert(e.path().filename().string());
    for (size_t i = 0; i < n; ++i) {
      try {
        for (const auto& v : fleet(i).list_versions("")) jobs.insert(v.job);
      } catch (const Error& e) {
        if (!client::server_lost(e.code())) throw;
        lost[i] = e.what();
        fleet.drop(i);
      }
    }
  }
  json out = {{"servers", json::array()}, {"versions", json::array()}};
  std::vector<json> rows;
  for (const auto& name : jobs) {
    const client::Survey s = fleet.survey(name);
    for (size_t i = 0; i < n; ++i)
      if (!s.lost[i].empty()) lost[i] = s.lost[i];
    std::map<uint64_t, uint32_t> versions;  // every version some server holds, with its ranks
    for (const auto& on : s.versions)
      for (const auto& [v, e] : on) versions[v] = std::max(versions[v], e.nranks);
    const auto drained = drain.empty() ? std::map<uint64_t, uint32_t>{} : client::drained_versions(drain, name);
    for (const auto& [v, nranks] : drained) versions.emplace(v, nranks);
    for (const auto& [v, nranks] : versions) {
      const auto holders = fleet.holders(s, name, v, nranks);
      size_t fewest = SIZE_MAX, most = 0;
      for (const auto& h : holders) {
        fewest = std::min(fewest, h.size());
        most = std::max(most, h.size());
      }
      if (holders.empty()) fewest = 0;
      const size_t want = replicas ? replicas : most;
      const bool is_drained = drained.count(v) > 0;
      std::string state = fewest == 0 ? (most ? "lost" : is_drained ? "drained" : "open")
                                      : fewest < want ? "degraded" : "complete";
      json row = {{"job", name}, {"version", v}, {"ranks", nranks}, {"state", state}, {"copies", fewest},
                  {"replicas", want}, {"drained", is_drained}, {"parts", json::array()}};
      uint64_t bytes = 0;
      for (size_t i = 0; i < n; ++i) {
        const auto e = s.versions[i].find(v);
        if (e == s.versions[i].end()) continue;
        std::set<uint32_t> ranks;
        for (uint32_t r = 0; r < holders.size(); ++r)
          for (size_t h : holders[r])
            if (h == i) ranks.insert(r);
        json part = {{"server", fleet.addresses()[i]}, {"sealed", e->second.sealed},
                     {"quarantined", e->second.quarantined}, {"regions", e->second.nregions},
                     {"bytes", e->second.bytes},            {"ranks", ranks_text(ranks)}};
        if (e->second.quarantined) part["reason"] = e->second.reason;
        if (!e->second.sealed) part["ranks"] = std::to_string(e->second.part_ranks) + " (open)";
        if (e->second.sealed) bytes += e->second.bytes;
        row["parts"].push_back(std::move(part));
      }
      row["bytes_stored"] = bytes;  // over every server, every copy
      rows.push_back(std::move(row));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    json e = {{"server", fleet.addresses()[i]}};
    if (!lost[i].empty()) e["lost"] = lost[i];
    out["servers"].push_back(std::move(e));
  }
  for (auto& r : rows) out["versions"].push_back(std::move(r));
  if (as_json) {
    std::cout << out.dump(2) << "\n";
    return;
  }
  for (const auto& e : out["servers"])
    if (e.contains("lost"))
      std::printf("server %s does not answer: %s\n", e["server"].get<std::string>().c_str(),
                  e["lost"].get<std::string>().c_str());
  if (out["versions"].empty()) {
    std::printf("no checkpoints%s\n", job.empty() ? "" : (" for job " + job).c_str());
    return;
  }
  std::printf("%-24s %10s %-9s %6s %7s  %s\n", "JOB", "VERSION", "STATE", "RANKS", "COPIES", "PARTS (SERVER: RANKS)");
  for (const auto& r : out["versions"]) {
    std::string parts;
    for (const auto& p : r["parts"])
      parts += (parts.empty() ? "" : "  ") + p["server"].get<std::string>() + ": " +
               (p["quarantined"].get<bool>() ? "quarantined" : p["ranks"].get<std::string>());
    if (r["drained"].get<bool>()) parts += (parts.empty() ? "" : "  ") + std::string("drained");
    std::printf("%-24s %10" PRIu64 " %-9s %6u %3zu of %zu  %s\n", r["job"].get<std::string>().c_str(),
                r["version"].get<uint64_t>(), r["state"].get<std::string>().c_str(), r["ranks"].get<uint32_t>(),
                r["copies"].get<size_t>(), r["replicas"].get<size_t>(), parts.c_str());
  }
}

int cmd_repair(const std::vector<std::string>& servers, const std::string& job, unsigned replicas, bool as_json) {
  client::Fleet fleet(servers, options());
  const client::RepairReport r = client::repair(fleet, job, replicas, [&](const std::string& line) {
    if (!as_json) std::printf("%s\n", line.c_str());
  });
  uint64_t bytes = 0, sent = 0, regions = 0;
  for (const auto& p : r.parts) {
    bytes += p.bytes;
    sent += p.sent;
    regions += p.regions;
  }
  if (as_json) {
    json parts = json::array();
    for (const auto& p : r.parts)
      parts.push_back({{"version", p.version}, {"server", p.server}, {"ranks", p.ranks}, {"regions", p.regions},
                       {"bytes", p.bytes}, {"sent", p.sent}});
    std::cout << json{{"job", job},          {"replicas", replicas}, {"versions", r.versions}, {"healthy", r.healthy},
                      {"parts", parts},      {"regions", regions},   {"bytes", bytes},         {"sent", sent},
                      {"problems", r.problems}, {"skipped", r.skipped}}
                     .dump(2)
              << "\n";
  } else {
    std::printf("job %s: %u versions, %u had their %u copies; %zu parts written (%" PRIu64 " regions, %s, %s sent)\n",
                job.c_str(), r.versions, r.healthy, replicas, r.parts.size(), regions, format_size(bytes).c_str(),
                format_size(sent).c_str());
    for (const auto& p : r.skipped) std::printf("skipped %s\n", p.c_str());
    for (const auto& p : r.problems) std::fprintf(stderr, "pmcr: %s\n", p.c_str());
  }
  return r.problems.empty() ? 0 : 1;
}

}  // namespace pmcr::tools
