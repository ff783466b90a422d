// pmcr-bench: pmcr's benchmark. Every figure is measured in the same run as
// the machine limits it is compared with, and printed as ratios.
//
//   pmcr-bench transfer   put+commit and open+get of one region through a
//                         live pmserver, next to memcpy and ucx_perftest put
//                         and get over the same transport, for pools in
//                         /dev/shm and /tmp.
//   pmcr-bench ckpt       N ranks x M MiB: pmcr_checkpoint until sealed, and
//                         restart in a new job, next to memcpy, POSIX
//                         write+fsync and cold read of one file per rank,
//                         measured in the same MPI jobs (pmcr-bench-rank).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "help_format.hpp"
#include "auth.hpp"
#include "bench_support.hpp"
#include "checksum.hpp"
#include "client.hpp"
#include "dirty.hpp"
#include "encryption.hpp"
#include "error.hpp"
#include "local_server.hpp"
#include "netns.hpp"
#include "process.hpp"
#include "text.hpp"
#include "ucx.hpp"
#include "cpu_time.hpp"
#include "ucx_limit.hpp"

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

using pmcr::bench::Buffer;
using pmcr::bench::median;

double gbs(uint64_t bytes, double secs) { return secs > 0 ? static_cast<double>(bytes) / secs / 1e9 : NAN; }

int reps_for(uint64_t size) { return size <= (1u << 20) ? 30 : size <= (64u << 20) ? 7 : 3; }

void fill(Buffer& b, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (uint64_t i = 0; i + 8 <= b.size; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(b.data + i, &x, 8);
  }
}

double memcpy_gbs(uint64_t size) {
  Buffer src(size), dst(size);
  fill(src, 1);
  std::vector<double> t;
  for (int r = 0; r < reps_for(size); ++r) {
    const auto t0 = Clock::now();
    std::memcpy(dst.data, src.data, size);
    t.push_back(seconds_since(t0));
  }
  return gbs(size, median(t));
}

// ucx_perftest over the same transport the client/server endpoints use
// (tcp on the loopback device). Returns GB/s, or NAN with a note.
double perftest(const std::string& test, uint64_t size, unsigned outstanding, std::string* note) {
  const uint16_t port = pmcr::tools::free_port();
  const std::vector<std::string> env = {"UCX_TLS=tcp", "UCX_NET_DEVICES=lo"};
  const std::string srv_out = "/tmp/pmcr-bench-perftest-srv.txt", cli_out = "/tmp/pmcr-bench-perftest-cli.txt";
  pid_t srv;
  try {
    srv = pmcr::tools::spawn({"ucx_perftest", "-p", std::to_string(port)}, {env, srv_out, srv_out});
  } catch (const pmcr::Error&) {
    *note = "ucx_perftest not found (install ucx-utils)";
    return NAN;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int iters = size <= (1u << 20) ? 300 : size <= (64u << 20) ? 8 : 2;
  std::vector<std::string> argv = {"ucx_perftest", "127.0.0.1", "-p", std::to_string(port), "-t", test,
                                   "-s", std::to_string(size), "-n", std::to_string(iters), "-w",
                                   std::to_string(std::max(1, iters / 10)), "-f"};
  if (outstanding) {
    argv.push_back("-O");
    argv.push_back(std::to_string(outstanding));
  }
  const pid_t cli = pmcr::tools::spawn(argv, {env, cli_out, cli_out});
  int status = 0;
  const int limit = 90;
  const bool done = pmcr::tools::wait_for(cli, std::chrono::seconds(limit), &status, true);
  ::kill(srv, SIGKILL);
  waitpid(srv, nullptr, 0);
  if (!done) {
    *note = test + " of " + pmcr::format_size(size) + " did not finish in " + std::to_string(limit) + " s";
    return NAN;
  }
  std::ifstream in(cli_out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::vector<std::string> f;
    for (std::string w; ss >> w;) f.push_back(w);
    // "-f" prints: iterations, 50%ile, average, overall latency, then
    // average and overall bandwidth in MB/s (2^20 bytes).
    if (f.size() >= 6 && f[0] == std::to_string(iters)) return std::stod(f[5]) * 1048576.0 / 1e9;
  }
  *note = test + " printed no result (see " + cli_out + ")";
  return NAN;
}

struct TransferRow {
  uint64_t size = 0;
  double put_commit = NAN, put_only = NAN, open_get = NAN;
  double memcpy = NAN, pt_put = NAN, pt_put_chunked = NAN, pt_get = NAN;
};

std::string fmt(double v) {
  if (std::isnan(v)) return "n/a";
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}
std::string ratio(double a, double b) {
  if (std::isnan(a) || std::isnan(b) || b == 0) return "n/a";
  char s[32];
  std::snprintf(s, sizeof s, "%.2fx", a / b);
  return s;
}

// Files removed when the scope ends, also when a measurement throws: a
// failed run must not leave its files (GiBs of pools in /dev/shm) behind.
struct RemoveOnExit {
  std::vector<std::string> paths;
  ~RemoveOnExit() {
    for (const auto& p : paths) ::unlink(p.c_str());
  }
};

// The POSIX baseline's files of pmcr-bench-rank's RANKS ranks in DIR.
std::vector<std::string> rank_files(const std::string& dir, int ranks) {
  std::vector<std::string> out;
  for (int rank = 0; rank < ranks; ++rank)
    out.push_back(dir + "/pmcr-bench-rank" + std::to_string(rank) + "-of-" + std::to_string(ranks) + ".dat");
  return out;
}

// A pmserver of the benchmark: stopped, and its pool file removed, when it goes.
class BenchServer : public pmcr::tools::LocalServer {
 public:
  using LocalServer::LocalServer;
  ~BenchServer() {
    stop();
    ::unlink(options().pool.c_str());
  }
};

// A pmserver of this benchmark on a new pool file (any old one removed) of
// MIB MiB, on the loopback device, logging to /tmp/pmcr-bench-pmserver.log.
// With NS, the server runs inside that network namespace, on its address,
// and authenticates its clients with KEY_FILE (it is not loopback).
std::unique_ptr<BenchServer> bench_server(const std::string& pmserver, const std::string& pool, uint64_t mib,
                                                       std::vector<std::string> args = {},
                                                       const pmcr::tools::NetNs* ns = nullptr,
                                                       const std::string& key_file = "") {
  ::unlink(pool.c_str());
  pmcr::tools::LocalServerOptions o;
  o.pmserver = pmserver;
  o.pool = pool;
  o.size = std::to_string(mib) + "M";
  o.log = "/tmp/pmcr-bench-pmserver.log";
  o.env = {"UCX_NET_DEVICES=lo"};
  o.args = std::move(args);
  if (ns) {
    o.wrapper = ns->exec();
    o.listen = ns->ns_addr() + ":0";
    o.env = {"UCX_NET_DEVICES=" + ns->ns_if()};
    o.args.insert(o.args.end(), {"--auth", "key", "--key-file", key_file});
  }
  auto server = std::make_unique<BenchServer>(o);
  if (!server->start()) throw pmcr::Error(PMCR_E_IO, "pmserver did not start; see " + o.log);
  // pmserver faults its pool in in the background once it serves; until it
  // is done, checkpoints pay page faults (and a hypervisor's) and compete
  // with it for the cores. Measuring then made the first configuration on
  // new servers slower than the next: R = 2 measured after R = 1 on the
  // same servers looked 1.1-1.4x as slow, and 2.2x when measured first.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  for (std::string now;; std::this_thread::sleep_for(std::chrono::milliseconds(20))) {
    now = server->progress();
    const auto at = now.find("pool faulted in: "), of = now.find(" of ");
    if (at != std::string::npos && of != std::string::npos &&
        now.substr(at + 17, of - at - 17) == now.substr(of + 4))
      break;
    if (server->wait_exit(std::chrono::milliseconds(0)))
      throw pmcr::Error(PMCR_E_IO, "pmserver on " + pool + " exited while faulting its pool in; see " + o.log);
    if (std::chrono::steady_clock::now() > deadline)
      throw pmcr::Error(PMCR_E_TIMEDOUT, "pmserver on " + pool + " did not fault its pool in within 10 minutes (last: '" +
                                             now + "'); see " + o.log);
  }
  return server;
}

// Registration cost: ucp_mem_map + ucp_rkey_pack of a mapped file range,
// once per region (what pmserver does) against once for a whole pool.
json registration_costs(const std::string& dir, const std::vector<uint64_t>& sizes) {
  json out = json::array();
  pmcr::ucx::Context ctx("pmcr-bench");
  const uint64_t pool = sizes.back() + (64u << 20);
  const std::string path = dir + "/pmcr-bench-reg.tmp";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ::posix_fallocate(fd, 0, static_cast<off_t>(pool)) != 0) return out;
  void* base = ::mmap(nullptr, pool, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::unlink(path.c_str());
  for (uint64_t size : sizes) {
    std::vector<double> t;
    for (int r = 0; r < 20; ++r) {
      const auto t0 = Clock::now();
      ucp_mem_map_params_t mp{};
      mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
      mp.address = base;
      mp.length = size;
      ucp_mem_h memh;
      if (ucp_mem_map(ctx.get(), &mp, &memh) != UCS_OK) break;
      void* rkey;
      size_t rkey_size;
      ucp_rkey_pack(ctx.get(), memh, &rkey, &rkey_size);
      t.push_back(seconds_since(t0));
      ucp_rkey_buffer_release(rkey);
      ucp_mem_unmap(ctx.get(), memh);
    }
    out.push_back({{"bytes", size}, {"map_and_pack_us", median(t) * 1e6}});
  }
  ::munmap(base, pool);
  ::close(fd);
  return out;
}

