// CPU time, to tell a run that waits from one that is bound by the cores it
// shares (pmcr-bench ckpt reports it next to every time it measures).
#pragma once

#include <dirent.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <cmath>
#include <fstream>
#include <string>

namespace pmcr::bench {

// A baseline's median time, and the median CPU time every process of it
// spent moving the bytes (all its cores), in milliseconds.
struct Limit {
  double ms = NAN;
  double cpu_ms = NAN;
};

// Seconds on a CPU (user and system) of this process, every thread.
inline double own_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// Seconds on a CPU of process PID so far, its live threads summed
// (/proc/PID/task/*/schedstat, in nanoseconds); NAN if it cannot be read.
inline double process_cpu_seconds(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return NAN;
  double total = 0;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name + "/schedstat");
    unsigned long long ns = 0;
    if (in >> ns) total += static_cast<double>(ns) * 1e-9;
  }
  ::closedir(d);
  return total;
}

}  // namespace pmcr::bench
