// ServerProcess: a real pmserver from the build tree, on its own pool file
// and its own port on 127.0.0.1, stopped by its pid. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "client.hpp"
#include "code_of.hpp"
#include "local_server.hpp"
#include "process.hpp"

namespace pmcr::test {

struct ServerConfig {
  ServerConfig(std::string pool_path, std::string pool_size = "128M", uint16_t listen_port = 0,
               std::vector<std::string> extra_env = {}, std::vector<std::string> extra_args = {})
      : pool(std::move(pool_path)), size(std::move(pool_size)), port(listen_port), env(std::move(extra_env)),
        args(std::move(extra_args)) {}
  std::string pool;           // pool file path
  std::string size = "128M";  // --size when creating
  uint16_t port = 0;          // 0: an ephemeral port, chosen by the kernel
  std::vector<std::string> env;    // extra NAME=VALUE
  std::vector<std::string> args;   // extra arguments
  std::string host = "127.0.0.1";  // address to listen on
  std::vector<std::string> wrapper;  // run pmserver under this (ip netns exec NS)
  // With a key file: pmserver --auth key --key-file KEY_FILE, and clients
  // (client_options) prove that key. Without: --auth none (loopback only).
  std::string key_file;
};

class ServerProcess {
 public:
  explicit ServerProcess(ServerConfig config);

  // Starts pmserver (debug log) and waits until it listens; false if it
  // exited instead. A restart reuses the first start's port.
  bool start();
  // SIGTERM, then SIGKILL after 10 s (a test failure). Returns the wait status.
  int stop();
  void kill9() { server_.kill9(); }
  void forget_port() { server_.forget_port(); }  // the next start() listens where the kernel says
  bool wait_exit(std::chrono::milliseconds timeout, int* status = nullptr) { return server_.wait_exit(timeout, status); }
  bool running() const { return server_.running(); }
  pid_t pid() const { return server_.pid(); }
  uint16_t port() const { return server_.port(); }
  std::string address() const { return server_.address(); }
  // What it printed before it took its pool, then its own log.
  std::string log() const { return server_.startup_errors() + server_.log(); }
  // Extra environment of the next start.
  std::vector<std::string>& env() { return server_.options().env; }

  // A connected client with a bounded timeout, and its options.
  pmcr::client::Client connect(std::chrono::milliseconds timeout = std::chrono::seconds(20),
                               pmcr::client::DataPath path = pmcr::client::DataPath::Am) const;
  pmcr::client::Options client_options(std::chrono::milliseconds timeout = std::chrono::seconds(20),
                                       pmcr::client::DataPath path = pmcr::client::DataPath::Am) const;

 private:
  pmcr::tools::LocalServer server_;
  std::string key_file_;
};

// When the test has failed by the time it goes: whether SERVER is alive,
// its warnings and errors, and the end of its log, on stderr (a failure in
// CI then says what the server went through).
class LogOnFailure {
 public:
  explicit LogOnFailure(const ServerProcess& server) : server_(server) {}
  ~LogOnFailure();
  LogOnFailure(const LogOnFailure&) = delete;
  LogOnFailure& operator=(const LogOnFailure&) = delete;

 private:
  const ServerProcess& server_;
};

// A per-test path in /dev/shm that is removed (with its .log) at destruction.
class TempPath {
 public:
  explicit TempPath(const std::string& tag);
  ~TempPath();
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

// Runs the build-tree `pmcr` CLI; returns the exit status, fills stdout/err.
int run_cli(const std::vector<std::string>& args, std::string* out, std::string* err = nullptr);
// The same with ENV added (NAME=VALUE); stdout and stderr apart.
pmcr::tools::RunResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env);

std::vector<uint8_t> pattern(size_t n, uint64_t seed);

// Crash sweeps. The fault points a traced run passed (PMCR_FAULT_TRACE=PATH),
// with how often each.
std::map<std::string, int> read_fault_trace(const std::string& path);
// For every hit of every point in POINTS that PICK accepts: a pmserver on a
// new POOL (32M) armed to be SIGKILLed there runs WORKLOAD, is restarted on
// the same pool and checked by VERIFY. Stops at the first failure (with the
// server's log). Returns the runs.
int sweep_fault_points(const std::string& pool, const std::map<std::string, int>& points,
                       const std::function<bool(const std::string&)>& pick,
                       const std::function<void(ServerProcess&)>& workload,
                       const std::function<void(ServerProcess&)>& verify);

// The run of CHARS right after the first PREFIX in TEXT ("" if none):
// token_after(out, "pmserver (pid ") is the pid pmcr-run printed.
std::string token_after(const std::string& text, const std::string& prefix, const char* chars = "0123456789");

// How many file descriptors process PID has open.
size_t open_fds(pid_t pid);


}  // namespace pmcr::test