json run_transfer(const std::vector<uint64_t>& sizes, const std::vector<std::string>& dirs, const std::string& pmserver,
                  bool quiet) {
  json result;
  std::map<uint64_t, TransferRow> base;
  if (!quiet) std::fprintf(stderr, "measuring memcpy and ucx_perftest...\n");
  for (uint64_t size : sizes) {
    TransferRow& r = base[size];
    std::string note;
    r.memcpy = memcpy_gbs(size);
    r.pt_put = perftest("ucp_put_bw", size, 4, &note);
    r.pt_put_chunked = size > (1u << 20) ? base[sizes.front()].pt_put : r.pt_put;
    r.pt_get = perftest("ucp_get", size, 0, &note);
    if (!note.empty()) result["notes"].push_back(note);
  }
  for (const std::string& dir : dirs) {
    const std::string pool = dir + "/pmcr-bench-" + std::to_string(getpid()) + ".pool";
    // One client writes regions of up to most of the pool.
    const auto server_ = bench_server(pmserver, pool, (sizes.back() + (256u << 20)) >> 20, {"--quota-bytes", "100%"});
    auto& server = *server_;
    pmcr::client::Options co;
    co.server = server.address();
    co.name = "pmcr-bench";
    co.timeout = std::chrono::minutes(5);
    pmcr::client::Client c(co);
    c.begin("bench");
    const auto st = c.stat();
    json rows = json::array();
    for (uint64_t size : sizes) {
      if (!quiet) std::fprintf(stderr, "pool in %s: %s regions...\n", dir.c_str(), pmcr::format_size(size).c_str());
      Buffer src(size), dst(size);
      fill(src, size);
      const uint64_t sum = pmcr::checksum(src.data, size);
      std::vector<double> put_commit, put_only, open_get;
      for (int rep = 0; rep < reps_for(size); ++rep) {
        const uint64_t v = static_cast<uint64_t>(rep) + 1;
        auto t0 = Clock::now();
        const auto target = c.create("bench", v, 0, 0, size);
        const auto t1 = Clock::now();
        c.put(target, src.data);
        const double put_s = seconds_since(t1);
        c.commit(target, sum);
        put_commit.push_back(seconds_since(t0));
        put_only.push_back(put_s);
        c.seal("bench", v, 1, 1);
        t0 = Clock::now();
        const auto source = c.open("bench", v, 0, 0);
        c.get(source, dst.data);  // includes the checksum check a restart does
        c.close(source);
        open_get.push_back(seconds_since(t0));
        c.remove("bench", v);
      }
      if (std::memcmp(src.data, dst.data, size) != 0) throw pmcr::Error(PMCR_E_CHECKSUM, "read back different bytes");
      TransferRow r = base[size];
      r.size = size;
      r.put_commit = gbs(size, median(put_commit));
      r.put_only = gbs(size, median(put_only));
      r.open_get = gbs(size, median(open_get));
      rows.push_back({{"bytes", size},
                      {"put_commit_gbs", r.put_commit},
                      {"put_only_gbs", r.put_only},
                      {"open_get_gbs", r.open_get},
                      {"memcpy_gbs", r.memcpy},
                      {"perftest_put_gbs", r.pt_put},
                      {"perftest_put_1MiB_chunks_gbs", r.pt_put_chunked},
                      {"perftest_get_gbs", r.pt_get}});
    }
    result["pools"].push_back({{"dir", dir},
                               {"granularity", st.store_granularity},
                               {"transport", c.transports()},
                               {"rows", rows},
                               {"registration", registration_costs(dir, sizes)}});
    server.stop();
  }
  return result;
}

void print_transfer(const json& r) {
  std::printf("pmcr-bench transfer: one region, median of repetitions; GB/s = 1e9 bytes/s\n");
  std::printf("put+commit = CREATE + data (default am path: rendezvous active messages, 16 MiB x 4) + COMMIT\n");
  std::printf("             (server persists and checksums); put = the data part alone\n");
  std::printf("open+get   = OPEN + READ (rendezvous active messages into the buffer) + client checksum check + CLOSE\n");
  std::printf("perftest   = ucx_perftest, UCX_TLS=tcp on lo (the transport pmcr's endpoints use); put with -O 4\n\n");
  for (const auto& p : r["pools"]) {
    std::printf("pool in %s (store granularity %llu B), data over %s\n", p["dir"].get<std::string>().c_str(),
                static_cast<unsigned long long>(p["granularity"].get<uint64_t>()),
                p["transport"].get<std::string>().c_str());
    std::printf("%8s | %10s %8s %12s %9s %8s | %9s %12s %9s %8s | %7s\n", "size", "put+commit", "put", "perftest put",
                "vs pt", "vs cpy", "open+get", "perftest get", "vs pt", "vs cpy", "memcpy");
    for (const auto& row : p["rows"]) {
      const auto d = [&](const char* k) { return row[k].is_null() ? NAN : row[k].get<double>(); };
      std::printf("%8s | %10s %8s %12s %9s %8s | %9s %12s %9s %8s | %7s\n",
                  pmcr::format_size(row["bytes"].get<uint64_t>()).c_str(), fmt(d("put_commit_gbs")).c_str(),
                  fmt(d("put_only_gbs")).c_str(), fmt(d("perftest_put_gbs")).c_str(),
                  ratio(d("put_commit_gbs"), d("perftest_put_gbs")).c_str(),
                  ratio(d("put_commit_gbs"), d("memcpy_gbs")).c_str(), fmt(d("open_get_gbs")).c_str(),
                  fmt(d("perftest_get_gbs")).c_str(), ratio(d("open_get_gbs"), d("perftest_get_gbs")).c_str(),
                  ratio(d("open_get_gbs"), d("memcpy_gbs")).c_str(), fmt(d("memcpy_gbs")).c_str());
    }
    std::printf("  perftest put in 1 MiB messages (pmcr's chunking): %s GB/s\n",
                fmt(p["rows"][0]["perftest_put_gbs"].is_null() ? NAN : p["rows"][0]["perftest_put_gbs"].get<double>()).c_str());
    std::printf("  registration (ucp_mem_map + rkey_pack):");
    for (const auto& g : p["registration"])
      std::printf(" %s %.1f us;", pmcr::format_size(g["bytes"].get<uint64_t>()).c_str(), g["map_and_pack_us"].get<double>());
    std::printf("\n\n");
  }
  if (r.contains("notes"))
    for (const auto& n : r["notes"]) std::printf("note: %s\n", n.get<std::string>().c_str());
}

// ---- the transport's own limit ----

// Writes or reads exactly N bytes on FD (blocking); false on EOF or error.
bool move_all(int fd, uint8_t* p, uint64_t n, bool send) {
  while (n > 0) {
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(n, 4u << 20));
    const ssize_t k = send ? ::send(fd, p, piece, MSG_NOSIGNAL) : ::recv(fd, p, piece, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<uint64_t>(k);
  }
  return true;
}

// What the network itself allows a checkpoint (TO_SERVER) or a restart:
// RANKS processes, each with BYTES in memory touched beforehand, move them
// over one TCP stream each (the loopback device, as pmcr's tests and
// benchmarks use) to or from one process holding RANKS x BYTES of memory
// touched beforehand (pmcr's pool is memory too). Milliseconds from "go"
// to the last byte landed, median of REPS. No checksum, no persistence, no
// protocol: the floor under any checkpoint/restart over this transport.
//
// A restart is a new job: each of its REPS is new rank processes on new
// connections, moving the bytes once. A checkpoint (TO_SERVER) is measured
// as pmcr's is, in steady state: the same processes and connections move
// the bytes kWarmRounds times untimed, then REPS timed times (800 against
// 80 ms for 4 x 64 MiB on one VM here, the first round against the next).
//
// With COPIES > 1 (a checkpoint kept on that many servers), each rank sends
// its bytes COPIES times at once, over a stream each, as a rank writing
// every replica in parallel does. With NS, the receiving end listens
// inside the namespace (this process enters it for that moment) and the
// ranks connect across the veth pair.
pmcr::bench::Limit socket_limit(int ranks, uint64_t bytes, bool to_server, int reps,
                                const pmcr::tools::NetNs* ns = nullptr, int copies = 1) {
  int home = -1;
  if (ns) {
    home = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int there = ::open(("/var/run/netns/" + ns->name()).c_str(), O_RDONLY | O_CLOEXEC);
    if (home < 0 || there < 0 || ::setns(there, CLONE_NEWNET) != 0)
      throw pmcr::Error(PMCR_E_IO, "socket baseline: cannot enter network namespace " + ns->name() + ": " +
                                       std::strerror(errno));
    ::close(there);
  }
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ns) {
    if (::setns(home, CLONE_NEWNET) != 0)
      throw pmcr::Error(PMCR_E_IO, std::string("socket baseline: cannot return to this network namespace: ") +
                                       std::strerror(errno));
    ::close(home);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (ns) ::inet_pton(AF_INET, ns->ns_addr().c_str(), &a.sin_addr);
  socklen_t len = sizeof a;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) != 0 || ::listen(listener, ranks * copies) != 0)
    throw pmcr::Error(PMCR_E_IO, std::string("socket baseline: cannot listen on 127.0.0.1: ") + std::strerror(errno));
  const int streams_total = ranks * copies;
  Buffer server(static_cast<uint64_t>(streams_total) * bytes);
  fill(server, 7);
  // Not the children's: else each page written here after a fork is copied first.
  ::madvise(server.data, server.size, MADV_DONTFORK);
  const auto [sets, rounds, untimed] = pmcr::bench::rounds_for(to_server, reps);
  std::vector<double> times, cpu;
  for (int set = 0; set < sets; ++set) {
    std::vector<pid_t> children;
    std::vector<int> cpu_from;  // pipe: the CPU seconds each rank spent in each round
    for (int r = 0; r < ranks; ++r) {
      int back[2];
      if (::pipe2(back, O_CLOEXEC) != 0)
        throw pmcr::Error(PMCR_E_IO, std::string("socket baseline: pipe: ") + std::strerror(errno));
      const pid_t pid = ::fork();
      if (pid < 0) throw pmcr::Error(PMCR_E_IO, std::string("socket baseline: fork: ") + std::strerror(errno));
      if (pid == 0) {  // a rank: its memory, a stream per copy
        bool ok = false;
        try {
          ::close(back[0]);
          Buffer mine(bytes);
          fill(mine, 100 + static_cast<uint64_t>(r));
          std::vector<int> fds;
          ok = true;
          for (int k = 0; k < copies && ok; ++k) {
            const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
            uint8_t ready = 0;
            ok = ok && move_all(fd, &ready, 1, true);
            if (fd >= 0) fds.push_back(fd);
          }
          std::vector<double> spent;
          for (int round = 0; round < rounds && ok; ++round) {
            const double cpu0 = pmcr::bench::own_cpu_seconds();
            std::vector<char> moved(fds.size(), 0);
            std::vector<std::thread> each;
            for (size_t k = 0; k < fds.size(); ++k)
              each.emplace_back([&, k] {
                uint8_t go = 0;
                const int fd = fds[k];
                moved[k] = move_all(fd, &go, 1, false) && move_all(fd, mine.data, bytes, to_server) &&
                           (to_server || move_all(fd, &go, 1, true));
              });
            for (auto& t : each) t.join();
            for (char m : moved) ok = ok && m;
            spent.push_back(pmcr::bench::own_cpu_seconds() - cpu0);
          }
          const auto size = static_cast<ssize_t>(spent.size() * sizeof(double));
          ok = ok && ::write(back[1], spent.data(), static_cast<size_t>(size)) == size;
        } catch (...) {  // never back into the parent's code
        }
        ::_exit(ok ? 0 : 1);
      }
      ::close(back[1]);
      cpu_from.push_back(back[0]);
      children.push_back(pid);
    }
    std::vector<int> fds;
    bool ok = true;
    for (int r = 0; r < streams_total && ok; ++r) {
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      uint8_t ready = 0;
      ok = fd >= 0 && move_all(fd, &ready, 1, false);
      if (fd >= 0) fds.push_back(fd);
    }
    std::vector<double> round_times, round_cpu;
    for (int round = 0; round < rounds && ok; ++round) {
      // Every stream at once, as the ranks of a job: one thread per stream.
      const auto t0 = Clock::now();
      const double cpu0 = pmcr::bench::own_cpu_seconds();
      std::vector<std::thread> streams;
      std::vector<char> done(fds.size(), 0);
      for (size_t i = 0; i < fds.size(); ++i)
        streams.emplace_back([&, i] {
          uint8_t go = 1;
          done[i] = move_all(fds[i], &go, 1, true) && move_all(fds[i], server.data + i * bytes, bytes, !to_server) &&
                    (to_server || move_all(fds[i], &go, 1, false));
        });
      for (auto& t : streams) t.join();
      round_times.push_back(seconds_since(t0));
      round_cpu.push_back(pmcr::bench::own_cpu_seconds() - cpu0);
      for (char d : done) ok = ok && d;
    }
    for (int fd : fds) ::close(fd);
    for (size_t i = 0; i < children.size(); ++i) {
      int status = 0;
      ::waitpid(children[i], &status, 0);
      std::vector<double> child(static_cast<size_t>(rounds), 0);
      const auto size = static_cast<ssize_t>(child.size() * sizeof(double));
      ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 && ::read(cpu_from[i], child.data(), static_cast<size_t>(size)) == size;
      ::close(cpu_from[i]);
      for (size_t k = 0; k < round_cpu.size() && k < child.size(); ++k) round_cpu[k] += child[k];
    }
    if (!ok) {
      ::close(listener);
      throw pmcr::Error(PMCR_E_IO, "socket baseline: a stream failed");
    }
    times.insert(times.end(), round_times.begin() + untimed, round_times.end());
    cpu.insert(cpu.end(), round_cpu.begin() + untimed, round_cpu.end());
  }
  ::close(listener);
  return {median(times) * 1e3, median(cpu) * 1e3};
}

