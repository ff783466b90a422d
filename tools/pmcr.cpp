// pmcr: inspect, export, import and delete checkpoints on a pmserver.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "checksum.hpp"
#include "client.hpp"
#include "auth.hpp"
#include "encryption.hpp"
#include "error.hpp"
#include "files.hpp"
#include "servers_cmds.hpp"
#include "help_format.hpp"
#include "terminal.hpp"
#include "text.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using pmcr::Error;

namespace {

constexpr const char* kManifest = "pmcr-manifest.json";
constexpr const char* kFormat = "pmcr-export-1";

std::string default_server() {
  if (const char* env = std::getenv("PMCR_SERVERS"); env && *env) {
    std::string s(env);
    return s.substr(0, s.find(','));
  }
  return "127.0.0.1:" + std::to_string(pmcr::kDefaultPort);
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

uint64_t parse_hex64(const std::string& s, const std::string& what) {
  if (s.size() != 16 || s.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
    throw Error(PMCR_E_INVAL, what + ": checksum '" + s + "' is not 16 hex digits");
  return std::strtoull(s.c_str(), nullptr, 16);
}

// A file mapped for RMA straight to or from its page cache.
class MappedFile {
 public:
  MappedFile(const fs::path& path, uint64_t size, bool write) : path_(path), size_(size) {
    fd_ = ::open(path.c_str(), write ? (O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC), 0644);
    if (fd_ < 0) throw Error(PMCR_E_IO, "cannot open " + path.string() + ": " + std::strerror(errno));
    if (write && ::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      throw Error(PMCR_E_IO, "cannot size " + path.string() + ": " + std::strerror(errno));
    if (size == 0) return;
    addr_ = ::mmap(nullptr, size, write ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd_, 0);
    if (addr_ == MAP_FAILED) {
      addr_ = nullptr;
      throw Error(PMCR_E_IO, "cannot map " + path.string() + ": " + std::strerror(errno));
    }
  }
  ~MappedFile() {
    if (addr_) ::munmap(addr_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  void* data() const { return addr_ ? addr_ : const_cast<char*>(""); }
  void sync() const {
    if (addr_ && ::msync(addr_, size_, MS_SYNC) != 0)
      throw Error(PMCR_E_IO, "cannot write " + path_.string() + ": " + std::strerror(errno));
    if (::fsync(fd_) != 0) throw Error(PMCR_E_IO, "cannot sync " + path_.string() + ": " + std::strerror(errno));
  }

 private:
  fs::path path_;
  uint64_t size_;
  int fd_ = -1;
  void* addr_ = nullptr;
};

// PMCR_ENCRYPT=1 and PMCR_DATA_KEY_FILE, as the job had them: export and
// import then authenticate every region under the data key (the bytes stay
// encrypted on disk).
std::optional<pmcr::crypt::DataKey> data_key() {
  const char* on = std::getenv("PMCR_ENCRYPT");
  if (!on || std::string(on) == "0" || !*on) return std::nullopt;
  if (std::string(on) != "1") throw Error(PMCR_E_CONFIG, "PMCR_ENCRYPT = \"" + std::string(on) + "\" is invalid: expected 1 or 0");
  const char* file = std::getenv("PMCR_DATA_KEY_FILE");
  if (!file || !*file) throw Error(PMCR_E_CONFIG, "PMCR_ENCRYPT=1 needs PMCR_DATA_KEY_FILE, the job's data key");
  return pmcr::crypt::DataKey::load(file);
}

// Authenticates one stored region under KEY (a 0-byte region, a rank's
// marker, is never encrypted).
void authenticate(const pmcr::crypt::DataKey& key, const std::string& job, uint64_t version, uint32_t rank,
                  uint32_t id, const uint8_t* data, uint64_t size) {
  if (size == 0) return;
  const auto plain = pmcr::crypt::plain_size(size);
  std::vector<uint8_t> scratch(plain ? *plain : 0);
  pmcr::crypt::decrypt(key, {job, version, rank, id}, data, size, scratch.data());
  sodium_memzero(scratch.data(), scratch.size());
}

unsigned replicas_setting() {
  const char* env = std::getenv("PMCR_REPLICAS");
  if (!env || !*env) return 0;
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  if (*end || n < 1 || n > 1024) throw Error(PMCR_E_CONFIG, std::string("PMCR_REPLICAS=") + env + ": expected a number of copies >= 1");
  return static_cast<unsigned>(n);
}

pmcr::client::Client connect(const std::string& server) {
  pmcr::client::Options o;
  o.server = server;
  o.name = "pmcr-cli";
  o.credential = pmcr::client::Credential::from_environment();
  return pmcr::client::Client(o);
}

void cmd_stat(const std::string& server, bool as_json) {
  auto c = connect(server);
  const auto s = c.stat();
  json j = {{"server", c.address()},
            {"server_version", c.server_info().server_version},
            {"pool_path", s.pool_path},
            {"pool_size", s.pool_size},
            {"data_size", s.data_size},
            {"used", s.used_bytes},
            {"free", s.free_bytes},
            {"regions", s.regions},
            {"versions", s.versions},
            {"jobs", s.jobs},
            {"connections", s.connections},
            {"catalogue_slots", s.catalogue_slots},
            {"catalogue_used", s.catalogue_used},
            {"store_granularity", s.store_granularity},
            {"named_regions", s.named_regions},
            {"data_in", s.data_in},
            {"data_out", s.data_out},
            {"transport", c.transports()}};
  if (as_json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("server       %s (pmserver %s, over %s)\n", c.address().c_str(), c.server_info().server_version.c_str(),
              c.transports().c_str());
  std::printf("pool         %s, %s (%" PRIu64 "-byte store granularity)\n", s.pool_path.c_str(),
              pmcr::format_size(s.pool_size).c_str(), s.store_granularity);
  std::printf("data         %s used, %s free of %s\n", pmcr::format_size(s.used_bytes).c_str(),
              pmcr::format_size(s.free_bytes).c_str(), pmcr::format_size(s.data_size).c_str());
  std::printf("catalogue    %u regions, %u sealed versions, %u jobs (%u of %u records)\n", s.regions, s.versions,
              s.jobs, s.catalogue_used, s.catalogue_slots);
  std::printf("regions      %u named regions (region.h)\n", s.named_regions);
  std::printf("traffic      %s received, %s sent since the server started\n", pmcr::format_size(s.data_in).c_str(),
              pmcr::format_size(s.data_out).c_str());
  std::printf("connections  %u (this one included)\n", s.connections);
}

// pmcr stat --watch: the pool, the traffic, and per job what it sealed
// since the last refresh (its checkpoint throughput), every INTERVAL
// seconds, COUNT times (0: until interrupted). On a terminal the screen is
// redrawn in place; into a pipe or a file, one block per refresh; with
// --json, one JSON object per line.
void cmd_stat_watch(const std::string& server, bool as_json, double interval, unsigned count) {
  using Clock = std::chrono::steady_clock;
  auto c = connect(server);
  const bool tty = !as_json && pmcr::tools::is_terminal(STDOUT_FILENO);
  std::map<std::string, std::map<uint64_t, uint64_t>> before;  // job -> sealed version -> bytes, at the last refresh
  pmcr::proto::StatReply last{};
  Clock::time_point last_at{};
  for (unsigned n = 0; count == 0 || n < count; ++n) {
    if (n) std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    const auto at = Clock::now();
    const auto s = c.stat();
    std::map<std::string, std::map<uint64_t, uint64_t>> sealed;
    for (const auto& v : c.list_versions(""))
      if (v.sealed) sealed[v.job][v.version] = v.bytes;
    const double dt = n ? std::chrono::duration<double>(at - last_at).count() : 0;
    const auto rate = [&](uint64_t now, uint64_t then) {
      return dt > 0 && now >= then ? static_cast<double>(now - then) / dt : 0.0;
    };
    json jobs = json::array();
    for (const auto& [job, versions] : sealed) {
      uint64_t fresh = 0, fresh_bytes = 0;
      const auto old = before.find(job);
      for (const auto& [v, bytes] : versions)
        if (n && (old == before.end() || !old->second.count(v))) fresh++, fresh_bytes += bytes;
      jobs.push_back({{"job", job},
                      {"sealed_versions", versions.size()},
                      {"latest", versions.rbegin()->first},
                      {"sealed_since_last", fresh},
                      {"sealed_bytes_since_last", fresh_bytes},
                      {"bytes_per_s", dt > 0 ? static_cast<double>(fresh_bytes) / dt : 0.0}});
    }
    const double in = n ? rate(s.data_in, last.data_in) : 0, out = n ? rate(s.data_out, last.data_out) : 0;
    if (as_json) {
      std::cout << json{{"server", c.address()}, {"seconds", dt},       {"pool_size", s.pool_size},
                        {"data_size", s.data_size}, {"used", s.used_bytes}, {"free", s.free_bytes},
                        {"regions", s.regions},     {"versions", s.versions}, {"connections", s.connections},
                        {"in_bytes_per_s", in},     {"out_bytes_per_s", out}, {"jobs", jobs}}
                       .dump()
                << std::endl;
    } else {
      std::string text = tty ? "\x1b[H\x1b[2J" : (n ? "\n" : "");
      char line[512];
      const double used = s.data_size ? 100.0 * static_cast<double>(s.used_bytes) / static_cast<double>(s.data_size) : 0;
      std::snprintf(line, sizeof line, "pmserver %s (pmserver %s), every %.1f s\n", c.address().c_str(),
                    c.server_info().server_version.c_str(), interval);
      text += line;
      const int fill = static_cast<int>(used / 100 * 30);
      std::snprintf(line, sizeof line, "data        %s used (%.1f %%), %s free of %s  [%s%s]\n",
                    pmcr::format_size(s.used_bytes).c_str(), used, pmcr::format_size(s.free_bytes).c_str(),
                    pmcr::format_size(s.data_size).c_str(), std::string(static_cast<size_t>(fill), '#').c_str(),
                    std::string(static_cast<size_t>(30 - fill), ' ').c_str());
      text += line;
      std::snprintf(line, sizeof line, "traffic     %s/s in, %s/s out\n",
                    n ? pmcr::format_size(static_cast<uint64_t>(in)).c_str() : "-",
                    n ? pmcr::format_size(static_cast<uint64_t>(out)).c_str() : "-");
      text += line;
      std::snprintf(line, sizeof line, "catalogue   %u regions, %u sealed versions, %u jobs, %u connections\n\n",
                    s.regions, s.versions, s.jobs, s.connections);
      text += line;
      std::snprintf(line, sizeof line, "%-32s %8s %10s %6s %12s %14s\n", "job", "sealed", "latest", "new", "new bytes",
                    "throughput");
      text += line;
      for (const auto& j : jobs) {
        const std::string tput = n ? pmcr::format_size(static_cast<uint64_t>(j["bytes_per_s"].get<double>())) + "/s" : "-";
        std::snprintf(line, sizeof line, "%-32s %8zu %10" PRIu64 " %6" PRIu64 " %12s %14s\n",
                      j["job"].get<std::string>().c_str(), j["sealed_versions"].get<size_t>(),
                      j["latest"].get<uint64_t>(), j["sealed_since_last"].get<uint64_t>(),
                      pmcr::format_size(j["sealed_bytes_since_last"].get<uint64_t>()).c_str(), tput.c_str());
        text += line;
      }
      std::fputs(text.c_str(), stdout);
      std::fflush(stdout);
    }
    before = std::move(sealed);
    last = s;
    last_at = at;
  }
}

void cmd_ls(const std::string& server, const std::string& job, bool as_json) {
  auto c = connect(server);
  const auto versions = c.list_versions(job);
  if (as_json) {
    json arr = json::array();
    for (const auto& v : versions) {
      json e = {{"job", v.job},         {"version", v.version}, {"sealed", v.sealed}, {"ranks", v.nranks},
                {"regions", v.nregions}, {"bytes", v.bytes},     {"quarantined", v.quarantined}};
      if (v.quarantined) e["reason"] = v.reason;
      arr.push_back(std::move(e));
    }
    std::cout << json{{"versions", arr}}.dump(2) << "\n";
    return;
  }
  if (versions.empty()) {
    std::printf("no checkpoints%s\n", job.empty() ? "" : (" for job " + job).c_str());
    return;
  }
  std::printf("%-24s %10s %-11s %6s %8s %12s\n", "JOB", "VERSION", "STATE", "RANKS", "REGIONS", "BYTES");
  for (const auto& v : versions) {
    std::printf("%-24s %10" PRIu64 " %-11s %6u %8u %12s\n", v.job.c_str(), v.version,
                v.quarantined ? "quarantined" : v.sealed ? "sealed" : "open", v.nranks, v.nregions,
                pmcr::format_size(v.bytes).c_str());
    if (v.quarantined) std::printf("    quarantined: %s\n", v.reason.c_str());
  }
}

// A region exported before in the same pass: a later version's region
// takes the blocks it shares with it from this file instead of the wire.
struct Exported {
  fs::path path;
  uint64_t size = 0, block_size = 0;
  std::vector<uint64_t> hashes;
};

struct VersionExport {
  json regions = json::array();
  uint64_t bytes = 0, fetched = 0;
};

// Writes every region of sealed version VERSION into DIR (DIR/<rank>/<id>
// and a manifest), each verified against its checksum. With PREVIOUS, the
// regions of an earlier version exported in this pass: blocks they share
// (same hash at the same place) are copied from there, not fetched.
// Where a transfer of many regions stands: BAR shows BASE (the bytes of
// the regions done) plus the current region's.
struct Progress {
  pmcr::tools::ProgressBar& bar;
  uint64_t base = 0;
};

// The progress bar of an export or an import of TOTAL bytes: on stderr,
// when it is a terminal and the output is not JSON.
pmcr::tools::ProgressBar progress_bar(const std::string& what, uint64_t total, bool as_json) {
  return pmcr::tools::ProgressBar(what, total, stderr, !as_json && pmcr::tools::is_terminal(STDERR_FILENO),
                                  pmcr::tools::terminal_width(STDERR_FILENO));
}

// C's transfers report to FN while this lives (FN's captures must outlive it).
struct TransferReports {
  TransferReports(pmcr::client::Client& c, std::function<void(uint64_t)> fn) : c(c) { c.on_transfer(std::move(fn)); }
  ~TransferReports() { c.on_transfer(nullptr); }
  TransferReports(const TransferReports&) = delete;
  TransferReports& operator=(const TransferReports&) = delete;
  pmcr::client::Client& c;
};

VersionExport export_version(pmcr::client::Client& c, const std::string& job, uint64_t version, const fs::path& dir,
                             const std::optional<pmcr::crypt::DataKey>& key,
                             std::map<std::pair<uint32_t, uint32_t>, Exported>& previous, Progress& progress) {
  const auto listing = c.list_regions(job, version);
  if (!listing.sealed)
    throw Error(PMCR_E_INCOMPLETE, "version " + std::to_string(version) + " of job '" + job +
                                       "' is not sealed (open or quarantined); only sealed versions can be exported");
  const TransferReports reports(c, [&](uint64_t n) { progress.bar.set(progress.base + n); });
  VersionExport out;
  uint32_t nranks = 0;
  std::map<std::pair<uint32_t, uint32_t>, Exported> mine;
  for (const auto& r : listing.regions) {
    const fs::path rank_dir = dir / std::to_string(r.rank);
    fs::create_directories(rank_dir);
    const auto src = c.open(job, version, r.rank, r.id);
    const fs::path path = rank_dir / std::to_string(r.id);
    uint64_t sum = 0;
    {
      MappedFile file(path, src.size, true);
      auto prev = previous.find({r.rank, r.id});
      const bool shared = prev != previous.end() && src.block_size && prev->second.block_size == src.block_size &&
                          prev->second.size == src.size && prev->second.hashes.size() == src.hashes.size() &&
                          !src.hashes.empty();
      if (shared) {
        MappedFile from(prev->second.path, src.size, false);
        std::vector<uint64_t> fetch;
        for (uint64_t i = 0; i < src.hashes.size(); ++i) {
          const uint64_t at = i * src.block_size, n = std::min(src.block_size, src.size - at);
          if (src.hashes[i] == prev->second.hashes[i])
            std::memcpy(static_cast<uint8_t*>(file.data()) + at, static_cast<const uint8_t*>(from.data()) + at, n);
          else
            fetch.push_back(i), out.fetched += n;
        }
        c.get_blocks(src, file.data(), fetch);  // verifies the whole against its checksum
      } else {
        c.get(src, file.data());  // verifies the checksum
        out.fetched += src.size;
      }
      if (key) authenticate(*key, job, version, r.rank, r.id, static_cast<const uint8_t*>(file.data()), src.size);
      file.sync();
      // The manifest's checksum is of the file (a region kept in blocks has
      // its checksum over its blocks' hashes instead: verified above).
      sum = src.block_size ? pmcr::checksum(file.data(), src.size) : src.checksum;
    }
    c.close(src);
    progress.base += src.size;
    progress.bar.set(progress.base);
    mine[{r.rank, r.id}] = Exported{path, src.size, src.block_size, src.hashes};
    out.regions.push_back({{"rank", r.rank}, {"id", r.id}, {"size", src.size}, {"xxh3_64", hex64(sum)}});
    out.bytes += src.size;
    nranks = std::max(nranks, r.rank + 1);
  }
  previous = std::move(mine);
  json manifest = {{"format", kFormat}, {"job", job},         {"version", version},
                   {"ranks", nranks},   {"bytes", out.bytes}, {"regions", out.regions}};
  if (key) manifest["encrypted"] = {{"key_id", key->id_text()}};
  const std::string text = manifest.dump(2) + "\n";
  MappedFile m(dir / kManifest, text.size(), true);
  std::memcpy(m.data(), text.data(), text.size());
  m.sync();  // durable before the rename makes it visible
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_directory()) pmcr::sync_directory(entry.path());
  pmcr::sync_directory(dir);
  return out;
}

// An export is written into a temporary directory beside DIR and renamed
// to DIR only once every region verified against its checksum: DIR either
// does not appear, or holds the whole export. One version goes to
// DIR/<rank>/<id>; several (--versions) to DIR/<version>/<rank>/<id>, in one
// pass in which each block they share crosses the network once.
void cmd_export(const std::string& server, const std::string& job, std::vector<uint64_t> versions,
                const fs::path& dir_arg, bool as_json) {
  const fs::path dir = fs::absolute(dir_arg).lexically_normal();
  std::error_code ec;
  if (fs::exists(dir, ec) && !(fs::is_directory(dir, ec) && fs::is_empty(dir, ec)))
    throw Error(PMCR_E_EXISTS, dir.string() + " exists and is not an empty directory; export writes a new directory "
                               "(remove it, or choose another)");
  const auto key = data_key();
  auto c = connect(server);
  const bool several = versions.size() > 1;
  if (versions.empty()) {
    const auto latest = c.latest_sealed(job);
    if (!latest) throw Error(PMCR_E_NOT_FOUND, "job '" + job + "' has no sealed version on " + c.address());
    versions.push_back(*latest);
  }
  std::sort(versions.begin(), versions.end());
  if (std::adjacent_find(versions.begin(), versions.end()) != versions.end())
    throw Error(PMCR_E_INVAL, "--versions names a version twice");
  fs::create_directories(dir.parent_path());
  std::string tmpl = (dir.parent_path() / ("." + dir.filename().string() + ".partial-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) throw Error(PMCR_E_IO, "cannot create a directory beside " + dir.string() + ": " + std::strerror(errno));
  const fs::path tmp = tmpl;
  json done = json::array();
  uint64_t bytes = 0, fetched = 0;
  try {
    // A progress bar on a terminal (stderr), over every region of every version.
    uint64_t total = 0;
    for (uint64_t v : versions)
      for (const auto& r : c.list_regions(job, v).regions) total += r.size;
    auto bar = progress_bar("export " + job, total, as_json);
    Progress progress{bar};
    std::map<std::pair<uint32_t, uint32_t>, Exported> previous;
    for (uint64_t v : versions) {
      const fs::path vdir = several ? tmp / std::to_string(v) : tmp;
      fs::create_directories(vdir);
      const VersionExport e = export_version(c, job, v, vdir, key, previous, progress);
      done.push_back({{"version", v}, {"regions", e.regions.size()}, {"bytes", e.bytes}, {"fetched", e.fetched}});
      bytes += e.bytes;
      fetched += e.fetched;
    }
    bar.finish();
    pmcr::sync_directory(tmp);
    if (::rename(tmp.c_str(), dir.c_str()) != 0)
      throw Error(PMCR_E_IO, "cannot rename " + tmp.string() + " to " + dir.string() + ": " + std::strerror(errno));
    pmcr::sync_directory(dir.parent_path());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  if (as_json) {
    json j = {{"job", job}, {"bytes", bytes}, {"fetched", fetched}, {"directory", dir.string()}};
    if (several) {
      j["versions"] = done;
    } else {
      j["version"] = versions[0];
      j["regions"] = done[0]["regions"];
    }
    std::cout << j.dump(2) << "\n";
    return;
  }
  for (const auto& d : done)
    std::printf("exported version %" PRIu64 " of job %s: %s regions, %s\n", d["version"].get<uint64_t>(), job.c_str(),
                d["regions"].dump().c_str(), pmcr::format_size(d["bytes"].get<uint64_t>()).c_str());
  std::printf("to %s (%s fetched from pmserver)\n", dir.c_str(), pmcr::format_size(fetched).c_str());
}

struct ImportItem {
  uint32_t rank, id;
  uint64_t size;
  std::optional<uint64_t> checksum;
};

uint32_t parse_u32(const std::string& s, const std::string& what) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos ||
      std::stoull(s) > UINT32_MAX)
    throw Error(PMCR_E_INVAL, what + " '" + s + "' is not a number (expected DIR/<rank>/<id>)");
  return static_cast<uint32_t>(std::stoul(s));
}

void cmd_import(const std::string& server, const std::string& job, uint64_t version, const fs::path& dir,
                bool as_json) {
  pmcr::check_job_name(job);
  if (!fs::is_directory(dir)) throw Error(PMCR_E_NOT_FOUND, "import directory " + dir.string() + " does not exist");
  std::vector<ImportItem> items;
  uint32_t nranks = 0;
  const fs::path manifest_path = dir / kManifest;
  if (fs::exists(manifest_path)) {
    json m;
    try {
      std::ifstream in(manifest_path);
      m = json::parse(in);
      if (m.value("format", "") != kFormat)
        throw Error(PMCR_E_INVAL, manifest_path.string() + " is not a " + kFormat + " manifest");
      for (const auto& r : m.at("regions")) {
        const std::string where = manifest_path.string() + " region";
        items.push_back({r.at("rank").get<uint32_t>(), r.at("id").get<uint32_t>(), r.at("size").get<uint64_t>(),
                         parse_hex64(r.at("xxh3_64").get<std::string>(), where)});
      }
      nranks = m.at("ranks").get<uint32_t>();
    } catch (const json::exception& e) {
      throw Error(PMCR_E_INVAL, "cannot read " + manifest_path.string() + ": " + e.what());
    }
  } else {
    for (const auto& rank_dir : fs::directory_iterator(dir)) {
      if (!rank_dir.is_directory()) continue;
      const uint32_t rank = parse_u32(rank_dir.path().filename().string(), "rank directory");
      for (const auto& f : fs::directory_iterator(rank_dir.path())) {
        if (!f.is_regular_file()) continue;
        items.push_back({rank, parse_u32(f.path().filename().string(), "region file"), f.file_size(), std::nullopt});
      }
      nranks = std::max(nranks, rank + 1);
    }
  }
  if (items.empty()) throw Error(PMCR_E_NOT_FOUND, "no regions to import in " + dir.string() + " (expected DIR/<rank>/<id>)");

  const auto key = data_key();
  auto c = connect(server);
  // An import is an attempt of the job of its own: it supersedes any earlier
  // writer of the job (a stalled import, a dead run), whose unsealed regions
  // the server drops.
  c.begin(job);
  uint64_t bytes = 0, total = 0;
  for (const auto& it : items) total += it.size;
  auto bar = progress_bar("import " + job, total, as_json);
  const TransferReports reports(c, [&](uint64_t n) { bar.set(bytes + n); });
  for (const auto& it : items) {
    const fs::path file = dir / std::to_string(it.rank) / std::to_string(it.id);
    std::error_code ec;
    const uint64_t size = fs::file_size(file, ec);
    if (ec) throw Error(PMCR_E_NOT_FOUND, "cannot read " + file.string() + ": " + ec.message());
    if (size != it.size)
      throw Error(PMCR_E_SIZE, file.string() + " has " + std::to_string(size) + " bytes; the manifest says " +
                                   std::to_string(it.size));
    MappedFile in(file, size, false);
    const uint64_t sum = pmcr::checksum(in.data(), size);
    if (it.checksum && *it.checksum != sum)
      throw Error(PMCR_E_CHECKSUM, file.string() + " does not match the checksum in the manifest (file " + hex64(sum) +
                                       ", manifest " + hex64(*it.checksum) + "); nothing was sealed");
    if (key) authenticate(*key, job, version, it.rank, it.id, static_cast<const uint8_t*>(in.data()), size);
    const auto t = c.create(job, version, it.rank, it.id, size);
    c.put(t, in.data());
    c.commit(t, sum);
    bytes += size;
    bar.set(bytes);
  }
  c.seal(job, version, nranks, static_cast<uint32_t>(items.size()));
  bar.finish();
  if (as_json) {
    std::cout << json{{"job", job}, {"version", version}, {"ranks", nranks}, {"regions", items.size()},
                      {"bytes", bytes}, {"sealed", true}}.dump(2) << "\n";
  } else {
    std::printf("imported and sealed version %" PRIu64 " of job %s: %u ranks, %zu regions, %s\n", version,
                job.c_str(), nranks, items.size(), pmcr::format_size(bytes).c_str());
  }
}

void cmd_rm(const std::string& server, const std::string& job, std::optional<uint64_t> version, bool as_json) {
  auto c = connect(server);
  const auto r = c.remove(job, version);
  if (as_json) {
    std::cout << json{{"job", job}, {"versions", r.versions}, {"regions", r.regions}}.dump(2) << "\n";
  } else {
    std::printf("deleted %u versions (%u regions) of job %s\n", r.versions, r.regions, job.c_str());
  }
}

// Where JOB stands (its current attempt and whether it runs), then its
// events as they come: attempts begun, versions sealed, attempts failed or
// ended (what a standby follows). Stops after COUNT events (0: never) or
// SECONDS without one (0: never).
void cmd_watch(const std::string& server, const std::string& job, unsigned count, double seconds, bool as_json) {
  auto c = connect(server);
  const auto w = c.watch(job, 0);
  const auto line = [&](const json& j, const std::string& text) {
    if (as_json) std::cout << j.dump() << std::endl;
    else std::cout << text << std::endl;
  };
  line(json{{"job", job}, {"attempt", w.attempt}, {"instance", w.instance}, {"life", pmcr::proto::life_name(w.life)},
            {"reason", w.reason}, {"sealed", w.has_sealed ? json(w.sealed) : json(nullptr)}},
       "job " + job + ": " + (w.attempt ? "attempt " + std::to_string(w.attempt) + " " + pmcr::proto::life_name(w.life) +
                                              (w.reason.empty() ? "" : " (" + w.reason + ")")
                                        : std::string("no attempt since the server started")) +
           (w.has_sealed ? ", newest sealed version " + std::to_string(w.sealed) : ", no sealed version"));
  const auto limit = seconds > 0 ? std::chrono::milliseconds(static_cast<long long>(seconds * 1000))
                                 : std::chrono::milliseconds(std::chrono::hours(24 * 365));
  for (unsigned n = 0; count == 0 || n < count; ++n) {
    const auto ev = c.next_event(limit);
    if (!ev) break;
    std::string text = std::string(pmcr::proto::event_name(ev->kind)) + ": attempt " + std::to_string(ev->attempt);
    if (ev->kind == pmcr::proto::EventKind::Sealed) text = "sealed: version " + std::to_string(ev->version) + " (" +
                                                           std::to_string(ev->nranks) + " ranks)";
    if (ev->kind == pmcr::proto::EventKind::Begun && ev->takeover) text += " (a standby took over)";
    if (!ev->reason.empty()) text += ": " + ev->reason;
    line(json{{"event", pmcr::proto::event_name(ev->kind)}, {"attempt", ev->attempt}, {"instance", ev->instance},
              {"takeover", ev->takeover}, {"version", ev->version}, {"ranks", ev->nranks}, {"reason", ev->reason}},
         text);
  }
}

void cmd_keygen(const std::string& file, bool as_json) {
  pmcr::auth::write_key_file(file, pmcr::auth::Key::generate());
  if (as_json) std::cout << json{{"key_file", file}, {"mode", "0600"}}.dump(2) << "\n";
  else std::printf("wrote a new key to %s (mode 0600): give it to pmserver (--key-file) and to the jobs (PMCR_KEY_FILE)\n", file.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pmcr: inspect, export, import and delete checkpoints on a pmserver"};
  app.formatter(std::make_shared<pmcr::tools::ManFormatter>());  // (before the subcommands: they share it)
  app.require_subcommand(1);
  std::string server = default_server();
  bool as_json = false;
  auto* server_opt = app.add_option("--server", server, "pmserver HOST:PORT (default: first entry of PMCR_SERVERS)")
                         ->capture_default_str();
  std::string servers = std::getenv("PMCR_SERVERS") ? std::getenv("PMCR_SERVERS") : "";
  auto* servers_opt = app.add_option("--servers", servers,
                                     "several pmservers, HOST:PORT,... (default: PMCR_SERVERS): stat and ls show each "
                                     "one and where each version's copies are");
  server_opt->excludes(servers_opt);
  unsigned replicas = 0;
  const auto add_json = [&](CLI::App* cmd) { cmd->add_flag("--json", as_json, "print JSON"); };

  auto* stat = app.add_subcommand("stat", "pool size, use, regions, jobs and connections");
  add_json(stat);
  bool watch_stat = false;
  double interval = 1.0;
  unsigned refreshes = 0;
  auto* watch_opt = stat->add_flag("--watch", watch_stat,
                 "refresh every --interval: pool use, traffic, and each job's checkpoint throughput (what it sealed "
                 "since the last refresh); redrawn in place on a terminal, one block (or JSON line) per refresh "
                 "otherwise");
  stat->add_option("--interval", interval, "seconds between refreshes with --watch")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0))
      ->needs(watch_opt);
  stat->add_option("--count", refreshes, "with --watch: stop after this many refreshes (0: until interrupted)")
      ->capture_default_str()
      ->needs(watch_opt);

  std::string job;
  auto* ls = app.add_subcommand("ls", "list jobs and their versions");
  ls->add_option("--job", job, "only this job");
  ls->add_option("--replicas", replicas, "with several servers: the copies each version should have "
                                         "(default: PMCR_REPLICAS, else the most any rank has)");
  std::string drain = std::getenv("PMCR_DRAIN") ? std::getenv("PMCR_DRAIN") : "";
  ls->add_option("--drain", drain, "with --servers: the servers' --drain directory, to show the drained versions too "
                                   "(default: PMCR_DRAIN)");
  add_json(ls);

  auto* rep = app.add_subcommand("repair", "bring every version of a job back to its copies on a list of servers "
                                           "(after a server was lost, or came back empty)");
  rep->add_option("--job", job, "job name")->required();
  rep->add_option("--replicas", replicas, "copies of each rank's data (default: PMCR_REPLICAS)");
  add_json(rep);

  uint64_t version = 0;
  std::string dir;
  auto* exp = app.add_subcommand("export", "write a sealed version to DIR/<rank>/<id> with a manifest");
  exp->add_option("--job", job, "job name")->required();
  auto* exp_version = exp->add_option("--version", version, "version (default: the latest sealed one)");
  std::vector<uint64_t> versions;
  auto* exp_versions = exp->add_option("--versions", versions,
                                       "several versions in one pass, to DIR/<version>/ (blocks they share fetched once)")
                           ->delimiter(',')
                           ->allow_extra_args(false);  // one argument, "3,4,5": DIR follows
  exp_version->excludes(exp_versions);
  exp->add_option("dir", dir, "directory to write")->required();
  add_json(exp);

  auto* imp = app.add_subcommand("import", "write DIR/<rank>/<id> as a version and seal it");
  imp->add_option("--job", job, "job name")->required();
  imp->add_option("--version", version, "version to create")->required();
  imp->add_option("dir", dir, "directory to read")->required();
  add_json(imp);

  auto* rm = app.add_subcommand("rm", "delete one version, or every version of a job");
  rm->add_option("--job", job, "job name")->required();
  auto* rm_version = rm->add_option("--version", version, "version (default: all versions of the job)");
  add_json(rm);

  unsigned count = 0;
  double seconds = 0;
  auto* watch = app.add_subcommand("watch", "show where a job stands, then its attempts, seals and failures as they happen");
  watch->add_option("--job", job, "job name")->required();
  watch->add_option("--count", count, "stop after this many events (0: never)")->capture_default_str();
  watch->add_option("--timeout", seconds, "stop after this many seconds without an event (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e7));
  add_json(watch);

  std::string key_file;
  auto* keygen = app.add_subcommand("keygen", "write a new random key to FILE (mode 0600; never over an existing file)");
  keygen->add_option("file", key_file, "file to create")->required();
  add_json(keygen);

  for (auto* sub : {stat, ls, exp, imp, rm, watch}) {
    auto* one = sub->add_option("--server", server, "pmserver HOST:PORT");
    if (sub == stat || sub == ls) one->excludes(sub->add_option("--servers", servers, "pmservers HOST:PORT,..."));
  }
  rep->add_option("--servers", servers, "pmservers HOST:PORT,... (default: PMCR_SERVERS)");

  app.set_help_all_flag("--help-all", "print the help of every command");
  app.get_formatter()->column_width(40);  // (help2man makes pmcr(1) from --help-all)
  app.footer("Errors go to stderr, with a non-zero exit code (1 when a command fails). The job's data key (PMCR_ENCRYPT=1, PMCR_DATA_KEY_FILE) "
             "authenticates what export and import move; the files stay encrypted. See pmcr-run(1), pmserver(8), "
             "pmcr(3).");
  CLI11_PARSE(app, argc, argv);
  try {
    // Several servers: given with --servers, or PMCR_SERVERS lists several
    // and no --server picks one.
    bool one = false;
    for (const auto* o : {server_opt, stat->get_option("--server"), ls->get_option("--server")}) one = one || o->count();
    const std::vector<std::string> list = servers.empty() ? std::vector<std::string>{server} : pmcr::parse_server_list(servers);
    const bool several = !one && list.size() > 1;
    if (!replicas) replicas = replicas_setting();
    if (rep->parsed()) {
      if (!replicas)
        throw Error(PMCR_E_INVAL, "repair: how many copies? Give --replicas R (or set PMCR_REPLICAS as the job has it)");
      return pmcr::tools::cmd_repair(list, job, replicas, as_json);
    }
    if (stat->parsed() && watch_stat) {
      if (several) throw Error(PMCR_E_INVAL, "stat --watch watches one server: give --server HOST:PORT");
      cmd_stat_watch(server, as_json, interval, refreshes);
    } else if (stat->parsed() && several) pmcr::tools::cmd_stat_servers(list, as_json);
    else if (ls->parsed() && (several || ls->get_option("--drain")->count()))
      pmcr::tools::cmd_ls_servers(list, job, replicas, drain, as_json);
    else if (stat->parsed()) cmd_stat(server, as_json);
    else if (ls->parsed()) cmd_ls(server, job, as_json);
    else if (exp->parsed())
      cmd_export(server, job, exp_version->count() ? std::vector<uint64_t>{version} : versions, dir, as_json);
    else if (imp->parsed()) cmd_import(server, job, version, dir, as_json);
    else if (keygen->parsed()) cmd_keygen(key_file, as_json);
    else if (watch->parsed()) cmd_watch(server, job, count, seconds, as_json);
    else if (rm->parsed()) cmd_rm(server, job, rm_version->count() ? std::optional(version) : std::nullopt, as_json);
  } catch (const Error& e) {
    std::fprintf(stderr, "pmcr: %s (%s)\n", e.what(), pmcr::error_name(e.code()));
    return 1;
  } catch (const fs::filesystem_error& e) {
    std::fprintf(stderr, "pmcr: %s\n", e.what());
    return 1;
  }
  return 0;
}
