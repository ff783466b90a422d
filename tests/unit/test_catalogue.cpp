// Catalogue and pool tests on a real libpmem2 mapping of a /dev/shm file.
// "Restart" means dropping the Catalogue and Pool and opening the file again.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>

#include "catalogue.hpp"
#include "checksum.hpp"
#include "code_of.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "protocol.hpp"
#include "random_bytes.hpp"

using namespace pmcr::server;
using pmcr::Error;
using pmcr::test::code_of;

namespace {

class CatalogueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/dev/shm/pmcr-unit-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".pool";
    ::unlink(path_.c_str());
    open(64ull << 20);
  }
  void TearDown() override {
    pmcr::fault::arm("", 0, false);
    cat_.reset();
    pool_.reset();
    ::unlink(path_.c_str());
  }
  void open(std::optional<uint64_t> size = std::nullopt) {
    pool_ = std::make_unique<Pool>(Pool::open_or_create(path_, size));
    cat_ = std::make_unique<Catalogue>(*pool_);
  }
  void restart() {
    cat_.reset();
    pool_.reset();
    attempts_.clear();
    open();
  }
  // The job's attempt (begun on first use, as a job's first writer does).
  uint64_t attempt(const std::string& job) {
    auto it = attempts_.find(job);
    if (it == attempts_.end()) it = attempts_.emplace(job, cat_->begin_attempt(job)).first;
    return it->second;
  }
  RegionView create(const RegionKey& key, uint64_t size, Owner owner) {
    return cat_->create_region(key, size, owner, attempt(key.job));
  }
  void seal(const std::string& job, uint64_t version, uint32_t nranks, uint32_t nregions) {
    cat_->seal(job, version, nranks, nregions, attempt(job));
  }
  std::vector<uint8_t> pattern(size_t n, uint64_t seed) { return pmcr::test::random_bytes(n, seed); }
  // create + "RMA" (a memcpy into the region) + commit
  RegionView write(const std::string& job, uint64_t version, uint32_t rank, uint32_t id,
                   const std::vector<uint8_t>& data, Owner owner = 1) {
    RegionView v = create({job, version, rank, id}, data.size(), owner);
    if (!data.empty()) std::memcpy(cat_->data(v.offset), data.data(), data.size());
    cat_->commit_region(v.handle, data.size(), pmcr::checksum(data.data(), data.size()), owner);
    return v;
  }
  std::vector<uint8_t> read(const std::string& job, uint64_t version, uint32_t rank, uint32_t id) {
    RegionView v = cat_->open_region({job, version, rank, id});
    std::vector<uint8_t> out(cat_->data(v.offset), cat_->data(v.offset) + v.size);
    EXPECT_EQ(pmcr::checksum(out.data(), out.size()), v.checksum);
    cat_->close_region(v.handle);
    return out;
  }
  std::string path_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<Catalogue> cat_;
  std::map<std::string, uint64_t> attempts_;
};

}  // namespace

TEST_F(CatalogueTest, PoolHeaderAndReopen) {
  EXPECT_TRUE(pool_->formatted_now());
  EXPECT_EQ(pool_->size(), 64ull << 20);
  EXPECT_GE(pool_->granularity_bytes(), 8u);
  restart();
  EXPECT_FALSE(pool_->formatted_now());
  // A size that does not match an existing pool is a clear error.
  cat_.reset();
  pool_.reset();
  try {
    Pool::open_or_create(path_, 128ull << 20);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), PMCR_E_INVAL);
    EXPECT_NE(std::string(e.what()).find("does not match"), std::string::npos) << e.what();
  }
  open();
}