// ---- pmcr-bench server ----

// pmserver's own throughput: C clients (threads of this process, each its
// own connection), each writing regions of SIZE (create, send, commit, then
// abort: the extent is reused) for REPS rounds, against a pmserver with T
// receive threads and T commit threads (--receive-threads T --threads T; 0:
// the event loop does it all); the aggregate GB/s from the first start to
// the last end.
json run_server_bench(const std::vector<int>& clients, const std::vector<int>& threads, uint64_t size, int reps,
                      uint64_t big, const std::string& dir, const std::string& pmserver, bool quiet) {
  json rows = json::array(), stalls = json::array();
  Buffer src(size);
  fill(src, size);
  const uint64_t sum = pmcr::checksum(src.data, size);
  for (int t : threads) {
    const std::string pool = dir + "/pmcr-bench-server-" + std::to_string(getpid()) + ".pool";
    const int most = *std::max_element(clients.begin(), clients.end());
    const auto server = bench_server(pmserver, pool, (std::max(static_cast<uint64_t>(most) * 2 * size, 2 * big) >> 20) + 256,
                                     {"--threads", std::to_string(t), "--receive-threads", std::to_string(t),
                                      "--quota-bytes", "100%"});
    for (int c : clients) {
      if (!quiet) std::fprintf(stderr, "%d clients, %d receive and commit threads...\n", c, t);
      std::vector<std::unique_ptr<pmcr::client::Client>> conns;
      for (int i = 0; i < c; ++i) {
        pmcr::client::Options co;
        co.server = server->address();
        co.name = "pmcr-bench-server";
        co.timeout = std::chrono::minutes(5);
        conns.push_back(std::make_unique<pmcr::client::Client>(co));
        conns.back()->begin("bench-server-" + std::to_string(i));
      }
      std::vector<std::string> errors(static_cast<size_t>(c));
      const auto t0 = Clock::now();
      std::vector<std::thread> workers;
      for (int i = 0; i < c; ++i)
        workers.emplace_back([&, i] {
          pmcr::client::Client& cl = *conns[static_cast<size_t>(i)];
          const std::string job = "bench-server-" + std::to_string(i);
          try {
            for (int r = 0; r < reps; ++r) {
              const auto target = cl.create(job, 1, 0, static_cast<uint32_t>(r), size);
              cl.put(target, src.data);
              cl.commit(target, sum);
              cl.abort(job, 1);
            }
          } catch (const std::exception& e) {
            errors[static_cast<size_t>(i)] = e.what();
          }
        });
      for (auto& w : workers) w.join();
      const double secs = seconds_since(t0);
      for (const auto& e : errors)
        if (!e.empty()) throw pmcr::Error(PMCR_E_IO, "pmcr-bench server: a client failed: " + e);
      conns.clear();
      rows.push_back({{"clients", c}, {"threads", t}, {"bytes", size}, {"reps", reps},
                      {"gbs", static_cast<double>(size) * reps * c / secs / 1e9}});
    }
    // What a large commit costs everybody else: one client commits BIG
    // regions while another asks for STAT back to back; the longest wait.
    {
      if (!quiet)
        std::fprintf(stderr, "a %s commit against STATs, %d receive and commit threads...\n", pmcr::format_size(big).c_str(), t);
      pmcr::client::Options co;
      co.server = server->address();
      co.name = "pmcr-bench-server";
      co.timeout = std::chrono::minutes(5);
      pmcr::client::Client writer(co), prober(co);
      writer.begin("bench-big");
      Buffer data(big);
      fill(data, big);
      const uint64_t big_sum = pmcr::checksum(data.data, big);
      std::vector<double> commit_s;
      std::atomic<bool> done{false};
      std::thread w([&] {
        for (int r = 0; r < 4; ++r) {
          const auto target = writer.create("bench-big", 1, 0, static_cast<uint32_t>(r), big);
          writer.put(target, data.data);
          const auto t1 = Clock::now();
          writer.commit(target, big_sum);
          commit_s.push_back(seconds_since(t1));
          writer.abort("bench-big", 1);
        }
        done = true;
      });
      std::vector<double> waits;
      while (!done) {
        const auto t1 = Clock::now();
        (void)prober.stat();
        waits.push_back(seconds_since(t1));
      }
      w.join();
      stalls.push_back({{"threads", t}, {"bytes", big}, {"commit_ms", median(commit_s) * 1e3},
                        {"stat_max_ms", *std::max_element(waits.begin(), waits.end()) * 1e3},
                        {"stat_median_ms", median(waits) * 1e3}, {"stats", waits.size()}});
    }
    server->stop();
  }
  return json{{"pool_dir", dir}, {"rows", rows}, {"stalls", stalls}};
}

void print_server_bench(const json& r) {
  std::printf("pmcr-bench server: aggregate GB/s of C clients (each its own connection) writing %s regions\n"
              "(create, send, commit: persisted and checksummed on the server), pool in %s, against pmserver\n"
              "--receive-threads T --threads T (0: the event loop receives, persists and checksums)\n\n",
              pmcr::format_size(r["rows"].at(0)["bytes"].get<uint64_t>()).c_str(), r["pool_dir"].get<std::string>().c_str());
  std::printf("%8s %8s %10s\n", "clients", "threads", "GB/s");
  for (const auto& row : r["rows"])
    std::printf("%8d %8d %10.2f\n", row["clients"].get<int>(), row["threads"].get<int>(), row["gbs"].get<double>());
  std::printf("\none client commits %s regions while another asks for STAT back to back: the COMMIT (data already\n"
              "sent) and the STATs' median and longest wait, ms\n",
              pmcr::format_size(r["stalls"].at(0)["bytes"].get<uint64_t>()).c_str());
  std::printf("%8s %10s %12s %12s %8s\n", "threads", "commit", "STAT median", "STAT max", "STATs");
  for (const auto& row : r["stalls"])
    std::printf("%8d %10.1f %12.3f %12.1f %8zu\n", row["threads"].get<int>(), row["commit_ms"].get<double>(),
                row["stat_median_ms"].get<double>(), row["stat_max_ms"].get<double>(), row["stats"].get<size_t>());
}

// ---- pmcr-bench ckpt ----

struct CkptConfig {
  int ranks;
  uint64_t mib;
};

struct Launch {
  std::string mpiexec, preflags, rank_program;
};

// Runs one MPI job of pmcr-bench-rank and returns rank 0's JSON line.
json run_rank_job(const Launch& l, int ranks, const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<std::string> argv = {l.mpiexec};
  std::istringstream pre(l.preflags);
  for (std::string w; pre >> w;) argv.push_back(w);
  argv.insert(argv.end(), {"-n", std::to_string(ranks), l.rank_program});
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = pmcr::tools::run(argv, env, std::chrono::minutes(10), true);
  std::istringstream lines(r.out);
  std::string line, last;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '{') last = line;
  if (r.code != 0 || last.empty())
    throw pmcr::Error(PMCR_E_IO, "benchmark job failed (" + args.at(0) + ", " + std::to_string(ranks) + " ranks):\n" + r.out);
  return json::parse(last);
}

