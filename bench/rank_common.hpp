// What the MPI programs of pmcr-bench (pmcr-bench-rank, pmcr-bench-failover)
// share: failing loudly, buffers, patterns, timing, POSIX files.
#pragma once

#include <fcntl.h>
#include <mpi.h>
#include <pmcr/pmcr.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace pmcr_bench {

inline int g_rank = 0;

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "pmcr-bench-rank: rank %d: %s\n", g_rank, what.c_str());
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

inline void check(int rc, const char* call) {
  if (rc) die(std::string(call) + ": " + pmcr_strerror(rc) + ": " + pmcr_last_error());
}

inline uint8_t* alloc(size_t n) {
  void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) die("cannot allocate " + std::to_string(n) + " bytes");
  return static_cast<uint8_t*>(p);
}

inline void fill(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
}

inline bool same_as_pattern(const uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1, w;
  for (size_t i = 0; i + 8 <= n; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(&w, p + i, 8);
    if (w != x) return false;
  }
  return true;
}

// Seconds from a barrier to the end of F on the slowest rank.
template <class F>
inline double timed(F&& f) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  f();
  double mine = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), slowest = 0;
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

inline void write_file(const std::string& path, const uint8_t* p, size_t n) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("cannot create " + path + ": " + std::strerror(errno));
  for (size_t off = 0; off < n;) {
    const ssize_t w = ::write(fd, p + off, std::min<size_t>(n - off, 64u << 20));
    if (w <= 0) die("write " + path + ": " + std::strerror(errno));
    off += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) die("fsync " + path + ": " + std::strerror(errno));
  ::close(fd);
}

inline void read_file_cold(const std::string& path, uint8_t* p, size_t n, bool drop_only) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) die("cannot open " + path + ": " + std::strerror(errno));
  if (drop_only) {
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // the file is clean (fsynced): this drops it from the cache
  } else {
    for (size_t off = 0; off < n;) {
      const ssize_t r = ::read(fd, p + off, std::min<size_t>(n - off, 64u << 20));
      if (r <= 0) die("read " + path + ": " + std::strerror(errno));
      off += static_cast<size_t>(r);
    }
  }
  ::close(fd);
}

}  // namespace pmcr_bench