TEST_F(CatalogueTest, RefusesForeignFilesAndSecondServers) {
  // Two servers on one pool: the second is refused while the first holds it.
  EXPECT_EQ(code_of([&] { Pool::open_or_create(path_, std::nullopt); }), PMCR_E_BUSY);
  const std::string foreign = path_ + ".foreign";
  {
    std::FILE* f = std::fopen(foreign.c_str(), "w");
    std::fputs(std::string(8 << 20, 'x').c_str(), f);
    std::fclose(f);
  }
  EXPECT_EQ(code_of([&] { Pool::open_or_create(foreign, std::nullopt); }), PMCR_E_CORRUPT);
  ::unlink(foreign.c_str());
  EXPECT_EQ(code_of([&] { Pool::open_or_create(path_ + ".absent", std::nullopt); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { Pool::open_or_create(path_ + ".tiny", 1 << 20); }), PMCR_E_INVAL);
  EXPECT_NE(::access((path_ + ".tiny").c_str(), F_OK), 0) << "a failed create must not leave a file";
}

TEST_F(CatalogueTest, SealedVersionSurvivesRestartBitIdentical) {
  const auto a = pattern(1, 1), b = pattern(4095, 2), c = pattern((1 << 20) + 7, 3), z = pattern(0, 4);
  write("job", 1, 0, 0, a);
  write("job", 1, 0, 1, b);
  write("job", 1, 1, 0, c);
  write("job", 1, 1, 9, z);
  seal("job", 1, 2, 4);
  restart();
  EXPECT_EQ(cat_->recovery().sealed_versions, 1u);
  EXPECT_EQ(cat_->recovery().regions, 4u);
  EXPECT_EQ(read("job", 1, 0, 0), a);
  EXPECT_EQ(read("job", 1, 0, 1), b);
  EXPECT_EQ(read("job", 1, 1, 0), c);
  EXPECT_EQ(read("job", 1, 1, 9), z);
  const auto versions = cat_->list_versions("job");
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_TRUE(versions[0].sealed);
  EXPECT_EQ(versions[0].nranks, 2u);
  EXPECT_EQ(versions[0].bytes, a.size() + b.size() + c.size());
}

// A server of several holds a part of a version: the regions of some of its
// ranks (placement.hpp). The part is sealed with the job's rank count, and
// it survives a restart as a part, not as a version missing ranks.
TEST_F(CatalogueTest, APartOfAVersionIsSealedAndSurvivesRestart) {
  const auto a = pattern(3000, 1), b = pattern(100, 2), c = pattern(5000, 3);
  write("job", 1, 1, 0, a);
  write("job", 1, 1, 1, b);
  write("job", 1, 3, 0, c);
  // A seal of the whole version is refused: ranks 0 and 2 are not here.
  EXPECT_EQ(code_of([&] { seal("job", 1, 4, 4); }), PMCR_E_INCOMPLETE);
  // More ranks held than the job has, or fewer regions than ranks held.
  EXPECT_EQ(code_of([&] { cat_->seal("job", 1, 4, 3, attempt("job"), 5); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { cat_->seal("job", 1, 4, 1, attempt("job"), 2); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { cat_->seal("job", 1, 4, 3, attempt("job"), 1); }), PMCR_E_INCOMPLETE);
  // A rank beyond the job's count.
  EXPECT_EQ(code_of([&] { cat_->seal("job", 1, 3, 3, attempt("job"), 2); }), PMCR_E_INVAL);
  cat_->seal("job", 1, 4, 3, attempt("job"), 2);
  cat_->seal("job", 1, 4, 3, attempt("job"), 2);  // a retried seal
  EXPECT_EQ(code_of([&] { seal("job", 1, 4, 3); }), PMCR_E_EXISTS);
  const auto check = [&] {
    const auto versions = cat_->list_versions("job");
    ASSERT_EQ(versions.size(), 1u);
    EXPECT_TRUE(versions[0].sealed);
    EXPECT_EQ(versions[0].nranks, 4u);
    EXPECT_EQ(versions[0].part_ranks, 2u);
    EXPECT_EQ(versions[0].nregions, 3u);
  };
  check();
  restart();
  EXPECT_EQ(cat_->recovery().sealed_versions, 1u);
  EXPECT_EQ(cat_->recovery().quarantined, 0u);
  check();
  EXPECT_EQ(read("job", 1, 1, 0), a);
  EXPECT_EQ(read("job", 1, 3, 0), c);
}

TEST_F(CatalogueTest, UnsealedRegionsAreReclaimedOnRestartAndDisconnect) {
  write("job", 1, 0, 0, pattern(5000, 1));
  seal("job", 1, 1, 1);
  const uint64_t used_sealed = cat_->stats().used_bytes;
  write("job", 2, 0, 0, pattern(8192, 2), 7);                      // committed, not sealed
  create({"job", 2, 1, 0}, 100, 7);                   // created only
  write("job", 3, 0, 0, pattern(100, 3), 8);                       // another owner
  EXPECT_EQ(cat_->release_owner(7), 2u);
  EXPECT_EQ(cat_->list_versions("job").size(), 2u);  // 1 sealed, 3 open
  restart();
  EXPECT_EQ(cat_->recovery().reclaimed_regions, 1u);
  EXPECT_EQ(cat_->stats().used_bytes, used_sealed);
  EXPECT_EQ(cat_->stats().regions, 1u);
  EXPECT_EQ(cat_->list_versions("").size(), 1u);
}

TEST_F(CatalogueTest, SealChecksEveryRegionAndRank) {
  write("job", 1, 0, 0, pattern(10, 1));
  auto pending = create({"job", 1, 1, 0}, 10, 1);
  EXPECT_EQ(code_of([&] { seal("job", 1, 2, 2); }), PMCR_E_INCOMPLETE);  // one not committed
  const auto d = pattern(10, 2);
  std::memcpy(cat_->data(pending.offset), d.data(), d.size());
  cat_->commit_region(pending.handle, 10, pmcr::checksum(d.data(), 10), 1);
  EXPECT_EQ(code_of([&] { seal("job", 1, 2, 3); }), PMCR_E_INCOMPLETE);  // wrong region count
  EXPECT_EQ(code_of([&] { seal("job", 1, 3, 3); }), PMCR_E_INCOMPLETE);
  EXPECT_EQ(code_of([&] { seal("job", 1, 1, 2); }), PMCR_E_INVAL);       // rank 1 beyond 1 rank
  EXPECT_EQ(code_of([&] { seal("job", 9, 1, 1); }), PMCR_E_NOT_FOUND);
  seal("job", 1, 2, 2);
  seal("job", 1, 2, 2);  // idempotent retry
  EXPECT_EQ(code_of([&] { seal("job", 1, 2, 5); }), PMCR_E_EXISTS);
  EXPECT_EQ(code_of([&] { create({"job", 1, 0, 5}, 1, 1); }), PMCR_E_EXISTS);
}

TEST_F(CatalogueTest, CommitVerifiesChecksumSizeAndOwner) {
  auto v = create({"job", 1, 0, 0}, 4096, 1);
  std::memset(cat_->data(v.offset), 0xab, 4096);
  EXPECT_EQ(code_of([&] { cat_->commit_region(v.handle, 4096, 12345, 1); }), PMCR_E_CHECKSUM);
  const uint64_t sum = pmcr::checksum(cat_->data(v.offset), 4096);
  EXPECT_EQ(code_of([&] { cat_->commit_region(v.handle, 4000, sum, 1); }), PMCR_E_SIZE);
  EXPECT_EQ(code_of([&] { cat_->commit_region(v.handle, 4096, sum, 2); }), PMCR_E_STATE);
  EXPECT_EQ(code_of([&] { cat_->commit_region(v.handle + (1ull << 32), 4096, sum, 1); }), PMCR_E_NOT_FOUND);
  cat_->commit_region(v.handle, 4096, sum, 1);
  cat_->commit_region(v.handle, 4096, sum, 1);  // idempotent retry
}

TEST_F(CatalogueTest, RewritingAnUnsealedRegionReplacesIt) {
  auto first = write("job", 1, 0, 0, pattern(100, 1));
  const auto second = pattern(200, 2);
  write("job", 1, 0, 0, second);
  EXPECT_EQ(code_of([&] { cat_->commit_region(first.handle, 100, 0, 1); }), PMCR_E_NOT_FOUND);
  seal("job", 1, 1, 1);
  EXPECT_EQ(read("job", 1, 0, 0), second);
  EXPECT_EQ(cat_->stats().regions, 1u);
}

TEST_F(CatalogueTest, PoolFullIsNoSpaceAndHarmless) {
  write("job", 1, 0, 0, pattern(1 << 20, 1));
  seal("job", 1, 1, 1);
  const auto before = cat_->stats();
  EXPECT_EQ(code_of([&] { create({"job", 2, 0, 0}, 1ull << 30, 1); }), PMCR_E_NOSPACE);
  EXPECT_EQ(code_of([&] { create({"job", 2, 0, 0}, before.free_bytes + 1, 1); }), PMCR_E_NOSPACE);
  const auto after = cat_->stats();
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  EXPECT_EQ(after.slots_used, before.slots_used);
  EXPECT_EQ(read("job", 1, 0, 0), pattern(1 << 20, 1));
  // Exactly the free space still fits.
  write("job", 2, 0, 0, pattern(before.free_bytes, 5));
  EXPECT_EQ(cat_->stats().free_bytes, 0u);
}

TEST_F(CatalogueTest, CatalogueFullIsNoSpace) {
  const uint32_t slots = cat_->stats().slots;
  uint32_t made = 0;
  int code = 0;
  while (made <= slots && (code = code_of([&] { create({"job", 1, 0, made}, 0, 1); })) == 0) made++;
  EXPECT_EQ(code, PMCR_E_NOSPACE);
  EXPECT_EQ(made, slots);
  EXPECT_EQ(cat_->release_owner(1), slots);
  EXPECT_EQ(cat_->stats().slots_used, 0u);
}

TEST_F(CatalogueTest, DeleteKeepsExtentsWhileReadersHoldThem) {
  const auto data = pattern(10000, 1);
  write("job", 1, 0, 0, data);
  seal("job", 1, 1, 1);
  std::vector<uint64_t> freed;
  cat_->on_extent_freed = [&](uint64_t off, uint64_t) { freed.push_back(off); };
  RegionView r = cat_->open_region({"job", 1, 0, 0});
  EXPECT_EQ(cat_->delete_versions("job", 1), std::make_pair(1u, 1u));
  EXPECT_TRUE(freed.empty()) << "extent freed while a reader had it open";
  // New allocations must not land on the pinned extent.
  write("job", 2, 0, 0, pattern(10000, 2));
  EXPECT_EQ(std::memcmp(cat_->data(r.offset), data.data(), data.size()), 0);
  cat_->close_region(r.handle);
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0], r.offset);
  EXPECT_EQ(code_of([&] { cat_->close_region(r.handle); }), PMCR_E_NOT_FOUND);
  EXPECT_EQ(code_of([&] { cat_->open_region({"job", 1, 0, 0}); }), PMCR_E_NOT_FOUND);
}

TEST_F(CatalogueTest, DeleteAllVersionsOfAJob) {
  for (uint64_t v = 1; v <= 3; ++v) {
    write("job", v, 0, 0, pattern(100, v));
    seal("job", v, 1, 1);
  }
  write("other", 1, 0, 0, pattern(100, 9));
  seal("other", 1, 1, 1);
  EXPECT_EQ(cat_->delete_versions("job", std::nullopt), std::make_pair(3u, 3u));
  restart();
  EXPECT_EQ(cat_->list_versions("").size(), 1u);
  EXPECT_EQ(code_of([&] { cat_->delete_versions("job", std::nullopt); }), PMCR_E_NOT_FOUND);
}

#ifdef PMCR_FAULT_INJECTION
// A failure between the steps of a deletion leaves the version invisible
// after restart, and the restart finishes the deletion.
TEST_F(CatalogueTest, InterruptedDeletionIsFinishedAtRestart) {
  for (uint32_t id = 0; id < 3; ++id) write("job", 1, 0, id, pattern(5000, id));
  seal("job", 1, 1, 3);
  write("job", 2, 0, 0, pattern(10, 9));
  seal("job", 2, 1, 1);
  pmcr::fault::arm("delete.region", 2, false);
  EXPECT_EQ(code_of([&] { cat_->delete_versions("job", 1); }), PMCR_E_IO);
  restart();
  EXPECT_EQ(cat_->recovery().finished_deletions, 1u);
  const auto versions = cat_->list_versions("job");
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_EQ(versions[0].version, 2u);
  EXPECT_EQ(cat_->stats().regions, 1u);
  EXPECT_EQ(read("job", 2, 0, 0), pattern(10, 9));
}

// A seal that fails before its state store leaves nothing visible.
TEST_F(CatalogueTest, InterruptedSealIsInvisibleAfterRestart) {
  write("job", 1, 0, 0, pattern(5000, 1));
  pmcr::fault::arm("seal.body", 1, false);
  EXPECT_EQ(code_of([&] { seal("job", 1, 1, 1); }), PMCR_E_IO);
  restart();
  EXPECT_TRUE(cat_->list_versions("").empty());
  EXPECT_EQ(cat_->stats().used_bytes, 0u);
  EXPECT_EQ(cat_->stats().slots_used, 0u);
}
#endif

TEST_F(CatalogueTest, DamagedRecordIsQuarantinedNotServed) {
  write("job", 1, 0, 0, pattern(100, 1));
  write("job", 1, 0, 1, pattern(100, 2));
  seal("job", 1, 1, 2);
  write("job", 2, 0, 0, pattern(100, 3));
  seal("job", 2, 1, 1);
  // Flip a byte in the body of version 1's first region record, as media
  // corruption would.
  Record* recs = pool_->records();
  for (uint64_t i = 0; i < pool_->slots(); ++i) {
    if (recs[i].state == kRegionCommitted && recs[i].version == 1 && recs[i].id == 0) {
      recs[i].size ^= 1;
      pool_->persist(&recs[i], sizeof(Record));
    }
  }
  restart();
  EXPECT_GE(cat_->recovery().damaged, 1u);
  EXPECT_EQ(cat_->recovery().quarantined, 1u);
  // Listed as quarantined, with the reason; never served.
  const auto versions = cat_->list_versions("job");
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].version, 1u);
  EXPECT_FALSE(versions[0].sealed);
  EXPECT_NE(versions[0].quarantine.find("is damaged"), std::string::npos) << versions[0].quarantine;
  EXPECT_TRUE(versions[1].sealed);
  EXPECT_EQ(cat_->sealed_versions(), (std::vector<std::pair<std::string, uint64_t>>{{"job", 2}}));
  EXPECT_EQ(code_of([&] { cat_->open_region({"job", 1, 0, 1}); }), PMCR_E_CORRUPT);
  EXPECT_EQ(code_of([&] { cat_->version_regions("job", 1); }), PMCR_E_CORRUPT);
  // It stays quarantined across restarts, and 'rm' takes it away.
  restart();
  EXPECT_EQ(cat_->recovery().quarantined, 1u);
  EXPECT_EQ(cat_->delete_versions("job", 1).first, 1u);
  restart();
  EXPECT_EQ(cat_->recovery().quarantined, 0u);
  EXPECT_EQ(read("job", 2, 0, 0), pattern(100, 3));
}

