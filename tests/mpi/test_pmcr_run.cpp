// pmcr-run as a launcher: relaunch only when it can help, back off and wait
// for the server, never leave children behind, and start a local pool of
// any size, saying what it waits for.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "jobs.hpp"

namespace pmcr::test {
namespace {

int count_lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

// True once PID has exited (gone, or a zombie nobody reaped yet).
bool gone(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return true;
  const auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

bool wait_gone(pid_t pid, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!gone(pid) && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  return gone(pid);
}

TEST(PmcrRun, ExitCodeIsTheLastAttempts) {
  TempPath pool("srv"), counter("count");
  ServerProcess server(ServerConfig(pool.str(), "64M"));
  ASSERT_TRUE(server.start()) << server.log();
  const JobRun r = run({PMCR_RUN, "--servers", server.address(), "--job", "x", "--max-restarts", "2", "--delay", "0",
                        "--", "sh", "-c", "echo attempt >> " + counter.str() + "; exit 3"},
                       {}, 60s);
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_EQ(count_lines(counter.str()), 3) << "1 attempt + 2 relaunches";
  EXPECT_NE(r.out.find("no restarts left"), std::string::npos) << r.out;
}

TEST(PmcrRun, SetsJobAndServersForTheProgram) {
  const JobRun r = run({PMCR_RUN, "--servers", "127.0.0.1:1", "--job", "myjob", "--max-restarts", "0", "--", "sh", "-c",
                        "echo job=$PMCR_JOB servers=$PMCR_SERVERS report=${PMCR_RUN_REPORT:+set}"},
                       {"PMCR_JOB=other"}, 60s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("job=myjob servers=127.0.0.1:1 report=set"), std::string::npos) << r.out;
}

// What pmcr-run gives an srun (a stand-in named srun that prints its
// arguments; Slurm itself: test_slurm.cpp): --kill-on-bad-exit=1 unless the
// user chose -K, the PMCR_* names added to an --export list (NONE replaced
// by them), --overlap for the standby's step only; the program's own
// arguments untouched.
TEST(PmcrRun, SrunGetsKillOnBadExitAndItsExportList) {
  TempPath dir("srun");
  ASSERT_EQ(::mkdir(dir.str().c_str(), 0700), 0);
  const std::string srun = dir.str() + "/srun";
  struct Remove {  // (TempPath removes files, not a directory)
    std::string dir, file;
    ~Remove() {
      ::unlink(file.c_str());
      ::rmdir(dir.c_str());
    }
  } remove{dir.str(), srun};
  std::ofstream(srun) << "#!/bin/sh\necho \"$PMCR_ROLE ARGS: $*\"\n";
  ::chmod(srun.c_str(), 0755);
  const auto launch = [&](std::vector<std::string> extra, std::vector<std::string> srun_args,
                          const std::string& slurm_export = "") {
    // (In an environment of its own: the PMCR_* and UCX_* variables of the
    // test's would be forwarded too.)
    std::vector<std::string> argv = {"env", "-i", "PATH=/usr/bin:/bin"};
    if (!slurm_export.empty()) argv.push_back("SLURM_EXPORT_ENV=" + slurm_export);
    argv.insert(argv.end(), {PMCR_RUN, "--servers", "127.0.0.1:1", "--job", "sj", "--max-restarts", "0"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), {"--", srun});
    argv.insert(argv.end(), srun_args.begin(), srun_args.end());
    return run(argv, {}, 60s);
  };
  JobRun r = launch({}, {"--export=NONE", "-n", "2", "./prog", "-K"});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(" ARGS: --kill-on-bad-exit=1 --export=PMCR_JOB,PMCR_RUN_REPORT,PMCR_SERVERS -n 2 ./prog -K\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("srun outside an allocation"), std::string::npos) << r.out;
  r = launch({}, {"-K0", "--export=ALL", "-n", "2", "./prog"});
  EXPECT_NE(r.out.find(" ARGS: -K0 --export=ALL -n 2 ./prog\n"), std::string::npos) << r.out;
  // --export V as --export=V; a flag (-u) before the program, and the
  // program's own --export=, left alone.
  r = launch({}, {"--export", "NONE", "-u", "./prog", "--export=out.csv"});
  EXPECT_NE(r.out.find(" ARGS: --kill-on-bad-exit=1 --export=PMCR_JOB,PMCR_RUN_REPORT,PMCR_SERVERS -u ./prog "
                       "--export=out.csv\n"),
            std::string::npos)
      << r.out;
  // Inherited from sbatch --export=NONE: the names go anyway.
  r = launch({}, {"-n", "2", "./prog"}, "NONE");
  EXPECT_NE(r.out.find(" ARGS: --kill-on-bad-exit=1 --export=PMCR_JOB,PMCR_RUN_REPORT,PMCR_SERVERS -n 2 ./prog\n"),
            std::string::npos)
      << r.out;
  r = launch({"--standby"}, {"--export=HOME", "-n", "2", "./prog"});
  EXPECT_NE(r.out.find("primary ARGS: --kill-on-bad-exit=1 --export=HOME,PMCR_INSTANCE,PMCR_JOB,PMCR_ROLE,"
                       "PMCR_RUN_REPORT,PMCR_SERVERS -n 2 ./prog\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("standby ARGS: --kill-on-bad-exit=1 --overlap --export=HOME,PMCR_INSTANCE,PMCR_JOB,"
                       "PMCR_PRIMARY_INSTANCE,PMCR_ROLE,PMCR_RUN_REPORT,PMCR_SERVERS -n 2 ./prog\n"),
            std::string::npos)
      << r.out;
}

// Relaunches are spaced out (the delay doubles), and none starts while the
// server does not answer: against a stalled server pmcr-run waits instead
// of burning its relaunches.
TEST(PmcrRun, BacksOffAndWaitsForTheServerToAnswer) {
  TempPath pool("srv"), counter("count");
  ServerProcess server(ServerConfig(pool.str(), "64M"));
  ASSERT_TRUE(server.start()) << server.log();
  // Attempts 1 and 2 fail; attempt 1 stalls the server (SIGSTOP) as it goes.
  const std::string script = "n=$(wc -l < " + counter.str() + " 2>/dev/null || echo 0); echo a >> " + counter.str() +
                             "; [ \"$n\" -eq 0 ] && kill -STOP " + std::to_string(server.pid()) +
                             "; [ \"$n\" -ge 2 ]";
  std::thread resume([&] {
    std::this_thread::sleep_for(5s);
    ::kill(server.pid(), SIGCONT);
  });
  const JobRun r = run({PMCR_RUN, "--servers", server.address(), "--job", "x", "--max-restarts", "3", "--delay", "0.2",
                        "--", "sh", "-c", script},
                       {}, 90s);
  resume.join();
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(count_lines(counter.str()), 3) << r.out;
  EXPECT_NE(r.out.find("relaunching in 200 ms"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("relaunching in 400 ms"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("waiting for pmserver at " + server.address() + " to answer"), std::string::npos) << r.out;
  EXPECT_GE(r.elapsed, 4s) << "relaunched while the server was stalled:\n" << r.out;
}

// A pool too small for the job: the checkpoint fails with PMCR_E_NOSPACE,
// which no relaunch can cure; pmcr-run stops after the first attempt and
// says why (libpmcr reports it through PMCR_RUN_REPORT).
TEST(PmcrRun, DoesNotRelaunchAFailureThatCannotGoAwayByItself) {
  TempPath pool("tiny");
  std::vector<std::string> argv = {PMCR_RUN, "--local-pool", pool.str(), "--local-size", "4M", "--servers",
                                   "127.0.0.1:0", "--job", job_name(), "--max-restarts", "3", "--delay", "0", "--"};
  const auto cmd = mpiexec(2, {PMCR_HEAT2D, "--nx", "1024", "--ny", "512", "--steps", "100", "--every", "10"});
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  const JobRun r = run(argv, {}, 120s);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("no space left in the pool"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not relaunching: this will not go away by itself"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("attempt 2 of"), std::string::npos) << r.out;
}

// PMCR_ENCRYPT=1 without a data key: pmcr-run makes one for the job (mode
// 0600 in a 0700 directory of HOME), says so, and uses it again in the next
// run, which restarts bit-exact from the encrypted checkpoint.
TEST(PmcrRun, EncryptsWithADataKeyOfTheJobsOwn) {
  TempPath pool("encrypted");
  const std::string home = "/tmp/pmcr-home-" + std::to_string(::getpid());
  tools::run({"rm", "-rf", home}, {}, 30s, false);
  ASSERT_EQ(::mkdir(home.c_str(), 0755), 0);
  const std::string job = job_name();
  const auto phase = [&](const char* filter) {
    std::vector<std::string> argv = {PMCR_RUN, "--local-pool", pool.str(), "--local-size", "64M", "--servers",
                                     "127.0.0.1:0", "--job", job, "--max-restarts", "0", "--"};
    const auto cmd = mpiexec(2, {PMCR_MPI_API_TEST, "--gtest_also_run_disabled_tests", std::string("--gtest_filter=") + filter});
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return run(argv, {"HOME=" + home, "PMCR_ENCRYPT=1"}, 120s);
  };
  JobRun r = phase("*EncryptedWrite");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("made a data key for job"), std::string::npos) << r.out;
  const std::string key = home + "/.pmcr/keys/" + job + ".key";
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0) << r.out;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((home + "/.pmcr/keys").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  r = phase("*EncryptedRestart");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("all passed"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("made a data key"), std::string::npos) << "a second key for the same job: " << r.out;
  tools::run({"rm", "-rf", home}, {}, 30s, false);
}

// pmcr-run killed with SIGKILL cannot clean up: its children (the launch
// command and pmserver) must go by themselves, so that a rerun finds the
// pool free.
TEST(PmcrRun, KilledLauncherTakesItsChildrenAlong) {
  TempPath pool("pool"), out("out");
  const std::vector<std::string> argv = {PMCR_RUN, "--local-pool", pool.str(), "--local-size", "64M", "--servers",
                                         "127.0.0.1:0", "--job", "orphan", "--", "sh", "-c", "echo child $$; sleep 120"};
  const pid_t launcher = tools::spawn(argv, tools::SpawnOptions{{}, out.str(), out.str()});
  std::string text, child, srv;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < until &&
         ((child = token_after(text = tools::read_file(out.str()), "child ")).empty() ||
          (srv = token_after(text, "pmserver (pid ")).empty()))
    std::this_thread::sleep_for(20ms);
  ASSERT_FALSE(child.empty() || srv.empty()) << text;
  const pid_t child_pid = std::stoi(child), server_pid = std::stoi(srv);
  ::kill(launcher, SIGKILL);
  int status = 0;
  waitpid(launcher, &status, 0);
  EXPECT_TRUE(wait_gone(child_pid, 10s)) << "the job outlived pmcr-run";
  EXPECT_TRUE(wait_gone(server_pid, 15s)) << "pmserver outlived pmcr-run";
  if (!gone(child_pid)) ::kill(child_pid, SIGKILL);
  if (!gone(server_pid)) ::kill(server_pid, SIGKILL);
  // A rerun on the same pool works.
  const JobRun again = run({PMCR_RUN, "--local-pool", pool.str(), "--servers", "127.0.0.1:0", "--job", "orphan", "--",
                            "true"},
                           {}, 60s);
  EXPECT_EQ(again.code, 0) << again.out;
}

// A pool that another pmserver holds: a clear message naming it, not its log.
TEST(PmcrRun, PoolHeldByAnotherServerIsNamed) {
  TempPath pool("held");
  ServerProcess holder(ServerConfig(pool.str(), "64M"));
  ASSERT_TRUE(holder.start()) << holder.log();
  const JobRun r = run({PMCR_RUN, "--local-pool", pool.str(), "--servers", "127.0.0.1:0", "--job", "held", "--", "true"},
                       {}, 60s);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("is in use by another pmserver (pid " + std::to_string(holder.pid()) + ")"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("listening on"), std::string::npos) << "the holder's log was shown:\n" << r.out;
}

// A large pool: pmcr-run allows time in proportion to its size, says what
// it is waiting for, and pmserver listens before faulting the pool in.
TEST(PmcrRun, LargePoolStartsAndSaysWhatItWaitsFor) {
  TempPath pool("large");
  const JobRun r = run({PMCR_RUN, "--local-pool", pool.str(), "--local-size", "3G", "--servers", "127.0.0.1:0", "--job",
                        "large", "--", "true"},
                       {}, 240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("allowing 90 s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("waiting for pmserver: allocating pool"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3.0 GiB of 3.0 GiB"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace pmcr::test
