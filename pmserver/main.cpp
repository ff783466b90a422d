// pmserver: serves a persistent-memory pool to pmcr clients over UCX.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <optional>

#include "catalogue.hpp"
#include "error.hpp"
#include "pool.hpp"
#include "server.hpp"
#include "text.hpp"

int main(int argc, char** argv) {
  CLI::App app{"pmserver: a persistent-memory pool for pmcr checkpoints, served over UCX"};
  std::string pool_path, size_text, listen_text = "0.0.0.0:" + std::to_string(pmcr::kDefaultPort), level = "info";
  std::string ready_file;
  bool no_prefault = false;
  app.add_option("--pool", pool_path, "pool file (created if absent) or DAX device")->required();
  app.add_option("--size", size_text, "pool size when creating it, e.g. 4G (K, M, G, T suffixes)");
  app.add_option("--listen", listen_text, "HOST:PORT to listen on")->capture_default_str();
  app.add_option("--log-level", level, "trace, debug, info, warn, error or off")->capture_default_str();
  app.add_option("--ready-file", ready_file, "write HOST:PORT to this file once listening (for scripts and tests)");
  app.add_flag("--no-prefault", no_prefault, "do not fault the pool mapping in at start-up");
  CLI11_PARSE(app, argc, argv);

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
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

  // A restarted pmserver must get its port back at once, even while the
  // connections of the previous one linger in TIME_WAIT (UCX binds without
  // SO_REUSEADDR by default). Linux still refuses a second live listener.
  setenv("UCX_CM_REUSEADDR", "y", 0);

  try {
    std::optional<uint64_t> size;
    if (!size_text.empty()) size = pmcr::parse_size(size_text);
    pmcr::server::ServerOptions options;
    options.listen = pmcr::parse_host_port(listen_text, pmcr::kDefaultPort);
    options.ready_file = ready_file;

    auto pool = pmcr::server::Pool::open_or_create(pool_path, size);
    spdlog::info("pool {}: {} ({} granularity){}", pool.path(), pmcr::format_size(pool.size()),
                 pool.granularity_name(), pool.formatted_now() ? ", new" : "");
    if (!no_prefault) pool.prefault();
    pmcr::server::Catalogue catalogue(pool);
    const auto& r = catalogue.recovery();
    spdlog::info("catalogue: {} sealed versions with {} regions; reclaimed {} unsealed regions, finished {} "
                 "deletions, {} damaged",
                 r.sealed_versions, r.regions, r.reclaimed_regions, r.finished_deletions, r.damaged);
    pmcr::server::Server server(pool, catalogue, options);
    server.run(sfd);
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
