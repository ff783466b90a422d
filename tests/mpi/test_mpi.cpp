// MPI tests: real MPI jobs launched through FindMPI's MPIEXEC variables,
// each against its own pmserver (own pool file in /dev/shm, own port on
// 127.0.0.1):
//  - the rank API test program (mpi_api_test) at 1 and 4 ranks,
//  - heat2d under pmcr-run with a rank SIGKILLed at a chosen point (between
//    checkpoints, after its puts but before the seal, right after a seal)
//    and with pmserver SIGKILLed during a checkpoint: each run must relaunch
//    by itself and end with the checksum of a run that never failed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "process.hpp"
#include "server_process.hpp"

namespace pmcr::test {
namespace {

using namespace std::chrono_literals;

using JobRun = tools::RunResult;

// ARGV with ENV, stdout and stderr together.
JobRun run(const std::vector<std::string>& argv, const std::vector<std::string>& env, std::chrono::seconds timeout) {
  return tools::run(argv, env, timeout, true);
}

std::vector<std::string> split_flags(const std::string& flags) {
  std::vector<std::string> out;
  std::istringstream ss(flags);
  for (std::string w; ss >> w;) out.push_back(w);
  return out;
}

// MPIEXEC [PREFLAGS] NUMPROC_FLAG NP PROGRAM ARGS...
std::vector<std::string> mpiexec(int np, const std::vector<std::string>& program) {
  std::vector<std::string> argv = {PMCR_MPIEXEC};
  for (const auto& f : split_flags(PMCR_MPIEXEC_PREFLAGS)) argv.push_back(f);
  argv.push_back(PMCR_MPIEXEC_NUMPROC_FLAG);
  argv.push_back(std::to_string(np));
  argv.insert(argv.end(), program.begin(), program.end());
  return argv;
}

std::string job_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->name()).substr(0, 32) + "." + std::to_string(::getpid());
}

// ---- the rank API ----

