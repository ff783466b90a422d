// pmserver: serves a persistent-memory pool to pmcr clients over UCX.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <ucs/config/global_opts.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "auth.hpp"
#include "catalogue.hpp"
#include "config_file.hpp"
#include "error.hpp"
#include "pool.hpp"
#include "peer_repair.hpp"
#include "server.hpp"
#include "text.hpp"

namespace {

using pmcr::format_size;

// --progress-file: one line saying what the server is doing, rewritten
// atomically as start-up advances ("allocating 3.0 GiB of 10.0 GiB",
// "recovering the catalogue", "listening 127.0.0.1:13790", ...), so that a
// launcher can tell a slow start from a stuck one and say what it waits for.
class Progress {
 public:
  explicit Progress(std::string path) : path_(std::move(path)) {}
  void operator()(const std::string& what) const {
    spdlog::info("start-up: {}", what);
    if (path_.empty()) return;
    const std::string tmp = path_ + ".tmp";
    {
      std::ofstream out(tmp);
      out << what << "\n";
    }
    std::rename(tmp.c_str(), path_.c_str());
  }

 private:
  std::string path_;
};

// A server holds about three file descriptors per client connection and one
// per TCP peer still in UCX's handshake: the soft limit goes to the hard
// one. UCX 1.13 corrupts its heap when it registers more descriptors than
// UCX_ASYNC_MAX_EVENTS (default 1024; README, "Connection capacity"), so
// that limit is set above anything the process can open. Returns the fd
// limit.
uint64_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  const uint64_t limit = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : rl.rlim_cur;
  if (!std::getenv("UCX_ASYNC_MAX_EVENTS")) {
    const std::string events = std::to_string(std::min<uint64_t>(limit, 1u << 20) + 64);
    if (ucs_global_opts_set_value("ASYNC_MAX_EVENTS", events.c_str()) != UCS_OK)
      spdlog::warn("cannot set UCX_ASYNC_MAX_EVENTS to {}; set it in the environment", events);
  }
  return limit;
}

