#include "local_server.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "error.hpp"
#include "process.hpp"
#include "text.hpp"

namespace pmcr::tools {
using namespace std::chrono_literals;

namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

LocalServer::LocalServer(LocalServerOptions options) : options_(std::move(options)) {
  if (options_.log.empty()) options_.log = options_.pool + ".log";
  // The ready, progress and early-output files are this launcher's own: a
  // server started by someone else on the same pool cannot be mistaken for
  // ours, nor mix its output into what we report.
  const std::string tag = "." + std::to_string(::getpid()) + "-" + std::to_string(reinterpret_cast<uintptr_t>(this) % 100000);
  ready_ = options_.pool + ".ready" + tag;
  progress_ = options_.pool + ".progress" + tag;
  early_ = options_.pool + ".start" + tag;
}

LocalServer::~LocalServer() {
  if (pid_ > 0) stop();
  for (const auto& f : {ready_, progress_, early_}) ::unlink(f.c_str());
}

std::string LocalServer::address() const {
  HostPort hp = parse_host_port(options_.listen, kDefaultPort);
  if (hp.host == "0.0.0.0" || hp.host == "::") hp.host = "127.0.0.1";
  hp.port = port_;
  return to_string(hp);
}

std::chrono::milliseconds LocalServer::start_timeout() const {
  if (options_.start_timeout.count() > 0) return options_.start_timeout;
  // A minute, plus 10 s per GiB: creating a pool allocates it (0.3-0.5 s
  // per GiB measured here), opening one scans its catalogue; faulting it in
  // happens after the server listens. Generous, for loaded machines.
  uint64_t bytes = 0;
  struct stat st {};
  if (::stat(options_.pool.c_str(), &st) == 0) bytes = static_cast<uint64_t>(st.st_size);
  else if (!options_.size.empty()) bytes = parse_size(options_.size);
  return 60s + std::chrono::milliseconds(10000 * (bytes >> 20) / 1024);
}

void LocalServer::forget_port() {
  HostPort hp = parse_host_port(options_.listen, kDefaultPort);
  hp.port = 0;
  options_.listen = to_string(hp);
}

bool LocalServer::start() {
  if (pid_ > 0) throw Error(PMCR_E_STATE, "pmserver is already running (pid " + std::to_string(pid_) + ")");
  for (const auto& f : {ready_, progress_}) ::unlink(f.c_str());
  std::vector<std::string> argv = {options_.pmserver, "--pool",          options_.pool,    "--listen",
                                   options_.listen,   "--ready-file",    ready_,           "--progress-file",
                                   progress_,         "--log-file",      options_.log};
  if (!options_.size.empty()) {
    argv.push_back("--size");
    argv.push_back(options_.size);
  }
  argv.insert(argv.end(), options_.args.begin(), options_.args.end());
  argv.insert(argv.begin(), options_.wrapper.begin(), options_.wrapper.end());
  SpawnOptions so{options_.env, "/dev/null", early_, false, options_.parent_death_signal};
  const auto timeout = start_timeout();
  pid_ = spawn(argv, so);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string progress;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string line = first_line(ready_);
    if (!line.empty()) {
      port_ = parse_host_port(line, kDefaultPort).port;
      // A restart comes back on the same port, as a real server would.
      HostPort hp = parse_host_port(options_.listen, kDefaultPort);
      hp.port = port_;
      options_.listen = to_string(hp);
      return true;
    }
    if (const std::string now = first_line(progress_); !now.empty() && now != progress) {
      progress = now;
      if (options_.on_progress) options_.on_progress(progress);
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_status_ = status;
      return false;
    }
    std::this_thread::sleep_for(5ms);
  }
  kill9();
  throw Error(PMCR_E_TIMEDOUT, "pmserver did not start listening within " + std::to_string(timeout.count() / 1000) +
                                   " s (last: " + (progress.empty() ? "nothing reported" : progress) + "); see " +
                                   options_.log + " and " + early_);
}

int LocalServer::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!wait_exit(grace, &status)) {
    kill9();
    return -1;
  }
  return status;
}

void LocalServer::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  waitpid(pid_, &exit_status_, 0);
  pid_ = -1;
}

bool LocalServer::wait_exit(std::chrono::milliseconds timeout, int* status) {
  if (pid_ > 0) {
    if (!wait_for(pid_, timeout, &exit_status_, false)) return false;
    pid_ = -1;
  }
  if (status) *status = exit_status_;
  return true;
}

std::string LocalServer::log() const { return read_file(options_.log); }

std::string LocalServer::startup_errors() const { return read_file(early_); }

std::string LocalServer::progress() const { return first_line(progress_); }

std::string LocalServer::find_pmserver() {
  const std::string dir = self_dir();
  if (!dir.empty())
    for (const std::string& candidate : {dir + "/pmserver", dir + "/../pmserver/pmserver"})
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  return "pmserver";
}

}  // namespace pmcr::tools
