// The Verifier: urgent checks on several threads give every region its own
// right answer, and never wait behind the paced background scrub.
#include <gtest/gtest.h>
#include <poll.h>
#include <xxhash.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "checksum.hpp"
#include "random_bytes.hpp"
#include "verifier.hpp"

using namespace std::chrono_literals;
using pmcr::server::Verifier;
using pmcr::test::random_bytes;

namespace {

// Results until WANT have arrived or LIMIT has passed.
std::map<uint64_t, Verifier::Result> collect(Verifier& v, size_t want, std::chrono::milliseconds limit) {
  std::map<uint64_t, Verifier::Result> got;
  const auto until = std::chrono::steady_clock::now() + limit;
  while (got.size() < want && std::chrono::steady_clock::now() < until) {
    pollfd pfd{v.event_fd(), POLLIN, 0};
    ::poll(&pfd, 1, 50);
    for (const auto& r : v.take()) got[r.id] = r;
  }
  return got;
}

}  // namespace

TEST(Verifier, UrgentChecksOnSeveralThreadsEachGetTheirOwnAnswer) {
  for (unsigned threads : {1u, 2u, 4u}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    Verifier v(0, threads);
    std::vector<std::vector<uint8_t>> data;
    std::map<uint64_t, bool> good;
    for (uint64_t id = 1; id <= 48; ++id) {
      data.push_back(random_bytes((id % 5 + 1) << 18, id));
      const uint64_t right = XXH3_64bits(data.back().data(), data.back().size());
      good[id] = id % 7 != 0;
      v.submit({id, data.back().data(), data.back().size(), good[id] ? right : right ^ 1, false});
    }
    const auto got = collect(v, good.size(), 30s);
    ASSERT_EQ(got.size(), good.size());
    for (const auto& [id, ok] : good) {
      EXPECT_EQ(got.at(id).ok, ok) << "check " << id;
      EXPECT_EQ(got.at(id).actual, XXH3_64bits(data[id - 1].data(), data[id - 1].size())) << "check " << id;
    }
    EXPECT_EQ(v.pending(), 0u);
  }
}

TEST(Verifier, AnUrgentCheckDoesNotWaitBehindThePacedScrub) {
  for (unsigned threads : {1u, 2u}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    // 64 MiB at 4 MiB/s: the background check would take 16 s.
    Verifier v(4u << 20, threads);
    const auto big = random_bytes(64u << 20, 1);
    v.submit({1, big.data(), big.size(), XXH3_64bits(big.data(), big.size()), true});
    const auto small = random_bytes(1u << 20, 2);
    v.submit({2, small.data(), small.size(), XXH3_64bits(small.data(), small.size()), false});
    const auto got = collect(v, 1, 10s);
    ASSERT_EQ(got.count(2), 1u) << "the urgent check did not come back while the scrub was paced";
    EXPECT_TRUE(got.at(2).ok);
    EXPECT_EQ(got.count(1), 0u) << "the background check was not paced";
    EXPECT_EQ(v.pending(), 1u);
  }  // (destroyed mid-check: its threads stop)
}

// A scrub of data about to be freed is given up: a paced check under way
// and queued ones come back at once as cancelled; an urgent one, and a
// background one not named, are not touched.
TEST(Verifier, CancelledBackgroundChecksComeBackAtOnce) {
  // 8 MiB at 1 MiB/s: each background check would take 8 s.
  Verifier v(1u << 20, 2);
  const auto big = random_bytes(8u << 20, 4);
  const uint64_t sum = XXH3_64bits(big.data(), big.size());
  for (uint64_t id = 1; id <= 3; ++id) v.submit({id, big.data(), big.size(), sum, true});
  std::this_thread::sleep_for(50ms);  // (the first is under way: hashed its first slice, paced)
  v.cancel({1, 2, 99});
  auto got = collect(v, 2, 5s);
  ASSERT_EQ(got.size(), 2u) << "the cancelled checks did not come back at once";
  for (uint64_t id : {1u, 2u}) {
    EXPECT_TRUE(got.at(id).cancelled) << "check " << id;
    EXPECT_FALSE(got.at(id).ok) << "check " << id;
  }
  EXPECT_EQ(v.pending(), 1u) << "check 3 stays";
  // An urgent check is not cancelled, and comes back as it should.
  const auto small = random_bytes(1u << 20, 5);
  v.submit({4, small.data(), small.size(), XXH3_64bits(small.data(), small.size()), false});
  v.cancel({4});
  got = collect(v, 1, 10s);
  ASSERT_EQ(got.count(4), 1u);
  EXPECT_TRUE(got.at(4).ok);
  EXPECT_FALSE(got.at(4).cancelled);
  // The one left is given up under way too, and the scrub goes on with none.
  v.cancel({3});
  got = collect(v, 1, 5s);
  ASSERT_EQ(got.count(3), 1u);
  EXPECT_TRUE(got.at(3).cancelled);
  EXPECT_EQ(v.pending(), 0u);
}

// The writer's checksum computed in slices while its bytes are sent is the
// one-shot checksum, whatever the slices.
TEST(Checksummer, SlicesGiveTheOneShotValue) {
  const auto data = random_bytes((3u << 20) + 17, 3);
  for (size_t size : {size_t{0}, size_t{1}, size_t{240}, size_t{4096}, data.size()})
    for (size_t slice : {size_t{1} << 10, size_t{256} << 10, size_t{7}, size_t{1} << 30}) {
      if (slice < 1024 && size > 4096) continue;  // (slow, and says nothing more)
      pmcr::Checksummer sum(data.data(), size);
      for (int i = 0; i < 3; ++i) sum.step(slice);
      EXPECT_EQ(sum.value(), pmcr::checksum(data.data(), size)) << size << " bytes, slices of " << slice;
    }
}

// The replicas' writers share one checksum: stepped by several threads at
// once, in any interleaving, every one of them gets the one-shot value, and
// the bytes are hashed once (a thread finds nothing left after the others).
TEST(Checksummer, SharedByThreadsGivesEveryOneTheOneShotValue) {
  const auto data = random_bytes((5u << 20) + 3, 4);
  const uint64_t want = pmcr::checksum(data.data(), data.size());
  for (int round = 0; round < 20; ++round) {
    pmcr::SharedChecksummer sum(data.data(), data.size());
    std::vector<uint64_t> got(3);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < got.size(); ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 4 + round; ++i) sum.step(size_t{64} << 10);
        got[t] = sum.value();
      });
    for (auto& t : threads) t.join();
    for (uint64_t g : got) EXPECT_EQ(g, want) << "round " << round;
    EXPECT_FALSE(sum.step(1)) << "nothing is left to hash once the value is known";
  }
}
