// Named regions with generations, through the public C API (region.h) and,
// for what a hostile client would send, through raw requests: checked
// against a model (a byte vector per generation) under random operations,
// across server restarts and SIGKILLs of the writer and of the server, with
// the pool's space accounting checked to the byte.
#include <gtest/gtest.h>
#include <pmcr/region.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "error.hpp"
#include "process.hpp"
#include "region_model.hpp"
#include "server_process.hpp"

using namespace std::chrono_literals;
using pmcr::test::ServerProcess;
using pmcr::test::TempPath;

namespace {

constexpr uint64_t kBlock = 4096;

// The region API reads its settings from the environment when it connects.
struct Env {
  Env(uint64_t block, uint32_t keep) {
    ::setenv("PMCR_BLOCK_SIZE", std::to_string(block).c_str(), 1);
    ::setenv("PMCR_GENERATIONS", std::to_string(keep).c_str(), 1);
  }
  ~Env() {
    ::unsetenv("PMCR_BLOCK_SIZE");
    ::unsetenv("PMCR_GENERATIONS");
  }
};

#define OK(call) ASSERT_EQ((call), PMCR_OK) << #call << ": " << pmcr_last_error()

struct Conn {
  explicit Conn(const ServerProcess& s) { EXPECT_EQ(pmcr_connect(s.address().c_str(), &c), 0) << pmcr_last_error(); }
  ~Conn() { pmcr_disconnect(c); }
  pmcr_client* c = nullptr;
};

std::vector<uint8_t> read_all(pmcr_region* r, uint64_t g, uint64_t size) {
  std::vector<uint8_t> out(size);
  const int rc = pmcr_region_read(r, g, 0, out.data(), size);
  EXPECT_EQ(rc, 0) << pmcr_last_error();
  return out;
}

uint64_t used_bytes(const ServerProcess& s) { return s.connect().stat().used_bytes; }

// Applies OP to the writer R (and returns false on failure).
bool apply(pmcr_region* r, const pmcr::test::RegionOp& op) {
  int rc = 0;
  if (op.kind == pmcr::test::RegionOp::Clear) rc = pmcr_region_clear(r);
  else if (op.kind == pmcr::test::RegionOp::Append) rc = pmcr_region_append(r, op.bytes.data(), op.bytes.size());
  else rc = pmcr_region_write(r, op.offset, op.bytes.data(), op.bytes.size());
  EXPECT_EQ(rc, 0) << pmcr_last_error();
  return rc == 0;
}

class Regions : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server.start()) << server.log(); }
  TempPath pool{"regions"};
  ServerProcess server{{pool.str(), "256M"}};
};

