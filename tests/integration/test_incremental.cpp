// Incremental checkpoints on the server, driven as libpmcr drives them
// (CREATE with a block size and a base version, the changed blocks, COMMIT
// with the checksum over every block's hash, SEAL): only the changed blocks
// cross the wire, retention frees exactly the blocks no kept version uses,
// and what a hostile or confused writer sends is refused.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "checksum.hpp"
#include "error.hpp"
#include "pool_damage.hpp"
#include "server_process.hpp"

using namespace std::chrono_literals;
using pmcr::test::ServerProcess;
using pmcr::test::TempPath;

namespace {

constexpr uint64_t kBlock = 64 << 10;
constexpr uint64_t kBlocks = 16;
constexpr uint64_t kSize = kBlock * kBlocks - 1000;  // a short last block
constexpr uint64_t kMap = 4096;                      // one page holds a map of 16 entries

uint64_t region_checksum(const std::vector<uint8_t>& data) {
  const auto h = pmcr::block_hashes(data.data(), data.size(), kBlock);
  return pmcr::combine_hashes(h.data(), h.size());
}

class Incremental : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server.start()) << server.log(); }
  // Version V of the job's one region: BASE's data with CHANGED blocks
  // rewritten; only those are sent.
  void write(pmcr::client::Client& c, uint64_t v, std::optional<uint64_t> base, const std::vector<uint64_t>& changed,
             std::vector<uint8_t>& data) {
    for (uint64_t i : changed) {
      const auto bytes = pmcr::test::pattern(kBlock, v * 1000 + i);
      std::copy(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(std::min(kBlock, kSize - i * kBlock)),
                data.begin() + static_cast<std::ptrdiff_t>(i * kBlock));
    }
    const auto t = c.create("inc", v, 0, 0, kSize, kBlock, base);
    ASSERT_EQ(t.based, base.has_value());
    c.put_blocks(t, data.data(), changed);
    c.commit(t, region_checksum(data));
    c.seal("inc", v, 1, 1);
  }
  // Version 1, every block sent; returns its bytes.
  std::vector<uint8_t> write_first(pmcr::client::Client& c) {
    c.begin("inc");
    std::vector<uint8_t> data(kSize);
    std::vector<uint64_t> all(kBlocks);
    for (uint64_t i = 0; i < kBlocks; ++i) all[i] = i;
    write(c, 1, std::nullopt, all, data);
    return data;
  }
  std::vector<uint8_t> read(pmcr::client::Client& c, uint64_t v) {
    std::vector<uint8_t> out(kSize);
    c.read_region("inc", v, 0, 0, out.data(), out.size());
    return out;
  }
  TempPath pool{"incremental"};
  ServerProcess server{{pool.str(), "128M"}};
};