// Who may write: a later attempt of a job supersedes the earlier ones (their
// unsealed regions go, their creates and seals are refused); within an
// attempt, a region belongs to the connection that created it.
TEST_F(CatalogueTest, LaterAttemptSupersedesEarlierOnes) {
  const uint64_t first = attempt("job");
  write("job", 1, 0, 0, pattern(5000, 1), 7);
  cat_->create_region({"job", 1, 1, 0}, 100, 8, first);
  EXPECT_EQ(cat_->usage(7).regions, 1u);
  uint32_t dropped = 0;
  const uint64_t second = cat_->begin_attempt("job", &dropped);
  attempts_["job"] = second;
  EXPECT_GT(second, first);
  EXPECT_EQ(dropped, 2u);
  EXPECT_EQ(cat_->stats().used_bytes, 0u);
  EXPECT_EQ(cat_->usage(7).regions, 0u);
  EXPECT_EQ(code_of([&] { cat_->create_region({"job", 1, 0, 0}, 10, 7, first); }), PMCR_E_SUPERSEDED);
  EXPECT_EQ(code_of([&] { cat_->seal("job", 1, 1, 1, first); }), PMCR_E_SUPERSEDED);
  EXPECT_EQ(code_of([&] { cat_->create_region({"job", 1, 0, 0}, 10, 7, second + 1); }), PMCR_E_STATE);
  EXPECT_EQ(code_of([&] { cat_->create_region({"job", 1, 0, 0}, 10, 7, 0); }), PMCR_E_STATE);
  // Other jobs are not touched by this job's attempts.
  write("other", 1, 0, 0, pattern(10, 2), 9);
  cat_->begin_attempt("job");
  EXPECT_EQ(cat_->usage(9).regions, 1u);
  // The current attempt writes and seals.
  attempts_.erase("job");
  write("job", 1, 0, 0, pattern(100, 3), 7);
  seal("job", 1, 1, 1);
  EXPECT_EQ(read("job", 1, 0, 0), pattern(100, 3));
}