// Random writes, appends, clears, commits, reads and changed-range queries
// at random offsets (0-length, unaligned, straddling blocks) against a
// model of every generation; the region keeps 3.
TEST_F(Regions, MatchModelUnderRandomOperations) {
  Env env(kBlock, 3);
  Conn conn(server);
  pmcr_region *w = nullptr, *r = nullptr;
  OK(pmcr_region_create(conn.c, "model", "state/a", &w));
  OK(pmcr_region_open(conn.c, "model", "state/a", &r));
  std::map<uint64_t, std::vector<uint8_t>> gens;  // committed, by number
  std::vector<uint8_t> next;                      // the writer's next generation
  uint64_t latest = 0;
  std::mt19937_64 rng(20261125);
  const auto random_bytes = [&](size_t n) {
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
  };
  for (int step = 0; step < 1500; ++step) {
    const int op = static_cast<int>(rng() % 100);
    if (op < 35) {  // overwrite, sometimes past the end (refused)
      const uint64_t off = rng() % (next.size() + 2);
      const auto b = random_bytes(rng() % (3 * kBlock));
      const int rc = pmcr_region_write(w, off, b.data(), b.size());
      if (off > next.size()) {
        ASSERT_EQ(rc, PMCR_E_RANGE) << "a write past the end must be refused";
        continue;
      }
      ASSERT_EQ(rc, 0) << pmcr_last_error();
      pmcr::test::apply(next, {pmcr::test::RegionOp::Write, off, b});
    } else if (op < 50) {
      if (next.size() > 64 * kBlock) continue;
      const auto b = random_bytes(rng() % (2 * kBlock));
      OK(pmcr_region_append(w, b.data(), b.size()));
      pmcr::test::apply(next, {pmcr::test::RegionOp::Append, 0, b});
    } else if (op < 53) {
      OK(pmcr_region_clear(w));
      next.clear();
    } else if (op < 68) {
      uint64_t g = 0;
      OK(pmcr_region_commit(w, &g));
      ASSERT_EQ(g, latest + 1);
      latest = g;
      gens[g] = next;
      while (gens.size() > 3) gens.erase(gens.begin());
    } else if (op < 72) {
      uint64_t g = 0, size = 0;
      OK(pmcr_region_stat(r, &g, &size));
      ASSERT_EQ(g, latest);
      ASSERT_EQ(size, latest ? gens.at(latest).size() : 0u);
    } else if (op < 90 && latest) {  // read a random range of a random generation, kept or not
      const uint64_t g = 1 + rng() % latest;
      uint64_t buf_size = 0;
      std::vector<uint8_t> got;
      auto it = gens.find(g);
      const uint64_t size = it == gens.end() ? 0 : it->second.size();
      const uint64_t off = rng() % (size + 1), len = rng() % (size - off + 1);
      got.resize(len);
      buf_size = len;
      const int rc = pmcr_region_read(r, g, off, got.data(), buf_size);
      // The reader's handle also holds the generations it was told of.
      if (it == gens.end()) {  // gone, unless the reader's handle still holds it
        ASSERT_TRUE(rc == PMCR_E_NOT_FOUND || rc == 0) << "generation " << g << " is not kept, yet reading it gave " << rc;
        continue;
      }
      ASSERT_EQ(rc, 0) << pmcr_last_error();
      ASSERT_TRUE(std::equal(got.begin(), got.end(), it->second.begin() + static_cast<std::ptrdiff_t>(off)))
          << "generation " << g << " bytes " << off << "+" << len;
      const std::vector<uint8_t> past(1);
      ASSERT_EQ(pmcr_region_read(r, g, size, const_cast<uint8_t*>(past.data()), 1), PMCR_E_RANGE);
    } else if (latest) {  // what changed: every differing byte lies in a range, ranges are whole merged blocks
      auto newest = gens.rbegin();
      const uint64_t g = newest->first;
      const uint64_t since = rng() % 2 ? 0 : gens.begin()->first;
      std::vector<pmcr_range> ranges(1024);
      size_t count = ranges.size();
      OK(pmcr_region_changed(r, since, g, ranges.data(), &count));
      ranges.resize(count);
      const auto& now = newest->second;
      std::vector<bool> covered(now.size(), false);
      for (size_t k = 0; k < ranges.size(); ++k) {
        ASSERT_EQ(ranges[k].offset % kBlock, 0u);
        ASSERT_LE(ranges[k].offset + ranges[k].length, now.size());
        if (k) {
          ASSERT_LT(ranges[k - 1].offset + ranges[k - 1].length, ranges[k].offset) << "adjacent ranges merged";
        }
        for (uint64_t b = ranges[k].offset; b < ranges[k].offset + ranges[k].length; ++b) covered[b] = true;
      }
      const std::vector<uint8_t>* old = since ? &gens.at(since) : nullptr;
      for (uint64_t b = 0; b < now.size(); ++b) {
        if (!old || b >= old->size() || (*old)[b] != now[b]) {
          ASSERT_TRUE(covered[b]) << "byte " << b << " changed since " << since << " but is in no range";
        }
      }
      if (!since) {
        ASSERT_TRUE(std::all_of(covered.begin(), covered.end(), [](bool c) { return c; }));
      }
      if (count > 1) {
        size_t small = 1;
        ASSERT_EQ(pmcr_region_changed(r, since, g, ranges.data(), &small), PMCR_E_RANGE);
        ASSERT_EQ(small, count) << "a too-small array says how many are needed";
      }
    }
  }
  ASSERT_GT(latest, 100u);
  // Every kept generation reads back whole; an older one is gone.
  uint64_t g = 0, size = 0;
  OK(pmcr_region_stat(r, &g, &size));
  for (const auto& [n, bytes] : gens) EXPECT_EQ(read_all(r, n, bytes.size()), bytes) << "generation " << n;
  std::vector<uint8_t> one(1);
  EXPECT_EQ(pmcr_region_read(r, 1, 0, one.data(), 0), PMCR_E_NOT_FOUND);
  OK(pmcr_region_close(w));
  OK(pmcr_region_close(r));
  // Nothing leaks: the region removed, the pool is empty again.
  OK(pmcr_region_remove(conn.c, "model", "state/a"));
  EXPECT_EQ(used_bytes(server), 0u);
}

