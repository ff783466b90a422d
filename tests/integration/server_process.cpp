#include "server_process.hpp"

#include "error.hpp"
#include "process.hpp"

#include <gtest/gtest.h>
#include <dirent.h>
#include <unistd.h>

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <utility>

namespace pmcr::test {
namespace {

// The environment of every test and of the processes it starts (set here,
// not as a ctest ENVIRONMENT list, which gtest_discover_tests in CMake 3.25
// mangles). Tests talk only to 127.0.0.1 and only over the loopback device:
// UCX would otherwise open extra tcp lanes to this host's other addresses.
// Open MPI refuses to run as root unless told it may (CI runs as root).
const bool kTestEnvironment = [] {
  for (const auto& [name, value] : {std::pair{"UCX_NET_DEVICES", "lo"}, std::pair{"UCX_WARN_UNUSED_ENV_VARS", "n"},
                                    std::pair{"PMCR_LOG_LEVEL", "warn"}, std::pair{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                                    std::pair{"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"}})
    ::setenv(name, value, 0);
  return true;
}();

using namespace std::chrono_literals;

}  // namespace

namespace {
pmcr::tools::LocalServerOptions options_for(const ServerConfig& c) {
  pmcr::tools::LocalServerOptions o;
  o.pmserver = PMSERVER_PATH;
  o.pool = c.pool;
  o.size = c.size;
  o.listen = c.host + ":" + std::to_string(c.port);
  o.wrapper = c.wrapper;
  o.env = c.env;
  o.args = c.args;
  if (!c.key_file.empty()) o.args.insert(o.args.end(), {"--auth", "key", "--key-file", c.key_file});
  o.args.push_back("--log-level");
  o.args.push_back("debug");
  return o;
}
}  // namespace

ServerProcess::ServerProcess(ServerConfig config) : server_(options_for(config)), key_file_(config.key_file) {}

bool ServerProcess::start() { return server_.start(); }

int ServerProcess::stop() {
  if (!server_.running()) return -1;
  const int status = server_.stop(10s);
  if (status == -1) ADD_FAILURE() << "pmserver did not stop within 10 s of SIGTERM; it was killed";
  return status;
}

pmcr::client::Client ServerProcess::connect(std::chrono::milliseconds timeout, pmcr::client::DataPath path) const {
  return pmcr::client::Client(client_options(timeout, path));
}

pmcr::client::Options ServerProcess::client_options(std::chrono::milliseconds timeout,
                                                    pmcr::client::DataPath path) const {
  pmcr::client::Options o;
  o.data_path = path;
  o.server = address();
  o.name = "pmcr-test";
  o.timeout = timeout;
  o.connect_timeout = std::chrono::milliseconds(5000);
  if (!key_file_.empty()) o.credential = pmcr::client::Credential::from("key", key_file_, "");
  return o;
}

LogOnFailure::~LogOnFailure() {
  if (!::testing::Test::HasFailure()) return;
  std::ostringstream out;
  out << "pmserver (pid " << server_.pid() << ") " << (server_.running() ? "is running" : "has exited")
      << "; its warnings and errors:\n";
  std::istringstream log(server_.log());
  std::deque<std::string> last;
  for (std::string line; std::getline(log, line);) {
    if (line.find(" warning ") != std::string::npos || line.find(" error ") != std::string::npos ||
        line.find(" critical ") != std::string::npos || line.find("ERROR") != std::string::npos)
      out << line << "\n";
    last.push_back(line);
    if (last.size() > 60) last.pop_front();
  }
  out << "the end of its log:\n";
  for (const auto& line : last) out << line << "\n";
  std::cerr << out.str();
}

TempPath::TempPath(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? info->name() : "x";
  std::replace(name.begin(), name.end(), '/', '-');  // a parameterised test's
  path_ = "/dev/shm/pmcr-it-" + std::to_string(getpid()) + "-" + name + "-" + tag;
  ::unlink(path_.c_str());
}

TempPath::~TempPath() {
  // The path, and everything named after it: its .log, pmcr-run
  // --local-pool's .key, a spawned process's .err, and the .start, .ready
  // and .progress files of a pmserver that was SIGKILLed before it could
  // remove them (the name is this process's and this test's alone).
  ::unlink(path_.c_str());
  const auto slash = path_.rfind('/');
  const std::string dir = path_.substr(0, slash), prefix = path_.substr(slash + 1) + ".";
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (std::string(e->d_name).rfind(prefix, 0) == 0) ::unlinkat(::dirfd(d), e->d_name, 0);
    ::closedir(d);
  }
}

pmcr::tools::RunResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> argv = {PMCR_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = pmcr::tools::run(argv, env, 60s, false);
  if (r.code < 0) ADD_FAILURE() << "pmcr CLI hung: killed after 60 s";
  return r;
}

int run_cli(const std::vector<std::string>& args, std::string* out, std::string* err) {
  const auto r = run_cli(args, std::vector<std::string>{});
  if (out) *out = r.out;
  if (err) *err = r.err;
  return r.code;
}

std::string token_after(const std::string& text, const std::string& prefix, const char* chars) {
  const auto at = text.find(prefix);
  if (at == std::string::npos) return "";
  const auto begin = at + prefix.size();
  return text.substr(begin, text.find_first_not_of(chars, begin) - begin);
}

size_t open_fds(pid_t pid) {
  size_t n = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

std::map<std::string, int> read_fault_trace(const std::string& path) {
  std::map<std::string, int> counts;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) counts[line]++;
  return counts;
}

int sweep_fault_points(const std::string& pool, const std::map<std::string, int>& points,
                       const std::function<bool(const std::string&)>& pick,
                       const std::function<void(ServerProcess&)>& workload,
                       const std::function<void(ServerProcess&)>& verify) {
  // UCX 1.13's tcp transport asserts (tcp_ep.c:939, PUT_TX_WAITING_ACK) in
  // a client whose peer dies in the middle of a rendezvous put, and these
  // sweeps kill the server at every point: their clients, and the servers
  // they start, move rendezvous data without tcp put (the code is the same).
  struct Env {
    Env() { ::setenv("UCX_TCP_PUT_ENABLE", "n", 1); }
    ~Env() { ::unsetenv("UCX_TCP_PUT_ENABLE"); }
  } env;
  int runs = 0;
  for (const auto& [point, count] : points) {
    if (!pick(point)) continue;
    for (int n = 1; n <= count; ++n) {
      const std::string where = point + ":" + std::to_string(n);
      SCOPED_TRACE(where);
      ::unlink(pool.c_str());
      ServerProcess s({pool, "32M", 0, {"PMCR_FAULT=" + where}, {"--no-prefault"}});
      if (s.start()) workload(s);
      int status = 0;
      if (!s.wait_exit(10s, &status)) {
        ADD_FAILURE() << "the server survived its fault point\n" << s.log();
        return runs;
      }
      if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        ADD_FAILURE() << "status " << status << "\n" << s.log();
        return runs;
      }
      s.env().clear();
      // (The killed server's port can be taken meanwhile: a process of a
      // test running beside this one may be given it as its own. The
      // sweep's clients connect to wherever the server is, so it moves.)
      bool up = s.start();
      if (!up && s.log().find("the port is in use") != std::string::npos) {
        s.forget_port();
        up = s.start();
      }
      if (!up) {
        ADD_FAILURE() << "restart after a crash at " << where << " failed:\n" << s.log();
        return runs;
      }
      verify(s);
      if (::testing::Test::HasFailure()) {
        std::cerr << s.log();
        return runs;
      }
      runs++;
    }
  }
  return runs;
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