TEST_F(Incremental, OnlyChangedBlocksAreSentAndRetentionFreesExactlyTheUnusedOnes) {
  auto c = server.connect();
  std::vector<uint8_t> data = write_first(c);
  std::map<uint64_t, std::vector<uint8_t>> kept{{1, data}};
  // Which write made each block of each kept version (version 1 made block i as "i").
  std::vector<uint64_t> all(kBlocks);
  for (uint64_t i = 0; i < kBlocks; ++i) all[i] = i;
  std::map<uint64_t, std::vector<uint64_t>> made{{1, all}};
  std::mt19937 rng(3);
  for (uint64_t v = 2; v <= 12; ++v) {
    std::set<uint64_t> pick;
    const uint64_t n = 1 + rng() % 4;
    while (pick.size() < n) pick.insert(rng() % kBlocks);
    const std::vector<uint64_t> changed(pick.begin(), pick.end());
    const uint64_t in_before = c.stat().data_in;
    write(c, v, v - 1, changed, data);
    uint64_t sent = 0;
    for (uint64_t i : changed) sent += std::min(kBlock, kSize - i * kBlock);
    EXPECT_EQ(c.stat().data_in - in_before, sent) << "version " << v << ": only the changed blocks cross the wire";
    made[v] = made[v - 1];
    for (uint64_t i : changed) made[v][i] = v * 1000 + i;
    kept[v] = data;
    // PMCR_KEEP=2, as libpmcr applies it: the oldest version goes.
    if (v >= 3) {
      c.remove("inc", v - 2);
      kept.erase(v - 2);
      made.erase(v - 2);
    }
    std::set<uint64_t> live;
    for (const auto& [ver, ids] : made) live.insert(ids.begin(), ids.end());
    ASSERT_EQ(c.stat().used_bytes, live.size() * kBlock + made.size() * kMap) << "after version " << v;
  }
  for (const auto& [v, bytes] : kept) EXPECT_EQ(read(c, v), bytes) << "version " << v;
  // Recovery counts the same blocks from the maps.
  const uint64_t used = c.stat().used_bytes;
  server.kill9();
  server.wait_exit(10s);
  ASSERT_TRUE(server.start()) << server.log();
  auto again = server.connect();
  EXPECT_EQ(again.stat().used_bytes, used);
  for (const auto& [v, bytes] : kept) EXPECT_EQ(read(again, v), bytes) << "version " << v << " after a restart";
  again.remove("inc", std::nullopt);
  // (The scrub that began at the restart may hold a region it is checking
  // for a moment: it gives it up, it does not keep the space.)
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (again.stat().used_bytes != 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(again.stat().used_bytes, 0u);
}

// The base version deleted while the next one is being written: the blocks
// the writer starts from stay until its commit.
TEST_F(Incremental, BaseDeletedMidCheckpointKeepsItsBlocks) {
  auto c = server.connect();
  std::vector<uint8_t> data = write_first(c);
  const auto t = c.create("inc", 2, 0, 0, kSize, kBlock, uint64_t{1});
  ASSERT_TRUE(t.based);
  server.connect().remove("inc", uint64_t{1});
  // The pool's space of version 1 is still taken: its blocks are held.
  EXPECT_EQ(c.stat().used_bytes, kBlocks * kBlock);
  const auto more = pmcr::test::pattern(kBlock, 5);
  std::copy(more.begin(), more.end(), data.begin());
  c.put_blocks(t, data.data(), {0});
  c.commit(t, region_checksum(data));
  c.seal("inc", 2, 1, 1);
  EXPECT_EQ(read(c, 2), data);
  EXPECT_EQ(c.stat().used_bytes, kBlocks * kBlock + kMap) << "block 0 of version 1 freed at the commit";
}

// What a writer that does not keep to the protocol sends: blocks it did
// not change but claims to have (the checksum says otherwise), bytes past
// the declared size, a base of another size.
TEST_F(Incremental, WhatDoesNotAddUpIsRefused) {
  auto c = server.connect();
  std::vector<uint8_t> data = write_first(c);
  // The checksum covers blocks the writer did not send.
  auto changed = data;
  changed[5] ^= 1;
  changed[3 * kBlock] ^= 1;
  auto t = c.create("inc", 2, 0, 0, kSize, kBlock, uint64_t{1});
  c.put_blocks(t, changed.data(), {0});
  EXPECT_EQ(pmcr::test::code_of([&] { c.commit(t, region_checksum(changed)); }), PMCR_E_CHECKSUM);
  // Sent whole instead, it commits.
  t = c.create("inc", 2, 0, 0, kSize, kBlock, std::nullopt);
  c.put(t, changed.data());
  c.commit(t, region_checksum(changed));
  c.seal("inc", 2, 1, 1);
  EXPECT_EQ(read(c, 2), changed);
  // Bytes past the declared size are dropped before they land anywhere;
  // the version commits as what its checksum says.
  t = c.create("inc", 3, 0, 0, kSize, kBlock, uint64_t{2});
  const auto h = pmcr::proto::encode(pmcr::proto::DataHeader{t.handle, kSize});
  c.raw_data(std::vector<uint8_t>(h.begin(), h.end()), std::vector<uint8_t>(100, 7));
  c.commit(t, region_checksum(changed));
  c.seal("inc", 3, 1, 1);
  EXPECT_EQ(read(c, 3), changed);
  EXPECT_NE(server.log().find("dropped region data"), std::string::npos);
  // A write straddling two blocks breaks the region: its commit fails.
  t = c.create("inc", 4, 0, 0, kSize, kBlock, uint64_t{3});
  const auto s2 = pmcr::proto::encode(pmcr::proto::DataHeader{t.handle, kBlock - 10});
  c.raw_data(std::vector<uint8_t>(s2.begin(), s2.end()), std::vector<uint8_t>(20, 7));
  EXPECT_EQ(pmcr::test::code_of([&] { c.commit(t, region_checksum(changed)); }), PMCR_E_IO);
  // A base of another size is not used: the writer is told to send everything.
  t = c.create("inc", 5, 0, 0, kSize - 1, kBlock, uint64_t{3});
  EXPECT_FALSE(t.based);
  EXPECT_EQ(pmcr::test::code_of([&] { c.create("inc", 6, 0, 0, kSize, 3000, uint64_t{3}); }), PMCR_E_INVAL);
}

// pmcr export --versions: several versions of an incremental job in one
// pass, each block they share fetched once; each exported version is whole
// (and imports again).
TEST_F(Incremental, ExportOfSeveralVersionsFetchesSharedBlocksOnce) {
  std::map<uint64_t, std::vector<uint8_t>> at;
  {
    auto c = server.connect();
    std::vector<uint8_t> data = write_first(c);
    at[1] = data;
    write(c, 2, uint64_t{1}, {2, 9}, data);
    at[2] = data;
    write(c, 3, uint64_t{2}, {kBlocks - 1}, data);  // the short last block
    at[3] = data;
  }
  const std::string dir = pool.str() + ".export";
  std::string out, err;
  ASSERT_EQ(pmcr::test::run_cli({"export", "--server", server.address(), "--job", "inc", "--versions", "3,1,2", dir,
                                 "--json"},
                                &out, &err),
            0)
      << err;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["fetched"].get<uint64_t>(), kSize + 2 * kBlock + (kSize - (kBlocks - 1) * kBlock)) << out;
  EXPECT_EQ(j["bytes"].get<uint64_t>(), 3 * kSize);
  for (const auto& [v, bytes] : at) {
    std::ifstream in(dir + "/" + std::to_string(v) + "/0/0", std::ios::binary);
    const std::vector<uint8_t> got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(got, bytes) << "version " << v;
  }
  ASSERT_EQ(pmcr::test::run_cli({"import", "--server", server.address(), "--job", "inc", "--version", "9", dir + "/2"},
                                &out, &err),
            0)
      << err;
  auto c = server.connect();
  EXPECT_EQ(read(c, 9), at[2]);
  std::filesystem::remove_all(dir);
}