// A writer's changes are invisible until its commit; a reader never sees a
// mix; an uncommitted generation vanishes when its writer closes.
TEST_F(Regions, ChangesAreInvisibleUntilCommit) {
  Env env(kBlock, 2);
  Conn conn(server);
  pmcr_region *w = nullptr, *r = nullptr;
  OK(pmcr_region_create(conn.c, "vis", "r", &w));
  const auto a = pmcr::test::pattern(3 * kBlock + 100, 1), b = pmcr::test::pattern(kBlock, 2);
  OK(pmcr_region_write(w, 0, a.data(), a.size()));
  uint64_t g = 0, size = 0;
  OK(pmcr_region_open(conn.c, "vis", "r", &r));
  OK(pmcr_region_stat(r, &g, &size));
  EXPECT_EQ(g, 0u);
  EXPECT_EQ(size, 0u);
  OK(pmcr_region_commit(w, &g));
  EXPECT_EQ(g, 1u);
  OK(pmcr_region_write(w, 100, b.data(), b.size()));
  OK(pmcr_region_stat(r, &g, &size));
  EXPECT_EQ(g, 1u);
  EXPECT_EQ(read_all(r, 1, size), a);
  OK(pmcr_region_close(w));  // the overwrite was never committed
  OK(pmcr_region_create(conn.c, "vis", "r", &w));
  OK(pmcr_region_commit(w, &g));
  EXPECT_EQ(g, 2u);
  EXPECT_EQ(read_all(r, 2, a.size()), a) << "a new writer starts from the latest committed generation";
  // A generation that shares every block costs nothing but its block map.
  const uint64_t map = 4096;
  EXPECT_EQ(used_bytes(server), 4 * kBlock + 2 * map);
  OK(pmcr_region_close(w));
  OK(pmcr_region_close(r));
}

// Retention frees exactly the blocks no kept generation (or reader) uses:
// the pool's used bytes are the distinct blocks of the kept generations
// plus their maps, after every commit.
TEST_F(Regions, RetentionFreesExactlyUnusedBlocks) {
  Env env(kBlock, 2);
  Conn conn(server);
  pmcr_region* w = nullptr;
  OK(pmcr_region_create(conn.c, "keep", "r", &w));
  constexpr uint64_t kBlocks = 16;
  // Which write made each block of each generation: a block is shared
  // until overwritten.
  std::map<uint64_t, std::vector<uint64_t>> owner_of;  // generation -> block -> id of its bytes
  std::vector<uint64_t> current(kBlocks, 0);
  uint64_t next_id = 1;
  std::mt19937 rng(7);
  for (uint64_t gen = 1; gen <= 30; ++gen) {
    for (uint64_t blk = 0; blk < kBlocks; ++blk) {
      if (gen > 1 && rng() % 4) continue;
      const auto bytes = pmcr::test::pattern(kBlock, gen * 100 + blk);
      OK(pmcr_region_write(w, blk * kBlock, bytes.data(), bytes.size()));
      current[blk] = next_id++;
    }
    uint64_t g = 0;
    OK(pmcr_region_commit(w, &g));
    ASSERT_EQ(g, gen);
    owner_of[gen] = current;
    while (owner_of.size() > 2) owner_of.erase(owner_of.begin());
    std::set<uint64_t> live;
    for (const auto& [n, ids] : owner_of) live.insert(ids.begin(), ids.end());
    ASSERT_EQ(used_bytes(server), live.size() * kBlock + owner_of.size() * 4096) << "after generation " << gen;
  }
  OK(pmcr_region_close(w));
  // The same after a restart: recovery counts the blocks from the maps.
  const uint64_t before = used_bytes(server);
  server.kill9();
  server.wait_exit(10s);
  ASSERT_TRUE(server.start()) << server.log();
  EXPECT_EQ(used_bytes(server), before);
  Conn again(server);
  OK(pmcr_region_remove(again.c, "keep", "r"));
  EXPECT_EQ(used_bytes(server), 0u);
}

