#include "report.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "error.hpp"

namespace pmcr::report {

namespace {

std::atomic<int> g_lines{0};
std::atomic<bool> g_failed{false};  // a failure was written since the last success

void append(int code, const std::string& text) noexcept {
  const char* path = std::getenv(kVariable);
  // Failures are capped per process (a program that loops on a failing
  // call); the "ok" after one never is, so the last line stays the truth.
  if (!path || !*path || (code != 0 && g_lines.fetch_add(1) >= 64)) return;
  try {
    std::string line = std::to_string(code) + " " + text.substr(0, 2000);
    for (char& c : line)
      if (c == '\n') c = ' ';
    line += '\n';
    const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    (void)!::write(fd, line.data(), line.size());  // one write: lines of ranks do not interleave
    ::close(fd);
  } catch (...) {
  }
}

}  // namespace

void failure(int code, const std::string& text) noexcept {
  g_failed = true;
  append(code, text);
}

void success() noexcept {
  if (g_failed.exchange(false)) append(0, "ok");
}

std::optional<Reported> last(const std::string& path) {
  std::ifstream in(path);
  std::optional<Reported> found;
  for (std::string line; std::getline(in, line);) {
    const auto space = line.find(' ');
    char* end = nullptr;
    const long code = std::strtol(line.c_str(), &end, 10);
    if (space == std::string::npos || end != line.c_str() + space || code > 0) continue;
    if (code == 0) found.reset();
    else found = Reported{static_cast<int>(code), line.substr(space + 1)};
  }
  return found;
}

void takeover(const Takeover& t) noexcept {
  append(1, "takeover " + std::to_string(t.version) + " " + std::to_string(t.ms) + " " + std::to_string(t.bytes));
}

std::optional<Takeover> takeover_of(const std::string& path) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    Takeover t;
    if (std::sscanf(line.c_str(), "1 takeover %lld %lld %llu", &t.version, &t.ms, &t.bytes) == 3) return t;
  }
  return std::nullopt;
}

bool transient(int code) noexcept {
  switch (code) {
    case PMCR_E_INVAL:
    case PMCR_E_NOT_INIT:
    case PMCR_E_EXISTS:
    case PMCR_E_NOT_FOUND:
    case PMCR_E_SIZE:
    case PMCR_E_CONFIG:
    case PMCR_E_STATE:
    case PMCR_E_PERM:
    case PMCR_E_AUTH:
    case PMCR_E_NOSPACE:
    case PMCR_E_QUOTA:
    case PMCR_E_PROTOCOL:
    case PMCR_E_NRANKS:
    case PMCR_E_SUPERSEDED:
    case PMCR_E_FENCED:
    case PMCR_E_INTERNAL:
      return false;
    default:
      return true;
  }
}

}  // namespace pmcr::report
