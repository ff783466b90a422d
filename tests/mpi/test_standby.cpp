// The hot standby on real MPI jobs: heat2d under pmcr-run --standby, a rank
// of the primary killed between checkpoints, during one (before and after
// its seal) and while the standby is in the middle of applying a version;
// a zombie primary (stopped, declared failed by its lease, then resumed);
// the standby killed; both killed; the server killed while a standby
// follows; and what a standby costs while it waits.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "jobs.hpp"

namespace pmcr::test {
namespace {

// heat2d slowed down so that its checkpoints (every 50 steps) are ~250 ms
// apart: a standby has the time to follow them.
std::vector<std::string> slow_heat() {
  std::vector<std::string> a = kHeatArgs;
  a.insert(a.end(), {"--sleep-ms", "5"});
  return a;
}

// The version of the first takeover line, or -1.
long takeover_version(const std::string& out) {
  const std::string v = token_after(out, "pmcr-run: standby took over at version ");
  return v.empty() ? -1 : std::stol(v);
}

// heat2d under pmcr-run --standby with ENV; the run must end with the
// reference checksum, after exactly one takeover (at a version from FROM,
// when given) and no relaunch.
std::string standby_run(std::vector<std::string> env, std::vector<long> from = {}) {
  const std::string expected = reference_checksum();
  EXPECT_FALSE(expected.empty());
  TempPath pool("standby");
  const JobRun r = run(local_run(pool.str(), job_name(), slow_heat(), {"--standby"}), env, 240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(count(r.out, "pmcr-run: standby took over at version"), 1) << r.out;
  EXPECT_NE(r.out.find(" ms after the failure was detected, "), std::string::npos) << r.out;
  if (!from.empty()) {
    EXPECT_NE(std::find(from.begin(), from.end(), takeover_version(r.out)), from.end()) << r.out;
  }
  EXPECT_EQ(r.out.find("attempt 2 of"), std::string::npos) << "relaunched instead of taken over:\n" << r.out;
  EXPECT_EQ(count(r.out, "pmcr-run: standby (launch "), 2) << "a new standby must follow the new primary\n" << r.out;
  EXPECT_NE(r.out.find("heat2d: restarted from version"), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
  return r.out;
}

}  // namespace

// The 3rd checkpoint is version 150; the last sealed before it is 100.
TEST(Standby, PrimaryRankKilledBetweenCheckpoints) {
  TempPath once("once");
  standby_run({"PMCR_FAULT=ckpt.begin:3:kill", "PMCR_FAULT_RANK=2", "PMCR_FAULT_ONCE=" + once.str()}, {100});
}

// Before its grid's commit (the 2nd buffer of the 3rd checkpoint): version
// 150 cannot complete.
TEST(Standby, PrimaryRankKilledDuringACheckpointBeforeItsSeal) {
  TempPath once("once");
  standby_run({"PMCR_FAULT=ckpt.blocks:6:kill", "PMCR_FAULT_RANK=1", "PMCR_FAULT_ONCE=" + once.str()}, {100});
}

TEST(Standby, PrimaryRankKilledRightAfterASeal) {
  TempPath once("once");
  standby_run({"PMCR_FAULT=ckpt.sealed:3:kill", "PMCR_FAULT_RANK=3", "PMCR_FAULT_ONCE=" + once.str()}, {150});
}

// Rank 0 of the primary dies in the middle of sending a checkpoint.
TEST(Standby, PrimaryRankZeroKilledMidTransfer) {
  TempPath once("once");
  standby_run({"PMCR_FAULT=client.send.chunk:100:kill", "PMCR_FAULT_RANK=0", "PMCR_FAULT_ONCE=" + once.str(),
               "PMCR_BLOCK_SIZE=4K"},
              {50, 100, 150});
}

// The standby's rank 2 pauses for 2 s between the two buffers of the 3rd
// version it applies, and the primary's rank 2 is killed meanwhile (at its
// 5th checkpoint): the standby finishes that version, then takes over from
// the newest one, whole.
TEST(Standby, PrimaryKilledWhileTheStandbyAppliesAVersion) {
  TempPath once("once"), trace("trace");
  const std::string out =
      standby_run({"PMCR_FAULT=ckpt.begin:5:kill", "PMCR_FAULT_RANK=2", "PMCR_FAULT_ONCE=" + once.str(),
                   "PMCR_STANDBY_FAULT=standby.apply:3:pause", "PMCR_FAULT_TRACE=" + trace.str()},
                  {150, 200});
  EXPECT_NE(tools::read_file(trace.str()).find(" standby.apply\n"), std::string::npos)
      << "the standby never paused mid-apply";
}

// --standby-command gives the standby its own launch command (here: the
// same, with a log level of its own that shows it was used).
TEST(Standby, StandbyCommandLaunchesTheStandby) {
  const std::string expected = reference_checksum();
  TempPath pool("standby"), once("once");
  std::vector<std::string> program = {PMCR_HEAT2D};
  const auto heat = slow_heat();
  program.insert(program.end(), heat.begin(), heat.end());
  std::string command = "env PMCR_LOG_LEVEL=info";
  for (const auto& a : mpiexec(kRanks, program)) command += " '" + a + "'";
  const JobRun r = run(local_run(pool.str(), job_name(), heat, {"--standby", "--standby-command", command}),
                       {"PMCR_FAULT=ckpt.begin:3:kill", "PMCR_FAULT_RANK=2", "PMCR_FAULT_ONCE=" + once.str()}, 240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("info pmcr"), std::string::npos) << "the standby did not run the --standby-command\n" << r.out;
  EXPECT_NE(r.out.find("pmcr-run: standby took over at version 100"), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
  // A command that cannot be split is refused before anything runs.
  const JobRun bad = run(local_run(pool.str(), job_name(), heat, {"--standby", "--standby-command", "mpirun 'unbalanced"}),
                         {}, 60s);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("cannot be split into words"), std::string::npos) << bad.out;
}

// The standby dies (at its 2nd version applied): the primary goes on, and
// pmcr-run starts another standby.
TEST(Standby, StandbyKilledThePrimaryGoesOn) {
  const std::string expected = reference_checksum();
  TempPath pool("standby"), once("once");
  const JobRun r = run(local_run(pool.str(), job_name(), slow_heat(), {"--standby"}),
                       {"PMCR_STANDBY_FAULT=standby.apply:2:kill", "PMCR_FAULT_RANK=1"}, 240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("pmcr-run: the standby exited with code"), std::string::npos) << r.out;
  EXPECT_GE(count(r.out, "pmcr-run: standby (launch "), 2) << r.out;
  EXPECT_EQ(r.out.find("took over"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("attempt 2 of"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("heat2d: restarted from version"), std::string::npos) << "the primary never failed:\n" << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
}

// Both die: a primary rank between checkpoints, and the standby as it
// takes over. pmcr-run relaunches both from the server.
TEST(Standby, PrimaryAndStandbyKilledRelaunchFromTheServer) {
  const std::string expected = reference_checksum();
  TempPath pool("standby"), once("once");
  const JobRun r = run(local_run(pool.str(), job_name(), slow_heat(), {"--standby"}),
                       {"PMCR_FAULT=ckpt.begin:3:kill", "PMCR_FAULT_RANK=2", "PMCR_FAULT_ONCE=" + once.str(),
                        "PMCR_STANDBY_FAULT=standby.takeover:1:kill"},
                       240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("before it took over"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attempt 2 of 4: job " + job_name() + " restarts from version 100"), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
}

// The server is killed while the standby follows: both jobs fail cleanly
// (they lose the server), and pmcr-run restarts the server and relaunches
// both, as without a standby.
TEST(Standby, ServerKilledWhileAStandbyFollows) {
  const std::string expected = reference_checksum();
  TempPath pool("standby");
  Background run_(local_run(pool.str(), job_name(), slow_heat(), {"--standby"}), {"PMCR_TIMEOUT=5"});
  const std::string server = run_.wait_for("pmserver (pid ", 60s);
  ASSERT_FALSE(server.empty()) << run_.output();
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (tools::read_file(pool.str() + ".log").find("sealed version 150 ") == std::string::npos &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(20ms);
  ::kill(std::stoi(server), SIGKILL);
  const int code = run_.finish(200s);
  const std::string out = run_.output();
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("pmserver exited"), std::string::npos) << out;
  EXPECT_NE(out.find("attempt 2 of 4: job " + job_name() + " restarts from version"), std::string::npos) << out;
  EXPECT_EQ(final_checksum(out), expected) << out;
}

// A zombie primary: its rank 1 stops (SIGSTOP) at its 4th checkpoint, its
// lease lapses, the standby takes over and finishes the run. Then the
// stopped rank resumes: everything it tries is refused (FENCED), and the
// versions the new primary sealed are intact.
TEST(Standby, ZombiePrimaryIsFencedOff) {
  const std::string expected = reference_checksum();
  ASSERT_FALSE(expected.empty());
  TempPath pool("zombie"), trace("trace");
  ServerProcess server(ServerConfig(pool.str(), "256M"));
  ASSERT_TRUE(server.start()) << server.log();
  const std::string job = job_name();
  std::vector<std::string> program = {PMCR_HEAT2D};
  const auto heat = slow_heat();
  program.insert(program.end(), heat.begin(), heat.end());
  const std::vector<std::string> common = {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=" + job, "PMCR_LEASE=1"};
  auto primary_env = common;
  primary_env.insert(primary_env.end(), {"PMCR_ROLE=primary", "PMCR_INSTANCE=a1", "PMCR_FAULT=ckpt.begin:4:stop",
                                         "PMCR_FAULT_RANK=1", "PMCR_FAULT_TRACE=" + trace.str()});
  auto standby_env = common;
  standby_env.insert(standby_env.end(), {"PMCR_ROLE=standby", "PMCR_INSTANCE=b2", "PMCR_PRIMARY_INSTANCE=a1"});
  Background primary(mpiexec(kRanks, program), primary_env, "primary");
  Background standby(mpiexec(kRanks, program), standby_env, "standby");
  EXPECT_EQ(standby.finish(180s), 0) << standby.output();
  EXPECT_EQ(final_checksum(standby.output()), expected) << standby.output();
  EXPECT_NE(standby.output().find("heat2d: restarted from version 150"), std::string::npos) << standby.output();
  EXPECT_NE(server.log().find("did not renew its lease"), std::string::npos) << server.log();
  const auto versions = [&] {
    std::vector<uint64_t> sealed;
    for (const auto& v : server.connect().list_versions(job))
      if (v.sealed) sealed.push_back(v.version);
    return sealed;
  };
  EXPECT_EQ(versions(), (std::vector<uint64_t>{350, 400}));
  // Wake the zombie.
  const std::string stopped = token_after(tools::read_file(trace.str()), "stopped ");
  ASSERT_FALSE(stopped.empty()) << "the primary's rank never stopped";
  ::kill(std::stoi(stopped), SIGCONT);
  const int code = primary.finish(120s);
  EXPECT_NE(code, 0) << primary.output();
  EXPECT_NE(primary.output().find("fenced off"), std::string::npos) << primary.output();
  EXPECT_EQ(versions(), (std::vector<uint64_t>{350, 400})) << "the zombie changed the new primary's versions";
}

// A standby following an idle primary sleeps: under 2 % of a core per rank.
TEST(Standby, FollowingAnIdlePrimaryCostsAlmostNoCpu) {
  TempPath pool("idle");
  ServerProcess server(ServerConfig(pool.str(), "256M"));
  ASSERT_TRUE(server.start()) << server.log();
  const std::string job = job_name();
  // A primary that checkpoints once, then computes for a long while.
  const std::vector<std::string> heat = {PMCR_HEAT2D, "--nx", "256", "--ny", "256", "--steps", "2000", "--every", "1000",
                                         "--sleep-ms", "10"};
  const std::vector<std::string> common = {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=" + job};
  auto primary_env = common, standby_env = common;
  primary_env.insert(primary_env.end(), {"PMCR_ROLE=primary", "PMCR_INSTANCE=c3"});
  standby_env.insert(standby_env.end(), {"PMCR_ROLE=standby", "PMCR_PRIMARY_INSTANCE=c3"});
  Background primary(mpiexec(kRanks, heat), primary_env, "primary");
  Background standby(mpiexec(kRanks, heat), standby_env, "standby");
  // Until the standby's ranks are up and following.
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (server.log().find("watches it") == std::string::npos && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(50ms);
  std::this_thread::sleep_for(1s);
  const auto ranks = heat2d_ranks(job, 0, "standby");
  ASSERT_EQ(ranks.size(), static_cast<size_t>(kRanks)) << standby.output();
  const auto cpu = [&] {
    double s = 0;
    for (pid_t p : ranks) s += process_cpu_seconds(p);
    return s;
  };
  const double c0 = cpu();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(4s);
  const double used = cpu() - c0;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double per_rank = used / wall / kRanks;
  EXPECT_LT(per_rank, 0.02) << "each standby rank used " << per_rank * 100 << " % of a core";
  std::cerr << "standby CPU while following an idle primary: " << per_rank * 100 << " % of a core per rank\n";
  ::kill(primary.pid(), SIGTERM);
  ::kill(standby.pid(), SIGTERM);
  primary.finish(30s);
  standby.finish(30s);
}

}  // namespace pmcr::test
