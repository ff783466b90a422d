// Helpers of the MPI tests: MPI jobs launched through FindMPI's MPIEXEC
// variables, heat2d runs and their reference checksum, pmcr-run.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"
#include "server_process.hpp"

namespace pmcr::test {

using namespace std::chrono_literals;

using JobRun = tools::RunResult;

// How many times WHAT occurs in TEXT.
inline int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// ARGV with ENV, stdout and stderr together.
inline JobRun run(const std::vector<std::string>& argv, const std::vector<std::string>& env, std::chrono::seconds timeout) {
  return tools::run(argv, env, timeout, true);
}

inline std::vector<std::string> split_flags(const std::string& flags) {
  std::vector<std::string> out;
  std::istringstream ss(flags);
  for (std::string w; ss >> w;) out.push_back(w);
  return out;
}

// MPIEXEC [PREFLAGS] NUMPROC_FLAG NP PROGRAM ARGS...
inline std::vector<std::string> mpiexec(int np, const std::vector<std::string>& program) {
  std::vector<std::string> argv = {PMCR_MPIEXEC};
  for (const auto& f : split_flags(PMCR_MPIEXEC_PREFLAGS)) argv.push_back(f);
  argv.push_back(PMCR_MPIEXEC_NUMPROC_FLAG);
  argv.push_back(std::to_string(np));
  argv.insert(argv.end(), program.begin(), program.end());
  return argv;
}

inline std::string job_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->name()).substr(0, 32);
  std::replace(name.begin(), name.end(), '/', '-');  // a parameterised test's
  return name + "." + std::to_string(::getpid());
}

// ---- heat2d ----

inline const std::vector<std::string> kHeatArgs = {"--nx", "256", "--ny", "256", "--steps", "400", "--every", "50"};
inline constexpr int kRanks = 4;

inline std::string final_checksum(const std::string& out) {
  const std::string sum = token_after(out, "final checksum ", "0123456789abcdef");
  return sum.size() == 16 && out.find("final checksum " + sum + " after 400 steps") != std::string::npos ? sum : "";
}

inline std::vector<std::string> heat2d() {
  std::vector<std::string> p = {PMCR_HEAT2D};
  p.insert(p.end(), kHeatArgs.begin(), kHeatArgs.end());
  return p;
}

// A run of heat2d that never failed: its final checksum, and what it left
// on its server.
struct Reference {
  std::string checksum;
  std::vector<proto::VersionEntry> versions;
};

inline Reference reference_run() {
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
}

// The reference checksum every fault test compares with. heat2d is
// deterministic, so it is computed once per build of heat2d and kept in a
// file beside the binary (each test is a process of its own: recomputing
// it cost every test a whole extra run).
inline const std::string& reference_checksum() {
  static const std::string sum = [] {
    struct stat st {};
    ::stat(PMCR_HEAT2D, &st);
    const std::string cache = std::string(PMCR_HEAT2D) + ".reference-" + std::to_string(st.st_mtime) + "-" +
                              std::to_string(st.st_size);
    std::string text = tools::read_file(cache);
    if (text.size() == 16) return text;
    text = reference_run().checksum;
    if (text.size() == 16) {
      const std::string tmp = cache + "." + std::to_string(::getpid());
      std::ofstream(tmp) << text;
      std::rename(tmp.c_str(), cache.c_str());
    }
    return text;
  }();
  return sum;
}

// pmcr-run --local-pool on a pool of this test and a port the kernel picks,
// with ENV, of PROGRAM (heat2d) on kRanks ranks.
inline JobRun pmcr_run(const std::vector<std::string>& env, unsigned max_restarts, const std::string& tag,
                       const std::vector<std::string>& program = heat2d()) {
  TempPath pool(tag);
  std::vector<std::string> argv = {PMCR_RUN, "--local-pool", pool.str(), "--local-size", "256M",
                                   "--servers", "127.0.0.1:0",
                                   "--job", job_name(), "--max-restarts", std::to_string(max_restarts), "--delay", "0", "--"};
  const auto cmd = mpiexec(kRanks, program);
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return run(argv, env, 240s);
}

// A pmcr-run (or other) command running in the background, its output in a
// file of the test's.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& tag = "out")
      : out_(tag) {
    pid_ = tools::spawn(argv, tools::SpawnOptions{env, out_.str(), out_.str()});
  }
  ~Background() {
    if (pid_ > 0) tools::wait_for(pid_, 1ms, nullptr, true);
  }
  std::string output() const { return tools::read_file(out_.str()); }
  // Waits until the output holds TEXT; returns the number right after it
  // (or TEXT itself if none follows), "" at LIMIT.
  std::string wait_for(const std::string& text, std::chrono::seconds limit) const {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      const std::string out = output();
      if (out.find(text) != std::string::npos) {
        const std::string n = token_after(out, text);
        return n.empty() ? text : n;
      }
      std::this_thread::sleep_for(20ms);
    }
    return "";
  }
  // Exit code, or -1 if it did not end within LIMIT (then it is killed).
  int finish(std::chrono::seconds limit) {
    int status = 0;
    const bool ok = tools::wait_for(pid_, limit, &status, true);
    pid_ = -1;
    return ok ? tools::exit_code(status) : -1;
  }
  pid_t pid() const { return pid_; }

 private:
  TempPath out_;
  pid_t pid_ = -1;
};

// pmcr-run --local-pool POOL of heat2d HEAT (EXTRA: more pmcr-run options).
inline std::vector<std::string> local_run(const std::string& pool, const std::string& job,
                                          const std::vector<std::string>& heat, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {PMCR_RUN, "--local-pool", pool, "--local-size", "256M", "--servers", "127.0.0.1:0",
                                   "--job", job, "--max-restarts", "3", "--delay", "0.1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("--");
  std::vector<std::string> program = {PMCR_HEAT2D};
  program.insert(program.end(), heat.begin(), heat.end());
  const auto cmd = mpiexec(kRanks, program);
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return argv;
}

// The heat2d processes of JOB that are in state STATE ('T': stopped; 0: any)
// (with ROLE: of that PMCR_ROLE only).
inline std::vector<pid_t> heat2d_ranks(const std::string& job, char state, const std::string& role = "") {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (const dirent* e = ::readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    const std::string stat = tools::read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos || stat.substr(open + 1, close - open - 1) != "heat2d")
      continue;
    if (state && (close + 2 >= stat.size() || stat[close + 2] != state)) continue;
    std::string env = tools::read_file("/proc/" + std::to_string(pid) + "/environ");
    for (char& c : env)
      if (c == '\0') c = '\n';
    env = "\n" + env;
    if (env.find("\nPMCR_JOB=" + job + "\n") != std::string::npos &&
        (role.empty() || env.find("\nPMCR_ROLE=" + role + "\n") != std::string::npos))
      out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

// CPU time process PID used so far, all its threads, in seconds (from
// schedstat: nanoseconds, not clock ticks).
inline double process_cpu_seconds(pid_t pid) {
  double s = 0;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name + "/schedstat");
    long long ns = 0;
    if (in >> ns) s += static_cast<double>(ns) / 1e9;
  }
  ::closedir(d);
  return s;
}

}  // namespace pmcr::test