// Committed generations survive a server restart (clean or SIGKILL)
// bit-identical; an uncommitted one vanishes.
TEST_F(Regions, CommittedGenerationsSurviveRestart) {
  Env env(kBlock, 2);
  for (const bool kill : {false, true}) {
    {
      Conn conn(server);
      pmcr_region* w = nullptr;
      OK(pmcr_region_create(conn.c, "restart", "r", &w));
      uint64_t g = 0, size = 0;
      OK(pmcr_region_stat(w, &g, &size));
      for (int k = 0; k < 3; ++k) {
        for (const auto& op : pmcr::test::generation_ops(g + 1, size, kBlock)) ASSERT_TRUE(apply(w, op));
        OK(pmcr_region_commit(w, &g));
        OK(pmcr_region_stat(w, &g, &size));
      }
      // An uncommitted change, then the server goes.
      const auto junk = pmcr::test::pattern(2 * kBlock, 99);
      OK(pmcr_region_append(w, junk.data(), junk.size()));
      if (kill) {
        server.kill9();
        server.wait_exit(10s);
      } else {
        server.stop();
      }
      pmcr_region_close(w);
    }
    ASSERT_TRUE(server.start()) << server.log();
    Conn conn(server);
    pmcr_region* r = nullptr;
    OK(pmcr_region_open(conn.c, "restart", "r", &r));
    uint64_t g = 0, size = 0;
    OK(pmcr_region_stat(r, &g, &size));
    EXPECT_EQ(g, kill ? 6u : 3u);
    const auto want = pmcr::test::content_of(g, kBlock);
    EXPECT_EQ(size, want.size());
    EXPECT_EQ(read_all(r, g, size), want);
    const auto prev = pmcr::test::content_of(g - 1, kBlock);
    EXPECT_EQ(read_all(r, g - 1, prev.size()), prev);
    OK(pmcr_region_close(r));
  }
}

// A reader's handle cannot change the region: the library refuses, and so
// does the server when a client sends the requests anyway.
TEST_F(Regions, ReaderCannotWrite) {
  Env env(kBlock, 2);
  Conn conn(server);
  pmcr_region *w = nullptr, *r = nullptr;
  OK(pmcr_region_create(conn.c, "perm", "r", &w));
  const auto a = pmcr::test::pattern(5000, 3);
  OK(pmcr_region_write(w, 0, a.data(), a.size()));
  OK(pmcr_region_commit(w, nullptr));
  OK(pmcr_region_open(conn.c, "perm", "r", &r));
  EXPECT_EQ(pmcr_region_write(r, 0, a.data(), 10), PMCR_E_PERM);
  EXPECT_NE(std::string(pmcr_last_error()).find("open for reading"), std::string::npos) << pmcr_last_error();
  EXPECT_EQ(pmcr_region_append(r, a.data(), 10), PMCR_E_PERM);
  EXPECT_EQ(pmcr_region_clear(r), PMCR_E_PERM);
  EXPECT_EQ(pmcr_region_commit(r, nullptr), PMCR_E_PERM);
  // The server's own check, on a reader's handle of a raw client.
  auto raw = server.connect();
  const auto opened = raw.region_open("perm", "r");
  raw.raw_data(std::vector<uint8_t>(pmcr::proto::encode(pmcr::proto::DataHeader{opened.handle, 0}).begin(),
                                    pmcr::proto::encode(pmcr::proto::DataHeader{opened.handle, 0}).end()),
               std::vector<uint8_t>(100, 0xee));
  EXPECT_EQ(pmcr::test::code_of([&] { raw.region_commit(opened.handle, 5000); }), PMCR_E_PERM);
  EXPECT_EQ(pmcr::test::code_of([&] { raw.region_clear(opened.handle); }), PMCR_E_PERM);
  // A handle is worth nothing on another connection.
  EXPECT_EQ(pmcr::test::code_of([&] { raw.region_stat(opened.handle ^ 1); }), PMCR_E_NOT_FOUND);
  auto other = server.connect();
  EXPECT_EQ(pmcr::test::code_of([&] { other.region_stat(opened.handle); }), PMCR_E_NOT_FOUND);
  uint64_t g = 0, size = 0;
  OK(pmcr_region_stat(r, &g, &size));
  EXPECT_EQ(g, 1u);
  EXPECT_EQ(read_all(r, 1, size), a) << "the reader's bytes never landed";
  OK(pmcr_region_close(w));
  OK(pmcr_region_close(r));
}