json run_ckpt(const std::vector<CkptConfig>& configs, const std::vector<std::string>& dirs,
              const std::vector<std::string>& setups, int reps, const std::string& posix_dir,
              const std::string& pmserver, const Launch& launch, bool quiet) {
  json rows = json::array();
  const std::string data_key = "/tmp/pmcr-bench-" + std::to_string(getpid()) + ".datakey";
  const std::string server_key = "/tmp/pmcr-bench-" + std::to_string(getpid()) + ".serverkey";
  for (const auto& k : {data_key, server_key}) {
    ::unlink(k.c_str());
    pmcr::auth::write_key_file(k, pmcr::auth::Key::generate());
  }
  const RemoveOnExit keys{{data_key, server_key}};
  for (const std::string& setup : setups) {
    // "veth": the server in a network namespace of its own, the ranks across a veth pair.
    std::unique_ptr<pmcr::tools::NetNs> ns;
    if (setup == "veth") {
      if (const std::string why = pmcr::tools::NetNs::unavailable(); !why.empty())
        throw pmcr::Error(PMCR_E_CONFIG, "--setups veth: " + why);
      ns = std::make_unique<pmcr::tools::NetNs>();
    } else if (setup != "loopback") {
      throw pmcr::Error(PMCR_E_INVAL, "--setups: '" + setup + "' is neither loopback nor veth");
    }
    for (const CkptConfig& cfg : configs) {
      // Fresh processes for every measurement, as every restart is a new job.
      const auto sock_ckpt = socket_limit(cfg.ranks, cfg.mib << 20, true, reps, ns.get());
      const auto sock_restart = socket_limit(cfg.ranks, cfg.mib << 20, false, reps, ns.get());
      // And UCX's own, with pmcr's message size (loopback only: its
      // listener does not enter the namespace).
      const uint64_t chunk = pmcr::client::Options{}.am_chunk;
      const auto ucx_ckpt = ns ? pmcr::bench::Limit{} : pmcr::bench::ucx_limit(cfg.ranks, cfg.mib << 20, true, reps, chunk);
      const auto ucx_restart =
          ns ? pmcr::bench::Limit{} : pmcr::bench::ucx_limit(cfg.ranks, cfg.mib << 20, false, reps, chunk);
      for (const std::string& dir : dirs) {
        if (!quiet)
          std::fprintf(stderr, "%d ranks x %llu MiB, pool in %s, %s...\n", cfg.ranks,
                       static_cast<unsigned long long>(cfg.mib), dir.c_str(), setup.c_str());
        const std::string pool = dir + "/pmcr-bench-ckpt-" + std::to_string(getpid()) + ".pool";
        // PMCR_KEEP=2 sealed versions plus the one being written, of the
        // plain and of the encrypted job, and room.
        const RemoveOnExit posix_files{rank_files(posix_dir, cfg.ranks)};
        const auto server_ = bench_server(pmserver, pool, 8 * cfg.ranks * cfg.mib + 64, {}, ns.get(), server_key);
        auto& server = *server_;
        std::vector<std::string> env = {"PMCR_SERVERS=" + server.address(),
                                        "PMCR_JOB=bench-" + std::to_string(cfg.ranks) + "x" + std::to_string(cfg.mib),
                                        "PMCR_KEEP=2", "PMCR_TIMEOUT=600",
                                        // Full checkpoints: the job rewrites the same bytes, which
                                        // an incremental one would not send (--changed measures those).
                                        "PMCR_INCREMENTAL=0",
                                        // (Rank 0 reads its CPU time around each timed operation.)
                                        "PMCR_BENCH_SERVER_PIDS=" + std::to_string(server.pid())};
        if (ns)
          env.insert(env.end(), {"UCX_NET_DEVICES=" + ns->host_if(), "PMCR_AUTH=key", "PMCR_KEY_FILE=" + server_key});
        const std::string mib = std::to_string(cfg.mib), r = std::to_string(reps);
        const json w = run_rank_job(launch, cfg.ranks, {"write", mib, r, posix_dir}, env);
        std::vector<double> restart, cold, restart_ranks_cpu, restart_server_cpu;
        for (int i = 0; i < reps; ++i) {  // every restart is a new job
          const json rd = run_rank_job(launch, cfg.ranks, {"read", mib, "1", posix_dir}, env);
          restart.push_back(rd["restart_s"].get<double>());
          cold.push_back(rd["posix_cold_read_s"].get<double>());
          restart_ranks_cpu.push_back(rd["ranks_cpu_s"].get<double>());
          restart_server_cpu.push_back(rd["servers_cpu_s"].is_number() ? rd["servers_cpu_s"].get<double>() : NAN);
        }
        // The same job encrypted on the client (PMCR_ENCRYPT=1), same server, same run.
        std::vector<std::string> enc_env = env;
        enc_env[1] += "-encrypted";
        enc_env.insert(enc_env.end(), {"PMCR_ENCRYPT=1", "PMCR_DATA_KEY_FILE=" + data_key});
        const json we = run_rank_job(launch, cfg.ranks, {"write", mib, r, posix_dir}, enc_env);
        std::vector<double> restart_enc;
        for (int i = 0; i < reps; ++i)
          restart_enc.push_back(
              run_rank_job(launch, cfg.ranks, {"read", mib, "1", posix_dir}, enc_env)["restart_s"].get<double>());
        server.stop();
        rows.push_back({{"ranks", cfg.ranks},
                        {"mib_per_rank", cfg.mib},
                        {"pool_dir", dir},
                        {"reps", reps},
                        {"ckpt_ms", w["ckpt_s"].get<double>() * 1e3},
                        {"ckpt_each_s", w["ckpt_each_s"]},
                        {"ckpt_first_ms", w["ckpt_first_s"].get<double>() * 1e3},
                        {"memcpy_ms", w["memcpy_s"].get<double>() * 1e3},
                        {"posix_write_fsync_ms", w["posix_write_fsync_s"].get<double>() * 1e3},
                        {"restart_ms", median(restart) * 1e3},
                        {"posix_cold_read_ms", median(cold) * 1e3},
                        {"ckpt_encrypted_ms", we["ckpt_s"].get<double>() * 1e3},
                        {"restart_encrypted_ms", median(restart_enc) * 1e3},
                        {"socket_ckpt_ms", sock_ckpt.ms},
                        {"socket_restart_ms", sock_restart.ms},
                        {"ucx_ckpt_ms", ucx_ckpt.ms},
                        {"ucx_restart_ms", ucx_restart.ms},
                        // CPU time (every core) of one checkpoint or restart, and of the baselines'.
                        {"ckpt_ranks_cpu_ms", w["ranks_cpu_s"].get<double>() * 1e3},
                        {"ckpt_server_cpu_ms", w["servers_cpu_s"].is_number() ? w["servers_cpu_s"].get<double>() * 1e3 : NAN},
                        {"restart_ranks_cpu_ms", median(restart_ranks_cpu) * 1e3},
                        {"restart_server_cpu_ms", median(restart_server_cpu) * 1e3},
                        {"socket_ckpt_cpu_ms", sock_ckpt.cpu_ms},
                        {"socket_restart_cpu_ms", sock_restart.cpu_ms},
                        {"ucx_ckpt_cpu_ms", ucx_ckpt.cpu_ms},
                        {"ucx_restart_cpu_ms", ucx_restart.cpu_ms},
                        {"setup", setup}});
      }
    }
  }
  return json{{"posix_dir", posix_dir}, {"rows", rows}};
}

// ---- pmcr-bench ckpt --servers N,... --replicas R,... ----

// The same job's checkpoint and restart with its data spread over N
// servers (each its own pmserver process and pool, on this host), each
// rank's data on R of them, for every N and every R <= N, in one run.
json run_servers(const std::vector<CkptConfig>& configs, const std::string& dir, const std::vector<int>& counts,
                 const std::vector<int>& copies, const std::vector<int>& asyncs, int reps, const std::string& posix_dir,
                 const std::string& pmserver, const Launch& launch, bool quiet) {
  json rows = json::array();
  for (const CkptConfig& cfg : configs) {
    // What the transport allows the same checkpoint with every copy sent
    // at once (R streams per rank), measured once per R for every N.
    std::map<int, pmcr::bench::Limit> sockets;
    for (int r : copies)
      if (r <= *std::max_element(counts.begin(), counts.end()) && std::count(asyncs.begin(), asyncs.end(), 0)) {
        if (!quiet)
          std::fprintf(stderr, "%d ranks x %llu MiB over sockets, %d streams per rank...\n", cfg.ranks,
                       static_cast<unsigned long long>(cfg.mib), r);
        sockets[r] = socket_limit(cfg.ranks, cfg.mib << 20, true, reps, nullptr, r);
      }
    for (int n : counts) {
      const RemoveOnExit posix_files{rank_files(posix_dir, cfg.ranks)};
      std::vector<std::unique_ptr<BenchServer>> servers;
      std::string list, pids;
      for (int i = 0; i < n; ++i) {
        const std::string pool = dir + "/pmcr-bench-servers-" + std::to_string(getpid()) + "-" + std::to_string(i) + ".pool";
        // Each holds at most every rank's data (R <= N), PMCR_KEEP=2 versions and the one being written.
        servers.push_back(bench_server(pmserver, pool, 4 * cfg.ranks * cfg.mib + 64));
        list += (list.empty() ? "" : ",") + servers.back()->address();
        pids += (pids.empty() ? "" : ",") + std::to_string(servers.back()->pid());
      }
      for (int r : copies)
      for (int async : asyncs) {
        if (r > n) continue;
        if (!quiet)
          std::fprintf(stderr, "%d ranks x %llu MiB on %d servers, %d copies%s...\n", cfg.ranks,
                       static_cast<unsigned long long>(cfg.mib), n, r, async ? ", asynchronous" : "");
        const std::vector<std::string> env = {"PMCR_SERVERS=" + list, "PMCR_REPLICAS=" + std::to_string(r),
                                              "PMCR_JOB=bench-servers-" + std::to_string(n) + "-" + std::to_string(r) +
                                                  "-" + std::to_string(async),
                                              "PMCR_KEEP=2", "PMCR_TIMEOUT=600", "PMCR_INCREMENTAL=0",
                                              "PMCR_ASYNC=" + std::to_string(async),
                                              "PMCR_BENCH_SERVER_PIDS=" + pids};
        const std::string mib = std::to_string(cfg.mib);
        const json w = run_rank_job(launch, cfg.ranks, {"write", mib, std::to_string(reps), posix_dir}, env);
        std::vector<double> restart;
        for (int i = 0; i < reps; ++i)
          restart.push_back(run_rank_job(launch, cfg.ranks, {"read", mib, "1", posix_dir}, env)["restart_s"].get<double>());
        // Its versions go: the next measurement gets the pools' space. A
        // server may hold none of them (2 ranks on 3 servers, one copy).
        for (const auto& server : servers) {
          pmcr::client::Options co;
          co.server = server->address();
          co.name = "pmcr-bench";
          try {
            pmcr::client::Client(co).remove(env[2].substr(env[2].find('=') + 1), std::nullopt);
          } catch (const pmcr::Error& e) {
            if (e.code() != PMCR_E_NOT_FOUND) throw;
          }
        }
        rows.push_back({{"ranks", cfg.ranks},
                        {"mib_per_rank", cfg.mib},
                        {"servers", n},
                        {"replicas", r},
                        {"async", async},
                        {"reps", reps},
                        {"ckpt_ms", w["ckpt_s"].get<double>() * 1e3},
                        {"blocked_ms", w["blocked_s"].get<double>() * 1e3},
                        {"memcpy_ms", w["memcpy_s"].get<double>() * 1e3},
                        {"restart_ms", median(restart) * 1e3},
                        {"ckpt_ranks_cpu_ms", w["ranks_cpu_s"].get<double>() * 1e3},
                        {"ckpt_servers_cpu_ms", w["servers_cpu_s"].is_number() ? w["servers_cpu_s"].get<double>() * 1e3 : NAN}});
        if (!async && sockets.count(r)) {
          rows.back()["socket_ckpt_ms"] = sockets[r].ms;
          rows.back()["socket_ckpt_cpu_ms"] = sockets[r].cpu_ms;
        }
      }
    }
  }
  return json{{"pool_dir", dir}, {"rows", rows}};
}

