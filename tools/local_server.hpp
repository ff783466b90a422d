// LocalServer: runs a pmserver child process on a pool file and stops it by
// its pid. Used by pmcr-bench, by the tests, and by pmcr-run --local-pool.
// Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
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
  std::vector<std::string> args;         // extra arguments
  std::string log;                       // stderr goes here (default: POOL.log)
  std::chrono::milliseconds start_timeout{10000};
};

class LocalServer {
 public:
  explicit LocalServer(LocalServerOptions options);
  ~LocalServer();
  LocalServer(const LocalServer&) = delete;
  LocalServer& operator=(const LocalServer&) = delete;

  // Starts pmserver and waits until it listens. Returns false if it exited
  // instead (see log()); throws pmcr::Error if it does neither in time.
  // After the first start, later starts reuse the same port.
  bool start();
  // SIGTERM, then SIGKILL after GRACE. Returns the wait status, -1 if not running.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  void kill9();
  // Waits up to TIMEOUT for the process to exit by itself.
  bool wait_exit(std::chrono::milliseconds timeout, int* status = nullptr);

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  std::string address() const;  // HOST:PORT to connect to
  std::string log() const;
  const std::string& log_path() const { return options_.log; }
  LocalServerOptions& options() { return options_; }

  // The pmserver next to the running executable (installed layout), or in
  // the build tree beside it; "pmserver" (from PATH) otherwise.
  static std::string find_pmserver();

 private:
  LocalServerOptions options_;
  std::string ready_;
  pid_t pid_ = -1;
  int exit_status_ = 0;
  uint16_t port_ = 0;
};

}  // namespace pmcr::tools
