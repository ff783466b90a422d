// pmcr-bench-rank: the MPI side of `pmcr-bench ckpt`. Each rank holds M MiB
// (touched and filled before anything is timed); rank 0 prints one JSON
// line of medians. Only libpmcr's public API is used, as a user would.
//
// With PMCR_ASYNC=1, pmcr_checkpoint returns once what changed is staged:
// "blocked" is that call alone, "ckpt" the call and pmcr_wait together
// (until sealed); the previous version is waited for before each, untimed.
// Synchronous, both are the same call.
//
//   write: in one job, first PMCR_KEEP + 1 checkpoints that each land in
//          pool memory not written before (the first one is reported on
//          its own); then R times: pmcr_checkpoint until sealed (steady
//          state: the pool reuses the extents of deleted versions); memcpy
//          of the same bytes; POSIX write + fsync of one file per rank.
//          The last files stay for the read job.
//   read:  in a new job: pmcr_restart_test + pmcr_restart of the latest
//          version; then POSIX cold read of the files (page cache dropped
//          with posix_fadvise). Both are verified (not timed).
//   changed P BLOCK: a first checkpoint of the whole buffer, then PMCR_KEEP
//          checkpoints and R timed ones, each after P percent of the
//          buffer's BLOCK-byte blocks changed (chosen at random over the
//          buffer: one word each); POSIX write + fsync of the whole file
//          each time, as before.
//
// Times are from a barrier before the operation to the slowest rank's end.
#include <fcntl.h>
#include <mpi.h>
#include <pmcr/pmcr.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_time.hpp"
#include "rank_common.hpp"