// "4x64MiB", and "/veth" for the two-host setup.
std::string job_label(const json& row) {
  return std::to_string(row["ranks"].get<int>()) + "x" + std::to_string(row["mib_per_rank"].get<uint64_t>()) + "MiB" +
         (row.value("setup", "loopback") == "veth" ? "/veth" : "");
}

void print_servers(const json& r) {
  std::printf("pmcr-bench ckpt --servers: median ms; the job's data spread over N pmservers (each its own process and\n"
              "pool in %s, all on this host), each rank's data on R of them, full checkpoints; ckpt = until every\n"
              "part is sealed (with PMCR_ASYNC=1: pmcr_checkpoint + pmcr_wait), blocked = pmcr_checkpoint alone;\n"
              "restart in a new job reading each rank from one copy. GB/s: the job's bytes per second; on the\n"
              "wire: times R. R2/R1: at the same number of servers and mode (goal: 1.3x at most); goal for async:\n"
              "blocked within 2x memcpy of the changed bytes (here every byte changes). sockets: the transport's\n"
              "own limit for the synchronous checkpoint, each rank sending its bytes R times at once over a TCP\n"
              "stream each (memory to memory, no checksum or persistence; steady state: the same processes after\n"
              "3 untimed rounds, as pmcr's ckpt comes after 3 checkpoints), and its own R2/R1\n\n",
              r["pool_dir"].get<std::string>().c_str());
  std::printf("%-10s %7s %6s %5s | %8s %8s %8s %6s | %8s %9s %6s | %8s %8s %10s %10s | %8s %6s\n", "job", "servers",
              "copies", "async", "ckpt", "GB/s", "wire", "R2/R1", "sockets", "ckpt/sock", "R2/R1", "blocked", "memcpy",
              "blk/memcpy", "blk/sync", "restart", "R2/R1");
  const auto find = [&](const json& row, int copies, int async) -> const json* {
    for (const auto& one : r["rows"])
      if (one["servers"] == row["servers"] && one["replicas"] == copies && one["async"] == async &&
          one["ranks"] == row["ranks"] && one["mib_per_rank"] == row["mib_per_rank"])
        return &one;
    return nullptr;
  };
  for (const auto& row : r["rows"]) {
    const double ckpt = row["ckpt_ms"], rst = row["restart_ms"], blk = row["blocked_ms"], cpy = row["memcpy_ms"];
    const double bytes = row["ranks"].get<double>() * row["mib_per_rank"].get<double>() * 1048576.0;
    const int n = row["servers"], copies = row["replicas"], async = row["async"];
    const double sock = row.value("socket_ckpt_ms", NAN);
    std::string sock_ms, vs_ckpt_sock;  // blank where not measured (asynchronous rows)
    if (!std::isnan(sock)) {
      char b[32];
      std::snprintf(b, sizeof b, "%.1f", sock);
      sock_ms = b;
      vs_ckpt_sock = ratio(ckpt, sock);
    }
    std::string vs, vs_rst, vs_sync, vs_sock;
    if (copies == 2)
      if (const json* one = find(row, 1, async)) {
        vs = ratio(ckpt, (*one)["ckpt_ms"].get<double>());
        vs_rst = ratio(rst, (*one)["restart_ms"].get<double>());
        if (!std::isnan(sock)) vs_sock = ratio(sock, (*one).value("socket_ckpt_ms", NAN));
      }
    if (async)
      if (const json* sync = find(row, copies, 0)) vs_sync = ratio(blk, (*sync)["ckpt_ms"].get<double>());
    std::printf("%-10s %7d %6d %5s | %8.1f %8.2f %8.2f %6s | %8s %9s %6s | %8.1f %8.1f %10s %10s | %8.1f %6s\n",
                job_label(row).c_str(), n, copies, async ? "yes" : "no", ckpt, bytes / (ckpt / 1e3) / 1e9,
                copies * bytes / (ckpt / 1e3) / 1e9, vs.c_str(), sock_ms.c_str(), vs_ckpt_sock.c_str(),
                vs_sock.c_str(), blk, cpy, ratio(blk, cpy).c_str(), vs_sync.c_str(), rst,
                vs_rst.c_str());
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::printf("\nCPU time of one synchronous checkpoint, every core of this machine (%u) summed, ms: the ranks',\n"
              "all pmservers', and the socket baseline's; floor = pmcr's / %u cores, the least time that work\n"
              "allows here; R2/R1 of the CPU time at the same number of servers\n",
              cores, cores);
  std::printf("%-10s %7s %6s | %8s %8s %8s %8s %8s %7s %6s | %8s %6s\n", "job", "servers", "copies", "ckpt", "ranks",
              "servers", "total", "floor", "floor/t", "R2/R1", "sockets", "R2/R1");
  for (const auto& row : r["rows"]) {
    if (row["async"] != 0) continue;
    const auto get = [](const json& j, const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN; };
    const double total = get(row, "ckpt_ranks_cpu_ms") + get(row, "ckpt_servers_cpu_ms");
    std::string vs, vs_sock;
    if (row["replicas"] == 2)
      if (const json* one = find(row, 1, 0)) {
        vs = ratio(total, get(*one, "ckpt_ranks_cpu_ms") + get(*one, "ckpt_servers_cpu_ms"));
        vs_sock = ratio(get(row, "socket_ckpt_cpu_ms"), get(*one, "socket_ckpt_cpu_ms"));
      }
    std::printf("%-10s %7d %6d | %8.1f %8.1f %8.1f %8.1f %8.1f %7s %6s | %8.1f %6s\n", job_label(row).c_str(),
                row["servers"].get<int>(), row["replicas"].get<int>(), get(row, "ckpt_ms"), get(row, "ckpt_ranks_cpu_ms"),
                get(row, "ckpt_servers_cpu_ms"), total, total / cores, ratio(total / cores, get(row, "ckpt_ms")).c_str(),
                vs.c_str(), get(row, "socket_ckpt_cpu_ms"), vs_sock.c_str());
  }
}

void print_ckpt(const json& r) {
  std::printf("pmcr-bench ckpt: median ms; checkpoint = pmcr_checkpoint until sealed (all ranks durable, checksummed);\n");
  std::printf("restart = pmcr_restart_test + pmcr_restart (get + checksum check) in a new job; POSIX = one file per\n");
  std::printf("rank in %s: write+fsync, and read after dropping it from the page cache (cold)\n\n",
              r["posix_dir"].get<std::string>().c_str());
  std::printf("ckpt = steady state (after PMCR_KEEP + 1 checkpoints); first = the job's first checkpoint, into\n");
  std::printf("pool memory no checkpoint wrote before (pmserver has faulted it in, as one up for a while has)\n\n");
  std::printf("%-14s %-9s | %8s %8s %8s %11s %10s %10s | %8s %10s %10s | %11s\n", "job", "pool", "ckpt", "first",
              "memcpy", "POSIX w+fs", "ckpt/POSIX", "ckpt/memcpy", "restart", "POSIX cold", "rst/POSIX", "ckpt GB/s");
  for (const auto& row : r["rows"]) {
    const double ckpt = row["ckpt_ms"], cpy = row["memcpy_ms"], pw = row["posix_write_fsync_ms"],
                 rst = row["restart_ms"], pr = row["posix_cold_read_ms"];
    const double bytes = row["ranks"].get<double>() * row["mib_per_rank"].get<double>() * 1048576.0;
    const std::string job = job_label(row);
    std::printf("%-14s %-9s | %8.1f %8.1f %8.1f %11.1f %10s %10s | %8.1f %10.1f %10s | %11.2f\n", job.c_str(),
                row["pool_dir"].get<std::string>().c_str(), ckpt, row["ckpt_first_ms"].get<double>(), cpy, pw,
                ratio(ckpt, pw).c_str(),
                ratio(ckpt, cpy).c_str(), rst, pr, ratio(rst, pr).c_str(), bytes / (ckpt / 1e3) / 1e9);
  }
  std::printf("\nthe transport's own limit: the same bytes over one TCP stream per rank (loopback, or across the\n"
              "veth pair), memory to memory, no checksum or persistence; goal: checkpoint and restart within 1.2x.\n"
              "Checkpoint: steady state, the same rank processes after 3 untimed rounds (as pmcr's ckpt comes\n"
              "after 3 checkpoints); restart: new rank processes each time. UCX = the same with UCX active\n"
              "messages (%s each, all in flight; endpoints with peer error handling, as pmcr's; loopback only)\n",
              pmcr::format_size(pmcr::client::Options{}.am_chunk).c_str());
  std::printf("%-14s %-9s | %8s %9s %8s %10s %9s %9s | %8s %9s %8s %10s %9s %9s\n", "job", "pool", "ckpt", "sockets",
              "UCX", "ckpt/sock", "ckpt/UCX", "UCX/sock", "restart", "sockets", "UCX", "rst/sock", "rst/UCX",
              "UCX/sock");
  const auto number = [](const json& v) { return v.is_number() ? v.get<double>() : NAN; };
  for (const auto& row : r["rows"]) {
    const double ckpt = row["ckpt_ms"], rst = row["restart_ms"], sc = row["socket_ckpt_ms"], sr = row["socket_restart_ms"];
    const double uc = number(row.value("ucx_ckpt_ms", json())), ur = number(row.value("ucx_restart_ms", json()));
    const std::string job = job_label(row);
    std::printf("%-14s %-9s | %8.1f %9.1f %8.1f %10s %9s %9s | %8.1f %9.1f %8.1f %10s %9s %9s\n", job.c_str(),
                row["pool_dir"].get<std::string>().c_str(), ckpt, sc, uc, ratio(ckpt, sc).c_str(),
                ratio(ckpt, uc).c_str(), ratio(uc, sc).c_str(), rst, sr, ur, ratio(rst, sr).c_str(),
                ratio(rst, ur).c_str(), ratio(ur, sr).c_str());
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::printf("\nCPU time of one checkpoint and one restart, every core of this machine (%u) summed, ms: the\n"
              "ranks' and pmserver's, and what the baselines above spent moving the same bytes; 'floor' =\n"
              "pmcr's CPU time / %u cores, the least time that work allows here\n",
              cores, cores);
  std::printf("%-14s | %7s %7s %7s %7s %7s %7s %7s | %7s %7s %7s %7s %7s %7s %7s\n", "job", "ckpt", "ranks", "server",
              "floor", "floor/t", "sockets", "UCX", "restart", "ranks", "server", "floor", "floor/t", "sockets", "UCX");
  for (const auto& row : r["rows"]) {
    const auto get = [&](const char* k) { return row.contains(k) && row[k].is_number() ? row[k].get<double>() : NAN; };
    const double c = get("ckpt_ms"), cr = get("ckpt_ranks_cpu_ms"), cs = get("ckpt_server_cpu_ms");
    const double t = get("restart_ms"), tr = get("restart_ranks_cpu_ms"), ts = get("restart_server_cpu_ms");
    const double cf = (cr + cs) / cores, tf = (tr + ts) / cores;
    std::printf("%-14s | %7.1f %7.1f %7.1f %7.1f %7s %7.1f %7.1f | %7.1f %7.1f %7.1f %7.1f %7s %7.1f %7.1f\n",
                job_label(row).c_str(), c, cr, cs, cf, ratio(cf, c).c_str(), get("socket_ckpt_cpu_ms"),
                get("ucx_ckpt_cpu_ms"), t, tr, ts, tf, ratio(tf, t).c_str(), get("socket_restart_cpu_ms"),
                get("ucx_restart_cpu_ms"));
  }
  std::printf("\nencrypted on the client (PMCR_ENCRYPT=1, %s), the same jobs in the same run:\n",
              pmcr::crypt::cipher_name(pmcr::crypt::DataKey(pmcr::auth::Key::generate()).cipher()));
  std::printf("%-14s %-9s | %8s %8s %10s %10s | %8s %8s %10s %10s\n", "job", "pool", "ckpt", "ckpt enc", "enc/plain",
              "enc/POSIX", "restart", "rst enc", "enc/plain", "enc/POSIX");
  for (const auto& row : r["rows"]) {
    const double ckpt = row["ckpt_ms"], enc = row["ckpt_encrypted_ms"], pw = row["posix_write_fsync_ms"],
                 rst = row["restart_ms"], rst_enc = row["restart_encrypted_ms"], pr = row["posix_cold_read_ms"];
    const std::string job = job_label(row);
    std::printf("%-14s %-9s | %8.1f %8.1f %10s %10s | %8.1f %8.1f %10s %10s\n", job.c_str(),
                row["pool_dir"].get<std::string>().c_str(), ckpt, enc, ratio(enc, ckpt).c_str(), ratio(enc, pw).c_str(),
                rst, rst_enc, ratio(rst_enc, rst).c_str(), ratio(rst_enc, pr).c_str());
  }
}

// ---- pmcr-bench ckpt --changed ----

// XXH3 over BLOCK-byte blocks of a buffer of BYTES, one core: GB/s.
double hash_rate(uint64_t bytes, uint64_t block) {
  std::vector<uint8_t> buf(bytes);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 131 + (i >> 12));
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    const auto h = pmcr::block_hashes(buf.data(), buf.size(), block);
    t.push_back(seconds_since(t0));
    if (h.empty()) return NAN;
  }
  return gbs(bytes, median(t));
}

