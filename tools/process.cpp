#include "process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>
#include <cstring>
#include <thread>

#include "error.hpp"

extern char** environ;

namespace pmcr::tools {

pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  std::vector<std::string> args = argv, env;
  const auto name_of = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  for (char** e = environ; *e; ++e) {
    const std::string kv(*e);
    bool overridden = false;
    for (const auto& o : options.env) overridden = overridden || name_of(o) == name_of(kv);
    if (!overridden) env.push_back(kv);
  }
  env.insert(env.end(), options.env.begin(), options.env.end());
  std::vector<char*> a, e;
  for (auto& s : args) a.push_back(s.data());
  a.push_back(nullptr);
  for (auto& s : env) e.push_back(s.data());
  e.push_back(nullptr);
  const int flags = O_WRONLY | O_CREAT | (options.append ? O_APPEND : O_TRUNC);
  if (options.parent_death_signal) {
    // fork + exec, to set PR_SET_PDEATHSIG in the child (posix_spawn cannot).
    // Between them only async-signal-safe calls: everything is prepared here.
    const pid_t parent = ::getpid();
    const std::string out = options.out, err = options.err;
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(PMCR_E_IO, "cannot start " + args[0] + ": fork: " + std::strerror(errno));
    if (pid == 0) {
      if (::prctl(PR_SET_PDEATHSIG, options.parent_death_signal) != 0 || ::getppid() != parent) _exit(127);
      if (!out.empty()) {
        const int fd = ::open(out.c_str(), flags, 0644);
        if (fd < 0 || ::dup2(fd, 1) < 0) _exit(127);
        ::close(fd);
      }
      if (!err.empty() && err == out) {
        if (::dup2(1, 2) < 0) _exit(127);
      } else if (!err.empty()) {
        const int fd = ::open(err.c_str(), flags, 0644);
        if (fd < 0 || ::dup2(fd, 2) < 0) _exit(127);
        ::close(fd);
      }
      ::execvpe(a[0], a.data(), e.data());
      _exit(127);
    }
    return pid;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!options.out.empty()) posix_spawn_file_actions_addopen(&fa, 1, options.out.c_str(), flags, 0644);
  if (!options.err.empty() && options.err == options.out) posix_spawn_file_actions_adddup2(&fa, 1, 2);
  else if (!options.err.empty()) posix_spawn_file_actions_addopen(&fa, 2, options.err.c_str(), flags, 0644);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args.at(0).c_str(), &fa, nullptr, a.data(), e.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw Error(PMCR_E_IO, "cannot start " + args[0] + ": " + std::strerror(rc));
  return pid;
}

bool wait_for(pid_t pid, std::chrono::milliseconds timeout, int* status, bool kill) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int st = 0;
  while (waitpid(pid, &st, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() >= deadline) {
      if (kill) {
        ::kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        if (status) *status = st;
      }
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (status) *status = st;
  return true;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

namespace {

// A temporary file for captured output, removed with its owner.
struct TempFile {
  TempFile() {
    char path[] = "/tmp/pmcr-output-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0) throw Error(PMCR_E_IO, std::string("cannot create a file in /tmp: ") + std::strerror(errno));
    ::close(fd);
    name = path;
  }
  ~TempFile() { ::unlink(name.c_str()); }
  std::string read() const { return read_file(name); }
  std::string name;
};

}  // namespace

RunResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
              std::chrono::milliseconds timeout, bool merge_err) {
  TempFile out, err;
  SpawnOptions so;
  so.env = env;
  so.out = out.name;
  so.err = merge_err ? out.name : err.name;
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = spawn(argv, so);
  int status = 0;
  RunResult r;
  if (wait_for(pid, timeout, &status, true)) r.code = exit_code(status);
  r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  r.out = out.read();
  if (!merge_err) r.err = err.read();
  return r;
}

// read(2), not an istreambuf_iterator: a read error (a /proc file of a
// process that has just exited gives ESRCH) makes libstdc++'s filebuf throw
// from the iterator instead of ending the range.
std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string self_dir() {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "";
  self[n] = 0;
  const std::string path(self);
  return path.substr(0, path.rfind('/'));
}

namespace {

// Binds a loopback TCP socket to PORT (0: any) and returns the port it got,
// or 0 if it could not.
uint16_t bind_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(PMCR_E_IO, std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  return ok ? ntohs(a.sin_port) : 0;
}

}  // namespace

// A port the kernel gives out for connect() (the ephemeral range) can be
// taken by any outgoing connection between this check and the listen that
// follows it: ports are chosen below that range, at random, where only
// another listener could take them.
uint16_t free_port() {
  unsigned low = 32768, high = 60999;
  if (std::FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%u %u", &low, &high) != 2) low = 32768;
    std::fclose(f);
  }
  if (low > 12000) {
    std::random_device seed;
    std::mt19937 rng(seed());
    std::uniform_int_distribution<unsigned> pick(10000, low - 1);
    for (int i = 0; i < 64; ++i)
      if (const uint16_t port = bind_loopback(static_cast<uint16_t>(pick(rng)))) return port;
  }
  if (const uint16_t port = bind_loopback(0)) return port;
  throw Error(PMCR_E_IO, std::string("no free loopback port: ") + std::strerror(errno));
}

}  // namespace pmcr::tools