TEST_F(CatalogueTest, ARegionBelongsToItsCreatorUntilTheSeal) {
  write("job", 1, 0, 0, pattern(100, 1), 7);
  // Another connection of the same attempt may not take it over...
  EXPECT_EQ(code_of([&] { create({"job", 1, 0, 0}, 100, 8); }), PMCR_E_BUSY);
  EXPECT_EQ(code_of([&] { write("job", 1, 0, 0, pattern(100, 2), 8); }), PMCR_E_BUSY);
  // ... nor write or commit it.
  const auto other = create({"job", 1, 1, 0}, 100, 8);
  EXPECT_EQ(code_of([&] { cat_->writable_region(other.handle, 7); }), PMCR_E_STATE);
  EXPECT_EQ(code_of([&] { cat_->commit_region(other.handle, 100, 0, 7); }), PMCR_E_STATE);
  write("job", 1, 1, 0, pattern(100, 5), 8);
  // Its creator may replace it (a retry), and once the creator is gone the
  // key is free.
  write("job", 1, 0, 0, pattern(100, 3), 7);
  EXPECT_EQ(cat_->release_owner(7), 1u);
  write("job", 1, 0, 0, pattern(100, 4), 8);
  seal("job", 1, 2, 2);
  EXPECT_EQ(code_of([&] { create({"job", 1, 0, 0}, 100, 8); }), PMCR_E_EXISTS);
  EXPECT_EQ(cat_->usage(8).regions, 0u) << "sealed regions belong to nobody";
}

