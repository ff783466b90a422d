// LocalServer: runs a pmserver child process on a pool file and stops it by
// its pid. Used by pmcr-bench, by the tests, and by pmcr-run --local-pool.
// Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <signal.h>

#include <chrono>
#include <functional>
#include <cstdint>
#include <string>
#include <vector>

namespace pmcr::tools {

struct LocalServerOptions {
  std::string pmserver;                  // path of the pmserver binary
  std::string pool;                      // pool file
  std::string size;                      // --size when creating ("" to omit)
  std::string listen = "127.0.0.1:0";    // port 0: the kernel picks one
  std::vector<std::string> env;          // extra NAME=VALUE
  std::vector<std::string> wrapper;      // runs pmserver under this (e.g. ip netns exec NS)
  std::vector<std::string> args;         // extra arguments
  std::string log;                       // the server's log (--log-file; default: POOL.log)
  // How long a start may take before it is given up; 0: scaled to the pool
  // (creating and opening a pool take time in proportion to its size).
  std::chrono::milliseconds start_timeout{0};
  // Hears what a start waits for ("allocating pool P: 3.0 GiB of 10.0 GiB"),
  // each time it changes.
  std::function<void(const std::string&)> on_progress;
  // Signal pmserver gets if this process dies without stopping it.
  int parent_death_signal = SIGTERM;
};

class LocalServer {
 public:
  explicit LocalServer(LocalServerOptions options);
  ~LocalServer();
  LocalServer(const LocalServer&) = delete;
  LocalServer& operator=(const LocalServer&) = delete;

  // Starts pmserver and waits until it listens. Returns false if it exited
  // instead (see startup_errors()); throws pmcr::Error if it does neither in
  // time, saying what it was doing. After the first start, later starts
  // reuse the same port.
  bool start();
  // The next start() lets the kernel pick the port again.
  void forget_port();
  // SIGTERM, then SIGKILL after GRACE. Returns the wait status, -1 if not running.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  void kill9();
  // Waits up to TIMEOUT for the process to exit by itself.
  bool wait_exit(std::chrono::milliseconds timeout, int* status = nullptr);

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  std::string address() const;  // HOST:PORT to connect to
  // The server's own log (written only by the server that holds the pool).
  std::string log() const;
  const std::string& log_path() const { return options_.log; }
  // The line the server last wrote to its --progress-file ("serving; pool
  // faulted in: 1.0 GiB of 4.0 GiB"), "" if none.
  std::string progress() const;
  // What the last start printed before it took the pool (why it failed).
  std::string startup_errors() const;
  // The time a start of this pool is given (options().start_timeout, or
  // one scaled to the pool's size).
  std::chrono::milliseconds start_timeout() const;
  LocalServerOptions& options() { return options_; }

  // The pmserver next to the running executable (installed layout), or in
  // the build tree beside it; "pmserver" (from PATH) otherwise.
  static std::string find_pmserver();

 private:
  LocalServerOptions options_;
  std::string ready_, progress_, early_;  // files of this LocalServer alone
  pid_t pid_ = -1;
  int exit_status_ = 0;
  uint16_t port_ = 0;
};

}  // namespace pmcr::tools
