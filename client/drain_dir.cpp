#include "drain_dir.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "checksum.hpp"
#include "error.hpp"

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

std::vector<DrainedRegion> drained_regions(const std::string& dir, const std::string& job, uint64_t version,
                                           uint32_t rank) {
  std::vector<DrainedRegion> out;
  for (const auto& m : manifests(dir, job, version)) {
    try {
      for (const auto& g : m.at("regions"))
        if (g.at("rank").get<uint32_t>() == rank) {
          const auto id = g.at("id").get<uint32_t>();
          out.push_back(DrainedRegion{
              id, (fs::path(dir) / job / std::to_string(version) / std::to_string(rank) / std::to_string(id)).string(),
              g.at("size").get<uint64_t>(), g.at("checksum").get<uint64_t>(), g.at("block_size").get<uint64_t>()});
        }
    } catch (const std::exception&) {
    }
    if (!out.empty()) break;  // (copies of the same part name the same files)
  }
  return out;
}

std::optional<DrainedRegion> drained_region(const std::string& dir, const std::string& job, uint64_t version,
                                            uint32_t rank, uint32_t id) {
  for (const DrainedRegion& g : drained_regions(dir, job, version, rank))
    if (g.id == id) return g;
  return std::nullopt;
}

std::vector<uint8_t> read_drained(const DrainedRegion& g) {
  std::vector<uint8_t> bytes(g.size);
  std::ifstream in(g.path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(g.size)) || in.peek() != EOF)
    throw Error(PMCR_E_CORRUPT, g.path + " does not hold the " + std::to_string(g.size) +
                                    " bytes its manifest says: the drained copy is damaged");
  uint64_t actual = 0;
  if (g.block_size) {
    const auto h = block_hashes(bytes.data(), g.size, g.block_size);
    actual = combine_hashes(h.data(), h.size());
  } else {
    actual = checksum(bytes.data(), g.size);
  }
  if (actual != g.checksum)
    throw Error(PMCR_E_CHECKSUM, g.path + " does not match its checksum: the drained copy is damaged");
  return bytes;
}

}  // namespace pmcr::client