// Memory with I/O in flight is never reused: a replaced, superseded or
// reclaimed region keeps its extent while a pin (a receive still landing)
// holds it.
TEST_F(CatalogueTest, PinnedExtentsAreNotReusedUntilReleased) {
  std::vector<uint64_t> freed;
  cat_->on_extent_freed = [&](uint64_t off, uint64_t) { freed.push_back(off); };
  const auto a = create({"job", 1, 0, 0}, 1 << 20, 7);
  cat_->pin(a.handle);  // a receive into it is in flight
  const auto b = create({"job", 1, 0, 0}, 1 << 20, 7);  // replaced by its writer
  EXPECT_NE(b.offset, a.offset);
  cat_->begin_attempt("job");  // superseded
  attempts_.erase("job");
  const auto c = create({"job", 1, 0, 0}, 1 << 20, 7);
  EXPECT_NE(c.offset, a.offset) << "an extent with a receive in flight was handed out again";
  EXPECT_EQ(freed, std::vector<uint64_t>{b.offset});
  cat_->unpin(a.handle);  // the late receive ended
  EXPECT_EQ(freed, (std::vector<uint64_t>{b.offset, a.offset}));
  EXPECT_EQ(code_of([&] { cat_->unpin(a.handle); }), PMCR_E_NOT_FOUND);
  EXPECT_EQ(code_of([&] { cat_->pin(a.handle); }), PMCR_E_NOT_FOUND);
  EXPECT_EQ(cat_->release_owner(7), 1u);
  EXPECT_EQ(cat_->stats().used_bytes, 0u);
}

TEST_F(CatalogueTest, AbortFreesOneVersionOfOneOwner) {
  write("job", 1, 0, 0, pattern(5000, 1), 7);
  write("job", 2, 0, 0, pattern(5000, 2), 7);
  write("job", 2, 1, 0, pattern(5000, 3), 8);
  EXPECT_EQ(cat_->release_owner(7, "job", 2), 1u);
  EXPECT_EQ(cat_->usage(7).regions, 1u);
  EXPECT_EQ(cat_->usage(8).regions, 1u);
  EXPECT_EQ(cat_->release_owner(7, "job", 2), 0u);
  EXPECT_EQ(cat_->release_owner(7, "nojob", 1), 0u);
}

