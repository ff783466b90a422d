// pmcr-run: runs an MPI job so that it comes back by itself after a failure.
//
//   pmcr-run [--servers LIST] [--job NAME] [--max-restarts N]
//            [--local-pool PATH [--local-size SIZE]] -- mpirun ARGS...
//
// It sets PMCR_JOB and PMCR_SERVERS for the job (Open MPI's mpirun also gets
// -x for them and every other PMCR_* and UCX_* variable, so remote ranks see
// them; MPICH's hydra forwards the environment by itself) and runs the
// command. When the command exits non-zero (a rank died and the launcher
// took the job down) it runs it again, up to N more times; the program's
// pmcr_restart_test then finds the last sealed version. One line per attempt
// says which version the attempt restarts from. The exit code is the
// command's last (128 + signal if it was killed).
//
// It relaunches only when that can help: libpmcr reports the last failure
// the program saw (PMCR_RUN_REPORT), and a failure nothing will change by
// itself (a full pool, a bad configuration, a job taken over by another
// run) stops it at once, saying why. Before a relaunch it waits, with a
// delay that doubles each time, until the server answers again.
//
// --local-pool runs a pmserver on PATH for the duration, listening on the
// first server address (port 0: any free port), restarts it if it dies
// between attempts, and stops it by its pid at the end. Children (the
// launch command, pmserver) get SIGTERM if pmcr-run dies, however it dies.
//
// --standby runs the command twice: the primary (PMCR_ROLE=primary) and a
// standby job (PMCR_ROLE=standby; --standby-command gives its own launch
// command) that follows the primary's checkpoints and takes over when it
// fails (README, "Hot standby"). Each launch gets a token (PMCR_INSTANCE;
// the standby also the primary's, PMCR_PRIMARY_INSTANCE). When the primary's
// command exits non-zero, pmcr-run tells the server (FAIL) in case it has
// not noticed, and waits for the standby's takeover; the standby's rank 0
// records it in its report file, and pmcr-run prints one line per takeover,
// stops what is left of the old primary (it is fenced) and starts a new
// standby behind the new primary. A standby that dies is replaced; if both
// die, both are relaunched from the server. When the primary ends well, the
// standby is stopped.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wordexp.h>
#include <xxhash.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "auth.hpp"
#include "client.hpp"
#include "survey.hpp"
#include "error.hpp"
#include "local_server.hpp"
#include "process.hpp"
#include "report.hpp"
#include "text.hpp"

extern char** environ;

namespace {

using namespace pmcr;

volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_standby = 0;
volatile sig_atomic_t g_signal = 0;

void forward(int sig) {
  g_signal = sig;
  if (g_child > 0) ::kill(g_child, sig);
  if (g_standby > 0) ::kill(g_standby, sig);
}

void say(const std::string& line) { std::cerr << "pmcr-run: " << line << std::endl; }

std::string basename_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Which launcher COMMAND[0] is: srun by its name, the MPI launchers from
// their --version text.
enum class Launcher { OpenMpi, Hydra, Srun, Other };

Launcher detect_launcher(const std::vector<std::string>& command) {
  const std::string name = basename_of(command.at(0));
  if (name == "srun") return Launcher::Srun;
  if (name.rfind("mpirun", 0) != 0 && name.rfind("mpiexec", 0) != 0 && name.rfind("orterun", 0) != 0)
    return Launcher::Other;
  std::string text;
  try {
    text = tools::run({command[0], "--version"}, {}, std::chrono::seconds(10), true).out;
  } catch (const Error&) {
  }
  if (text.find("Open MPI") != std::string::npos || text.find("OpenRTE") != std::string::npos) return Launcher::OpenMpi;
  if (text.find("HYDRA") != std::string::npos) return Launcher::Hydra;
  return Launcher::Other;
}

// A stable job name for this command in this directory, so that a relaunch,
// and a later run of the same command, finds the same checkpoints.
std::string default_job(const std::vector<std::string>& command) {
  std::string key;
  char cwd[4096];
  if (::getcwd(cwd, sizeof cwd)) key = cwd;
  for (const auto& a : command) key += '\0' + a;
  std::string prog = "job";
  for (auto it = command.rbegin(); it != command.rend(); ++it)
    if (!it->empty() && (*it)[0] != '-' && ::access(it->c_str(), X_OK) == 0 && it->find('/') != std::string::npos) {
      prog = basename_of(*it);
      break;
    }
  std::string clean;
  for (char c : prog) clean += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH3_64bits(key.data(), key.size())));
  return clean.substr(0, 40) + "-" + std::string(hex, 8);
}