// A damaged block of a version is caught when the version is read (OPEN
// verifies every block) and the version is quarantined; the version it
// shares no damaged block with is still served.
TEST_F(Incremental, DamagedBlockQuarantinesTheVersion) {
  std::vector<uint8_t> data;
  std::vector<uint8_t> v1;
  {
    auto c = server.connect();
    data = write_first(c);
    v1 = data;
    write(c, 2, uint64_t{1}, {7}, data);
  }
  EXPECT_EQ(server.stop(), 0);
  pmcr::test::damage_region_data(pool.str(), "inc", 2, 0, 0, 1);  // the middle byte: block 7, version 2's own
  ASSERT_TRUE(server.start()) << server.log();
  auto c = server.connect();
  std::vector<uint8_t> out(kSize);
  EXPECT_EQ(pmcr::test::code_of([&] { c.read_region("inc", 2, 0, 0, out.data(), out.size()); }), PMCR_E_CORRUPT);
  EXPECT_EQ(read(c, 1), v1);
}

}  // namespace

namespace {

// ---- pmserver killed at every fault point of incremental checkpoints ----

struct Log {
  std::set<uint64_t> sealed, deleted_sent, deleted;
};

// Versions 1 (whole), 2 and 3 (a few blocks each, on the one before), the
// deletion of 1, and 4 (on 3). Stops at the first error (the server died).
void incremental_workload(ServerProcess& s, Log& log, std::map<uint64_t, std::vector<uint8_t>>& data) {
  const std::map<uint64_t, std::vector<uint64_t>> changes = {{2, {0, 5}}, {3, {5, 15}}, {4, {1, 2, 3}}};
  try {
    auto c = s.connect(10s);
    c.begin("inc");
    std::vector<uint8_t> bytes(kSize);
    for (uint64_t v = 1; v <= 4; ++v) {
      std::vector<uint64_t> blocks;
      if (v == 1)
        for (uint64_t i = 0; i < kBlocks; ++i) blocks.push_back(i);
      else
        blocks = changes.at(v);
      for (uint64_t i : blocks) {
        const auto p = pmcr::test::pattern(kBlock, v * 1000 + i);
        std::copy(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(std::min(kBlock, kSize - i * kBlock)),
                  bytes.begin() + static_cast<std::ptrdiff_t>(i * kBlock));
      }
      data[v] = bytes;
      const auto t = c.create("inc", v, 0, 0, kSize, kBlock, v > 1 ? std::optional<uint64_t>(v - 1) : std::nullopt);
      c.put_blocks(t, bytes.data(), blocks);
      c.commit(t, region_checksum(bytes));
      c.seal("inc", v, 1, 1);
      log.sealed.insert(v);
      if (v == 3) {
        log.deleted_sent.insert(1);
        c.remove("inc", uint64_t{1});
        log.deleted.insert(1);
      }
    }
  } catch (const pmcr::Error&) {
  }
}

void verify_incremental(const ServerProcess& s, const Log& log, const std::map<uint64_t, std::vector<uint8_t>>& data) {
  auto c = s.connect(10s);
  std::set<uint64_t> visible;
  for (const auto& v : c.list_versions("inc")) {
    EXPECT_TRUE(v.sealed) << "version " << v.version << " visible but not sealed";
    EXPECT_FALSE(log.deleted.count(v.version)) << "deleted version " << v.version << " came back";
    visible.insert(v.version);
    std::vector<uint8_t> got(kSize);
    c.read_region("inc", v.version, 0, 0, got.data(), got.size());
    EXPECT_EQ(got, data.at(v.version)) << "version " << v.version;
  }
  for (uint64_t v : log.sealed) {
    if (!log.deleted_sent.count(v)) {
      EXPECT_TRUE(visible.count(v)) << "acknowledged version " << v << " lost";
    }
  }
  EXPECT_EQ(c.stat().regions, visible.size()) << "unsealed regions survived";
  // Exactly the blocks of the visible versions, and their maps.
  std::set<uint64_t> blocks;
  for (uint64_t v : visible) {
    for (uint64_t i = 0; i < kBlocks; ++i) {
      uint64_t maker = 1;  // the last version up to V that wrote block i
      for (uint64_t w = 2; w <= v; ++w)
        if ((w == 2 && (i == 0 || i == 5)) || (w == 3 && (i == 5 || i == 15)) || (w == 4 && i >= 1 && i <= 3)) maker = w;
      blocks.insert(maker * 1000 + i);
    }
  }
  EXPECT_EQ(c.stat().used_bytes, blocks.size() * kBlock + visible.size() * kMap) << "leaked or lost blocks";
}

}  // namespace