TEST_F(CatalogueTest, QuarantineIsDurableAndNeverServed) {
  write("job", 1, 0, 0, pattern(5000, 1));
  seal("job", 1, 1, 1);
  write("job", 2, 0, 0, pattern(5000, 2));
  seal("job", 2, 1, 1);
  cat_->quarantine("job", 2, cat_->version_id("job", 2) + 1, "another version");  // not this one: no effect
  EXPECT_EQ(cat_->stats().quarantined_versions, 0u);
  cat_->quarantine("job", 2, cat_->version_id("job", 2), "region rank 0 id 0 fails its checksum");
  EXPECT_EQ(code_of([&] { cat_->open_region({"job", 2, 0, 0}); }), PMCR_E_CORRUPT);
  EXPECT_EQ(code_of([&] { seal("job", 2, 1, 1); }), PMCR_E_CORRUPT);
  EXPECT_EQ(cat_->stats().quarantined_versions, 1u);
  restart();
  EXPECT_EQ(cat_->recovery().quarantined, 1u);
  const auto versions = cat_->list_versions("job");
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_TRUE(versions[0].sealed);
  EXPECT_FALSE(versions[1].sealed);
  EXPECT_FALSE(versions[1].quarantine.empty());
  EXPECT_EQ(read("job", 1, 0, 0), pattern(5000, 1));
  // A program restarted from version 1 goes over the same steps: its new
  // checkpoint of version 2 takes the damaged one's place.
  write("job", 2, 0, 0, pattern(6000, 3));
  seal("job", 2, 1, 1);
  EXPECT_EQ(read("job", 2, 0, 0), pattern(6000, 3));
  EXPECT_EQ(cat_->stats().quarantined_versions, 0u);
  restart();
  EXPECT_EQ(cat_->recovery().quarantined, 0u);
  EXPECT_EQ(read("job", 2, 0, 0), pattern(6000, 3));
}

// A damaged seal record: its regions are kept and quarantined, not freed
// as if the version had never been sealed.
TEST_F(CatalogueTest, DamagedSealRecordQuarantinesItsRegions) {
  write("job", 1, 0, 0, pattern(5000, 1));
  write("job", 1, 0, 1, pattern(7000, 2));
  seal("job", 1, 1, 2);
  const uint64_t used = cat_->stats().used_bytes;
  Record* recs = pool_->records();
  for (uint64_t i = 0; i < pool_->slots(); ++i) {
    if (recs[i].state == kVersionSealed) {
      recs[i].size ^= 1;
      pool_->persist(&recs[i], sizeof(Record));
    }
  }
  restart();
  EXPECT_EQ(cat_->recovery().reclaimed_regions, 0u);
  EXPECT_EQ(cat_->recovery().quarantined, 1u);
  EXPECT_EQ(cat_->stats().used_bytes, used) << "the damaged version's regions were freed";
  const auto versions = cat_->list_versions("job");
  ASSERT_EQ(versions.size(), 1u);
  EXPECT_FALSE(versions[0].sealed);
  EXPECT_NE(versions[0].quarantine.find("damaged catalogue record"), std::string::npos) << versions[0].quarantine;
  EXPECT_EQ(code_of([&] { cat_->open_region({"job", 1, 0, 0}); }), PMCR_E_CORRUPT);
  // An ordinary crash (no damaged record) still reclaims unsealed regions.
  write("job", 2, 0, 0, pattern(10, 3));
  EXPECT_EQ(cat_->delete_versions("job", 1).second, 2u);
}

// ---- job owners (README, "Security") ----

TEST_F(CatalogueTest, JobOwnersAreDurableWhileTheJobHoldsSomething) {
  cat_->claim_job("a", 1000, 100);
  EXPECT_EQ(code_of([&] { cat_->claim_job("a", 1001, 100); }), PMCR_E_PERM);
  EXPECT_NO_THROW(cat_->claim_job("a", 1000, 100));
  EXPECT_EQ(cat_->stats().slots_used, 0u) << "a claim alone writes nothing";
  write("a", 1, 0, 0, pattern(100, 1));
  seal("a", 1, 1, 1);
  EXPECT_EQ(cat_->stats().slots_used, 3u) << "owner, region and seal records";
  restart();
  EXPECT_EQ(cat_->job_owner("a"), 1000u);
  EXPECT_EQ(code_of([&] { cat_->claim_job("a", 1001, 100); }), PMCR_E_PERM);
  // Deleting one version of several keeps the name; deleting the job frees it.
  cat_->claim_job("a", 1000, 100);
  write("a", 2, 0, 0, pattern(100, 2));
  seal("a", 2, 1, 1);
  cat_->delete_versions("a", 1);
  EXPECT_EQ(cat_->job_owner("a"), 1000u);
  cat_->delete_versions("a", std::nullopt);
  EXPECT_FALSE(cat_->job_owner("a"));
  EXPECT_EQ(cat_->stats().slots_used, 0u) << "the owner record went with the job";
  EXPECT_NO_THROW(cat_->claim_job("a", 1001, 100));
}

TEST_F(CatalogueTest, AJobThatLostEverythingKeepsItsClaimButNotItsRecord) {
  cat_->claim_job("a", 1000, 100);
  create({"a", 1, 0, 0}, 4096, 7);
  EXPECT_EQ(cat_->stats().slots_used, 2u);
  EXPECT_EQ(cat_->release_owner(7), 1u);  // its writer died
  EXPECT_EQ(cat_->stats().slots_used, 0u) << "no record for a job that holds nothing";
  EXPECT_EQ(cat_->job_owner("a"), 1000u) << "nobody else takes the name while the server runs";
  restart();
  EXPECT_FALSE(cat_->job_owner("a"));
}