// pmcr-run's own connection to SERVER: short time-outs, the job's credential.
client::Options own_options(const std::string& server, std::chrono::seconds timeout) {
  client::Options o;
  o.server = server;
  o.name = "pmcr-run";
  o.connect_timeout = std::chrono::seconds(3);
  o.timeout = timeout;
  o.credential = client::Credential::from_environment();
  return o;
}

// "restarts from version N", "starts fresh", or why it cannot tell. With
// several servers: the newest version every rank has a copy of on the
// servers that answer.
std::string restart_point(const std::string& servers, const std::string& job) {
  try {
    client::Fleet fleet(parse_server_list(servers), own_options("", std::chrono::seconds(10)));
    const client::Survey s = fleet.survey(job);
    const std::string lost = s.lost_text().empty() ? "" : " (lost: " + s.lost_text() + ")";
    if (auto v = fleet.newest_complete(s, job)) return "restarts from version " + std::to_string(*v) + lost;
    if (!s.sealed().empty()) return "cannot restart: no version has a copy of every rank's data" + lost;
    return "starts fresh (no sealed version)" + lost;
  } catch (const Error& e) {
    return std::string("restart point unknown (") + e.what() + ")";
  }
}

// Makes a new key in FILE (mode 0600) unless FILE exists; true if it did.
bool make_key_if_absent(const std::string& file) {
  if (::access(file.c_str(), F_OK) == 0) return false;
  auth::write_key_file(file, auth::Key::generate());
  return true;
}

// Whether a pmserver of SERVERS (a list) answers a STAT within a few
// seconds. With several, one is enough: the relaunch finds out whether the
// ones that answer hold a whole version.
bool answers(const std::string& servers) {
  for (const auto& server : parse_server_list(servers)) {
    try {
      client::Client c(own_options(server, std::chrono::seconds(3)));
      c.stat();
      return true;
    } catch (const Error&) {
    }
  }
  return false;
}

