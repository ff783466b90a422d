#include "drainer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <utility>

#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "files.hpp"

namespace pmcr::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw Error(PMCR_E_IO, what + " " + path + ": " + std::strerror(errno));
}

// Writes PIECES (in order) to PATH through PATH.tmp: written, fsynced,
// renamed. PACE(n) is called after every n bytes (the rate limit).
template <class Pace>
void write_durably(const std::string& path, const std::vector<std::pair<const uint8_t*, uint64_t>>& pieces,
                   Pace&& pace) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_error("cannot create", tmp);
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close{fd};
  constexpr uint64_t kStep = 4u << 20;
  for (const auto& [p, n] : pieces)
    for (uint64_t off = 0; off < n;) {
      const uint64_t want = std::min(kStep, n - off);
      const ssize_t w = ::write(fd, p + off, want);
      if (w < 0) {
        if (errno == EINTR) continue;
        io_error("cannot write", tmp);
      }
      off += static_cast<uint64_t>(w);
      pace(static_cast<uint64_t>(w));
    }
  if (::fsync(fd) != 0) io_error("cannot fsync", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) io_error("cannot rename to", path);
}

// The checksum a region's bytes must have: over every byte, or over its
// blocks' hashes (a region kept in blocks).
uint64_t stored_checksum(const Drainer::Region& r) {
  std::vector<uint8_t> whole;
  const uint8_t* data = nullptr;
  if (r.pieces.size() == 1) {
    data = r.pieces.front().first;
  } else {
    whole.reserve(r.size);
    for (const auto& [p, n] : r.pieces) whole.insert(whole.end(), p, p + n);
    data = whole.data();
  }
  if (!r.block_size) return checksum(data, r.size);
  const auto h = block_hashes(data, r.size, r.block_size);
  return combine_hashes(h.data(), h.size());
}

}  // namespace

Drainer::Drainer(std::string dir, uint64_t rate)
    : dir_(std::move(dir)), rate_(rate), worker_(1, [this](Job& job) { return drain(job); }) {
  if (!fs::is_directory(dir_))
    throw Error(PMCR_E_CONFIG, "--drain " + dir_ + " is not a directory: create it (on the parallel file system)");
}

std::string Drainer::manifest_name(const std::set<uint32_t>& ranks, uint32_t nranks) {
  if (ranks.size() == nranks) return "pmcr-manifest.json";
  std::string list;
  for (uint32_t r : ranks) list += std::to_string(r) + ",";
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(checksum(list.data(), list.size())));
  return "pmcr-manifest.part-" + std::string(hex) + ".json";
}

Drainer::Result Drainer::drain(const Job& job) {
  Result res;
  res.job = job.job;
  res.version = job.version;
  for (const auto& g : job.regions) res.handles.push_back(g.handle);
  try {
    std::set<uint32_t> ranks;
    for (const auto& g : job.regions) ranks.insert(g.rank);
    const fs::path vdir = fs::path(dir_) / job.job / std::to_string(job.version);
    const fs::path manifest = vdir / manifest_name(ranks, job.nranks);
    if (fs::exists(manifest)) {  // drained before (this server, or another with the same ranks)
      res.drained = true;
      return res;
    }
    fs::create_directories(vdir);
    using Clock = std::chrono::steady_clock;
    auto allowed = Clock::now();
    const auto pace = [&](uint64_t n) {
      if (!rate_) return;
      allowed += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(n) / double(rate_)));
      std::this_thread::sleep_until(allowed);
      if (worker_.stopping()) throw Error(PMCR_E_STATE, "pmserver is stopping");
    };
    json regions = json::array();
    std::set<std::string> rank_dirs;
    for (const auto& g : job.regions) {
      // Never drain damaged data as good.
      if (stored_checksum(g) != g.checksum)
        throw Error(PMCR_E_CORRUPT, "region rank " + std::to_string(g.rank) + " id " + std::to_string(g.id) +
                                        " does not match its checksum: not drained");
      const fs::path rdir = vdir / std::to_string(g.rank);
      fs::create_directories(rdir);
      rank_dirs.insert(rdir.string());
      write_durably((rdir / std::to_string(g.id)).string(), g.pieces, pace);
      PMCR_FAULT_POINT("drain.region");
      res.bytes += g.size;
      regions.push_back({{"rank", g.rank}, {"id", g.id}, {"size", g.size}, {"checksum", g.checksum},
                         {"block_size", g.block_size}});
    }
    for (const auto& d : rank_dirs) sync_directory(d);
    sync_directory(vdir.string());
    const std::string text = json{{"format", "pmcr-drain-1"},
                                  {"job", job.job},
                                  {"version", job.version},
                                  {"ranks", job.nranks},
                                  {"part_ranks", std::vector<uint32_t>(ranks.begin(), ranks.end())},
                                  {"regions", regions}}
                                 .dump(1);
    write_durably(manifest.string(), {{reinterpret_cast<const uint8_t*>(text.data()), text.size()}}, [](uint64_t) {});
    sync_directory(vdir.string());
    res.drained = true;
  } catch (const std::exception& e) {
    res.error = e.what();
  }
  return res;
}

}  // namespace pmcr::server
