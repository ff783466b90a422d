#include "munged.hpp"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "process.hpp"

namespace pmcr::test {
namespace {

using namespace std::chrono_literals;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string find_program(const char* name) {
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"}) {
    const std::string p = std::string(dir) + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

}  // namespace

std::string Munged::unavailable() {
  if (::geteuid() != 0) return "needs root (to run munged and create test users)";
  if (find_program("munged").empty() || find_program("mungekey").empty())
    return "munged is not installed (Debian package munge)";
  return "";
}

Munged::Munged() {
  char tmpl[] = "/tmp/pmcr-munged-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    error_ = "mkdtemp failed";
    return;
  }
  dir_ = tmpl;
  // Other users' clients must reach the socket: the directory is
  // searchable by all, the key inside it is root's alone.
  ::chmod(dir_.c_str(), 0711);
  socket_ = dir_ + "/munge.socket";
  const std::string key = dir_ + "/munge.key";
  auto r = tools::run({find_program("mungekey"), "--create", "--keyfile", key}, {}, 30s, false);
  if (r.code != 0) {
    error_ = "mungekey failed: " + r.err;
    return;
  }
  tools::SpawnOptions so;
  so.out = so.err = dir_ + "/munged.out";
  so.parent_death_signal = SIGTERM;
  pid_ = tools::spawn({find_program("munged"), "--foreground", "--force", "--socket", socket_, "--key-file", key,
                       "--pid-file", dir_ + "/munged.pid", "--log-file", dir_ + "/munged.log", "--seed-file",
                       dir_ + "/munged.seed", "--num-threads", "2"},
                      so);
  const auto until = std::chrono::steady_clock::now() + 20s;
  struct stat st {};
  while (::stat(socket_.c_str(), &st) != 0) {
    int status = 0;
    if (tools::wait_for(pid_, 0ms, &status, false) || std::chrono::steady_clock::now() > until) {
      error_ = "munged did not start: " + log();
      if (pid_ > 0) tools::wait_for(pid_, 1ms, &status, true);
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(20ms);
  }
}

Munged::~Munged() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    tools::wait_for(pid_, 10s, &status, true);
  }
  if (!dir_.empty()) tools::run({"rm", "-rf", dir_}, {}, 30s, false);
}

std::string Munged::log() const { return read_file(dir_ + "/munged.out") + read_file(dir_ + "/munged.log"); }

TestUser test_user(const std::string& name) {
  // Tests in parallel may both create it: the loser's useradd fails (the
  // user exists, or /etc/passwd is locked a moment), and it looks again.
  for (int attempt = 0; !::getpwnam(name.c_str()); ++attempt) {
    auto r = tools::run({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name},
                        {}, 30s, false);
    if (r.code != 0 && attempt >= 20 && !::getpwnam(name.c_str()))
      throw std::runtime_error("useradd " + name + " failed: " + r.err);
    if (r.code != 0) std::this_thread::sleep_for(100ms);
  }
  const passwd* pw = ::getpwnam(name.c_str());
  if (!pw) throw std::runtime_error("no user " + name);
  return TestUser{name, pw->pw_uid, pw->pw_gid};
}

}  // namespace pmcr::test
