// The pool-recovery fuzz check (tests/fuzz/fuzz_pool.hpp) on real pools and
// on deterministic damage to them: every byte of the header and of the
// first records flipped in turn, and random bytes of the catalogue. A clear
// error or a consistent, usable catalogue each time.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "fuzz_pool.hpp"

TEST(PoolCorpus, RealPoolsRecoverCleanly) {
  const auto pools = pmcr::fuzz::sample_pools();
  EXPECT_GE(pools.size(), 5u);
  for (const auto& [name, bytes] : pools) EXPECT_EQ(pmcr::fuzz::check_pool(bytes.data(), bytes.size()), "") << name;
}

TEST(PoolCorpus, DamagedPoolsGiveAnErrorOrAConsistentCatalogue) {
  std::mt19937_64 rng(7);
  for (const auto& [name, bytes] : pmcr::fuzz::sample_pools()) {
    if (name == "empty") continue;
    // Every byte of the header's fields and of the first two records.
    for (size_t off = 0; off < 4096 + 2 * 128; off = off == 88 ? 4096 : off + 1) {
      auto damaged = bytes;
      damaged[off] ^= static_cast<uint8_t>(1u << (off % 8));
      ASSERT_EQ(pmcr::fuzz::check_pool(damaged.data(), damaged.size()), "") << name << ": byte " << off;
    }
    // Random bytes anywhere in the head, a few at a time.
    for (int round = 0; round < 40; ++round) {
      auto damaged = bytes;
      for (int k = 0; k < 3; ++k) damaged[rng() % damaged.size()] = static_cast<uint8_t>(rng());
      ASSERT_EQ(pmcr::fuzz::check_pool(damaged.data(), damaged.size()), "") << name << ": round " << round;
    }
  }
}

// Inputs with which fuzz.pool once found a defect, kept as regressions.
TEST(PoolCorpus, FoundByTheFuzzer) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(PMCR_POOL_REGRESSIONS_DIR)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(pmcr::fuzz::check_pool(bytes.data(), bytes.size()), "") << entry.path();
    ++n;
  }
  EXPECT_GE(n, 1u);
}
