// SlurmCluster: a real single-node Slurm of a test's own: Debian's
// slurmctld and slurmd (22.05) with a munged of its own, configured in a
// private directory with ports of their own, started by the test and
// stopped by their pids. Jobs reach it with env() (SLURM_CONF).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "munged.hpp"

namespace pmcr::test {

class SlurmCluster {
 public:
  // Starts munged, slurmctld and slurmd with CPUS CPUs on this node, and
  // waits (at most 60 s) until the node is idle. Check ok().
  explicit SlurmCluster(unsigned cpus = 8);
  ~SlurmCluster();  // SIGTERM to slurmd and slurmctld (SIGKILL after 10 s), then munged
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }  // why it is not running, with the daemons' logs
  std::vector<std::string> env() const { return {"SLURM_CONF=" + conf_}; }
  const std::string& dir() const { return dir_; }
  std::string logs() const;  // the ends of both daemons' logs

  // Why Slurm tests cannot run here ("" if they can): not root, or Slurm is
  // not installed.
  static std::string unavailable();

 private:
  std::string start(unsigned cpus);  // "" once the node is idle, else why not
  std::string dir_, conf_, error_;
  std::unique_ptr<Munged> munged_;
  pid_t slurmctld_ = -1, slurmd_ = -1;
  int lock_fd_ = -1;  // one test cluster on this host at a time (see start())
};

}  // namespace pmcr::test
