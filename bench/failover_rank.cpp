// pmcr-bench-failover: the MPI program of `pmcr-bench failover`. An
// application that computes in steps (STEP_MS of sleep, then CHANGE percent
// of its 1 MiB blocks changed, one word each) and checkpoints every EVERY
// steps, either with pmcr or to POSIX files (one per rank and checkpoint,
// two kept, written to a temporary name, fsynced and renamed; then a
// "latest" file naming the step, the same way). Rank 1 goes on computing
// after its DIE-th checkpoint; at the first step that ends DIE_DELAY_MS or
// more after it, it SIGKILLs itself, once (the first process to create the
// kill file), writing its step and the time first: what it computed since
// the checkpoint is lost. A run that restarted from a checkpoint writes, when its
// first step after the restart is done on every rank, the version it resumed
// from and the time into the mark file. Times are CLOCK_MONOTONIC, which
// every process of the machine shares.
//
//   pmcr-bench-failover pmcr|posix MIB STEPS EVERY STEP_MS DIE DIE_DELAY_MS CHANGE DIR KILL_FILE MARK_FILE
#include <signal.h>
#include <time.h>

#include <thread>
#include <vector>

#include "rank_common.hpp"

namespace {

using namespace pmcr_bench;

long long now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Writes TEXT to PATH durably, under a temporary name first.
void write_small(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  write_file(tmp, reinterpret_cast<const uint8_t*>(text.data()), text.size());
  if (::rename(tmp.c_str(), path.c_str()) != 0) die("rename " + tmp + ": " + std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc != 12)
    die("usage: pmcr-bench-failover pmcr|posix MIB STEPS EVERY STEP_MS DIE DIE_DELAY_MS CHANGE DIR KILL_FILE MARK_FILE");
  const std::string mode = argv[1], dir = argv[9], kill_file = argv[10], mark_file = argv[11];
  const size_t bytes = static_cast<size_t>(std::atol(argv[2])) << 20;
  const int steps = std::atoi(argv[3]), every = std::atoi(argv[4]), step_ms = std::atoi(argv[5]), die_at = std::atoi(argv[6]),
            die_delay_ms = std::atoi(argv[7]);
  const double change = std::atof(argv[8]);
  const bool posix = mode == "posix";
  if (!posix && mode != "pmcr") die("mode must be pmcr or posix");
  // Two files per rank, by the parity of the checkpoint: a checkpoint being
  // written never touches the one "latest" names.
  const auto file = [&](int at) {
    return dir + "/pmcr-bench-failover-rank" + std::to_string(g_rank) + "." + std::to_string(at / every % 2) + ".dat";
  };
  const std::string latest = dir + "/pmcr-bench-failover-latest";
  // The buffer, then the step at the start of it (the POSIX file holds both).
  uint8_t* buf = alloc(bytes + 8);
  fill(buf + 8, bytes, 1000 + g_rank);
  int step = 0;

  int version = -1;
  if (posix) {
    if (g_rank == 0) {
      const std::string text = [&] {
        FILE* f = std::fopen(latest.c_str(), "r");
        if (!f) return std::string();
        char line[64] = "";
        const bool got = std::fgets(line, sizeof line, f) != nullptr;
        std::fclose(f);
        return got ? std::string(line) : std::string();
      }();
      version = text.empty() ? -1 : std::atoi(text.c_str());
    }
    MPI_Bcast(&version, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (version >= 0) {
      read_file_cold(file(version), buf, bytes + 8, true);  // from the device, as after a node's loss
      read_file_cold(file(version), buf, bytes + 8, false);
      std::memcpy(&step, buf, sizeof step);
      if (step != version) die(file(version) + " holds step " + std::to_string(step) + ", not " + std::to_string(version));
    }
  } else {
    check(pmcr_init(MPI_COMM_WORLD, nullptr), "pmcr_init");
    check(pmcr_protect(0, &step, sizeof step), "pmcr_protect");
    check(pmcr_protect(1, buf + 8, bytes), "pmcr_protect");
    check(pmcr_restart_test(&version), "pmcr_restart_test");
    if (version >= 0) check(pmcr_restart(version), "pmcr_restart");
  }
  bool mark = version >= 0;

  const size_t block = 1u << 20, blocks = (bytes + block - 1) / block;
  const size_t n = std::min(blocks, static_cast<size_t>(static_cast<double>(blocks) * change / 100.0 + 0.5));
  uint64_t x = 777 + static_cast<uint64_t>(g_rank) * 1000003 + static_cast<uint64_t>(step);
  std::vector<size_t> order(blocks);
  int checkpoints = 0;
  long long die_ns = -1;  // rank 1: when to die
  while (step < steps) {
    std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
    for (size_t i = 0; i < blocks; ++i) order[i] = i;
    for (size_t i = 0; i < n; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      std::swap(order[i], order[i + x % (blocks - i)]);
      reinterpret_cast<uint64_t*>(buf + 8 + order[i] * block)[0] += x | 1;
    }
    ++step;
    if (die_ns >= 0 && now_ns() >= die_ns) {
      const int fd = ::open(kill_file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd >= 0) {
        const std::string text = std::to_string(step) + " " + std::to_string(now_ns()) + "\n";
        (void)!::write(fd, text.data(), text.size());
        ::close(fd);
        ::kill(::getpid(), SIGKILL);
      }
      die_ns = -1;
    }
    if (mark) {  // the first step after the restart is done on every rank
      MPI_Barrier(MPI_COMM_WORLD);
      if (g_rank == 0) write_small(mark_file, std::to_string(version) + " " + std::to_string(now_ns()) + "\n");
      mark = false;
    }
    if (step % every != 0) continue;
    if (posix) {
      std::memcpy(buf, &step, sizeof step);
      write_file(file(step) + ".tmp", buf, bytes + 8);
      if (::rename((file(step) + ".tmp").c_str(), file(step).c_str()) != 0) die("rename: " + std::string(std::strerror(errno)));
      MPI_Barrier(MPI_COMM_WORLD);  // every rank's file is durable
      if (g_rank == 0) write_small(latest, std::to_string(step) + "\n");
      MPI_Barrier(MPI_COMM_WORLD);
    } else {
      check(pmcr_checkpoint(step), "pmcr_checkpoint");
    }
    if (++checkpoints == die_at && g_rank == 1 && ::access(kill_file.c_str(), F_OK) != 0)
      die_ns = now_ns() + static_cast<long long>(die_delay_ms) * 1000000LL;
  }
  if (!posix) check(pmcr_finalize(), "pmcr_finalize");
  ::munmap(buf, bytes + 8);
  MPI_Finalize();
  return 0;
}