void run_api(int np, const std::vector<std::string>& args, const std::vector<std::string>& env) {
  TempPath pool("api");
  ServerProcess server(ServerConfig(pool.str(), "256M"));
  ASSERT_TRUE(server.start()) << server.log();
  std::vector<std::string> program = {PMCR_MPI_API_TEST};
  program.insert(program.end(), args.begin(), args.end());
  std::vector<std::string> all_env = {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=api" + std::to_string(::getpid())};
  all_env.insert(all_env.end(), env.begin(), env.end());
  const JobRun r = run(mpiexec(np, program), all_env, 240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("all passed"), std::string::npos) << r.out;
}

TEST(Api, OneRank) { run_api(1, {}, {}); }
TEST(Api, FourRanks) { run_api(4, {}, {}); }
TEST(Api, ChecksumMismatchIsCaught) {
  run_api(2, {"--gtest_also_run_disabled_tests", "--gtest_filter=*ChecksumMismatch*"},
          {"PMCR_FAULT=client.get.data:1:fail"});
}

// ---- heat2d under pmcr-run ----

const std::vector<std::string> kHeatArgs = {"--nx", "256", "--ny", "256", "--steps", "400", "--every", "50"};
constexpr int kRanks = 4;

std::string final_checksum(const std::string& out) {
  std::smatch m;
  static const std::regex re("final checksum ([0-9a-f]{16}) after 400 steps");
  return std::regex_search(out, m, re) ? m[1].str() : "";
}

std::vector<std::string> heat2d() {
  std::vector<std::string> p = {PMCR_HEAT2D};
  p.insert(p.end(), kHeatArgs.begin(), kHeatArgs.end());
  return p;
}

// The checksum of a run that never failed (computed once), and what that
// run left on its server.
struct Reference {
  std::string checksum;
  std::vector<proto::VersionEntry> versions;
};

const Reference& reference() {
  static const Reference ref = [] {
    Reference r;
    TempPath pool("heat-ref");
    ServerProcess server(ServerConfig(pool.str(), "256M"));
    if (!server.start()) return r;
    const JobRun run_ = run(mpiexec(kRanks, heat2d()), {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=reference"}, 120s);
    r.checksum = final_checksum(run_.out);
    if (r.checksum.empty()) ADD_FAILURE() << run_.out;
    r.versions = server.connect().list_versions("reference");
    server.stop();
    return r;
  }();
  return ref;
}

TEST(Heat2d, ReferenceRunKeepsTwoVersions) {
  const Reference& ref = reference();
  ASSERT_FALSE(ref.checksum.empty());
  // PMCR_KEEP defaults to 2: only the two newest checkpoints remain.
  std::vector<uint64_t> sealed;
  for (const auto& v : ref.versions)
    if (v.sealed) sealed.push_back(v.version);
  EXPECT_EQ(sealed, (std::vector<uint64_t>{350, 400}));
}

// pmcr-run --local-pool on a pool of this test and a port the kernel picks, with ENV.
JobRun pmcr_run(const std::vector<std::string>& env, unsigned max_restarts, const std::string& tag) {
  TempPath pool(tag);
  std::vector<std::string> argv = {PMCR_RUN, "--local-pool", pool.str(), "--local-size", "256M",
                                   "--servers", "127.0.0.1:0",
                                   "--job", job_name(), "--max-restarts", std::to_string(max_restarts), "--delay", "0", "--"};
  const auto cmd = mpiexec(kRanks, heat2d());
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return run(argv, env, 240s);
}

// Kills rank RANK with SIGKILL at the NTH hit of fault point POINT, once;
// the relaunch must restart from FROM and end with the reference checksum.
void kill_rank_at(const std::string& point, int nth, int rank, int from) {
  const std::string expected = reference().checksum;
  ASSERT_FALSE(expected.empty());
  TempPath once("once");
  const JobRun r = pmcr_run({"PMCR_FAULT=" + point + ":" + std::to_string(nth) + ":kill",
                          "PMCR_FAULT_RANK=" + std::to_string(rank), "PMCR_FAULT_ONCE=" + once.str()},
                         2, "kill");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(::access(once.str().c_str(), F_OK), 0) << "the fault never fired\n" << r.out;
  EXPECT_NE(r.out.find("attempt 1 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attempt 2 of 3: job " + job_name() + " restarts from version " + std::to_string(from)),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("heat2d: restarted from version " + std::to_string(from)), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
}

// The 3rd checkpoint is version 150; the last sealed before it is 100.
TEST(Heat2d, RankKilledBetweenCheckpoints) { kill_rank_at("ckpt.begin", 3, 2, 100); }
TEST(Heat2d, RankKilledAfterPutsBeforeSeal) { kill_rank_at("ckpt.committed", 3, 1, 100); }
TEST(Heat2d, RankKilledRightAfterSeal) { kill_rank_at("ckpt.sealed", 3, 3, 150); }
TEST(Heat2d, RankZeroKilledAfterPuts) { kill_rank_at("ckpt.committed", 5, 0, 200); }

TEST(Heat2d, ServerKilledDuringCheckpoint) {
  const std::string expected = reference().checksum;
  ASSERT_FALSE(expected.empty());
  // 4 ranks x 2 buffers: the 19th region commit is in the 3rd checkpoint
  // (version 150). pmserver dies there; the ranks must fail with an error,
  // not hang; pmcr-run restarts the server and relaunches from 100.
  TempPath once("once");
  const JobRun r = pmcr_run({"PMCR_FAULT=commit.data:19:kill", "PMCR_FAULT_ONCE=" + once.str()}, 2, "srvkill");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(::access(once.str().c_str(), F_OK), 0) << "the fault never fired\n" << r.out;
  EXPECT_NE(r.out.find("pmcr_checkpoint failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pmserver exited"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("restarts from version 100"), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
  EXPECT_LT(r.elapsed, 60s) << "a lost server must not stall the job";
}

TEST(Heat2d, ServerKilledJobFailsWithinSeconds) {
  // Without pmcr-run: the job sees the server die and exits with an error.
  TempPath pool("srvdie");
  TempPath once("once");
  ServerProcess server(ServerConfig(pool.str(), "256M", 0, {"PMCR_FAULT=commit.data:19:kill", "PMCR_FAULT_ONCE=" + once.str()}));
  ASSERT_TRUE(server.start()) << server.log();
  const JobRun r = run(mpiexec(kRanks, heat2d()), {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=" + job_name()}, 120s);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.code, -1) << "the job hung after the server died";
  EXPECT_LT(r.elapsed, 30s) << r.out;
  EXPECT_NE(r.out.find("pmcr_checkpoint failed"), std::string::npos) << r.out;
  EXPECT_TRUE(server.wait_exit(5s));

  // The server comes back on its port; the job restarts from 100 and ends right.
  server.env().clear();
  ASSERT_TRUE(server.start()) << server.log();
  const JobRun again = run(mpiexec(kRanks, heat2d()), {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=" + job_name()}, 120s);
  EXPECT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("restarted from version 100"), std::string::npos) << again.out;
  EXPECT_EQ(final_checksum(again.out), reference().checksum) << again.out;
}

TEST(PmcrRun, ExitCodeIsTheLastAttempts) {
  TempPath counter("count");
  const JobRun r = run({PMCR_RUN, "--servers", "127.0.0.1:1", "--job", "x", "--max-restarts", "2", "--delay", "0", "--",
                     "sh", "-c", "echo attempt >> " + counter.str() + "; exit 3"},
                    {}, 60s);
  EXPECT_EQ(r.code, 3) << r.out;
  std::ifstream in(counter.str());
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_EQ(lines, 3) << "1 attempt + 2 relaunches";
  EXPECT_NE(r.out.find("no restarts left"), std::string::npos) << r.out;
}

TEST(PmcrRun, SetsJobAndServersForTheProgram) {
  const JobRun r = run({PMCR_RUN, "--servers", "127.0.0.1:1", "--job", "myjob", "--max-restarts", "0", "--", "sh", "-c",
                     "echo job=$PMCR_JOB servers=$PMCR_SERVERS"},
                    {"PMCR_JOB=other"}, 60s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("job=myjob servers=127.0.0.1:1"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace pmcr::test
