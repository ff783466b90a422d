#include "drain_dir.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

namespace pmcr::client {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Every manifest of VERSION of JOB in DIR (unreadable ones skipped: one
// being written, or damaged, is not a drained part).
std::vector<json> manifests(const std::string& dir, const std::string& job, uint64_t version) {
  std::vector<json> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / job / std::to_string(version), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("pmcr-manifest", 0) != 0 || e.path().extension() != ".json") continue;
    try {
      std::ifstream in(e.path());
      json m = json::parse(in);
      if (m.value("format", "") == "pmcr-drain-1" && m.value("job", "") == job && m.value("version", 0ull) == version)
        out.push_back(std::move(m));
    } catch (const std::exception&) {
    }
  }
  return out;
}

}  // namespace

std::map<uint64_t, uint32_t> drained_versions(const std::string& dir, const std::string& job) {
  std::map<uint64_t, uint32_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / job, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.size() > 19 || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const uint64_t v = std::stoull(name);
    std::map<uint32_t, std::set<uint32_t>> covered;  // by rank count
    try {
      for (const auto& m : manifests(dir, job, v))
        for (uint32_t r : m.at("part_ranks").get<std::vector<uint32_t>>()) covered[m.at("ranks").get<uint32_t>()].insert(r);
    } catch (const std::exception&) {
      continue;
    }
    for (const auto& [nranks, ranks] : covered)
      if (nranks && ranks.size() == nranks && *ranks.rbegin() < nranks) out[v] = nranks;
  }
  return out;
}

std::optional<DrainedRegion> drained_region(const std::string& dir, const std::string& job, uint64_t version,
                                            uint32_t rank, uint32_t id) {
  for (const auto& m : manifests(dir, job, version)) {
    try {
      for (const auto& g : m.at("regions"))
        if (g.at("rank").get<uint32_t>() == rank && g.at("id").get<uint32_t>() == id)
          return DrainedRegion{(fs::path(dir) / job / std::to_string(version) / std::to_string(rank) / std::to_string(id)).string(),
                               g.at("size").get<uint64_t>(), g.at("checksum").get<uint64_t>(),
                               g.at("block_size").get<uint64_t>()};
    } catch (const std::exception&) {
    }
  }
  return std::nullopt;
}

}  // namespace pmcr::client