namespace {

using namespace pmcr_bench;

// The pmservers' pids (PMCR_BENCH_SERVER_PIDS, comma separated), on this host.
std::vector<pid_t> server_pids() {
  std::vector<pid_t> out;
  const char* env = std::getenv("PMCR_BENCH_SERVER_PIDS");
  for (const char* p = env ? env : ""; *p;) {
    char* end = nullptr;
    const long v = std::strtol(p, &end, 10);
    if (end == p) break;
    out.push_back(static_cast<pid_t>(v));
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

std::string json_number(double v) { return std::isnan(v) ? "null" : std::to_string(v); }

double median(std::vector<double> v) {
  if (std::any_of(v.begin(), v.end(), [](double x) { return std::isnan(x); })) return NAN;
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc != 5 && argc != 7) die("usage: pmcr-bench-rank write|read MIB REPS POSIX_DIR | changed MIB REPS POSIX_DIR PERCENT BLOCK");
  const char* keep_env = std::getenv("PMCR_KEEP");
  const int warmup = (keep_env ? std::atoi(keep_env) : 2) + 1;
  const std::string mode = argv[1], dir = argv[4];
  const size_t bytes = static_cast<size_t>(std::atol(argv[2])) << 20;
  const int reps = std::atoi(argv[3]);
  const std::string file = dir + "/pmcr-bench-rank" + std::to_string(g_rank) + "-of-" + std::to_string(size) + ".dat";
  uint8_t* buf = alloc(bytes);

  check(pmcr_init(MPI_COMM_WORLD, nullptr), "pmcr_init");
  check(pmcr_protect(0, buf, bytes), "pmcr_protect");
  std::vector<double> first, ckpt, blocked, copy, posix_write, restart, posix_read;
  // CPU seconds of an operation: every rank's own (summed), and the
  // pmservers' (measured by rank 0; NAN without PMCR_BENCH_SERVER_PIDS).
  std::vector<double> ranks_cpu, servers_cpu;
  const std::vector<pid_t> servers = server_pids();
  const auto servers_now = [&] {
    double t = servers.empty() ? NAN : 0;
    for (pid_t pid : servers) t += pmcr::bench::process_cpu_seconds(pid);
    return t;
  };
  const auto cpu_timed = [&](auto&& f) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double s0 = g_rank == 0 ? servers_now() : 0, r0 = pmcr::bench::own_cpu_seconds();
    const double wall = timed(f);
    const double mine = pmcr::bench::own_cpu_seconds() - r0;
    double all = 0;
    MPI_Reduce(&mine, &all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (g_rank == 0) {
      ranks_cpu.push_back(all);
      servers_cpu.push_back(servers_now() - s0);
    }
    return wall;
  };
  // One timed checkpoint of version V: the call (blocked), then until sealed.
  const auto checkpoint = [&](int v) {
    check(pmcr_wait(v - 1), "pmcr_wait");
    double call = 0, rest = 0;
    cpu_timed([&] {
      call = timed([&] { check(pmcr_checkpoint(v), "pmcr_checkpoint"); });
      rest = timed([&] { check(pmcr_wait(v), "pmcr_wait"); });
    });
    blocked.push_back(call);
    ckpt.push_back(call + rest);
  };
  if (mode == "changed") {
    const double percent = std::atof(argv[5]);
    const size_t block = static_cast<size_t>(std::atol(argv[6]));
    const size_t blocks = (bytes + block - 1) / block;
    const size_t n = std::max<size_t>(1, static_cast<size_t>(static_cast<double>(blocks) * percent / 100.0 + 0.5));
    fill(buf, bytes, 1000 + g_rank);
    uint64_t x = 12345 + static_cast<uint64_t>(g_rank);
    std::vector<size_t> order(blocks);
    const auto change = [&] {  // N distinct blocks at random, one word each
      for (size_t i = 0; i < blocks; ++i) order[i] = i;
      for (size_t i = 0; i < n; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        std::swap(order[i], order[i + x % (blocks - i)]);
        uint64_t* word = reinterpret_cast<uint64_t*>(buf + order[i] * block);
        *word += x | 1;
      }
    };
    check(pmcr_checkpoint(1), "pmcr_checkpoint");
    for (int v = 2; v <= warmup; ++v) {
      change();
      check(pmcr_checkpoint(v), "pmcr_checkpoint");
    }
    for (int r = 0; r < reps; ++r) {
      change();
      checkpoint(warmup + r + 1);
      posix_write.push_back(timed([&] { write_file(file, buf, bytes); }));
    }
    first.push_back(0);
    copy.push_back(0);
  } else if (mode == "write") {
    fill(buf, bytes, 1000 + g_rank);
    uint8_t* dst = alloc(bytes);
    for (int v = 1; v <= warmup; ++v) first.push_back(timed([&] { check(pmcr_checkpoint(v), "pmcr_checkpoint"); }));
    for (int r = 0; r < reps; ++r) {
      checkpoint(warmup + r + 1);
      copy.push_back(timed([&] { std::memcpy(dst, buf, bytes); }));
      posix_write.push_back(timed([&] { write_file(file, buf, bytes); }));
    }
    ::munmap(dst, bytes);
  } else {
    int version = -1;
    std::memset(buf, 0, bytes);
    restart.push_back(cpu_timed([&] {
      check(pmcr_restart_test(&version), "pmcr_restart_test");
      if (version < 0) die("no checkpoint to restart from");
      check(pmcr_restart(version), "pmcr_restart");
    }));
    if (!same_as_pattern(buf, bytes, 1000 + g_rank)) die("restarted data differs from what was checkpointed");
    std::memset(buf, 0, bytes);
    read_file_cold(file, buf, bytes, true);
    posix_read.push_back(timed([&] { read_file_cold(file, buf, bytes, false); }));
    if (!same_as_pattern(buf, bytes, 1000 + g_rank)) die(file + " does not hold what was written");
  }
  check(pmcr_finalize(), "pmcr_finalize");
  if (g_rank == 0) {
    if (mode == "write" || mode == "changed") {
      std::string all;
      for (double t : ckpt) all += (all.empty() ? "" : ", ") + std::to_string(t);
      std::printf(
          "{\"ckpt_s\": %.6f, \"blocked_s\": %.6f, \"ckpt_first_s\": %.6f, \"memcpy_s\": %.6f, "
          "\"posix_write_fsync_s\": %.6f, \"ckpt_each_s\": [%s], \"ranks_cpu_s\": %.6f, \"servers_cpu_s\": %s}\n",
          median(ckpt), median(blocked), first.at(0), median(copy), median(posix_write), all.c_str(), median(ranks_cpu),
          json_number(median(servers_cpu)).c_str());
    }
    else
      std::printf("{\"restart_s\": %.6f, \"posix_cold_read_s\": %.6f, \"ranks_cpu_s\": %.6f, \"servers_cpu_s\": %s}\n",
                  restart[0], posix_read[0], ranks_cpu.at(0), json_number(servers_cpu.at(0)).c_str());
  }
  ::munmap(buf, bytes);
  MPI_Finalize();
  return 0;
}