// One writer at a time; the region is free again when the writer closes
// or its connection goes.
TEST_F(Regions, OneWriterAtATime) {
  Env env(kBlock, 2);
  Conn a(server), b(server);
  pmcr_region *w1 = nullptr, *w2 = nullptr;
  OK(pmcr_region_create(a.c, "one", "r", &w1));
  EXPECT_EQ(pmcr_region_create(b.c, "one", "r", &w2), PMCR_E_BUSY);
  EXPECT_NE(std::string(pmcr_last_error()).find("one writer at a time"), std::string::npos) << pmcr_last_error();
  EXPECT_EQ(pmcr_region_create(a.c, "one", "r", &w2), PMCR_E_BUSY) << "also on the same connection";
  OK(pmcr_region_close(w1));
  OK(pmcr_region_create(b.c, "one", "r", &w2));
  OK(pmcr_region_commit(w2, nullptr));
  {
    auto raw = server.connect();
    raw.region_create("one", "other", 0, 0);  // its connection ends without a close
  }
  std::this_thread::sleep_for(200ms);
  pmcr_region* w3 = nullptr;
  for (int i = 0; i < 50 && pmcr_region_create(a.c, "one", "other", &w3) == PMCR_E_BUSY; ++i)
    std::this_thread::sleep_for(100ms);
  ASSERT_NE(w3, nullptr) << pmcr_last_error();
  OK(pmcr_region_close(w3));
  OK(pmcr_region_close(w2));
}

// Removing a region a reader has open: the reader keeps what it holds until
// it closes; the name is free at once; the space returns at the close.
TEST_F(Regions, RemoveWhileAReaderHasItOpen) {
  Env env(kBlock, 2);
  Conn conn(server);
  pmcr_region *w = nullptr, *r = nullptr;
  OK(pmcr_region_create(conn.c, "rm", "r", &w));
  const auto a = pmcr::test::pattern(10 * kBlock, 5);
  OK(pmcr_region_write(w, 0, a.data(), a.size()));
  OK(pmcr_region_commit(w, nullptr));
  OK(pmcr_region_open(conn.c, "rm", "r", &r));
  OK(pmcr_region_remove(conn.c, "rm", "r"));
  EXPECT_EQ(read_all(r, 1, a.size()), a) << "the reader still holds generation 1";
  uint64_t g = 0;
  EXPECT_EQ(pmcr_region_stat(r, &g, nullptr), PMCR_E_NOT_FOUND);
  EXPECT_EQ(pmcr_region_commit(w, nullptr), PMCR_E_NOT_FOUND) << "the writer's region is gone";
  pmcr_region* again = nullptr;
  EXPECT_EQ(pmcr_region_open(conn.c, "rm", "r", &again), PMCR_E_NOT_FOUND);
  EXPECT_GT(used_bytes(server), 0u);
  OK(pmcr_region_close(r));
  OK(pmcr_region_close(w));
  EXPECT_EQ(used_bytes(server), 0u);
  EXPECT_EQ(pmcr_region_remove(conn.c, "rm", "r"), PMCR_E_NOT_FOUND);
}

