// Child processes for the tools and tests: spawn with redirected output,
// wait with a deadline.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace pmcr::tools {

struct SpawnOptions {
  std::vector<std::string> env;  // NAME=VALUE added to (or replacing in) this process's environment
  std::string out = "/dev/null";  // stdout goes here ("": inherited)
  std::string err = "/dev/null";  // stderr goes here (the same file as out: shared; "": inherited)
  bool append = false;            // append to out/err instead of truncating
};

// Starts ARGV[0] (searched in PATH). Throws Error(PMCR_E_IO) if it cannot.
pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Waits up to TIMEOUT for PID to exit and stores its wait status. On
// timeout returns false, after SIGKILLing and reaping it if KILL is set.
bool wait_for(pid_t pid, std::chrono::milliseconds timeout, int* status, bool kill);

}  // namespace pmcr::tools