// Incremental checkpoints: for each block size, one job per percentage of
// blocks changed between checkpoints, and the same job with PMCR_INCREMENTAL=0
// (every byte sent: the full checkpoint each is compared with). The bytes
// sent are the server's count of region bytes received.
json run_changed(const std::vector<CkptConfig>& configs, const std::vector<std::string>& dirs,
                 const std::vector<double>& percents, const std::vector<uint64_t>& blocks, int reps,
                 const std::string& posix_dir, const std::string& pmserver, const Launch& launch, bool quiet) {
  json rows = json::array();
  for (const CkptConfig& cfg : configs) {
    for (const std::string& dir : dirs) {
      for (uint64_t block : blocks) {
        const std::string pool = dir + "/pmcr-bench-changed-" + std::to_string(getpid()) + ".pool";
        const RemoveOnExit posix_files{rank_files(posix_dir, cfg.ranks)};
        const auto server_ = bench_server(pmserver, pool, 6 * cfg.ranks * cfg.mib + 64);
        auto& server = *server_;
        pmcr::client::Options co;
        co.server = server.address();
        pmcr::client::Client stat_client(co);
        const std::string mib = std::to_string(cfg.mib), r = std::to_string(reps), bs = std::to_string(block);
        const uint64_t total = static_cast<uint64_t>(cfg.ranks) * (cfg.mib << 20);
        const auto job = [&](const std::string& name, double percent, bool incremental, bool track) {
          if (!quiet)
            std::fprintf(stderr, "%d ranks x %llu MiB, pool in %s, blocks of %s: %s...\n", cfg.ranks,
                         static_cast<unsigned long long>(cfg.mib), dir.c_str(), pmcr::format_size(block).c_str(),
                         name.c_str());
          const uint64_t before = stat_client.stat().data_in;
          const json w = run_rank_job(
              launch, cfg.ranks, {"changed", mib, r, posix_dir, std::to_string(percent), bs},
              {"PMCR_SERVERS=" + server.address(), "PMCR_JOB=changed-" + name, "PMCR_KEEP=2", "PMCR_TIMEOUT=600",
               "PMCR_BLOCK_SIZE=" + bs, std::string("PMCR_INCREMENTAL=") + (incremental ? "1" : "0"),
               std::string("PMCR_TRACK_WRITES=") + (track ? "1" : "0")});
          const uint64_t after = stat_client.stat().data_in;
          stat_client.remove("changed-" + name, std::nullopt);  // room for the next job
          // The first checkpoint sent every byte; the others (PMCR_KEEP warm-up ones and the timed ones) what changed.
          const double sent = static_cast<double>(after - before - total) / (2 + reps);
          return json{{"ckpt_ms", w["ckpt_s"].get<double>() * 1e3},
                      {"posix_write_fsync_ms", w["posix_write_fsync_s"].get<double>() * 1e3},
                      {"sent_bytes", sent}};
        };
        const json full = job("full", 100, false, false);
        const bool tracked = !pmcr::client::WriteTracker::mechanism().empty();
        for (double p : percents) {
          const json j = job(std::to_string(p) + "pct", p, true, false);
          const json t = tracked ? job(std::to_string(p) + "pct-tracked", p, true, true) : json{{"ckpt_ms", NAN}};
          rows.push_back({{"ranks", cfg.ranks}, {"mib_per_rank", cfg.mib}, {"pool_dir", dir}, {"block", block},
                          {"percent", p}, {"ckpt_ms", j["ckpt_ms"]}, {"sent_bytes", j["sent_bytes"]},
                          {"posix_write_fsync_ms", j["posix_write_fsync_ms"]}, {"full_ckpt_ms", full["ckpt_ms"]},
                          {"full_sent_bytes", full["sent_bytes"]}, {"bytes", total},
                          {"tracked_ckpt_ms", t["ckpt_ms"]}});
        }
        server.stop();
      }
    }
  }
  json rates = json::array();
  for (uint64_t block : blocks) rates.push_back({{"block", block}, {"gbs", hash_rate(64u << 20, block)}});
  return json{{"posix_dir", posix_dir}, {"rows", rows}, {"hash_gbs", rates},
              {"write_tracking", pmcr::client::WriteTracker::mechanism()}};
}

