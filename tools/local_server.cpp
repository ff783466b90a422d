#include "local_server.hpp"

#include <signal.h>
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

LocalServer::LocalServer(LocalServerOptions options) : options_(std::move(options)) {
  if (options_.log.empty()) options_.log = options_.pool + ".log";
  ready_ = options_.pool + ".ready";
}

LocalServer::~LocalServer() {
  if (pid_ > 0) stop();
  ::unlink(ready_.c_str());
}

std::string LocalServer::address() const {
  HostPort hp = parse_host_port(options_.listen, kDefaultPort);
  if (hp.host == "0.0.0.0" || hp.host == "::") hp.host = "127.0.0.1";
  hp.port = port_;
  return to_string(hp);
}

bool LocalServer::start() {
  if (pid_ > 0) throw Error(PMCR_E_STATE, "pmserver is already running (pid " + std::to_string(pid_) + ")");
  ::unlink(ready_.c_str());
  std::vector<std::string> argv = {options_.pmserver, "--pool", options_.pool, "--listen", options_.listen,
                                   "--ready-file", ready_};
  if (!options_.size.empty()) {
    argv.push_back("--size");
    argv.push_back(options_.size);
  }
  argv.insert(argv.end(), options_.args.begin(), options_.args.end());
  pid_ = spawn(argv, SpawnOptions{options_.env, "/dev/null", options_.log, true});
  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(ready_);
    std::string line;
    if (in && std::getline(in, line) && !line.empty()) {
      port_ = parse_host_port(line, kDefaultPort).port;
      // A restart comes back on the same port, as a real server would.
      HostPort hp = parse_host_port(options_.listen, kDefaultPort);
      hp.port = port_;
      options_.listen = to_string(hp);
      return true;
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
  throw Error(PMCR_E_TIMEDOUT, "pmserver did not start listening within " +
                                   std::to_string(options_.start_timeout.count()) + " ms; see " + options_.log);
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

std::string LocalServer::log() const {
  std::ifstream in(options_.log);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string LocalServer::find_pmserver() {
  const std::string dir = self_dir();
  if (!dir.empty())
    for (const std::string& candidate : {dir + "/pmserver", dir + "/../pmserver/pmserver"})
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  return "pmserver";
}

}  // namespace pmcr::tools
