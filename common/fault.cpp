#include "fault.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace pmcr::fault {
namespace {

struct Armed {
  std::mutex mu;
  std::string name;
  long nth = 0;
  enum Action { Kill, Stop, Pause, Fail } action = Kill;
  std::atomic<long> hits{0};
  int trace_fd = -1;
  std::string once;  // PMCR_FAULT_ONCE
};

// "name:N[:action]" into A.
void parse(Armed& a, const std::string& s) {
  const auto c1 = s.find(':');
  a.name = s.substr(0, c1);
  a.nth = 1;
  a.action = Armed::Kill;
  if (c1 != std::string::npos) {
    const auto c2 = s.find(':', c1 + 1);
    a.nth = std::atol(s.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1).c_str());
    if (c2 != std::string::npos) {
      const std::string act = s.substr(c2 + 1);
      a.action = act == "fail" ? Armed::Fail : act == "stop" ? Armed::Stop : act == "pause" ? Armed::Pause : Armed::Kill;
    }
  }
  if (a.nth <= 0) a.nth = 1;
}

void trace(const Armed& a, const std::string& line) {
  if (a.trace_fd >= 0) (void)!::write(a.trace_fd, line.data(), line.size());
}

Armed& armed() {
  static Armed a;
  static std::once_flag once;
  std::call_once(once, [] {
    if (const char* spec = std::getenv("PMCR_FAULT")) parse(a, spec);
    if (const char* path = std::getenv("PMCR_FAULT_ONCE")) a.once = path;
    if (const char* path = std::getenv("PMCR_FAULT_TRACE"))
      a.trace_fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  });
  return a;
}

}  // namespace

bool hit(const char* name) noexcept {
  Armed& a = armed();
  trace(a, std::string(name) + "\n");
  Armed::Action action;
  {
    // Whether this hit fires, decided under the lock; what it does, outside
    // it: a pause or a stop holds up only the thread that hit it, not
    // every other thread's fault points.
    std::lock_guard<std::mutex> lock(a.mu);
    if (a.name.empty() || a.name != name) return false;
    if (a.hits.fetch_add(1) + 1 != a.nth) return false;
    if (!a.once.empty()) {
      const int fd = ::open(a.once.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd < 0) return false;  // another process (or an earlier run) fired it
      ::close(fd);
    }
    action = a.action;
  }
  if (action == Armed::Kill) ::kill(::getpid(), SIGKILL);
  if (action == Armed::Stop) {
    trace(a, "stopped " + std::to_string(::getpid()) + " " + name + "\n");
    ::kill(::getpid(), SIGSTOP);
    return false;  // resumed: carry on as if nothing happened
  }
  if (action == Armed::Pause) {
    trace(a, "paused " + std::to_string(::getpid()) + " " + name + "\n");
    // PMCR_FAULT_PAUSE_MS: how long (default 2 s).
    const char* ms = std::getenv("PMCR_FAULT_PAUSE_MS");
    const long n = ms ? std::atol(ms) : 2000;
    ::usleep(static_cast<useconds_t>(std::clamp(n, 0L, 600000L)) * 1000);
    return false;
  }
  return true;
}

}  // namespace pmcr::fault

namespace pmcr::fault {

void arm(const char* name, long nth, bool kill) noexcept {
  Armed& a = armed();
  std::lock_guard<std::mutex> lock(a.mu);
  a.name = name ? name : "";
  a.nth = nth > 0 ? nth : 1;
  a.action = kill ? Armed::Kill : Armed::Fail;
  a.hits = 0;
}

void arm_spec(const char* spec) noexcept {
  Armed& a = armed();
  std::lock_guard<std::mutex> lock(a.mu);
  try {
    parse(a, spec ? spec : "");
  } catch (...) {
    a.name.clear();
  }
  a.once.clear();
  a.hits = 0;
}

}  // namespace pmcr::fault