void print_changed(const json& r) {
  std::printf("pmcr-bench ckpt --changed: median ms of pmcr_checkpoint until sealed, after P%% of the blocks changed\n");
  std::printf("(at random over each rank's buffer); sent = region bytes the server received per checkpoint (all\n");
  std::printf("ranks); full = the same job with PMCR_INCREMENTAL=0; POSIX = write+fsync of the whole file per rank in %s;\n",
              r["posix_dir"].get<std::string>().c_str());
  std::printf("tracked = the same with PMCR_TRACK_WRITES=1 (only blocks written are hashed; %s)\n\n",
              r["write_tracking"].get<std::string>().empty() ? "not available here"
                                                             : r["write_tracking"].get<std::string>().c_str());
  std::printf("%-10s %-9s %7s %8s | %8s %10s %8s | %9s %10s %10s | %8s %10s\n", "job", "pool", "block", "changed", "ckpt",
              "sent MiB", "full", "ckpt/full", "POSIX w+fs", "ckpt/POSIX", "tracked", "trk/full");
  for (const auto& row : r["rows"]) {
    const std::string job = std::to_string(row["ranks"].get<int>()) + "x" +
                            std::to_string(row["mib_per_rank"].get<uint64_t>()) + "MiB";
    const double ckpt = row["ckpt_ms"], full = row["full_ckpt_ms"], pw = row["posix_write_fsync_ms"];
    char pct[16];
    std::snprintf(pct, sizeof pct, "%g%%", row["percent"].get<double>());
    const double tracked = row["tracked_ckpt_ms"].is_number() ? row["tracked_ckpt_ms"].get<double>() : NAN;
    std::printf("%-10s %-9s %7s %8s | %8.1f %10.1f %8.1f | %9s %10.1f %10s | %8.1f %10s\n", job.c_str(),
                row["pool_dir"].get<std::string>().c_str(), pmcr::format_size(row["block"].get<uint64_t>()).c_str(), pct,
                ckpt, row["sent_bytes"].get<double>() / 1048576.0, full, ratio(ckpt, full).c_str(), pw,
                ratio(ckpt, pw).c_str(), tracked, ratio(tracked, full).c_str());
  }
  std::printf("\nhash (XXH3-64 per block, one core):");
  for (const auto& h : r["hash_gbs"])
    std::printf(" %s blocks %.1f GB/s;", pmcr::format_size(h["block"].get<uint64_t>()).c_str(), h["gbs"].get<double>());
  std::printf("\n");
}

// ---- pmcr-bench failover ----

struct FailoverConfig {
  int ranks = 4;
  uint64_t mib = 64;
  int steps = 34, every = 10, step_ms = 50, die_after = 3, die_delay_ms = 250;
  double change = 100;
  std::string pool_dir = "/dev/shm", posix_dir = "/tmp";
};

// The pmcr-run of this build (beside pmcr-bench, or in the build tree).
std::string find_pmcr_run() {
  const std::string dir = pmcr::tools::self_dir();
  for (const std::string& c : {dir + "/pmcr-run", dir + "/../tools/pmcr-run"})
    if (::access(c.c_str(), X_OK) == 0) return c;
  return "pmcr-run";
}

// The first number in TEXT after PREFIX (NAN if none).
double number_after(const std::string& text, const std::string& prefix) {
  const auto at = text.find(prefix);
  return at == std::string::npos ? NAN : std::strtod(text.c_str() + at + prefix.size(), nullptr);
}

// One failure and recovery of the application, by MODE: "standby" (pmcr-run
// --standby: the standby takes over), "relaunch" (pmcr-run relaunches the job,
// which restarts from pmserver) or "posix" (pmcr-run relaunches the job,
// which restarts from its POSIX files). Returns ms from the kill to the
// first completed step after the recovery, the bytes read after the kill,
// and the steps lost.
json failover_once(const std::string& mode, const FailoverConfig& cfg, const std::string& server,
                   pmcr::client::Client& stat, const Launch& launch, int rep) {
  const std::string tag = "/tmp/pmcr-bench-failover-" + std::to_string(getpid()) + "-" + mode + "-" + std::to_string(rep);
  const std::string kill_file = tag + ".killed", mark_file = tag + ".resumed", job = "failover-" + mode;
  ::unlink(kill_file.c_str());
  ::unlink(mark_file.c_str());
  std::vector<std::string> argv = {find_pmcr_run(), "--servers", server, "--job", job, "--delay", "0",
                                   "--max-restarts", "1"};
  if (mode == "standby") argv.push_back("--standby");
  argv.insert(argv.end(), {"--", launch.mpiexec});
  std::istringstream pre(launch.preflags);
  for (std::string w; pre >> w;) argv.push_back(w);
  argv.insert(argv.end(), {"-n", std::to_string(cfg.ranks), pmcr::tools::self_dir() + "/pmcr-bench-failover",
                           mode == "posix" ? "posix" : "pmcr", std::to_string(cfg.mib), std::to_string(cfg.steps),
                           std::to_string(cfg.every), std::to_string(cfg.step_ms), std::to_string(cfg.die_after),
                           std::to_string(cfg.die_delay_ms), std::to_string(cfg.change), cfg.posix_dir, kill_file,
                           mark_file});
  const uint64_t out_before = stat.stat().data_out;
  const auto r = pmcr::tools::run(argv, {"PMCR_KEEP=2", "PMCR_TIMEOUT=600"}, std::chrono::minutes(10), true);
  const uint64_t out_after = stat.stat().data_out;
  long long kill_step = -1, kill_ns = 0, resumed = -1, mark_ns = 0;
  if (FILE* f = std::fopen(kill_file.c_str(), "r")) {
    if (std::fscanf(f, "%lld %lld", &kill_step, &kill_ns) != 2) kill_step = -1;
    std::fclose(f);
  }
  if (FILE* f = std::fopen(mark_file.c_str(), "r")) {
    if (std::fscanf(f, "%lld %lld", &resumed, &mark_ns) != 2) resumed = -1;
    std::fclose(f);
  }
  ::unlink(kill_file.c_str());
  ::unlink(mark_file.c_str());
  for (int rank = 0; rank < cfg.ranks; ++rank)
    for (int parity : {0, 1})
      ::unlink((cfg.posix_dir + "/pmcr-bench-failover-rank" + std::to_string(rank) + "." + std::to_string(parity) + ".dat")
                   .c_str());
  ::unlink((cfg.posix_dir + "/pmcr-bench-failover-latest").c_str());
  try {
    stat.remove(job, std::nullopt);
  } catch (const pmcr::Error&) {  // a posix run leaves nothing
  }
  if (r.code != 0 || kill_step < 0 || resumed < 0)
    throw pmcr::Error(PMCR_E_IO, "failover run (" + mode + ") failed: exit " + std::to_string(r.code) +
                                     (kill_step < 0 ? ", no rank was killed" : "") +
                                     (resumed < 0 ? ", the job never resumed" : "") + ":\n" + r.out);
  double bytes = mode == "posix" ? static_cast<double>(cfg.ranks) * static_cast<double>(cfg.mib << 20)
                                 : static_cast<double>(out_after - out_before);
  if (mode == "standby") {
    bytes = number_after(r.out, "ms after the failure was detected, ");
    if (r.out.find("standby took over") == std::string::npos)
      throw pmcr::Error(PMCR_E_IO, "the standby did not take over:\n" + r.out);
  }
  return json{{"ms", static_cast<double>(mark_ns - kill_ns) / 1e6}, {"bytes", bytes}, {"lost_steps", kill_step - resumed}};
}

json run_failover(const FailoverConfig& cfg, int reps, const std::string& pmserver, const Launch& launch, bool quiet) {
  const std::string pool = cfg.pool_dir + "/pmcr-bench-failover-" + std::to_string(getpid()) + ".pool";
  const auto server_ = bench_server(pmserver, pool, 8 * cfg.ranks * cfg.mib + 64);
  auto& server = *server_;
  pmcr::client::Options co;
  co.server = server.address();
  pmcr::client::Client stat(co);
  const std::vector<std::string> modes = {"standby", "relaunch", "posix"};
  std::map<std::string, std::vector<double>> ms, bytes, lost;
  for (int rep = 0; rep < reps; ++rep)  // interleaved: drift hits every mode alike
    for (const auto& mode : modes) {
      if (!quiet) std::fprintf(stderr, "failover %s, run %d of %d...\n", mode.c_str(), rep + 1, reps);
      const json j = failover_once(mode, cfg, server.address(), stat, launch, rep);
      ms[mode].push_back(j["ms"].get<double>());
      bytes[mode].push_back(j["bytes"].get<double>());
      lost[mode].push_back(j["lost_steps"].get<double>());
    }
  server.stop();
  json rows = json::array();
  for (const auto& mode : modes)
    rows.push_back({{"mode", mode}, {"ms", median(ms[mode])}, {"each_ms", ms[mode]}, {"bytes", median(bytes[mode])},
                    {"lost_steps", median(lost[mode])}});
  return json{{"ranks", cfg.ranks}, {"mib_per_rank", cfg.mib}, {"every", cfg.every}, {"step_ms", cfg.step_ms},
              {"die_delay_ms", cfg.die_delay_ms}, {"change", cfg.change}, {"reps", reps}, {"pool_dir", cfg.pool_dir},
              {"posix_dir", cfg.posix_dir}, {"rows", rows}};
}