TEST_F(CatalogueTest, AJobWhoseOwnerRecordIsDamagedIsLeftToAdmins) {
  cat_->claim_job("a", 1000, 100);
  write("a", 1, 0, 0, pattern(100, 1));
  seal("a", 1, 1, 1);
  Record* owner = nullptr;
  for (uint64_t i = 0; i < pool_->slots(); ++i)
    if (pool_->records()[i].state == kJobOwned) owner = &pool_->records()[i];
  ASSERT_NE(owner, nullptr);
  owner->version ^= 1;  // uid 1000 -> 1001, body checksum now wrong
  restart();
  EXPECT_EQ(cat_->job_owner("a"), kUnknownOwner) << "a damaged owner record made the job someone's";
  EXPECT_EQ(code_of([&] { cat_->claim_job("a", 1001, 100); }), PMCR_E_PERM);
  EXPECT_EQ(read("a", 1, 0, 0), pattern(100, 1));
}

TEST_F(CatalogueTest, AVersion1PoolIsUpgradedAndItsJobsGoToTheSharedPrincipal) {
  write("old", 1, 0, 0, pattern(100, 1));  // no claim: as a version 1 server wrote it
  seal("old", 1, 1, 1);
  cat_.reset();
  pool_.reset();
  // The header as a version 1 server left it: version 1, no MAC.
  {
    const int fd = ::open(path_.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    PoolHeader h{};
    ASSERT_EQ(::pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
    h.layout_version = 1;
    h.checksum = pmcr::checksum(reinterpret_cast<const uint8_t*>(&h.layout_version),
                                offsetof(PoolHeader, checksum) - offsetof(PoolHeader, layout_version));
    h.mac_kind = 0;
    std::memset(h.mac, 0, sizeof h.mac);
    ASSERT_EQ(::pwrite(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
    ::close(fd);
  }
  open();
  EXPECT_TRUE(pool_->upgraded());
  EXPECT_EQ(pool_->header()->layout_version, kLayoutVersion);
  EXPECT_EQ(cat_->job_owner("old"), pmcr::proto::kSharedPrincipal);
  restart();
  EXPECT_FALSE(pool_->upgraded());
  EXPECT_EQ(cat_->job_owner("old"), pmcr::proto::kSharedPrincipal) << "the owner was not recorded at the upgrade";
  EXPECT_EQ(read("old", 1, 0, 0), pattern(100, 1));
}

// A crash in the middle of the upgrade leaves the version word new and the
// checksum old (or the other way): recognised, and the upgrade done again;
// any other mismatch is a damaged header.
TEST_F(CatalogueTest, AnUpgradeCutShortIsFinishedAtTheNextStart) {
  write("old", 1, 0, 0, pattern(100, 1));
  seal("old", 1, 1, 1);
  cat_.reset();
  pool_.reset();
  const auto rewrite = [&](uint64_t version_for_checksum, uint64_t version_stored) {
    const int fd = ::open(path_.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    PoolHeader h{};
    ASSERT_EQ(::pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
    h.layout_version = version_for_checksum;
    h.checksum = pmcr::checksum(reinterpret_cast<const uint8_t*>(&h.layout_version),
                                offsetof(PoolHeader, checksum) - offsetof(PoolHeader, layout_version));
    h.layout_version = version_stored;
    h.mac_kind = 0;
    std::memset(h.mac, 0, sizeof h.mac);
    ASSERT_EQ(::pwrite(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
    ::close(fd);
  };
  rewrite(1, 2);  // version word written, checksum not yet
  open();
  EXPECT_TRUE(pool_->upgraded());
  EXPECT_EQ(read("old", 1, 0, 0), pattern(100, 1));
  cat_.reset();
  pool_.reset();
  rewrite(2, 1);  // the checksum reached the media first
  open();
  EXPECT_TRUE(pool_->upgraded());
  cat_.reset();
  pool_.reset();
  rewrite(3, 2);  // neither: damaged
  EXPECT_EQ(code_of([&] { Pool::open_or_create(path_, std::nullopt); }), PMCR_E_CORRUPT);
}

// One user cannot take every job name: past kMaxJobsPerOwner its claims are
// refused (QUOTA), others' are not, and deleting a job gives one back.
TEST_F(CatalogueTest, OneOwnerCannotTakeEveryJobName) {
  for (uint32_t i = 0; i < kMaxJobsPerOwner; ++i) cat_->claim_job("j" + std::to_string(i), 1000, 1000);
  EXPECT_EQ(code_of([&] { cat_->claim_job("one-more", 1000, 1000); }), PMCR_E_QUOTA);
  EXPECT_NO_THROW(cat_->claim_job("someone-else", 1001, 1001));
  EXPECT_NO_THROW(cat_->claim_job("j0", 1000, 1000)) << "its own names stay its own";
  write("j0", 1, 0, 0, pattern(10, 1));
  seal("j0", 1, 1, 1);
  cat_->delete_versions("j0", std::nullopt);
  EXPECT_NO_THROW(cat_->claim_job("one-more", 1000, 1000));
}

// A checkpoint region kept in blocks is committed in two halves (its new
// blocks hashed off the event loop in between): the result is the same as
// the one-step commit; data arriving in between breaks that commit, not
// the catalogue; and hashes that do not add up are refused.
TEST_F(CatalogueTest, ARegionInBlocksCommitsInTwoHalves) {
  constexpr uint64_t kBlock = 64 << 10;
  const auto data = pattern(5 * kBlock + 1000, 7);  // 6 blocks, the last short
  std::vector<uint64_t> block_sums;
  for (uint64_t at = 0; at < data.size(); at += kBlock)
    block_sums.push_back(pmcr::checksum(data.data() + at, std::min<uint64_t>(kBlock, data.size() - at)));
  const uint64_t sum = pmcr::combine_hashes(block_sums.data(), block_sums.size());
  // Writes every block of region ID of VERSION, as the server's receive does.
  const auto fill = [&](uint64_t version, uint32_t id) {
    const RegionView v = cat_->create_region({"b", version, 0, id}, data.size(), 1, attempt("b"), kBlock);
    for (uint64_t at = 0; at < data.size(); at += kBlock) {
      const uint64_t n = std::min<uint64_t>(kBlock, data.size() - at);
      WorkingRef pin;
      std::memcpy(cat_->write_blocks(v.handle, 1, at, n, &pin), data.data() + at, n);
      cat_->release_write(pin, true);
    }
    return v.handle;
  };
  const auto hash = [](const std::vector<std::pair<uint8_t*, uint64_t>>& blocks) {
    std::vector<uint64_t> out;
    for (const auto& [p, n] : blocks) out.push_back(pmcr::checksum(p, n));
    return out;
  };

  // The two halves.
  const uint64_t h0 = fill(1, 0);
  WorkingRef work;
  const auto blocks = cat_->commit_blocks_data(h0, data.size(), sum, 1, &work);
  ASSERT_TRUE(blocks);
  ASSERT_EQ(blocks->size(), 6u);
  EXPECT_EQ(code_of([&] { cat_->commit_region(h0, data.size(), sum, 1); }), PMCR_E_STATE) << "a second COMMIT meanwhile";
  cat_->commit_blocks_hashed(h0, data.size(), sum, 1, hash(*blocks));
  cat_->release_write(work, true);
  EXPECT_FALSE(cat_->commit_blocks_data(h0, data.size(), sum, 1, &work)) << "a retried commit has nothing to do";

  // Data in between: the write is refused, and so is the commit.
  const uint64_t h1 = fill(2, 1);
  const auto b1 = cat_->commit_blocks_data(h1, data.size(), sum, 1, &work);
  ASSERT_TRUE(b1);
  WorkingRef pin;
  EXPECT_EQ(code_of([&] { cat_->write_blocks(h1, 1, 0, 16, &pin); }), PMCR_E_STATE);
  EXPECT_EQ(code_of([&] { cat_->commit_blocks_hashed(h1, data.size(), sum, 1, hash(*b1)); }), PMCR_E_IO);
  cat_->release_write(work, true);

  // Hashes that are not the data's.
  const uint64_t h2 = fill(2, 2);
  const auto b2 = cat_->commit_blocks_data(h2, data.size(), sum, 1, &work);
  ASSERT_TRUE(b2);
  auto wrong = hash(*b2);
  wrong[3] ^= 1;
  EXPECT_EQ(code_of([&] { cat_->commit_blocks_hashed(h2, data.size(), sum, 1, wrong); }), PMCR_E_CHECKSUM);
  cat_->release_write(work, true);

  // The writer goes while its commit is at the worker: the blocks the
  // worker reads stay allocated until it is done.
  const uint64_t h4 = fill(3, 4);
  const auto b4 = cat_->commit_blocks_data(h4, data.size(), sum, 1, &work);
  ASSERT_TRUE(b4);
  const uint64_t free_before = cat_->stats().free_bytes;
  cat_->release_owner(1, "b", 3);
  EXPECT_EQ(cat_->stats().free_bytes, free_before) << "blocks freed under the worker";
  EXPECT_EQ(code_of([&] { cat_->commit_blocks_hashed(h4, data.size(), sum, 1, hash(*b4)); }), PMCR_E_NOT_FOUND);
  cat_->release_write(work, true);
  EXPECT_GT(cat_->stats().free_bytes, free_before) << "the blocks were not freed once the worker was done";

  // The one-step commit of the same bytes, and both read back alike.
  cat_->commit_region(fill(1, 3), data.size(), sum, 1);
  seal("b", 1, 1, 2);
  for (uint32_t id : {0u, 3u}) {
    const RegionView v = cat_->open_region({"b", 1, 0, id});
    EXPECT_EQ(v.checksum, sum);
    std::vector<uint8_t> got;
    for (const Segment& s : cat_->segments(v, 0, v.size)) got.insert(got.end(), cat_->data(s.offset), cat_->data(s.offset) + s.length);
    EXPECT_EQ(got, data) << "region " << id;
    cat_->close_region(v.handle);
  }
}
