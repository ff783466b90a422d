// pmcr_soak_client SERVER JOB SECONDS SEED: one writer of the soak test.
// Until SECONDS have passed: begin an attempt of JOB, then checkpoint
// versions of 1-3 regions of random sizes (up to 1 MiB), seal them, keep
// the newest two, and now and then read one back and check its bits; on
// any error (the test SIGKILLs writers and floods the server), connect
// again and go on. Exits 0 at the end, 1 if data ever came back wrong.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "client.hpp"
#include "error.hpp"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: pmcr_soak_client SERVER JOB SECONDS SEED\n");
    return 2;
  }
  const std::string server = argv[1], job = argv[2];
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(std::atoi(argv[3]));
  std::mt19937_64 rng(std::strtoull(argv[4], nullptr, 10));
  const auto bytes = [](uint64_t version, uint32_t id, size_t n) {
    std::vector<uint8_t> v(n);
    uint64_t x = version * 1000003 + id + 1;
    for (auto& b : v) b = static_cast<uint8_t>((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 56);
    return v;
  };
  uint64_t version = 0;
  std::vector<std::pair<uint64_t, std::vector<size_t>>> sealed;
  while (std::chrono::steady_clock::now() < until) {
    try {
      pmcr::client::Options o;
      o.server = server;
      o.name = "soak";
      o.timeout = std::chrono::seconds(20);
      pmcr::client::Client c(o);
      c.begin(job);
      if (auto latest = c.latest_sealed(job)) version = std::max(version, *latest);
      sealed.clear();
      while (std::chrono::steady_clock::now() < until) {
        ++version;
        std::vector<size_t> sizes(1 + rng() % 3);
        for (uint32_t id = 0; id < sizes.size(); ++id) {
          sizes[id] = rng() % (1u << 20);
          const auto data = bytes(version, id, sizes[id]);
          c.write_region(job, version, 0, id, data.data(), data.size());
        }
        c.seal(job, version, 1, static_cast<uint32_t>(sizes.size()));
        sealed.emplace_back(version, sizes);
        if (sealed.size() > 2) {
          c.remove(job, sealed.front().first);
          sealed.erase(sealed.begin());
        }
        if (rng() % 4 == 0) {
          const auto& [v, sz] = sealed.front();
          const uint32_t id = static_cast<uint32_t>(rng() % sz.size());
          std::vector<uint8_t> got(sz[id]);
          c.read_region(job, v, 0, id, got.data(), got.size());
          if (got != bytes(v, id, sz[id])) {
            std::fprintf(stderr, "soak: %s version %llu id %u came back wrong\n", job.c_str(),
                         static_cast<unsigned long long>(v), id);
            return 1;
          }
        }
      }
    } catch (const pmcr::Error& e) {
      // Damaged data is never normal here: nothing damages the pool.
      if (e.code() == PMCR_E_CHECKSUM || e.code() == PMCR_E_CORRUPT) {
        std::fprintf(stderr, "soak: %s: %s\n", job.c_str(), e.what());
        return 1;
      }
      std::fprintf(stderr, "soak: %s: %s; again\n", job.c_str(), e.what());
    }
  }
  return 0;
}