void print_failover(const json& r) {
  std::printf("pmcr-bench failover: %d ranks x %llu MiB; a step is %d ms of sleep, then %g%% of the 1 MiB blocks\n",
              r["ranks"].get<int>(), static_cast<unsigned long long>(r["mib_per_rank"].get<uint64_t>()),
              r["step_ms"].get<int>(), r["change"].get<double>());
  std::printf("changed; a checkpoint every %d steps; rank 1 SIGKILLed at its first step %d ms after the 3rd\ncheckpoint. Time from the ",
              r["every"].get<int>(), r["die_delay_ms"].get<int>());
  std::printf("kill to the first step completed after recovery, median of %d (pool in %s, POSIX\nfiles in %s); steps lost: the killed rank's step at the kill minus the step resumed from\n\n",
              r["reps"].get<int>(), r["pool_dir"].get<std::string>().c_str(), r["posix_dir"].get<std::string>().c_str());
  std::printf("%-44s %10s %14s %11s %10s\n", "recovery", "ms", "MiB read after", "steps lost", "vs standby");
  const double standby = r["rows"][0]["ms"].get<double>();
  const std::map<std::string, std::string> names = {
      {"standby", "(a) standby takes over (pmcr-run --standby)"},
      {"relaunch", "(b) relaunch, restart from pmserver"},
      {"posix", "(c) relaunch, restart from POSIX files"}};
  for (const auto& row : r["rows"]) {
    const double ms = row["ms"];
    std::printf("%-44s %10.1f %14.1f %11g %10s\n", names.at(row["mode"].get<std::string>()).c_str(), ms,
                row["bytes"].get<double>() / 1048576.0, row["lost_steps"].get<double>(), ratio(ms, standby).c_str());
  }
  std::printf("\ngoal: (c) at least 13x and (b) at least 5x the standby's time, at most one checkpoint interval lost\n");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pmcr-bench: pmcr's benchmark, as ratios against this machine's own limits"};
  app.formatter(std::make_shared<pmcr::tools::ManFormatter>());  // (before the subcommands: they share it)
  app.require_subcommand(1);
  auto* transfer = app.add_subcommand("transfer", "region put+commit and open+get vs memcpy and ucx_perftest");
  std::vector<std::string> size_texts = {"1M", "64M", "1G"};
  std::vector<std::string> dirs = {"/dev/shm", "/tmp"};
  std::string pmserver = pmcr::tools::LocalServer::find_pmserver();
  bool as_json = false;
  transfer->add_option("--sizes", size_texts, "region sizes")->delimiter(',')->capture_default_str();
  transfer->add_option("--pool-dirs", dirs, "directories for the pool file")->delimiter(',')->capture_default_str();
  transfer->add_option("--pmserver", pmserver, "pmserver binary (default: the one beside pmcr-bench, else pmserver in PATH)");
  transfer->add_flag("--json", as_json, "print JSON instead of a table");

  auto* ckpt = app.add_subcommand("ckpt", "MPI checkpoint and new-job restart vs memcpy and POSIX write+fsync/cold read");
  std::vector<std::string> config_texts = {"4x64", "2x256"};
  int reps = 5;
  std::string posix_dir = "/tmp";
  Launch launch{PMCR_BENCH_MPIEXEC, PMCR_BENCH_MPIEXEC_PREFLAGS, pmcr::tools::self_dir() + "/pmcr-bench-rank"};
  ckpt->add_option("--jobs", config_texts, "RANKSxMIB per rank")->delimiter(',')->capture_default_str();
  ckpt->add_option("--reps", reps, "checkpoints, and restart jobs, per measurement")->capture_default_str()->check(CLI::Range(1, 1000));
  ckpt->add_option("--pool-dirs", dirs, "directories for the pool file")->delimiter(',')->capture_default_str();
  ckpt->add_option("--posix-dir", posix_dir, "directory for the POSIX baseline's files")->capture_default_str();
  std::vector<std::string> setups = {"loopback"};
  ckpt->add_option("--setups", setups,
                   "loopback (server and ranks on 127.0.0.1) and/or veth (the server in a network namespace of its "
                   "own, the ranks across a veth pair: two hosts on one machine; root)")
      ->delimiter(',')
      ->capture_default_str();
  ckpt->add_option("--pmserver", pmserver, "pmserver binary (default: the one beside pmcr-bench, else pmserver in PATH)");
  ckpt->add_option("--mpiexec", launch.mpiexec, "MPI launcher")->capture_default_str();
  ckpt->add_option("--mpiexec-flags", launch.preflags, "launcher flags before -n")->capture_default_str();
  ckpt->add_flag("--json", as_json, "print JSON instead of a table");
  std::vector<double> changed;
  std::vector<std::string> block_texts = {"1M"};
  ckpt->add_option("--changed", changed,
                   "incremental checkpoints instead: percent of blocks changed between checkpoints, e.g. 1,10,100")
      ->delimiter(',')
      ->check(CLI::Range(0.0, 100.0));
  ckpt->add_option("--block-sizes", block_texts, "with --changed: PMCR_BLOCK_SIZE values to measure")
      ->delimiter(',')
      ->capture_default_str();
  std::vector<int> server_counts, copies = {1, 2};
  ckpt->add_option("--servers", server_counts,
                   "several servers instead: the job spread over each of these numbers of pmservers, e.g. 1,2,3")
      ->delimiter(',')
      ->check(CLI::Range(1, 64));
  ckpt->add_option("--replicas", copies, "with --servers: PMCR_REPLICAS values to measure (those <= the servers)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  std::vector<int> asyncs = {0, 1};
  ckpt->add_option("--async", asyncs, "with --servers: PMCR_ASYNC values to measure")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0, 1));
  auto* srv = app.add_subcommand("server", "pmserver's throughput: concurrent clients against receive and commit threads");
  std::vector<int> srv_clients = {1, 2, 4, 8}, srv_threads = {0, 2};
  std::string srv_size = "64M", srv_big = "512M", srv_dir = "/dev/shm";
  int srv_reps = 8;
  srv->add_option("--clients", srv_clients, "numbers of concurrent clients")->delimiter(',')->capture_default_str();
  srv->add_option("--threads", srv_threads, "pmserver --receive-threads and --threads values")->delimiter(',')->capture_default_str();
  srv->add_option("--size", srv_size, "region size")->capture_default_str();
  srv->add_option("--reps", srv_reps, "regions each client writes")->capture_default_str()->check(CLI::Range(1, 10000));
  srv->add_option("--pool-dir", srv_dir, "directory for the pool file")->capture_default_str();
  srv->add_option("--big", srv_big, "the large commit's size, against STATs")->capture_default_str();
  srv->add_option("--pmserver", pmserver, "pmserver binary (default: the one beside pmcr-bench, else pmserver in PATH)");
  srv->add_flag("--json", as_json, "print JSON instead of a table");
  auto* failover = app.add_subcommand("failover", "a rank killed: standby takeover vs relaunch from pmserver vs from POSIX files");
  FailoverConfig fo;
  int failover_reps = 5;
  failover->add_option("--ranks", fo.ranks, "ranks of the job")->capture_default_str()->check(CLI::Range(2, 256));
  failover->add_option("--mib", fo.mib, "MiB per rank")->capture_default_str()->check(CLI::Range(1, 65536));
  failover->add_option("--reps", failover_reps, "runs of each recovery (medians)")->capture_default_str()->check(CLI::Range(1, 100));
  failover->add_option("--every", fo.every, "steps between checkpoints")->capture_default_str()->check(CLI::Range(1, 1000));
  failover->add_option("--step-ms", fo.step_ms, "ms of computation per step")->capture_default_str()->check(CLI::Range(0, 60000));
  failover->add_option("--kill-delay-ms", fo.die_delay_ms, "rank 1 is killed at its first step this long after the 3rd checkpoint")
      ->capture_default_str()
      ->check(CLI::Range(0, 600000));
  failover->add_option("--change", fo.change, "percent of the blocks each step changes")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  failover->add_option("--pool-dir", fo.pool_dir, "directory for the pool file")->capture_default_str();
  failover->add_option("--posix-dir", fo.posix_dir, "directory for the POSIX baseline's files")->capture_default_str();
  failover->add_option("--pmserver", pmserver, "pmserver binary (default: the one beside pmcr-bench, else pmserver in PATH)");
  failover->add_option("--mpiexec", launch.mpiexec, "MPI launcher")->capture_default_str();
  failover->add_option("--mpiexec-flags", launch.preflags, "launcher flags before -n")->capture_default_str();
  failover->add_flag("--json", as_json, "print JSON instead of a table");
  app.set_help_all_flag("--help-all", "print the help of every benchmark");
  app.get_formatter()->column_width(40);  // (help2man makes pmcr-bench(1) from --help-all)
  CLI11_PARSE(app, argc, argv);
  // The kill, then a few steps after the recovery, then done.
  fo.steps = fo.every * fo.die_after + fo.die_delay_ms / std::max(fo.step_ms, 1) + 4;
  if (::geteuid() == 0) {  // Open MPI refuses root unless told
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  }
  ::setenv("UCX_NET_DEVICES", "lo", 0);  // loopback only, for the client in this process too
  try {
    if (*srv) {
      const json r = run_server_bench(srv_clients, srv_threads, pmcr::parse_size(srv_size), srv_reps,
                                      pmcr::parse_size(srv_big), srv_dir, pmserver, as_json);
      if (as_json) std::cout << r.dump(2) << "\n";
      else print_server_bench(r);
      return 0;
    }
    if (*failover) {
      const json r = run_failover(fo, failover_reps, pmserver, launch, as_json);
      if (as_json) std::cout << r.dump(2) << "\n";
      else print_failover(r);
      return 0;
    }
    if (*ckpt) {
      std::vector<CkptConfig> configs;
      for (const auto& t : config_texts) {
        const auto x = t.find('x');
        if (x == std::string::npos) throw pmcr::Error(PMCR_E_INVAL, "--jobs: '" + t + "' is not RANKSxMIB, e.g. 4x64");
        configs.push_back({std::stoi(t.substr(0, x)), std::stoull(t.substr(x + 1))});
      }
      if (!server_counts.empty()) {
        const json r = run_servers(configs, dirs.front(), server_counts, copies, asyncs, reps, posix_dir, pmserver, launch, as_json);
        if (as_json) std::cout << r.dump(2) << "\n";
        else print_servers(r);
        return 0;
      }
      if (!changed.empty()) {
        std::vector<uint64_t> blocks;
        for (const auto& b : block_texts) blocks.push_back(pmcr::parse_size(b));
        const json r = run_changed(configs, dirs, changed, blocks, reps, posix_dir, pmserver, launch, as_json);
        if (as_json) std::cout << r.dump(2) << "\n";
        else print_changed(r);
        return 0;
      }
      const json r = run_ckpt(configs, dirs, setups, reps, posix_dir, pmserver, launch, as_json);
      if (as_json) std::cout << r.dump(2) << "\n";
      else print_ckpt(r);
      return 0;
    }
    std::vector<uint64_t> sizes;
    for (const auto& s : size_texts) sizes.push_back(pmcr::parse_size(s));
    std::sort(sizes.begin(), sizes.end());
    const json r = run_transfer(sizes, dirs, pmserver, as_json);
    if (as_json) std::cout << r.dump(2) << "\n";
    else print_transfer(r);
  } catch (const pmcr::Error& e) {
    std::fprintf(stderr, "pmcr-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