// What a hostile writer might send: bytes straddling blocks, past the end,
// a commit that lies about the size, more than its quota. Each is refused,
// and the committed generation is untouched.
TEST_F(Regions, HostileWritesAreRefused) {
  Env env(kBlock, 2);
  auto raw = server.connect();
  const auto opened = raw.region_create("hostile", "r", kBlock, 2);
  const auto data = [&](uint64_t offset, size_t n) {
    const auto h = pmcr::proto::encode(pmcr::proto::DataHeader{opened.handle, offset});
    raw.raw_data(std::vector<uint8_t>(h.begin(), h.end()), std::vector<uint8_t>(n, 0x5a));
  };
  raw.region_write(opened.handle, kBlock, 0, pmcr::test::pattern(2 * kBlock, 1).data(), 2 * kBlock);
  EXPECT_EQ(pmcr::test::code_of([&] { raw.region_commit(opened.handle, 2 * kBlock + 1); }), PMCR_E_SIZE);
  EXPECT_EQ(raw.region_commit(opened.handle, 2 * kBlock).generation, 1u);
  data(kBlock - 10, 20);  // straddles two blocks
  EXPECT_EQ(pmcr::test::code_of([&] { raw.region_commit(opened.handle, 2 * kBlock); }), PMCR_E_IO);
  raw.region_close(opened.handle);
  const auto again = raw.region_create("hostile", "r", 0, 0);
  const auto h = pmcr::proto::encode(pmcr::proto::DataHeader{again.handle, 5 * kBlock});  // a hole
  raw.raw_data(std::vector<uint8_t>(h.begin(), h.end()), std::vector<uint8_t>(10, 1));
  EXPECT_EQ(pmcr::test::code_of([&] { raw.region_commit(again.handle, 5 * kBlock + 10); }), PMCR_E_IO);
  raw.region_close(again.handle);
  // Generation 1 is what it was.
  const auto reader = raw.region_open("hostile", "r");
  std::vector<uint8_t> got(2 * kBlock);
  raw.region_read(reader.handle, kBlock, 1, 0, got.data(), got.size());
  EXPECT_EQ(got, pmcr::test::pattern(2 * kBlock, 1));
  raw.region_close(reader.handle);
}

TEST(RegionsQuota, UncommittedBytesCountAgainstTheConnectionsQuota) {
  Env env(kBlock, 2);
  TempPath pool("regions-quota");
  ServerProcess server({pool.str(), "64M", 0, {}, {"--quota-bytes", "1M"}});
  ASSERT_TRUE(server.start()) << server.log();
  Conn conn(server);
  pmcr_region* w = nullptr;
  OK(pmcr_region_create(conn.c, "quota", "r", &w));
  const auto big = pmcr::test::pattern(2u << 20, 1);
  OK(pmcr_region_write(w, 0, big.data(), big.size()));  // the bytes past the quota are dropped
  EXPECT_EQ(pmcr_region_commit(w, nullptr), PMCR_E_IO);
  EXPECT_NE(std::string(pmcr_last_error()).find("quota"), std::string::npos) << pmcr_last_error();
  OK(pmcr_region_close(w));
  OK(pmcr_region_create(conn.c, "quota", "r", &w));
  OK(pmcr_region_write(w, 0, big.data(), 512u << 10));
  OK(pmcr_region_commit(w, nullptr));
  OK(pmcr_region_write(w, 512u << 10, big.data(), 512u << 10));  // committed bytes no longer count
  OK(pmcr_region_commit(w, nullptr));
  OK(pmcr_region_close(w));
}

// ---- the writer or the server SIGKILLed at a random moment ----

// Generations a writer process printed as committed.
std::vector<uint64_t> acked(const std::string& path) {
  std::vector<uint64_t> out;
  std::istringstream in(pmcr::tools::read_file(path));
  for (uint64_t g; in >> g;) out.push_back(g);
  return out;
}

