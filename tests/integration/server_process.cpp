#include "server_process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace pmcr::test {
namespace {

using namespace std::chrono_literals;

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> environment_with(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  for (const auto& x : extra) env.push_back(x);
  return env;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

ServerProcess::ServerProcess(ServerConfig config) : config_(std::move(config)) {
  log_ = config_.pool + ".log";
  ready_ = config_.pool + ".ready";
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) stop();
  ::unlink(ready_.c_str());
}

bool ServerProcess::start() {
  if (pid_ > 0) throw std::logic_error("pmserver already running");
  ::unlink(ready_.c_str());
  std::vector<std::string> argv = {PMSERVER_PATH, "--pool", config_.pool, "--size", config_.size,
                                   "--listen", "127.0.0.1:" + std::to_string(config_.port), "--ready-file", ready_,
                                   "--log-level", "debug"};
  argv.insert(argv.end(), config_.args.begin(), config_.args.end());
  auto env = environment_with(config_.env);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  auto cargv = c_strings(argv);
  auto cenv = c_strings(env);
  const int rc = posix_spawn(&pid_, PMSERVER_PATH, &fa, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error(std::string("cannot start pmserver: ") + std::strerror(rc));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(ready_);
    std::string line;
    if (in && std::getline(in, line) && !line.empty()) {
      port_ = static_cast<uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
      if (config_.port == 0) config_.port = port_;  // a restart reuses the same port
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_status_ = status;
      return false;
    }
    std::this_thread::sleep_for(10ms);
  }
  kill9();
  throw std::runtime_error("pmserver did not start listening within 10 s; log:\n" + log());
}

int ServerProcess::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  if (!wait_exit(10s, &status)) {
    ADD_FAILURE() << "pmserver did not stop within 10 s of SIGTERM; killing it";
    kill9();
    return -1;
  }
  return status;
}

void ServerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  waitpid(pid_, &exit_status_, 0);
  pid_ = -1;
}

bool ServerProcess::wait_exit(std::chrono::milliseconds timeout, int* status) {
  if (pid_ <= 0) {
    if (status) *status = exit_status_;
    return true;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      exit_status_ = st;
      if (status) *status = st;
      pid_ = -1;
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
}

std::string ServerProcess::log() const { return slurp(log_); }

pmcr::client::Client ServerProcess::connect(std::chrono::milliseconds timeout) const {
  pmcr::client::Options o;
  o.server = address();
  o.name = "pmcr-test";
  o.timeout = timeout;
  o.connect_timeout = std::chrono::milliseconds(5000);
  return pmcr::client::Client(o);
}

TempPath::TempPath(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  path_ = "/dev/shm/pmcr-it-" + std::to_string(getpid()) + "-" + (info ? info->name() : "x") + "-" + tag;
  ::unlink(path_.c_str());
}

TempPath::~TempPath() {
  ::unlink(path_.c_str());
  ::unlink((path_ + ".log").c_str());
}

int run_cli(const std::vector<std::string>& args, std::string* out, std::string* err) {
  const std::string base = "/tmp/pmcr-cli-" + std::to_string(getpid());
  std::vector<std::string> argv = {PMCR_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, (base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, (base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  auto cargv = c_strings(argv);
  pid_t pid;
  if (posix_spawn(&pid, PMCR_CLI_PATH, &fa, nullptr, cargv.data(), environ) != 0) return -1;
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "pmcr CLI hung: killed after 60 s";
      break;
    }
    std::this_thread::sleep_for(2ms);
  }
  if (out) *out = slurp(base + ".out");
  if (err) *err = slurp(base + ".err");
  ::unlink((base + ".out").c_str());
  ::unlink((base + ".err").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<uint8_t> pattern(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t x = rng();
    std::memcpy(v.data() + i, &x, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<uint8_t>(rng());
  return v;
}

}  // namespace pmcr::test