// The last N lines of TEXT.
std::string tail(const std::string& text, int n) {
  size_t pos = text.size();
  if (pos && text[pos - 1] == '\n') --pos;
  while (n-- > 0 && pos != std::string::npos && pos > 0) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

// A file in /tmp for one launch's report (PMCR_RUN_REPORT), removed at
// the end.
class ReportFile {
 public:
  ReportFile() {
    char path[] = "/tmp/pmcr-run-report-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0) throw Error(PMCR_E_IO, std::string("cannot create a report file in /tmp: ") + std::strerror(errno));
    ::close(fd);
    path_ = path;
  }
  ~ReportFile() { ::unlink(path_.c_str()); }
  ReportFile(const ReportFile&) = delete;
  ReportFile& operator=(const ReportFile&) = delete;
  const std::string& path() const { return path_; }
  void clear() const { (void)!::truncate(path_.c_str(), 0); }

 private:
  std::string path_;
};

// The PMCR_* and UCX_* variables of this process and NAMES (set for one
// launch only), sorted, once each.
std::vector<std::string> forwarded(const std::vector<std::string>& names) {
  std::vector<std::string> all = names;
  for (char** e = environ; *e; ++e) {
    const std::string name(*e, std::strcspn(*e, "="));
    if (name.rfind("PMCR_", 0) == 0 || name.rfind("UCX_", 0) == 0) all.push_back(name);
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

// srun's options before the program (the first argument that is not an
// option or an option's value): where pmcr-run looks for, and adds, its own.
size_t srun_options_end(const std::vector<std::string>& cmd) {
  // srun's short options that take a value (-n 4), and its long options
  // that take none (srun reads any other --opt VALUE as --opt=VALUE).
  static const std::string kValued = "AbBcCdDeGiJLmMnNopqrStTwWx";
  static const std::set<std::string> kFlags = {
      "--overlap",   "--exclusive",     "--label",         "--unbuffered", "--verbose",       "--quiet",
      "--exact",     "--kill-on-bad-exit", "--no-kill",    "--pty",        "--overcommit",    "--whole",
      "--oversubscribe", "--preserve-env", "--no-allocate", "--multi-prog", "--hold",         "--disable-status",
      "--test-only", "--spread-job",    "--use-min-nodes", "--contiguous", "--reboot",        "--x11"};
  for (size_t i = 1; i < cmd.size(); ++i) {
    const std::string& a = cmd[i];
    if (a == "--" || a.empty() || a[0] != '-') return i;
    if (a.size() == 2 && kValued.find(a[1]) != std::string::npos) ++i;  // -n 4
    else if (a.rfind("--", 0) == 0 && a.find('=') == std::string::npos && !kFlags.count(a)) ++i;  // --ntasks 4
  }
  return cmd.size();
}

// An srun --export value with NAMES exported too: ALL stays (everything
// goes); NONE becomes NAMES alone (with Slurm's own); a list gets NAMES
// added. Empty for ALL.
std::string export_with(const std::string& value, const std::vector<std::string>& names) {
  if (value == "ALL" || value.rfind("ALL,", 0) == 0) return "";
  std::string list = value == "NONE" ? "" : value;
  for (const auto& name : names) list += (list.empty() ? "" : ",") + name;
  return list;
}

// COMMAND as pmcr-run launches it:
// - Open MPI's mpirun gets -x for every PMCR_* and UCX_* variable of this
//   process and for NAMES, so that remote ranks see them.
// - srun gets --kill-on-bad-exit=1 (unless given -K or --kill-on-bad-exit):
//   a rank that dies ends the step, and pmcr-run relaunches it. srun
//   forwards the whole environment by default; an --export list (given,
//   or inherited as SLURM_EXPORT_ENV, as sbatch --export=NONE leaves it)
//   gets those names added. A standby step also gets --overlap: it mostly
//   sleeps, following checkpoints, and shares the primary's CPUs rather
//   than waiting for CPUs of its own.
// MPICH's hydra forwards the environment by itself.
std::vector<std::string> with_forwarding(const std::vector<std::string>& command, const std::vector<std::string>& names,
                                         Launcher launcher, bool standby_step = false) {
  std::vector<std::string> cmd = command;
  if (launcher == Launcher::Srun) {
    size_t end = srun_options_end(cmd);
    bool kill = false, overlap = false, exported = false;
    for (size_t i = 1; i < end; ++i) {
      if (cmd[i] == "--export" && i + 1 < end) {  // --export V: as --export=V
        cmd[i] += "=" + cmd[i + 1];
        cmd.erase(cmd.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        --end;
      }
      std::string& a = cmd[i];
      if (a.rfind("-K", 0) == 0 || a.rfind("--kill-on-bad-exit", 0) == 0) kill = true;
      if (a == "--overlap") overlap = true;
      if (a.rfind("--export=", 0) == 0) {
        exported = true;
        if (const std::string list = export_with(a.substr(9), forwarded(names)); !list.empty()) a = "--export=" + list;
      }
    }
    std::vector<std::string> ours;
    if (!kill) ours.push_back("--kill-on-bad-exit=1");
    if (standby_step && !overlap) ours.push_back("--overlap");
    if (const char* inherited = std::getenv("SLURM_EXPORT_ENV"); inherited && !exported)
      if (const std::string list = export_with(inherited, forwarded(names)); !list.empty())
        ours.push_back("--export=" + list);
    cmd.insert(cmd.begin() + 1, ours.begin(), ours.end());
    return cmd;
  }
  if (launcher != Launcher::OpenMpi) return cmd;
  std::vector<std::string> x;
  for (const auto& name : forwarded(names)) {
    x.push_back("-x");
    x.push_back(name);
  }
  cmd.insert(cmd.begin() + 1, x.begin(), x.end());
  return cmd;
}

// A launch command given as one string (--standby-command), split as the
// shell would split it (quotes, escapes), without running anything.
std::vector<std::string> split_command(const std::string& text) {
  wordexp_t w{};
  const int rc = ::wordexp(text.c_str(), &w, WRDE_NOCMD | WRDE_UNDEF);
  if (rc != 0) {
    if (rc == WRDE_NOSPACE) ::wordfree(&w);
    throw Error(PMCR_E_INVAL, "--standby-command '" + text + "' cannot be split into words (" +
                                  (rc == WRDE_CMDSUB  ? "command substitution is not allowed"
                                   : rc == WRDE_BADVAL ? "it names an unset variable"
                                                       : "unbalanced quotes or a special character") + ")");
  }
  std::vector<std::string> out(w.we_wordv, w.we_wordv + w.we_wordc);
  ::wordfree(&w);
  if (out.empty()) throw Error(PMCR_E_INVAL, "--standby-command is empty");
  return out;
}

// A fresh launch token (PMCR_INSTANCE), as hex.
std::string new_instance() {
  static std::random_device random;
  uint64_t t = 0;
  while (t == 0) t = (static_cast<uint64_t>(random()) << 32) | random();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(t));
  return hex;
}

// Tells the server that launch INSTANCE of JOB failed (its launch command
// exited): the standby takes over even if no rank's lease showed it. Best
// effort: the server may have seen it first, or be gone.
void declare_failed(const std::string& server, const std::string& job, const std::string& instance, int code) {
  try {
    client::Client c(own_options(server, std::chrono::seconds(5)));
    c.fail(job, std::stoull(instance, nullptr, 16), "its launch command exited with code " + std::to_string(code));
  } catch (const std::exception& e) {
    say(std::string("could not tell pmserver that the primary failed (") + e.what() + "); the standby sees it by itself");
  }
}

// Stops a launch command: SIGTERM, and SIGKILL if it has not exited after
// GRACE. Returns its exit code. (A launcher already taking its job down
// after a rank died is given a moment first: Open MPI's mpirun can crash
// when a SIGTERM interrupts its own abort.)
int stop_child(pid_t pid, std::chrono::milliseconds grace, std::chrono::milliseconds first = std::chrono::milliseconds(0)) {
  int status = 0;
  if (first.count() > 0 && tools::wait_for(pid, first, &status, false)) return tools::exit_code(status);
  ::kill(pid, SIGTERM);
  tools::wait_for(pid, grace, &status, true);
  return tools::exit_code(status);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Runs an MPI job with pmcr and relaunches it from its last checkpoint when it fails.", "pmcr-run"};
  std::string servers, job, local_pool, local_size = "1G";
  unsigned max_restarts = 3;
  double delay = 1.0, max_delay = 60.0, server_wait = 300.0;
  std::vector<std::string> command;
  app.add_option("--servers", servers, "pmserver HOST:PORT list (default: $PMCR_SERVERS, else 127.0.0.1:13790)");
  app.add_option("--job", job, "job name (default: $PMCR_JOB, else one derived from the command and directory)");
  app.add_option("--max-restarts", max_restarts, "relaunches after a failure")->capture_default_str();
  app.add_option("--local-pool", local_pool, "run a pmserver on this pool file for the duration");
  auto* size_opt =
      app.add_option("--local-size", local_size, "size of the local pool when it is created")->capture_default_str();
  app.add_option("--delay", delay, "seconds before the first relaunch; each later one waits twice as long")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--max-delay", max_delay, "longest wait between relaunches, in seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--server-wait", server_wait, "seconds to wait for the server to answer before a relaunch")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  bool standby = false;
  std::string standby_command;
  double takeover_timeout = 60.0;
  app.add_flag("--standby", standby, "run a standby job beside it that follows its checkpoints and takes over when it fails");
  app.add_option("--standby-command", standby_command,
                 "the standby's launch command, as one string, when it must differ from the primary's (other hosts, "
                 "another Slurm step)")
      ->needs("--standby");
  app.add_option("--takeover-timeout", takeover_timeout,
                 "seconds the standby may take to take over after the primary failed before both are relaunched")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("command", command, "the launch command, after --, e.g. -- mpirun -np 4 ./app")->required();
  app.footer("Example: pmcr-run --local-pool /dev/shm/pmcr.pool -- mpirun -np 4 ./heat2d\n"
             "         pmcr-run --standby --local-pool /dev/shm/pmcr.pool -- mpirun -np 4 ./heat2d\n"
             "         salloc -n 4 pmcr-run --servers pm1:13790 -- srun -n 4 --mpi=pmix ./heat2d\n"
             "With srun it adds --kill-on-bad-exit=1 (a rank that dies ends the step) and relaunches as new steps of "
             "the same allocation; the standby is a second step (--overlap). See pmcr(3), pmcr(1), pmserver(8).");
  app.get_formatter()->column_width(40);  // (help2man makes pmcr-run(1) from this text)
  CLI11_PARSE(app, argc, argv);

  try {
    if (servers.empty()) servers = std::getenv("PMCR_SERVERS") ? std::getenv("PMCR_SERVERS") : "";
    if (servers.empty()) servers = "127.0.0.1:" + std::to_string(kDefaultPort);
    std::string first = servers.substr(0, servers.find(','));
    const HostPort hp = parse_host_port(first, kDefaultPort);
    if (job.empty()) job = std::getenv("PMCR_JOB") ? std::getenv("PMCR_JOB") : "";
    if (job.empty()) job = default_job(command);
    check_job_name(job);
    const std::vector<std::string> standby_base = standby_command.empty() ? command : split_command(standby_command);
    if (!local_pool.empty()) parse_size(local_size);
    // PMCR_ENCRYPT=1 without a data key: one per job, kept in the user's
    // home (mode 0600, in a 0700 directory), never sent anywhere. Without
    // it the job's checkpoints cannot be read: it is made once and reused.
    if (const char* enc = std::getenv("PMCR_ENCRYPT"); enc && std::string(enc) == "1" &&
                                                       !(std::getenv("PMCR_DATA_KEY_FILE") && *std::getenv("PMCR_DATA_KEY_FILE"))) {
      const char* home = std::getenv("HOME");
      if (!home || !*home)
        throw Error(PMCR_E_CONFIG, "PMCR_ENCRYPT=1 without PMCR_DATA_KEY_FILE, and no HOME to keep a data key in: "
                                   "make one with 'pmcr keygen FILE' and set PMCR_DATA_KEY_FILE");
      const std::filesystem::path dir = std::filesystem::path(home) / ".pmcr" / "keys";
      std::filesystem::create_directories(dir);
      std::filesystem::permissions(dir.parent_path(), std::filesystem::perms::owner_all);
      std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
      const std::string file = (dir / (job + ".key")).string();
      if (make_key_if_absent(file))
        say("made a data key for job " + job + ": " + file + " (keep it: the job's encrypted checkpoints cannot be "
            "read without it)");
      ::setenv("PMCR_DATA_KEY_FILE", file.c_str(), 1);
    }

    // Signals arriving while the server starts or the job runs: forwarded to
    // the job, and no more relaunches.
    struct sigaction sa {};
    sa.sa_handler = forward;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);

    std::unique_ptr<tools::LocalServer> server;
    const auto start_server = [&](const char* what) {
      if (!server->start()) {
        say("pmserver on " + local_pool + " did not " + what + ":\n" + tail(server->startup_errors(), 5));
        return false;
      }
      return true;
    };
    if (!local_pool.empty()) {
      tools::LocalServerOptions so;
      so.pmserver = tools::LocalServer::find_pmserver();
      so.pool = local_pool;
      // An existing pool keeps its size unless one is asked for explicitly.
      so.size = (size_opt->count() > 0 || ::access(local_pool.c_str(), F_OK) != 0) ? local_size : "";
      so.listen = to_string(hp);
      so.on_progress = [](const std::string& what) { say("waiting for pmserver: " + what); };
      // The local server authenticates its clients with a key of its own,
      // kept beside the pool (mode 0600) and handed to the job.
      const std::string key_file = std::filesystem::absolute(local_pool + ".key").string();
      const bool existing_pool = ::access(local_pool.c_str(), F_OK) == 0;
      if (make_key_if_absent(key_file)) {
        say("made a key for the local pmserver: " + key_file);
        if (existing_pool) so.args.push_back("--adopt-pool");  // a pool from before keys: bound to the new one
      }
      so.args.insert(so.args.end(), {"--auth", "key", "--key-file", key_file});
      ::setenv("PMCR_AUTH", "key", 1);
      ::setenv("PMCR_KEY_FILE", key_file.c_str(), 1);
      server = std::make_unique<tools::LocalServer>(so);
      say("starting pmserver on " + local_pool + " (allowing " + std::to_string(server->start_timeout().count() / 1000) +
          " s)");
      if (!start_server("start")) return 1;
      say("pmserver (pid " + std::to_string(server->pid()) + ") on " + local_pool + ", listening on " + server->address() +
          ", log " + server->log_path());
      // Port 0 asked for any free port: the job gets the one it got.
      const auto comma = servers.find(',');
      first = server->address();
      servers = first + (comma == std::string::npos ? "" : servers.substr(comma));
    }

    ::setenv("PMCR_JOB", job.c_str(), 1);
    ::setenv("PMCR_SERVERS", servers.c_str(), 1);
    // What every launch is told (Open MPI's mpirun forwards only what it is told to).
    std::vector<std::string> names = {"PMCR_JOB", "PMCR_SERVERS", report::kVariable};
    for (const char* more : {"PMCR_REPLICAS", "PMCR_SERVER_RETRY"})
      if (std::getenv(more)) names.push_back(more);
    auto primary_names = names, standby_names = names;
    primary_names.insert(primary_names.end(), {"PMCR_ROLE", "PMCR_INSTANCE"});
    standby_names.insert(standby_names.end(), {"PMCR_ROLE", "PMCR_INSTANCE", "PMCR_PRIMARY_INSTANCE"});
    const Launcher launcher = detect_launcher(command);
    const std::vector<std::string> cmd = with_forwarding(command, standby ? primary_names : names, launcher);
    const std::vector<std::string> standby_cmd =
        standby ? with_forwarding(standby_base, standby_names, detect_launcher(standby_base), true)
                : std::vector<std::string>{};
    if (launcher == Launcher::Srun) {
      const char* alloc = std::getenv("SLURM_JOB_ID");
      say(alloc ? "each attempt is an srun step of allocation " + std::string(alloc) +
                      " (--kill-on-bad-exit: a rank that dies ends the step)"
                : "srun outside an allocation: each attempt asks Slurm for a new one (run pmcr-run inside salloc "
                  "or sbatch to relaunch within one)");
    }

    // Before a relaunch: back off, restart the local server if it died, and
    // go on only once the server answers again. False: give up.
    double wait = delay;
    const auto ready_to_relaunch = [&]() {
      say("relaunching in " + std::to_string(static_cast<int>(wait * 1000)) + " ms");
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      wait = std::min(wait * 2, max_delay);
      if (server) {
        int st = 0;
        if (server->wait_exit(std::chrono::milliseconds(0), &st)) {
          say("pmserver exited (status " + std::to_string(tools::exit_code(st)) + "); starting it again");
          if (!start_server("start again")) return false;
        }
      }
      const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(server_wait);
      auto next_note = std::chrono::steady_clock::now();
      while (!g_signal && !answers(servers)) {
        if (std::chrono::steady_clock::now() >= until) {
          say("pmserver at " + servers + " did not answer for " + std::to_string(static_cast<int>(server_wait)) +
              " s (--server-wait); not relaunching. Is it stopped, overloaded or cut off?");
          return false;
        }
        if (std::chrono::steady_clock::now() >= next_note) {
          say("waiting for pmserver at " + servers + " to answer before relaunching");
          next_note = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      return !g_signal;
    };
    // Whether a failed launch should be relaunched, saying why not.
    const auto worth_relaunching = [&](unsigned attempt, int code, const std::string& report) {
      const auto why = report::last(report);
      if (why && !report::transient(why->code)) {
        say("attempt " + std::to_string(attempt) + " failed with exit code " + std::to_string(code) + " after " +
            error_name(why->code) + " (" + why->text + "); not relaunching: this will not go away by itself");
        return false;
      }
      say("attempt " + std::to_string(attempt) + " failed with exit code " + std::to_string(code) +
          (why ? std::string(" (last pmcr error: ") + error_name(why->code) + ")" : "") +
          (g_signal ? " (interrupted: not relaunching)" : attempt <= max_restarts ? "" : "; no restarts left"));
      return !g_signal && attempt <= max_restarts;
    };

    int code = 1;
    if (!standby) {
      ReportFile report;
      ::setenv(report::kVariable, report.path().c_str(), 1);
      for (unsigned attempt = 1; attempt <= max_restarts + 1 && !g_signal; ++attempt) {
        if (attempt > 1 && !ready_to_relaunch()) break;
        say("attempt " + std::to_string(attempt) + " of " + std::to_string(max_restarts + 1) + ": job " + job + " " +
            restart_point(servers, job));
        report.clear();
        tools::SpawnOptions so;
        so.out = so.err = "";
        so.parent_death_signal = SIGTERM;
        const pid_t pid = tools::spawn(cmd, so);
        g_child = pid;
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        g_child = 0;
        code = tools::exit_code(status);
        if (code == 0 || !worth_relaunching(attempt, code, report.path())) break;
      }
      if (server) server->stop();
      return code;
    }

    // ---- with a standby ----
    struct Launch {
      pid_t pid = 0;
      std::string instance;
      std::unique_ptr<ReportFile> report;
    };
    const auto launch = [&](const std::vector<std::string>& argv, bool as_standby, const std::string& follows) {
      Launch l;
      l.instance = new_instance();
      l.report = std::make_unique<ReportFile>();
      tools::SpawnOptions so;
      so.out = so.err = "";
      so.parent_death_signal = SIGTERM;
      so.env = {std::string("PMCR_ROLE=") + (as_standby ? "standby" : "primary"), "PMCR_INSTANCE=" + l.instance,
                std::string(report::kVariable) + "=" + l.report->path()};
      if (as_standby) so.env.push_back("PMCR_PRIMARY_INSTANCE=" + follows);
      l.pid = tools::spawn(argv, so);
      return l;
    };
    std::map<pid_t, int> ended;  // exit codes of the launches reaped
    const auto reap = [&](pid_t pid) {
      int status = 0;
      if (pid > 0 && !ended.count(pid) && ::waitpid(pid, &status, WNOHANG) == pid) ended[pid] = tools::exit_code(status);
    };
    unsigned attempt = 1, standbys = 0;
    Launch primary, backup;
    const auto start_standby = [&]() {
      if (standbys > max_restarts) {
        say("no standby started: " + std::to_string(standbys) + " were (--max-restarts " + std::to_string(max_restarts) +
            "); the job runs without one");
        return;
      }
      ++standbys;
      backup = launch(standby_cmd, true, primary.instance);
      g_standby = backup.pid;
      say("standby (launch " + backup.instance + ") follows the primary (launch " + primary.instance + ")");
    };
    const auto start_both = [&]() {
      say("attempt " + std::to_string(attempt) + " of " + std::to_string(max_restarts + 1) + ": job " + job + " " +
          restart_point(servers, job) + ", with a standby");
      primary = launch(cmd, false, "");
      g_child = primary.pid;
      standbys = 0;
      start_standby();
    };
    start_both();
    // The primary failed: the standby's takeover is due by then (max: not awaited).
    constexpr auto kNotAwaited = std::chrono::steady_clock::time_point::max();
    auto awaiting = kNotAwaited;
    const auto takeover_limit = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(takeover_timeout));
    while (true) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (g_signal) {
        if (primary.pid) code = stop_child(primary.pid, std::chrono::seconds(10));
        if (backup.pid) stop_child(backup.pid, std::chrono::seconds(10));
        break;
      }
      reap(primary.pid);
      reap(backup.pid);
      // The standby took over: it is the primary now, and a new standby
      // follows it. (Its rank 0 records the takeover before it goes on.)
      if (backup.pid) {
        if (const auto t = report::takeover_of(backup.report->path())) {
          say("standby took over " +
              (t->version >= 0 ? "at version " + std::to_string(t->version)
                               : std::string("with no version sealed yet (it starts fresh)")) +
              ", " + std::to_string(t->ms) + " ms after the failure was detected, " + std::to_string(t->bytes) +
              " bytes read after it");
          if (primary.pid && !ended.count(primary.pid)) {
            say("stopping the old primary (pid " + std::to_string(primary.pid) + "): it is fenced off");
            stop_child(primary.pid, std::chrono::seconds(10), std::chrono::seconds(3));
          }
          primary = std::move(backup);
          backup = Launch{};
          g_child = primary.pid;
          g_standby = 0;
          awaiting = kNotAwaited;
          start_standby();
          continue;
        }
      }
      if (primary.pid && ended.count(primary.pid)) {
        code = ended[primary.pid];
        primary.pid = 0;
        g_child = 0;
        if (code == 0) {  // done: the standby is not needed any more
          if (backup.pid) stop_child(backup.pid, std::chrono::seconds(10));
          break;
        }
        const auto why = report::last(primary.report->path());
        if (why && why->code == PMCR_E_FENCED) {
          if (backup.pid) awaiting = std::chrono::steady_clock::now() + takeover_limit;  // its takeover line follows
        } else if (why && !report::transient(why->code)) {
          worth_relaunching(attempt, code, primary.report->path());
          if (backup.pid) stop_child(backup.pid, std::chrono::seconds(10));
          break;
        } else if (backup.pid) {
          say("the primary failed with exit code " + std::to_string(code) +
              (why ? " (last pmcr error: " + std::string(error_name(why->code)) + ")" : "") + "; the standby takes over");
          declare_failed(first, job, primary.instance, code);
          awaiting = std::chrono::steady_clock::now() + takeover_limit;
        }
      }
      if (backup.pid && ended.count(backup.pid)) {
        const int c = ended[backup.pid];
        backup.pid = 0;
        g_standby = 0;
        say("the standby exited with code " + std::to_string(c) + (primary.pid ? "" : " before it took over"));
        if (primary.pid) start_standby();
      }
      if (awaiting != kNotAwaited && backup.pid && std::chrono::steady_clock::now() >= awaiting) {
        say("the standby did not take over within " + std::to_string(static_cast<int>(takeover_timeout)) +
            " s (--takeover-timeout); stopping it");
        stop_child(backup.pid, std::chrono::seconds(10));
        backup.pid = 0;
        g_standby = 0;
      }
      // Both gone: both are relaunched from the server, as without a standby.
      if (!primary.pid && !backup.pid) {
        if (!worth_relaunching(attempt, code, primary.report->path()) || !ready_to_relaunch()) break;
        ++attempt;
        awaiting = kNotAwaited;
        start_both();
      }
    }
    if (server) server->stop();
    return code;
  } catch (const Error& e) {
    say(std::string("error: ") + e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    say(std::string("error: ") + e.what());
    return 1;
  }
}