// The region holds a whole committed generation: the latest, at least the
// last one acknowledged, bit-identical to the model; the one before too.
void check_region(const ServerProcess& s, const std::string& job, uint64_t last_acked) {
  Conn conn(s);
  pmcr_region* r = nullptr;
  const int rc = pmcr_region_open(conn.c, job.c_str(), "r", &r);
  if (rc == PMCR_E_NOT_FOUND && last_acked == 0) return;  // killed before its first commit
  ASSERT_EQ(rc, 0) << pmcr_last_error();
  uint64_t g = 0, size = 0;
  OK(pmcr_region_stat(r, &g, &size));
  EXPECT_GE(g, last_acked);
  EXPECT_LE(g, last_acked + 1) << "at most one commit done but not yet acknowledged";
  const auto want = pmcr::test::content_of(g, kBlock);
  ASSERT_EQ(size, want.size()) << "generation " << g;
  EXPECT_EQ(read_all(r, g, size), want) << "generation " << g;
  if (g > 1) {
    const auto prev = pmcr::test::content_of(g - 1, kBlock);
    EXPECT_EQ(read_all(r, g - 1, prev.size()), prev) << "generation " << g - 1;
  }
  OK(pmcr_region_close(r));
}

pid_t start_writer(const ServerProcess& s, const std::string& job, const std::string& out) {
  return pmcr::tools::spawn({PMCR_REGION_WRITER, s.address(), job, "r", std::to_string(kBlock), "100000"},
                            {{"PMCR_BLOCK_SIZE=" + std::to_string(kBlock), "PMCR_GENERATIONS=2"}, out, out + ".err"});
}

TEST_F(Regions, WriterKilledAtRandomMoments) {
  TempPath out("regions-writer");
  std::mt19937 rng(11);
  uint64_t last = 0;
  for (int round = 0; round < 6; ++round) {
    const pid_t pid = start_writer(server, "wkill", out.str());
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_TRUE(pmcr::tools::wait_for(pid, 10s, &status, true));
    const auto gens = acked(out.str());
    if (!gens.empty()) last = gens.back();
    check_region(server, "wkill", last);
    if (HasFailure()) FAIL() << pmcr::tools::read_file(out.str() + ".err");
  }
  EXPECT_GT(last, 5u) << "the writer made progress between kills";
  // Nothing the killed writers left behind stays in use.
  Conn conn(server);
  OK(pmcr_region_remove(conn.c, "wkill", "r"));
  EXPECT_EQ(used_bytes(server), 0u);
}

TEST_F(Regions, ServerKilledAtRandomMoments) {
  TempPath out("regions-server");
  std::mt19937 rng(12);
  uint64_t last = 0;
  for (int round = 0; round < 6; ++round) {
    const pid_t pid = start_writer(server, "skill", out.str());
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
    server.kill9();
    server.wait_exit(10s);
    int status = 0;
    ASSERT_TRUE(pmcr::tools::wait_for(pid, 30s, &status, true)) << "the writer noticed its server was gone";
    const auto gens = acked(out.str());
    if (!gens.empty()) last = gens.back();
    ASSERT_TRUE(server.start()) << server.log();
    check_region(server, "skill", last);
    if (HasFailure()) FAIL() << pmcr::tools::read_file(out.str() + ".err");
  }
  EXPECT_GT(last, 5u);
  Conn conn(server);
  OK(pmcr_region_remove(conn.c, "skill", "r"));
  EXPECT_EQ(used_bytes(server), 0u) << "recovery counted exactly the kept generations' blocks";
}

// ---- pmserver killed at every fault point of region work ----

struct RegionLog {
  uint64_t acked = 0;          // the last generation whose commit returned
  bool removed_sent = false, removed_acked = false;
};

