// ServerProcess: a real pmserver from the build tree, on its own pool file
// and its own port on 127.0.0.1, stopped by its pid. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "client.hpp"

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
};

class ServerProcess {
 public:
  explicit ServerProcess(ServerConfig config);
  ~ServerProcess();

  // Starts pmserver and waits (10 s at most) until it listens. Returns false
  // if it exited instead (its log says why); throws if it neither listens
  // nor exits in time.
  bool start();
  // SIGTERM, then SIGKILL after 10 s. Returns the exit status (waitpid form).
  int stop();
  void kill9();
  // Waits up to TIMEOUT for the process to exit by itself.
  bool wait_exit(std::chrono::milliseconds timeout, int* status = nullptr);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& log_path() const { return log_; }
  std::string log() const;
  ServerConfig& config() { return config_; }

  // A connected client with a short timeout.
  pmcr::client::Client connect(std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;

 private:
  ServerConfig config_;
  std::string log_, ready_;
  pid_t pid_ = -1;
  int exit_status_ = 0;  // of the last process reaped
  uint16_t port_ = 0;
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

std::vector<uint8_t> pattern(size_t n, uint64_t seed);

}  // namespace pmcr::test
