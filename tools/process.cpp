#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstring>
#include <thread>

#include "error.hpp"

extern char** environ;

namespace pmcr::tools {

pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  std::vector<std::string> args = argv, env;
  const auto name_of = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  for (char** e = environ; *e; ++e) {
    const std::string kv(*e);
    bool overridden = false;
    for (const auto& o : options.env) overridden = overridden || name_of(o) == name_of(kv);
    if (!overridden) env.push_back(kv);
  }
  env.insert(env.end(), options.env.begin(), options.env.end());
  std::vector<char*> a, e;
  for (auto& s : args) a.push_back(s.data());
  a.push_back(nullptr);
  for (auto& s : env) e.push_back(s.data());
  e.push_back(nullptr);
  const int flags = O_WRONLY | O_CREAT | (options.append ? O_APPEND : O_TRUNC);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!options.out.empty()) posix_spawn_file_actions_addopen(&fa, 1, options.out.c_str(), flags, 0644);
  if (!options.err.empty() && options.err == options.out) posix_spawn_file_actions_adddup2(&fa, 1, 2);
  else if (!options.err.empty()) posix_spawn_file_actions_addopen(&fa, 2, options.err.c_str(), flags, 0644);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args.at(0).c_str(), &fa, nullptr, a.data(), e.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw Error(PMCR_E_IO, "cannot start " + args[0] + ": " + std::strerror(rc));
  return pid;
}

bool wait_for(pid_t pid, std::chrono::milliseconds timeout, int* status, bool kill) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int st = 0;
  while (waitpid(pid, &st, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() >= deadline) {
      if (kill) {
        ::kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        if (status) *status = st;
      }
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (status) *status = st;
  return true;
}

}  // namespace pmcr::tools
