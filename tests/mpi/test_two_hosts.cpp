// Two hosts, really: pmserver in a network namespace of the test's own, the
// MPI ranks on this side, every byte of the checkpoints crossing a veth pair
// (a real network device with its own stack), not the loopback. heat2d
// under pmcr-run with a rank killed (relaunch), with a standby (takeover),
// and with the server killed and brought back (the job waits for it).
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <thread>

#include "auth.hpp"
#include "jobs.hpp"
#include "netns.hpp"

namespace pmcr::test {
namespace {

using tools::NetNs;

class TwoHosts : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = NetNs::unavailable(); !why.empty()) GTEST_SKIP() << why;
    expected_ = reference_checksum();
    ASSERT_FALSE(expected_.empty());
    ns_ = std::make_unique<NetNs>();
    ServerConfig cfg(pool_.str(), "256M", 0, {"UCX_NET_DEVICES=" + ns_->ns_if()});
    cfg.host = ns_->ns_addr();
    cfg.wrapper = ns_->exec();
    auth::write_key_file(key_.str(), auth::Key::generate());  // not loopback: clients authenticate
    cfg.key_file = key_.str();
    server_ = std::make_unique<ServerProcess>(cfg);
    ASSERT_TRUE(server_->start()) << server_->log();
  }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "---- pmserver log ----\n" << server_->log();
    server_.reset();
    ns_.reset();
  }
  // The ranks' side: UCX over this end of the veth, the server's key.
  std::vector<std::string> env(std::vector<std::string> more = {}) const {
    more.insert(more.end(), {"UCX_NET_DEVICES=" + ns_->host_if(), "PMCR_AUTH=key", "PMCR_KEY_FILE=" + key_.str()});
    return more;
  }
  // pmcr-run of slowed-down heat2d against the server in the namespace.
  std::vector<std::string> pmcr_run(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> argv = {PMCR_RUN, "--servers", server_->address(), "--job", job_name(),
                                     "--max-restarts", "3", "--delay", "0.1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("--");
    std::vector<std::string> program = {PMCR_HEAT2D};
    program.insert(program.end(), kHeatArgs.begin(), kHeatArgs.end());
    program.insert(program.end(), {"--sleep-ms", "5"});
    const auto cmd = mpiexec(kRanks, program);
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return argv;
  }
  // What crossed the veth from the ranks' side to the server.
  long long bytes_sent() const {
    return std::atoll(tools::read_file("/sys/class/net/" + ns_->host_if() + "/statistics/tx_bytes").c_str());
  }

  std::string expected_;
  TempPath pool_{"pool"}, key_{"key"};
  std::unique_ptr<NetNs> ns_;
  std::unique_ptr<ServerProcess> server_;
};

}  // namespace

TEST_F(TwoHosts, RankKilledJobRelaunchesOverTheLink) {
  TempPath once("once");
  const long long before = bytes_sent();
  const JobRun r = run(pmcr_run(), env({"PMCR_FAULT=ckpt.begin:3:kill", "PMCR_FAULT_RANK=2",
                                        "PMCR_FAULT_ONCE=" + once.str()}), 240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("attempt 2 of 4: job " + job_name() + " restarts from version 100"), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected_) << r.out;
  // The checkpoints went over the veth: 8 versions of 4 x 128 KiB, less the
  // blocks the heat has not reached yet (unchanged, not sent again), and
  // more than half of it.
  EXPECT_GT(bytes_sent() - before, 4LL * kRanks * (128 << 10)) << "the checkpoints did not cross the link";
}

TEST_F(TwoHosts, StandbyTakesOverOverTheLink) {
  TempPath once("once");
  const JobRun r = run(pmcr_run({"--standby"}), env({"PMCR_FAULT=ckpt.sealed:3:kill", "PMCR_FAULT_RANK=3",
                                                     "PMCR_FAULT_ONCE=" + once.str()}), 240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("pmcr-run: standby took over at version 150"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("attempt 2 of"), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected_) << r.out;
}

// The server is SIGKILLed mid-run and started again on its pool a few
// seconds later: the job fails within its time-out, pmcr-run waits for the
// server to answer, and the relaunch restarts from the last sealed version.
TEST_F(TwoHosts, ServerLostAndBackTheJobWaitsAndResumes) {
  Background job(pmcr_run(), env({"PMCR_TIMEOUT=5"}), "job");
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (server_->log().find("sealed version 150 ") == std::string::npos && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(20ms);
  server_->kill9();
  ASSERT_FALSE(job.wait_for("to answer before relaunching", 90s).empty()) << job.output();
  ASSERT_TRUE(server_->start()) << server_->log();
  const int code = job.finish(200s);
  const std::string out = job.output();
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("attempt 2 of 4: job " + job_name() + " restarts from version"), std::string::npos) << out;
  EXPECT_EQ(final_checksum(out), expected_) << out;
}

// Three servers behind the link, two copies of each rank's data: one server
// SIGKILLed after it sealed its part of version 150, its pool deleted. The
// job goes on with the two others over the veth and finishes with the
// reference result; a relaunch restarts bit-identical from the survivors.
TEST_F(TwoHosts, ServerLostWithTwoCopiesOverTheLink) {
  std::vector<std::unique_ptr<TempPath>> pools;
  std::vector<std::unique_ptr<ServerProcess>> more;
  std::string servers = server_->address();
  for (int i = 0; i < 2; ++i) {
    pools.push_back(std::make_unique<TempPath>("pool" + std::to_string(i)));
    ServerConfig cfg(pools.back()->str(), "256M", 0, {"UCX_NET_DEVICES=" + ns_->ns_if()});
    cfg.host = ns_->ns_addr();
    cfg.wrapper = ns_->exec();
    cfg.key_file = key_.str();
    more.push_back(std::make_unique<ServerProcess>(cfg));
    ASSERT_TRUE(more.back()->start()) << more.back()->log();
    servers += "," + more.back()->address();
  }
  std::vector<std::string> program = {PMCR_HEAT2D};
  program.insert(program.end(), kHeatArgs.begin(), kHeatArgs.end());
  const std::vector<std::string> job_env = env({"PMCR_SERVERS=" + servers, "PMCR_REPLICAS=2", "PMCR_JOB=" + job_name()});
  std::vector<std::string> slow = program;
  slow.insert(slow.end(), {"--sleep-ms", "5"});
  Background job(mpiexec(kRanks, slow), job_env, "job");
  ServerProcess& victim = *more.back();
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (victim.log().find("sealed its part of version 150") == std::string::npos &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  victim.kill9();
  ::unlink(pools.back()->str().c_str());
  ASSERT_EQ(job.finish(180s), 0) << job.output();
  EXPECT_EQ(final_checksum(job.output()), expected_) << job.output();
  EXPECT_NE(job.output().find("server " + victim.address() + " lost at version"), std::string::npos) << job.output();
  const JobRun again = run(mpiexec(kRanks, program), job_env, 120s);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("restarted from version 400"), std::string::npos) << again.out;
  EXPECT_EQ(final_checksum(again.out), expected_) << again.out;
}

}  // namespace pmcr::test