std::chrono::milliseconds parse_duration(const std::string& text, const std::string& option) {
  // "500ms", "5s", "10m", "24h"; a bare number is seconds.
  size_t n = 0;
  double v = 0;
  try {
    v = std::stod(text, &n);
  } catch (const std::exception&) {
    n = 0;
  }
  const std::string unit = text.substr(n);
  double ms = -1;
  if (n > 0 && v >= 0) {
    if (unit == "ms") ms = v;
    else if (unit.empty() || unit == "s") ms = v * 1e3;
    else if (unit == "m") ms = v * 60e3;
    else if (unit == "h") ms = v * 3600e3;
  }
  if (ms < 0) throw pmcr::Error(PMCR_E_INVAL, option + " '" + text + "' is not a duration (e.g. 500ms, 5s, 10m, 24h)");
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

// True if every address HOST resolves to is a loopback address.
bool loopback(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return false;
  bool all = res != nullptr;
  for (addrinfo* a = res; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      all = all && (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (a->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      all = all && IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    } else {
      all = false;
    }
  }
  freeaddrinfo(res);
  return all;
}

// The authentication pmserver was asked for, checked against where it
// listens: no authentication only on loopback, unless --insecure.
pmcr::server::AuthOptions auth_options(const std::string& method, const std::string& key_file,
                                       const std::string& munge_socket, const std::string& admin_group, bool insecure,
                                       const pmcr::HostPort& listen) {
  using pmcr::proto::AuthMethod;
  pmcr::server::AuthOptions a;
  const bool local = loopback(listen.host);
  const std::string how = "choose how clients authenticate: --auth munge --key-file FILE (clusters running MUNGE), "
                          "or --auth key --key-file FILE (make FILE with 'pmcr keygen FILE' and give it to the jobs "
                          "as PMCR_KEY_FILE)";
  if (method.empty() && !local)
    throw pmcr::Error(PMCR_E_CONFIG, "pmserver listens on " + pmcr::to_string(listen) +
                                         ", which is not a loopback address, and no --auth was given: " + how);
  if (method.empty() || method == "none") {
    if (!local && !insecure)
      throw pmcr::Error(PMCR_E_CONFIG, "--auth none on " + pmcr::to_string(listen) +
                                           " (not loopback) would let anyone who reaches the port read and delete "
                                           "every checkpoint: add --insecure if you mean it, or " + how);
    a.method = AuthMethod::None;
  } else if (method == "key") {
    a.method = AuthMethod::Key;
  } else if (method == "munge") {
    a.method = AuthMethod::Munge;
  } else {
    throw pmcr::Error(PMCR_E_CONFIG, "--auth '" + method + "' is not a method: use munge, key or none");
  }
  if (a.method != AuthMethod::None && key_file.empty())
    throw pmcr::Error(PMCR_E_CONFIG, std::string("--auth ") + method +
                                         " needs --key-file FILE: the server's own key (it authenticates the pool" +
                                         (a.method == AuthMethod::Key ? ", and the clients" : "") +
                                         "); make one with 'pmcr keygen FILE'");
  if (!key_file.empty()) a.key = pmcr::auth::read_key_file(key_file);
  a.munge_socket = munge_socket;
  if (!admin_group.empty()) {
    struct group gr {};
    struct group* found = nullptr;
    char buf[4096];
    char* end = nullptr;
    const unsigned long gid = std::strtoul(admin_group.c_str(), &end, 10);
    if (*end == '\0' && !admin_group.empty()) {
      a.admin_group = static_cast<gid_t>(gid);
    } else if (getgrnam_r(admin_group.c_str(), &gr, buf, sizeof buf, &found) == 0 && found) {
      a.admin_group = found->gr_gid;
    } else {
      throw pmcr::Error(PMCR_E_CONFIG, "--admin-group '" + admin_group + "' is not a group of this host");
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pmserver: a persistent-memory pool for pmcr checkpoints, served over UCX"};
  std::string pool_path, size_text, listen_text = "0.0.0.0:" + std::to_string(pmcr::kDefaultPort), level = "info";
  std::string ready_file, progress_file, log_file;
  std::string hello_timeout = "5s", quota_regions = "25%", quota_bytes = "50%", scrub_rate = "256M",
              scrub_interval = "24h";
  uint32_t max_connections = 8192, quota_open = 1024, generations = 2;
  // The cores this process may use.
  unsigned threads = 1;
  if (cpu_set_t set; sched_getaffinity(0, sizeof set, &set) == 0) threads = static_cast<unsigned>(std::max(1, CPU_COUNT(&set)));
  std::string block_size = "1M";
  std::string peers, repair_interval = "30s", drain_dir, drain_rate = "256M";
  unsigned replicas = 0;
  bool no_prefault = false, no_rma = false, insecure = false, adopt_pool = false;
  std::string auth_method, key_file, munge_socket, admin_group;
  app.add_option("--pool", pool_path, "pool file (created if absent) or DAX device")->required();
  app.add_option("--size", size_text, "pool size when creating it, e.g. 4G (K, M, G, T suffixes)");
  app.add_option("--listen", listen_text, "HOST:PORT to listen on")->capture_default_str();
  app.add_option("--log-level", level, "trace, debug, info, warn, error or off")->capture_default_str();
  app.add_option("--log-file", log_file,
                 "append the log to this file once the pool is locked (before that, and if absent: stderr)");
  app.add_option("--ready-file", ready_file, "write HOST:PORT to this file once listening (for scripts and tests)");
  app.add_option("--progress-file", progress_file, "keep a line saying what start-up is doing in this file");
  app.add_flag("--no-prefault", no_prefault, "do not fault the pool mapping in (in the background) after start-up");
  app.add_option("--max-connections", max_connections, "client connections served at once; more are refused")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--hello-timeout", hello_timeout, "time a new connection has to complete its handshake and HELLO")
      ->capture_default_str();
  app.add_option("--quota-regions", quota_regions, "unsealed regions one connection may hold (count, or % of the catalogue)")
      ->capture_default_str();
  app.add_option("--quota-bytes", quota_bytes, "unsealed bytes one connection may hold (size, or % of the data area)")
      ->capture_default_str();
  app.add_option("--quota-open", quota_open, "regions one connection may have open for reading")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 24));
  app.add_option("--generations", generations, "generations a new named region keeps (1 to 64), unless its writer asks")
      ->capture_default_str();
  app.add_option("--block-size", block_size,
                 "copy-on-write block of a new named region (4K to 64M, a power of two), unless its writer asks")
      ->capture_default_str();
  app.add_option("--threads", threads,
                 "threads that persist and checksum committed data, and verify data for readers, besides the event "
                 "loop (default: the cores this process may use; 0: the event loop persists and one thread verifies)")
      ->check(CLI::Range(0, 256));
  unsigned receive_threads = threads;
  app.add_option("--receive-threads", receive_threads,
                 "threads that each move the bytes of a share of the connections (a UCX worker each), besides the "
                 "event loop (default: the cores this process may use; 0: the event loop moves them all)")
      ->check(CLI::Range(0, 256));
  app.add_option("--peers", peers,
                 "HOST:PORT,... : the servers the jobs spread their copies over (their PMCR_SERVERS, this one "
                 "among them); with --replicas, this server brings every kept version back to that many copies "
                 "on them in the background");
  app.add_option("--replicas", replicas, "copies of each rank's data on --peers (the jobs' PMCR_REPLICAS)")
      ->check(CLI::Range(1, 64));
  app.add_option("--repair-interval", repair_interval, "time between repair passes over --peers")->capture_default_str();
  app.add_option("--drain", drain_dir,
                 "copy every sealed version into this directory (the capacity tier, e.g. on Lustre or GPFS), in the "
                 "background; jobs with PMCR_DRAIN set to it restart from there when no server holds a version");
  app.add_option("--drain-rate", drain_rate, "bytes per second the drain may write (0: unlimited)")->capture_default_str();
  app.add_option("--scrub-rate", scrub_rate, "bytes per second the background scrub verifies (0: no scrub)")
      ->capture_default_str();
  app.add_option("--scrub-interval", scrub_interval, "time between scrub passes over every sealed version")
      ->capture_default_str();
  app.add_flag("--no-rma", no_rma, "never offer put/get, even on transports that enforce remote keys");
  app.add_option("--auth", auth_method,
                 "how clients prove who they are: munge, key or none (default: none on a loopback address; "
                 "required on any other)");
  app.add_option("--key-file", key_file,
                 "the server's secret key (mode 0600; 'pmcr keygen FILE'): authenticates the pool, and the clients "
                 "with --auth key");
  app.add_option("--munge-socket", munge_socket, "munged's socket (default: MUNGE's own)");
  app.add_option("--admin-group", admin_group, "members of this group (name or gid) may see and act on every job");
  app.add_flag("--insecure", insecure, "allow --auth none on an address other than loopback");
  app.add_flag("--adopt-pool", adopt_pool, "bind a pool made without a key (or by an older pmserver) to --key-file");
  std::string metrics_listen;
  size_t metrics_jobs = 100;
  app.add_option("--metrics", metrics_listen,
                 "serve Prometheus metrics at http://HOST:PORT/metrics (no authentication: bind it to a management "
                 "address)");
  app.add_option("--metrics-jobs", metrics_jobs,
                 "jobs that get series of their own in the metrics; later ones are counted as job=\"(other)\"")
      ->capture_default_str()
      ->check(CLI::Range(size_t{0}, size_t{100000}));
  bool print_config = false;
  pmcr::server::add_config_options(app, print_config);
  app.get_formatter()->column_width(40);  // (help2man makes pmserver(8) from this text)
  app.footer("Settings also come from a TOML file (--config), a key per option; the command line wins. "
             "SIGTERM or SIGINT stops it: it finishes what is in flight and unmaps the pool. As a service: "
             "pmserver.service (systemd) runs it with --config /etc/pmcr/pmserver.toml. Clients: libpmcr "
             "(pmcr(3)), pmcr-run(1), pmcr(1).");
  CLI11_PARSE(app, argc, argv);
  if (print_config) {
    std::fputs(app.config_to_str(true, true).c_str(), stdout);
    return 0;
  }

  auto logger = spdlog::stderr_color_mt("pmserver");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ pmserver[%P] %v");
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    std::fprintf(stderr, "pmserver: invalid --log-level '%s' (use trace, debug, info, warn, error or off)\n",
                 level.c_str());
    return 2;
  }
  spdlog::set_level(lvl);

  // Signals are taken through a signalfd by the event loop; block them before
  // UCX starts its threads so that they inherit the mask.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);  // read by the event loop when it can

  // A restarted pmserver must get its port back at once, even while the
  // connections of the previous one linger in TIME_WAIT (UCX binds without
  // SO_REUSEADDR by default). Linux still refuses a second live listener.
  setenv("UCX_CM_REUSEADDR", "y", 0);
  const uint64_t fd_limit = raise_fd_limit();

  try {
    const Progress progress(progress_file);
    std::optional<uint64_t> size;
    if (!size_text.empty()) size = pmcr::parse_size(size_text);
    pmcr::server::ServerOptions options;
    options.listen = pmcr::parse_host_port(listen_text, pmcr::kDefaultPort);
    options.ready_file = ready_file;
    options.hello_timeout = parse_duration(hello_timeout, "--hello-timeout");
    options.scrub_interval = std::chrono::duration_cast<std::chrono::seconds>(parse_duration(scrub_interval, "--scrub-interval"));
    options.scrub_rate = scrub_rate == "0" ? 0 : pmcr::parse_size(scrub_rate);
    options.allow_rma = !no_rma;
    options.commit_threads = threads;
    options.receive_threads = receive_threads;
    options.drain_dir = drain_dir;
    options.drain_rate = drain_rate == "0" ? 0 : pmcr::parse_size(drain_rate);
    options.auth = auth_options(auth_method, key_file, munge_socket, admin_group, insecure, options.listen);
    if (options.auth.method == pmcr::proto::AuthMethod::None)
      spdlog::warn("no authentication (--auth none): anyone who reaches {} may read, write and delete every job",
                   pmcr::to_string(options.listen));
    if (adopt_pool && !options.auth.key) throw pmcr::Error(PMCR_E_CONFIG, "--adopt-pool needs --key-file");
    // About 3 descriptors per connection, and room for the rest.
    const uint64_t fit = fd_limit > 256 ? (fd_limit - 256) / 3 : 1;
    options.max_connections = static_cast<uint32_t>(std::min<uint64_t>(max_connections, fit));
    if (options.max_connections < max_connections)
      spdlog::warn("--max-connections {} lowered to {}: the open-file limit is {} (raise it with ulimit -Hn)",
                   max_connections, options.max_connections, fd_limit);

    // The metrics' port first: a taken one fails the start before the pool is touched.
    std::unique_ptr<pmcr::server::Metrics> metrics;
    pmcr::HostPort metrics_at;
    if (!metrics_listen.empty()) {
      metrics_at = pmcr::parse_host_port(metrics_listen, 0);
      metrics = std::make_unique<pmcr::server::Metrics>(metrics_at, metrics_jobs);
      metrics_at.port = metrics->port();
      options.metrics = metrics.get();
    }
    progress("opening pool " + pool_path);
    const pmcr::server::PoolKey pool_key{options.auth.key ? &*options.auth.key : nullptr, adopt_pool};
    auto pool = pmcr::server::Pool::open_or_create(
        pool_path, size,
        [&](uint64_t done, uint64_t total) {
          progress("allocating pool " + pool_path + ": " + format_size(done) + " of " + format_size(total));
        },
        pool_key);
    // The pool is ours (locked): from here on the log is this server's own.
    if (!log_file.empty()) {
      auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file, false);
      logger->sinks().clear();
      logger->sinks().push_back(sink);
      logger->flush_on(spdlog::level::trace);
      // UCX writes its own warnings to stdout or stderr: they go to the
      // log too (pmserver itself never writes to stdout).
      const int fd = ::open(log_file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        ::close(fd);
      }
    }
    spdlog::info("pool {}: {} ({} granularity){}", pool.path(), format_size(pool.size()), pool.granularity_name(),
                 pool.formatted_now() ? ", new" : "");
    progress("recovering the catalogue of " + pool_path);
    pmcr::server::Catalogue catalogue(pool);
    catalogue.set_region_defaults(pmcr::parse_size(block_size), generations);
    const auto& r = catalogue.recovery();
    spdlog::info("catalogue: {} sealed versions with {} regions; reclaimed {} unsealed regions, finished {} "
                 "deletions, {} damaged records, {} versions quarantined",
                 r.sealed_versions, r.regions, r.reclaimed_regions, r.finished_deletions, r.damaged, r.quarantined);
    options.quotas.regions = static_cast<uint32_t>(
        std::min<uint64_t>(pmcr::server::parse_quota(quota_regions, pool.slots(), false, "--quota-regions"), UINT32_MAX));
    options.quotas.bytes = pmcr::server::parse_quota(quota_bytes, catalogue.stats().data_size, true, "--quota-bytes");
    options.quotas.open = quota_open;

    if (peers.empty() != (replicas == 0))
      throw pmcr::Error(PMCR_E_CONFIG, "--peers and --replicas go together: the servers, and the copies to keep on them");
    pmcr::server::Server server(pool, catalogue, options);
    if (metrics) spdlog::info("metrics at http://{}/metrics", pmcr::to_string(metrics_at));
    progress("listening on " + pmcr::to_string(pmcr::HostPort{options.listen.host, server.port()}));
    // Faulting the pool in takes ~0.5-3 s per GiB on a VM: it runs while
    // the server already serves (it changes no byte; see Pool::prefault),
    // and stops (joined here) before the pool is unmapped.
    struct Background {
      bool stop = false;
      std::thread thread;
      ~Background() {
        __atomic_store_n(&stop, true, __ATOMIC_RELAXED);
        if (thread.joinable()) thread.join();
      }
    } prefault;
    if (!no_prefault)
      prefault.thread = std::thread([&] {
        const auto t0 = std::chrono::steady_clock::now();
        uint64_t reported = 0;
        pool.prefault(
            [&](uint64_t done, uint64_t total) {
              if (done - reported >= (1ull << 30) || done == total) {
                reported = done;
                progress("serving; pool faulted in: " + format_size(done) + " of " + format_size(total));
              }
            },
            &prefault.stop);
        spdlog::info("pool faulted in after {:.1f} s",
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      });
    // Repair in the background: a client of the peers, with this server's
    // own credential (its key; or MUNGE, as the user it runs as).
    std::unique_ptr<pmcr::server::PeerRepair> repair;
    if (!peers.empty()) {
      const auto list = pmcr::parse_server_list(peers);
      if (replicas > list.size())
        throw pmcr::Error(PMCR_E_CONFIG, "--replicas " + std::to_string(replicas) + " with " +
                                             std::to_string(list.size()) + " --peers: each copy needs a server of its own");
      pmcr::client::Credential cred;
      if (options.auth.method == pmcr::proto::AuthMethod::Key) cred = pmcr::client::Credential::from("key", key_file, "");
      else if (options.auth.method == pmcr::proto::AuthMethod::Munge)
        cred = pmcr::client::Credential::from("munge", "", munge_socket);
      const auto interval = parse_duration(repair_interval, "--repair-interval");
      if (interval < std::chrono::milliseconds(100))
        throw pmcr::Error(PMCR_E_CONFIG, "--repair-interval " + repair_interval + " is too short: 100ms at least");
      repair = std::make_unique<pmcr::server::PeerRepair>(list, replicas, interval, cred);
      spdlog::info("repairing the copies of every job on {} peers to {} every {}", list.size(), replicas,
                   repair_interval);
    }
    server.run(sfd);
    repair.reset();
    spdlog::info("stopped");
  } catch (const pmcr::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("unexpected error: {}", e.what());
    return 1;
  }
  return 0;
}
