// Child processes for the tools and tests: spawn with redirected output,
// wait with a deadline, run to completion capturing the output.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace pmcr::tools {

struct SpawnOptions {
  std::vector<std::string> env;  // NAME=VALUE added to (or replacing in) this process's environment
  std::string out = "/dev/null";  // stdout goes here ("": inherited)
  std::string err = "/dev/null";  // stderr goes here (the same file as out: shared; "": inherited)
  bool append = false;            // append to out/err instead of truncating
  // Signal the child gets when this process dies, however it dies (even
  // SIGKILL): children of a launcher must not outlive it. 0: none.
  int parent_death_signal = 0;
};

// Starts ARGV[0] (searched in PATH). Throws Error(PMCR_E_IO) if it cannot.
pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Waits up to TIMEOUT for PID to exit and stores its wait status. On
// timeout returns false, after SIGKILLing and reaping it if KILL is set.
bool wait_for(pid_t pid, std::chrono::milliseconds timeout, int* status, bool kill);

// A wait status as a shell shows it: the exit code, or 128 + the signal.
int exit_code(int status);

struct RunResult {
  int code = -1;    // exit_code(), or -1 if it was killed at the timeout
  std::string out;  // stdout (and stderr, if merged)
  std::string err;  // stderr, unless merged
  std::chrono::milliseconds elapsed{0};
};

// Runs ARGV (with ENV added) to completion, SIGKILLed at TIMEOUT, and
// returns its output; stderr goes into out if MERGE_ERR. Throws
// Error(PMCR_E_IO) if it cannot start.
RunResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
              std::chrono::milliseconds timeout, bool merge_err);

// The whole content of the file at PATH: "" if it cannot be opened, what
// was read before an error if reading fails (never throws).
std::string read_file(const std::string& path);

// A loopback TCP port that is free now, below the kernel's ephemeral range
// (where no outgoing connection takes it meanwhile), for servers that must
// be told their ports before they start.
uint16_t free_port();

// The directory of the running executable ("" if unknown).
std::string self_dir();

}  // namespace pmcr::tools
