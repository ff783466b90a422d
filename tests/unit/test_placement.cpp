// Placement over several servers (client/placement.hpp): the same answer
// for any order of the list, every rank's copies on distinct servers, the
// servers evenly loaded, and a lost server's readers spread over the rest.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "error.hpp"
#include "placement.hpp"
#include "code_of.hpp"

namespace placement = pmcr::placement;
using pmcr::test::code_of;

TEST(Placement, OrderIsTheListSortedWhateverOrderItIsGivenIn) {
  const std::vector<std::string> a = {"10.0.0.2:7070", "10.0.0.1:7070", "10.0.0.3:7071"};
  const std::vector<std::string> b = {"10.0.0.3:7071", "10.0.0.2:7070", "10.0.0.1:7070"};
  EXPECT_EQ(placement::order(a), placement::order(b));
  EXPECT_EQ(placement::order(a).front(), "10.0.0.1:7070");
  EXPECT_EQ(code_of([&] { placement::order({"h:1", "h:2", "h:1"}); }), PMCR_E_CONFIG);
}

TEST(Placement, EachRanksCopiesAreOnDistinctServersAndTheServersEvenlyLoaded) {
  for (size_t n = 1; n <= 5; ++n)
    for (unsigned copies = 1; copies <= n; ++copies) {
      std::vector<uint32_t> per(n, 0);
      const uint32_t nranks = 13;
      for (uint32_t r = 0; r < nranks; ++r) {
        const auto s = placement::replicas(r, n, copies);
        ASSERT_EQ(s.size(), copies);
        EXPECT_EQ(s.front(), r % n);
        EXPECT_EQ(std::set<size_t>(s.begin(), s.end()).size(), copies) << "two copies of rank " << r << " on one server";
        for (size_t i : s) per[i]++;
      }
      const auto [lo, hi] = std::minmax_element(per.begin(), per.end());
      EXPECT_LE(*hi - *lo, copies) << n << " servers, " << copies << " copies";
      // The parts say the same: ranks and regions per server.
      std::vector<uint32_t> regions(nranks);
      for (uint32_t r = 0; r < nranks; ++r) regions[r] = 1 + r % 3;
      const auto parts = placement::parts(regions, n, copies);
      uint32_t ranks = 0, total = 0;
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(parts[i].ranks, per[i]);
        ranks += parts[i].ranks;
        total += parts[i].regions;
      }
      EXPECT_EQ(ranks, nranks * copies);
      uint32_t want = 0;
      for (uint32_t r : regions) want += r;
      EXPECT_EQ(total, want * copies);
    }
  EXPECT_EQ(code_of([&] { placement::replicas(0, 2, 3); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { placement::replicas(0, 2, 0); }), PMCR_E_INVAL);
}

TEST(Placement, ReadersPreferTheFirstCopyAndSpreadALostServersRanks) {
  // 3 servers, 2 copies, 6 ranks of 10 bytes each.
  const size_t n = 3;
  std::vector<std::vector<size_t>> holders(6);
  for (uint32_t r = 0; r < 6; ++r) holders[r] = placement::replicas(r, n, 2);
  const std::vector<uint64_t> bytes(6, 10);
  const auto all = placement::readers(holders, bytes, n);
  for (uint32_t r = 0; r < 6; ++r) EXPECT_EQ(all[r], static_cast<int>(r % n)) << "rank " << r;
  // Server 1 lost: its ranks (1 and 4, and the second copies of 0 and 3)
  // read from their other copies, and no server gets more than 3 ranks.
  for (auto& h : holders) h.erase(std::remove(h.begin(), h.end(), 1u), h.end());
  const auto some = placement::readers(holders, bytes, n);
  std::vector<int> load(n, 0);
  for (uint32_t r = 0; r < 6; ++r) {
    ASSERT_GE(some[r], 0);
    EXPECT_NE(some[r], 1);
    load[static_cast<size_t>(some[r])]++;
  }
  EXPECT_EQ(load[0], 3);
  EXPECT_EQ(load[2], 3);
  // A rank nobody holds.
  holders[2].clear();
  EXPECT_EQ(placement::readers(holders, bytes, n)[2], -1);
}
