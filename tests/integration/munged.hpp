// Munged: a MUNGE daemon of a test's own (its own key, socket, pid and log
// files in a private directory), stopped by its pid. And test users: system
// accounts the tests create (as root) to run clients as another uid.
#pragma once

#include <sys/types.h>

#include <string>

namespace pmcr::test {

class Munged {
 public:
  Munged();  // starts it; check ok()
  ~Munged();
  Munged(const Munged&) = delete;
  Munged& operator=(const Munged&) = delete;

  bool ok() const { return pid_ > 0; }
  const std::string& socket() const { return socket_; }
  const std::string& error() const { return error_; }
  std::string log() const;
  pid_t pid() const { return pid_; }

  // Why munged tests cannot run here ("" if they can): no munged binary, not root.
  static std::string unavailable();

 private:
  std::string dir_, socket_, error_;
  pid_t pid_ = -1;
};

struct TestUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};
// The system account NAME, created if absent (needs root). Throws on failure.
TestUser test_user(const std::string& name);

}  // namespace pmcr::test
