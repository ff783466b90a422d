// module pmcr (Fortran 2008, mpi_f08) on real MPI jobs: every binding and
// its errors (fortran_api_test.f90), and heat2d in Fortran killed and
// restarted, ending with the checksum of a run that never failed (which is
// also the C heat2d's: the same grid, laid out the same way).
#include "error.hpp"
#include "jobs.hpp"

using namespace pmcr::test;

namespace {

std::vector<std::string> heat2d_fortran() {
  std::vector<std::string> p = {PMCR_HEAT2D_FORTRAN};
  p.insert(p.end(), kHeatArgs.begin(), kHeatArgs.end());
  return p;
}

}  // namespace

TEST(Fortran, EveryBindingAndItsErrors) {
  TempPath pool("pool");
  ServerProcess server(ServerConfig(pool.str(), "64M"));
  ASSERT_TRUE(server.start()) << server.log();
  LogOnFailure log(server);
  const JobRun r = run(mpiexec(2, {PMCR_FORTRAN_API_TEST}),
                       {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=" + job_name()}, 120s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("fortran api: ok on 2 ranks"), std::string::npos) << r.out;
  // pmcr_strerror gives the C library's text, whole.
  EXPECT_NE(r.out.find(std::string("strerror(PMCR_E_NOT_INIT): ") + pmcr::error_name(PMCR_E_NOT_INIT) + "\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(std::string("strerror(0): ") + pmcr::error_name(0) + "\n"), std::string::npos) << r.out;
}

TEST(Fortran, Heat2dWithoutFailureMatchesTheCProgram) {
  const std::string expected = reference_checksum();  // the C heat2d's
  ASSERT_FALSE(expected.empty());
  TempPath pool("pool");
  ServerProcess server(ServerConfig(pool.str(), "256M"));
  ASSERT_TRUE(server.start()) << server.log();
  const JobRun r = run(mpiexec(kRanks, heat2d_fortran()),
                       {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=" + job_name()}, 120s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
  // It kept the two newest of its 8 checkpoints, as the C program does.
  std::vector<uint64_t> sealed;
  for (const auto& v : server.connect().list_versions(job_name()))
    if (v.sealed) sealed.push_back(v.version);
  EXPECT_EQ(sealed, (std::vector<uint64_t>{350, 400}));
}

// A rank SIGKILLed as the 3rd checkpoint (version 150) begins: pmcr-run
// relaunches the Fortran job, which restarts from version 100 and ends with
// the reference checksum.
TEST(Fortran, Heat2dRankKilledRestartsWithTheSameChecksum) {
  const std::string expected = reference_checksum();
  ASSERT_FALSE(expected.empty());
  TempPath once("once");
  const JobRun r = pmcr_run({"PMCR_FAULT=ckpt.begin:3:kill", "PMCR_FAULT_RANK=2", "PMCR_FAULT_ONCE=" + once.str()}, 2,
                            "kill", heat2d_fortran());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(::access(once.str().c_str(), F_OK), 0) << "the fault never fired\n" << r.out;
  EXPECT_NE(r.out.find("attempt 1 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("heat2d: restarted from version 100 (step 100)"), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected) << r.out;
}