TEST(IncrementalCrash, KillAtEveryFaultPointOfIncrementalCheckpoints) {
  TempPath pool("inc-crash"), trace("inc-trace");
  std::map<std::string, int> points;
  {
    ServerProcess s({pool.str(), "32M", 0, {"PMCR_FAULT_TRACE=" + trace.str()}, {"--no-prefault"}});
    ASSERT_TRUE(s.start());
    Log log;
    std::map<uint64_t, std::vector<uint8_t>> data;
    incremental_workload(s, log, data);
    ASSERT_EQ(log.sealed.size(), 4u) << s.log();
    points = pmcr::test::read_fault_trace(trace.str());
    verify_incremental(s, log, data);
  }
  if (points.empty()) GTEST_SKIP() << "built without PMCR_FAULT_INJECTION: no fault points to sweep";
  for (const char* p : {"create.state", "region.write", "commit.data", "commit.body", "commit.state", "seal.state",
                        "delete.mark", "delete.region", "region.block.free"})
    EXPECT_TRUE(points.count(p)) << "the workload never passes fault point " << p;
  Log log;
  std::map<uint64_t, std::vector<uint8_t>> data;
  const int runs = pmcr::test::sweep_fault_points(
      pool.str(), points, [](const std::string&) { return true; },
      [&](ServerProcess& s) {
        log = Log{};
        data.clear();
        incremental_workload(s, log, data);
      },
      [&](ServerProcess& s) { verify_incremental(s, log, data); });
  std::cerr << "incremental crash sweep: " << runs << " kill/restart runs\n";
}
