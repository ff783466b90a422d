// Write tracking (client/dirty.hpp): a block is reported written once one
// of its pages was written (or given back to the kernel) since the last
// take, and only then.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dirty.hpp"

using pmcr::client::WriteTracker;

TEST(WriteTracker, ReportsExactlyTheBlocksWritten) {
  if (WriteTracker::mechanism().empty())
    GTEST_SKIP() << "this kernel tracks writes neither with uffd-wp (Linux 6.7) nor with soft-dirty pages";
  WriteTracker t;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE)), block = 4 * page, size = 16 * block;
  auto* p = static_cast<uint8_t*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  for (size_t i = 0; i < size; i += page) p[i] = 1;  // every page present
  // Two buffers in the mapping; the second starts and ends inside pages.
  const std::vector<WriteTracker::Range> ranges = {{p, 12 * block}, {p + 12 * block + 100, 2 * block}};
  ASSERT_TRUE(t.track(ranges[0]));
  ASSERT_TRUE(t.track(ranges[1]));
  t.take(ranges, block);  // the interval starts
  auto none = t.take(ranges, block);
  EXPECT_EQ(none[0], std::vector<bool>(12, false)) << t.name();
  EXPECT_EQ(none[1], std::vector<bool>(2, false)) << t.name();
  p[3 * block + 5] = 2;                 // block 3
  p[7 * block + block - 1] = 2;         // the last byte of block 7
  p[10 * block + 2 * page] = 2;         // a middle page of block 10
  p[12 * block + 100 + block + 7] = 2;  // the second buffer's block 1 (in a page it shares with block 0)
  ::madvise(p + 5 * block, page, MADV_DONTNEED);  // block 5: its bytes are zeros now
  std::vector<bool> want(12, false);
  want[3] = want[5] = want[7] = want[10] = true;
  const auto got = t.take(ranges, block);
  EXPECT_EQ(got[0], want) << t.name();
  // (Pages are the unit: the page written holds the end of the second
  // buffer's block 0 and the start of its block 1, so both count.)
  EXPECT_EQ(got[1], (std::vector<bool>{true, true})) << t.name();
  // A new interval: only what is written now (and the page still gone).
  p[0] = 3;
  const auto next = t.take(ranges, block);
  EXPECT_EQ(next[0][0], true) << t.name();
  EXPECT_EQ(next[0][3], false) << t.name();
  EXPECT_EQ(next[1], (std::vector<bool>{false, false})) << t.name();
  ::munmap(p, size);
}
