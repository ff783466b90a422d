// pmcr-run under Slurm, against a real single-node Slurm that the test
// starts and stops (slurm_cluster.hpp): heat2d in an allocation with a rank
// SIGKILLed, the step relaunched in the same allocation, the checksum
// identical; and the standby as a second step of the allocation.
#include <gtest/gtest.h>

#include "jobs.hpp"
#include "slurm_cluster.hpp"

namespace pmcr::test {
namespace {

// The PMI that this build's MPI is launched with by srun: Open MPI through
// PMIx, MPICH through PMI-2.
const char* srun_mpi() { return std::string(PMCR_MPI_FLAVOR) == "mpich" ? "--mpi=pmi2" : "--mpi=pmix"; }

// salloc -n RANKS pmcr-run --local-pool POOL ... EXTRA -- srun -n RANKS --mpi=... heat2d HEAT
std::vector<std::string> in_allocation(const std::string& pool, const std::vector<std::string>& heat,
                                       const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {"salloc", "-n", std::to_string(kRanks), PMCR_RUN, "--local-pool", pool,
                                   "--local-size", "256M", "--servers", "127.0.0.1:0", "--job", job_name(),
                                   "--max-restarts", "2", "--delay", "0.1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.end(), {"--", "srun", "-n", std::to_string(kRanks), srun_mpi(), PMCR_HEAT2D});
  argv.insert(argv.end(), heat.begin(), heat.end());
  return argv;
}

// heat2d under pmcr-run inside salloc (EXTRA: pmcr-run's own options),
// its rank 2 SIGKILLed as the 3rd checkpoint (version 150) begins; what
// every such run must show: the fault fired, one allocation, and at the end
// the checksum of a run that never failed. Returns the run.
JobRun killed_in_allocation(const SlurmCluster& slurm, const std::vector<std::string>& heat,
                            const std::vector<std::string>& extra) {
  const std::string expected = reference_checksum();
  EXPECT_FALSE(expected.empty());
  TempPath pool("slurm"), once("once");
  std::vector<std::string> env = slurm.env();
  env.insert(env.end(), {"PMCR_FAULT=ckpt.begin:3:kill", "PMCR_FAULT_RANK=2", "PMCR_FAULT_ONCE=" + once.str()});
  JobRun r = run(in_allocation(pool.str(), heat, extra), env, 240s);
  EXPECT_EQ(r.code, 0) << r.out << slurm.logs();
  EXPECT_EQ(::access(once.str().c_str(), F_OK), 0) << "the fault never fired\n" << r.out;
  EXPECT_EQ(count(r.out, "Granted job allocation"), 1) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
  return r;
}

#define START_SLURM(cluster)                                                                     \
  if (const std::string why = SlurmCluster::unavailable(); !why.empty()) GTEST_SKIP() << why;   \
  SlurmCluster cluster;                                                                         \
  if (!cluster.ok()) GTEST_SKIP() << "Slurm did not start here: " << cluster.error()

}  // namespace

// srun ends the step (pmcr-run gave it --kill-on-bad-exit); pmcr-run runs
// a new step in the same allocation, which restarts from version 100.
TEST(Slurm, RankKilledStepRelaunchedInTheSameAllocation) {
  START_SLURM(slurm);
  const JobRun r = killed_in_allocation(slurm, kHeatArgs, {});
  EXPECT_NE(r.out.find("pmcr-run: each attempt is an srun step of allocation "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attempt 1 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attempt 2 of 3: job " + job_name() + " restarts from version 100"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("heat2d: restarted from version 100"), std::string::npos) << r.out;
}

// pmcr-run --standby: the standby is a second step of the allocation
// (sharing the primary's CPUs, --overlap); when the primary's rank is
// killed the standby takes over, without a relaunch.
TEST(Slurm, StandbyIsASecondStepAndTakesOver) {
  START_SLURM(slurm);
  std::vector<std::string> heat = kHeatArgs;
  heat.insert(heat.end(), {"--sleep-ms", "5"});  // checkpoints ~250 ms apart: the standby follows them
  const JobRun r = killed_in_allocation(slurm, heat, {"--standby"});
  EXPECT_EQ(count(r.out, "pmcr-run: standby took over at version"), 1) << r.out;
  EXPECT_EQ(r.out.find("attempt 2 of"), std::string::npos) << "relaunched instead of taken over:\n" << r.out;
  EXPECT_NE(r.out.find("heat2d: restarted from version"), std::string::npos) << r.out;
}

}  // namespace pmcr::test