// Five generations of one region (the model's writes, appends, clears), a
// second region created, committed and removed. Stops at the first error.
void region_workload(ServerProcess& s, RegionLog& log) {
  try {
    auto c = s.connect(10s);
    const auto w = c.region_create("sweep", "r", kBlock, 2);
    uint64_t size = 0;
    for (uint64_t g = 1; g <= 5; ++g) {
      for (const auto& op : pmcr::test::generation_ops(g, size, kBlock)) {
        if (op.kind == pmcr::test::RegionOp::Clear) {
          c.region_clear(w.handle);
          size = 0;
          continue;
        }
        const uint64_t at = op.kind == pmcr::test::RegionOp::Append ? size : op.offset;
        c.region_write(w.handle, kBlock, at, op.bytes.data(), op.bytes.size());
        size = std::max<uint64_t>(size, at + op.bytes.size());
      }
      EXPECT_EQ(c.region_commit(w.handle, size).generation, g);
      log.acked = g;
    }
    const auto other = c.region_create("sweep", "other", kBlock, 2);
    c.region_write(other.handle, kBlock, 0, pmcr::test::pattern(3 * kBlock, 9).data(), 3 * kBlock);
    c.region_commit(other.handle, 3 * kBlock);
    c.region_close(other.handle);
    log.removed_sent = true;
    c.region_remove("sweep", "other");
    log.removed_acked = true;
    c.region_close(w.handle);
  } catch (const pmcr::Error&) {
  }
}

void verify_regions(const ServerProcess& s, const RegionLog& log) {
  if (log.acked) check_region(s, "sweep", log.acked);
  Conn conn(s);
  pmcr_region* r = nullptr;
  const int rc = pmcr_region_open(conn.c, "sweep", "other", &r);
  if (log.removed_acked) {
    EXPECT_EQ(rc, PMCR_E_NOT_FOUND) << "a removed region came back";
  }
  if (rc == 0) {  // committed, its removal not finished: whole or gone
    EXPECT_TRUE(log.removed_sent || log.acked == 5);
    uint64_t g = 0, size = 0;
    OK(pmcr_region_stat(r, &g, &size));
    EXPECT_EQ(read_all(r, g, size), pmcr::test::pattern(3 * kBlock, 9));
    OK(pmcr_region_close(r));
  }
  // Nothing leaked: with every region removed the pool and the catalogue are empty.
  for (const char* name : {"r", "other"}) pmcr_region_remove(conn.c, "sweep", name);
  const auto st = s.connect().stat();
  EXPECT_EQ(st.used_bytes, 0u) << "leaked blocks or maps";
  EXPECT_EQ(st.catalogue_used, 0u) << "leaked records";
}

TEST(RegionCrash, KillAtEveryFaultPointOfRegionWork) {
  TempPath pool("region-crash"), trace("region-trace");
  std::map<std::string, int> points;
  RegionLog last_log;
  {
    ServerProcess s({pool.str(), "32M", 0, {"PMCR_FAULT_TRACE=" + trace.str()}, {"--no-prefault"}});
    ASSERT_TRUE(s.start());
    RegionLog log;
    region_workload(s, log);
    ASSERT_EQ(log.acked, 5u) << s.log();
    ASSERT_TRUE(log.removed_acked);
    points = pmcr::test::read_fault_trace(trace.str());
    verify_regions(s, log);
  }
  if (points.empty()) GTEST_SKIP() << "built without PMCR_FAULT_INJECTION: no fault points to sweep";
  for (const char* p : {"region.write", "region.clear", "region.commit.data", "region.commit.map",
                        "region.commit.state", "region.drop", "region.block.free", "region.remove"})
    EXPECT_TRUE(points.count(p)) << "the workload never passes fault point " << p;
  const int runs = pmcr::test::sweep_fault_points(
      pool.str(), points,
      [](const std::string& p) { return p.rfind("region.", 0) == 0 || p.rfind("server.data", 0) == 0; },
      [&](ServerProcess& s) {
        RegionLog log;
        region_workload(s, log);
        last_log = log;
      },
      [&](ServerProcess& s) { verify_regions(s, last_log); });
  std::cerr << "region crash sweep: " << runs << " kill/restart runs\n";
}

}  // namespace
