// Crash consistency, tested rather than assumed: pmserver is killed with
// SIGKILL at every fault point of create/commit/seal/delete/reclaim that a
// workload passes (each hit in turn), restarted on the same pool, and checked:
// every version whose seal was acknowledged (and not deleted) reads back
// bit-identical, nothing unsealed or half-deleted is visible, and the space
// accounting matches exactly what is visible.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "error.hpp"
#include "process.hpp"
#include "server_process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pmcr::test::pattern;
using pmcr::test::ServerProcess;
using pmcr::test::TempPath;

namespace {

const std::string kJob = "crash";
struct RegionSpec {
  uint32_t rank, id;
  size_t size;
};
const std::vector<RegionSpec> kRegions = {{0, 0, 0}, {0, 1, 5000}, {1, 0, 70000}};

std::vector<uint8_t> expected(uint64_t version, const RegionSpec& r) {
  return pattern(r.size, version * 100 + r.rank * 10 + r.id);
}

struct Observed {
  std::set<uint64_t> seal_sent, seal_acked, delete_sent, delete_acked;
};

void write_version(pmcr::client::Client& c, uint64_t v, Observed& o) {
  for (const auto& r : kRegions) c.write_region(kJob, v, r.rank, r.id, expected(v, r).data(), r.size);
  o.seal_sent.insert(v);
  c.seal(kJob, v, 2, static_cast<uint32_t>(kRegions.size()));
  o.seal_acked.insert(v);
}

// The workload: seal v1 and v2, delete v1, let a writer of v3 vanish before
// sealing (reclaim), seal v4. Stops at the first error (the server died).
void workload(ServerProcess& s, Observed& o) {
  try {
    auto c = s.connect(10s);
    const uint64_t attempt = c.begin(kJob);
    write_version(c, 1, o);
    write_version(c, 2, o);
    o.delete_sent.insert(1);
    c.remove(kJob, 1);
    o.delete_acked.insert(1);
    {
      auto d = s.connect(10s);
      d.join(kJob, attempt);
      d.write_region(kJob, 3, 0, 0, expected(3, kRegions[1]).data(), kRegions[1].size);
    }  // disconnects: the server reclaims v3's region
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (c.stat().regions != kRegions.size() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    write_version(c, 4, o);
  } catch (const pmcr::Error&) {
  }
}

void verify(ServerProcess& s, const Observed& o, const std::string& where) {
  SCOPED_TRACE(where);
  auto c = s.connect(10s);
  const auto versions = c.list_versions("");
  std::set<uint64_t> visible;
  for (const auto& v : versions) {
    EXPECT_EQ(v.job, kJob);
    EXPECT_TRUE(v.sealed) << "unsealed version " << v.version << " visible after restart";
    EXPECT_TRUE(o.seal_sent.count(v.version)) << "version " << v.version << " was never sealed";
    EXPECT_FALSE(o.delete_acked.count(v.version)) << "deleted version " << v.version << " came back";
    EXPECT_EQ(v.nregions, kRegions.size());
    visible.insert(v.version);
    for (const auto& r : kRegions) {
      const auto src = c.open(kJob, v.version, r.rank, r.id);
      std::vector<uint8_t> got(src.size);
      c.get(src, got.data());
      c.close(src);
      EXPECT_EQ(got, expected(v.version, r)) << "version " << v.version << " rank " << r.rank << " id " << r.id;
    }
  }
  for (uint64_t v : o.seal_acked) {
    if (!o.delete_sent.count(v)) {
      EXPECT_TRUE(visible.count(v)) << "acknowledged version " << v << " lost";
    }
  }
  const auto st = c.stat();
  EXPECT_EQ(st.regions, visible.size() * kRegions.size()) << "unsealed or orphaned regions survived";
  EXPECT_EQ(st.catalogue_used, visible.size() * (kRegions.size() + 1) + (visible.empty() ? 0 : 1))
      << "a record per region and per seal, and the job's owner";
  uint64_t bytes = 0;
  for (const auto& r : kRegions) bytes += (r.size + 4095) / 4096 * 4096;
  EXPECT_EQ(st.used_bytes, visible.size() * bytes) << "leaked extents";
}


}  // namespace

TEST(Crash, KillAtEveryFaultPointOfTheWorkload) {
  TempPath pool("pool"), trace("trace");
  std::map<std::string, int> points;
  {
    ServerProcess s({pool.str(), "32M", 0, {"PMCR_FAULT_TRACE=" + trace.str()}, {"--no-prefault"}});
    ASSERT_TRUE(s.start());
    Observed o;
    workload(s, o);
    ASSERT_EQ(o.seal_acked.size(), 3u) << "the workload must run through without faults\n" << s.log();
    points = pmcr::test::read_fault_trace(trace.str());  // the workload's points, not verify's
    verify(s, o, "no fault");
    EXPECT_EQ(s.stop(), 0);
  }
  if (points.empty()) GTEST_SKIP() << "built without PMCR_FAULT_INJECTION: no fault points to sweep";
  for (const char* p : {"pool.format", "create.body", "create.state", "commit.data", "commit.body", "commit.state",
                        "seal.body", "seal.state", "delete.mark", "delete.region", "delete.done", "reclaim.region"})
    EXPECT_TRUE(points.count(p)) << "the workload never passes fault point " << p;
  Observed o;
  const int runs = pmcr::test::sweep_fault_points(
      pool.str(), points, [](const std::string&) { return true; },
      [&](ServerProcess& s) {
        o = Observed{};
        workload(s, o);
      },
      [&](ServerProcess& s) {
        verify(s, o, "after the crash");
        // The pool stays fully usable after recovery.
        Observed more;
        auto c = s.connect(10s);
        c.begin(kJob);
        write_version(c, 10, more);
        EXPECT_EQ(s.stop(), 0);
      });
  std::cerr << "crash sweep: " << points.size() << " fault points, " << runs << " kill/restart runs\n";
}

namespace {

pid_t spawn_cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {PMCR_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return pmcr::tools::spawn(argv);
}

// The wait status, or -1 if the child hung and was killed.
int wait_child(pid_t pid, std::chrono::seconds limit) {
  int status = 0;
  return pmcr::tools::wait_for(pid, limit, &status, true) ? status : -1;
}

}  // namespace

TEST(Crash, KillServerDuringImportKeepsOlderVersionsAndNoPartialOne) {
  TempPath pool("pool");
  const fs::path dir = fs::path("/tmp") / ("pmcr-crash-import-" + std::to_string(getpid()));
  fs::remove_all(dir);
  for (uint32_t rank = 0; rank < 4; ++rank) {
    fs::create_directories(dir / std::to_string(rank));
    for (uint32_t id = 0; id < 4; ++id) {
      const auto data = pattern(6 << 20, rank * 4 + id);
      std::ofstream(dir / std::to_string(rank) / std::to_string(id), std::ios::binary)
          .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    }
  }
  ServerProcess s({pool.str(), "512M"});
  ASSERT_TRUE(s.start());
  {
    auto c = s.connect();
    c.begin("imp");
    c.write_region("imp", 1, 0, 0, pattern(123457, 77).data(), 123457);
    c.seal("imp", 1, 1, 1);
  }
  // Each round, the server dies (a fault point, not a race against a poll)
  // at the commit of the import's 1st, 5th, 9th and 13th of 16 regions.
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    EXPECT_EQ(s.stop(), 0);
    s.env() = {"PMCR_FAULT=commit.state:" + std::to_string(1 + round * 4) + ":kill"};
    ASSERT_TRUE(s.start()) << s.log();
    const pid_t importer = spawn_cli({"import", "--server", s.address(), "--job", "imp", "--version",
                                      std::to_string(2 + round), dir.string()});
    ASSERT_GT(importer, 0);
    int server_status = 0;
    ASSERT_TRUE(s.wait_exit(60s, &server_status)) << "the fault point never fired\n" << s.log();
    EXPECT_TRUE(WIFSIGNALED(server_status) && WTERMSIG(server_status) == SIGKILL) << server_status;
    const int status = wait_child(importer, std::chrono::seconds(30));
    ASSERT_NE(status, -1) << "pmcr import hung after the server died";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "import should fail with exit 1, got " << status;
    s.env().clear();
    ASSERT_TRUE(s.start()) << s.log();
    auto c = s.connect();
    const auto versions = c.list_versions("imp");
    ASSERT_EQ(versions.size(), 1u) << "a partial import became visible";
    EXPECT_EQ(versions[0].version, 1u);
    EXPECT_EQ(c.stat().regions, 1u);
    std::vector<uint8_t> got(123457);
    c.read_region("imp", 1, 0, 0, got.data(), got.size());
    EXPECT_EQ(got, pattern(123457, 77));
  }
  // With the server left alone, the same import completes and seals.
  const pid_t importer = spawn_cli({"import", "--server", s.address(), "--job", "imp", "--version", "9", dir.string()});
  const int status = wait_child(importer, std::chrono::seconds(60));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto c = s.connect();
  EXPECT_EQ(c.latest_sealed("imp"), 9u);
  fs::remove_all(dir);
}
