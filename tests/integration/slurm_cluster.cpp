#include "slurm_cluster.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "process.hpp"

namespace pmcr::test {
namespace {

using namespace std::chrono_literals;

const char* const kSlurmctld = "/usr/sbin/slurmctld";
const char* const kSlurmd = "/usr/sbin/slurmd";
const char* const kSinfo = "/usr/bin/sinfo";

std::string hostname_short() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  std::string h = name;
  return h.substr(0, h.find('.'));
}

std::string tail(const std::string& text, size_t n = 2000) { return text.size() > n ? text.substr(text.size() - n) : text; }

void stop(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  int status = 0;
  if (!tools::wait_for(pid, 10s, &status, false)) tools::wait_for(pid, 1ms, &status, true);
  pid = -1;
}

}  // namespace

std::string SlurmCluster::unavailable() {
  if (::geteuid() != 0) return "needs root (slurmd runs job steps as their users)";
  for (const char* p : {kSlurmctld, kSlurmd, kSinfo, "/usr/bin/srun", "/usr/bin/salloc"})
    if (::access(p, X_OK) != 0)
      return std::string(p) + " is missing: install Debian's slurmctld, slurmd and slurm-client";
  return Munged::unavailable();
}

SlurmCluster::SlurmCluster(unsigned cpus) {
  error_ = start(cpus);
  if (!error_.empty() && !dir_.empty()) error_ += "\n" + logs();
}

std::string SlurmCluster::start(unsigned cpus) {
  if (const std::string why = unavailable(); !why.empty()) return why;
  // Two test clusters on one node break each other's step launches (seen:
  // "task launch failed: Unspecified error" when ctest ran two Slurm tests
  // at once): the tests take turns, holding this lock while theirs runs.
  lock_fd_ = ::open("/tmp/pmcr-slurm-tests.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return std::string("cannot open /tmp/pmcr-slurm-tests.lock: ") + std::strerror(errno);
  const auto give_up = std::chrono::steady_clock::now() + 240s;
  while (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) return std::string("flock: ") + std::strerror(errno);
    if (std::chrono::steady_clock::now() > give_up) return "another test's Slurm cluster ran for 240 s: gave up waiting";
    std::this_thread::sleep_for(200ms);
  }
  char tmpl[] = "/tmp/pmcr-slurm-XXXXXX";
  if (!::mkdtemp(tmpl)) return std::string("cannot make a directory in /tmp: ") + std::strerror(errno);
  dir_ = tmpl;
  munged_ = std::make_unique<Munged>();
  if (!munged_->ok()) return "munged: " + munged_->error();
  for (const char* sub : {"/ctld", "/spool"}) ::mkdir((dir_ + sub).c_str(), 0700);
  const std::string host = hostname_short();
  const uint16_t ctld_port = tools::free_port();
  uint16_t slurmd_port = tools::free_port();
  while (slurmd_port == ctld_port) slurmd_port = tools::free_port();
  conf_ = dir_ + "/slurm.conf";
  {
    // One node, this host, with CPUS CPUs whatever it has
    // (config_overrides); no cgroups for processes or tasks, no
    // accounting; every file and port the test's own.
    std::ofstream out(conf_);
    out << "ClusterName=pmcrtest\n"
        << "SlurmctldHost=" << host << "(127.0.0.1)\n"
        << "SlurmctldPort=" << ctld_port << "\nSlurmdPort=" << slurmd_port << "\n"
        << "SlurmUser=root\nSlurmdUser=root\n"
        << "AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket=" << munged_->socket() << "\n"
        << "StateSaveLocation=" << dir_ << "/ctld\nSlurmdSpoolDir=" << dir_ << "/spool\n"
        << "SlurmctldPidFile=" << dir_ << "/slurmctld.pid\nSlurmdPidFile=" << dir_ << "/slurmd.pid\n"
        << "SlurmctldLogFile=" << dir_ << "/slurmctld.log\nSlurmdLogFile=" << dir_ << "/slurmd.log\n"
        << "SlurmctldDebug=info\nSlurmdDebug=info\n"
        << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
        << "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
        << "MpiDefault=none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
        << "SchedulerType=sched/builtin\nReturnToService=2\nSlurmdParameters=config_overrides\n"
        << "KillWait=5\nInactiveLimit=0\n"
        << "NodeName=" << host << " NodeAddr=127.0.0.1 CPUs=" << cpus << " State=UNKNOWN\n"
        << "PartitionName=test Nodes=" << host << " Default=YES MaxTime=INFINITE State=UP\n";
    // slurmd initialises a cgroup plugin whatever the configuration uses:
    // the one this machine has, and without systemd where it is v2.
    std::ofstream(dir_ + "/cgroup.conf") << "CgroupPlugin=autodetect\nIgnoreSystemd=yes\n";
  }
  tools::SpawnOptions so;
  so.env = env();
  so.parent_death_signal = SIGTERM;
  so.out = so.err = dir_ + "/slurmctld.out";
  slurmctld_ = tools::spawn({kSlurmctld, "-D", "-c", "-i", "-f", conf_}, so);
  so.out = so.err = dir_ + "/slurmd.out";
  slurmd_ = tools::spawn({kSlurmd, "-D", "-f", conf_}, so);
  const auto until = std::chrono::steady_clock::now() + 60s;
  std::string state;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (tools::wait_for(slurmctld_, 0ms, &status, false)) {
      slurmctld_ = -1;
      return "slurmctld exited (status " + std::to_string(tools::exit_code(status)) + ")";
    }
    if (tools::wait_for(slurmd_, 0ms, &status, false)) {
      slurmd_ = -1;
      return "slurmd exited (status " + std::to_string(tools::exit_code(status)) + ")";
    }
    state = tools::run({kSinfo, "-h", "-N", "-n", host, "-o", "%T"}, env(), 10s, false).out;
    while (!state.empty() && (state.back() == '\n' || state.back() == ' ')) state.pop_back();
    if (state == "idle") return "";
    std::this_thread::sleep_for(200ms);
  }
  return "node " + host + " not idle within 60 s (state '" + state + "')";
}

std::string SlurmCluster::logs() const {
  std::string out;
  for (const char* f : {"/slurmctld.log", "/slurmctld.out", "/slurmd.log", "/slurmd.out"}) {
    const std::string text = tools::read_file(dir_ + f);
    if (!text.empty()) out += "--- " + dir_ + f + ":\n" + tail(text);
  }
  return out;
}

SlurmCluster::~SlurmCluster() {
  // Jobs first (a step that hung, a test that gave up on one): slurmstepd
  // and the ranks would outlive slurmd.
  if (slurmctld_ > 0 && slurmd_ > 0) {
    tools::run({"/usr/bin/scancel", "--full", "--signal=KILL", "--user=root"}, env(), 20s, false);
    for (int i = 0; i < 50 && !tools::run({"/usr/bin/squeue", "-h"}, env(), 10s, false).out.empty(); ++i)
      std::this_thread::sleep_for(200ms);
  }
  stop(slurmd_);
  stop(slurmctld_);
  munged_.reset();
  if (!dir_.empty()) tools::run({"rm", "-rf", dir_}, {}, 30s, false);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // (the next test's turn)
}

}  // namespace pmcr::test
