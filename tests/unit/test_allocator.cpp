#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "allocator.hpp"

using pmcr::server::ExtentAllocator;

TEST(Allocator, AllocatesBestFitAndCoalesces) {
  ExtentAllocator a(4096, 4096 + 100 * 4096, 4096);
  EXPECT_EQ(a.free_bytes(), 100u * 4096);
  auto x = a.allocate(10 * 4096), y = a.allocate(20 * 4096), z = a.allocate(30 * 4096);
  ASSERT_TRUE(x && y && z);
  EXPECT_EQ(*x, 4096u);
  EXPECT_EQ(*y, 4096u + 10 * 4096);
  EXPECT_EQ(a.used_bytes(), 60u * 4096);
  a.release(*y, 20 * 4096);
  // Best fit: a 15-page request takes the 20-page hole, not the 40-page tail.
  auto w = a.allocate(15 * 4096);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, *y);
  a.release(*w, 15 * 4096);
  a.release(*x, 10 * 4096);
  a.release(*z, 30 * 4096);
  EXPECT_EQ(a.fragments(), 1u);
  EXPECT_EQ(a.largest_free(), 100u * 4096);
}

TEST(Allocator, RefusesWhatDoesNotFit) {
  ExtentAllocator a(0, 8 * 4096, 4096);
  EXPECT_FALSE(a.allocate(9 * 4096));
  EXPECT_FALSE(a.allocate(0));
  EXPECT_FALSE(a.allocate(100));  // not a multiple of the alignment
  EXPECT_TRUE(a.allocate(8 * 4096));
  EXPECT_FALSE(a.allocate(4096));
}

TEST(Allocator, ReserveCarvesAndDetectsOverlap) {
  ExtentAllocator a(0, 16 * 4096, 4096);
  EXPECT_TRUE(a.reserve(4 * 4096, 2 * 4096));
  EXPECT_FALSE(a.reserve(5 * 4096, 2 * 4096));   // overlaps
  EXPECT_FALSE(a.reserve(15 * 4096, 2 * 4096));  // past the end
  EXPECT_FALSE(a.reserve(100, 4096));            // misaligned
  // Lying extents from a damaged record: offset + size wraps past 2^64
  // (found by fuzz.pool), or the offset lies beyond the end.
  EXPECT_FALSE(a.reserve(0xffff000000000000ull, 1ull << 48));
  EXPECT_FALSE(a.reserve(32 * 4096, 4096));
  EXPECT_FALSE(a.reserve(4096, ~0ull - 4095));
  EXPECT_TRUE(a.reserve(0, 4096));
  EXPECT_EQ(a.used_bytes(), 3u * 4096);
  a.release(4 * 4096, 2 * 4096);
  a.release(0, 4096);
  EXPECT_EQ(a.fragments(), 1u);
}

TEST(Allocator, RandomisedAgainstABitmap) {
  const uint64_t pages = 512;
  ExtentAllocator a(0, pages * 4096, 4096);
  std::vector<bool> used(pages, false);
  std::vector<std::pair<uint64_t, uint64_t>> live;
  std::mt19937_64 rng(42);
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      const uint64_t n = 1 + rng() % 16;
      auto off = a.allocate(n * 4096);
      if (!off) continue;
      for (uint64_t p = *off / 4096; p < *off / 4096 + n; ++p) {
        ASSERT_FALSE(used[p]) << "page " << p << " handed out twice";
        used[p] = true;
      }
      live.emplace_back(*off, n * 4096);
    } else {
      const size_t i = rng() % live.size();
      for (uint64_t p = live[i].first / 4096; p < (live[i].first + live[i].second) / 4096; ++p) used[p] = false;
      a.release(live[i].first, live[i].second);
      live.erase(live.begin() + static_cast<long>(i));
    }
    uint64_t free_pages = 0;
    for (bool u : used) free_pages += !u;
    ASSERT_EQ(a.free_bytes(), free_pages * 4096);
  }
}
