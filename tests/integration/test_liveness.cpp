// The server's side of the hot standby: leases, watchers and their events,
// fencing of a failed or replaced primary, and what a hostile client can do
// with the new requests (JOIN, RENEW, LEAVE, WATCH, FAIL).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <optional>
#include <thread>

#include "error.hpp"
#include "lease.hpp"
#include "protocol.hpp"
#include "server_process.hpp"

using namespace std::chrono_literals;
using pmcr::Error;
using pmcr::client::Client;
using pmcr::client::LeaseHolder;
using pmcr::proto::Event;
using pmcr::proto::EventKind;
using pmcr::proto::Life;
using pmcr::test::code_of;
using pmcr::test::pattern;
using pmcr::test::ServerProcess;
using pmcr::test::TempPath;

namespace {

constexpr uint64_t kPrimary = 0x1111, kStandby = 0x2222;

class LivenessTest : public ::testing::Test {
 protected:
  LivenessTest() : pool_("liveness"), server_({pool_.str(), "64M"}) {}
  void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- pmserver log ----\n" << server_.log();
  }
  // The next event of KIND for JOB within LIMIT (others are skipped).
  static std::optional<Event> wait_for(Client& watcher, EventKind kind, std::chrono::milliseconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      auto ev = watcher.next_event(100ms);
      if (ev && ev->kind == kind) return ev;
    }
    return std::nullopt;
  }
  // A one-rank checkpoint of VERSION by C (attempt begun or joined).
  static void checkpoint(Client& c, const std::string& job, uint64_t version) {
    const auto bytes = pattern(10000, version);
    c.write_region(job, version, 0, 0, bytes.data(), bytes.size());
    c.seal(job, version, 1, 1);
  }
  TempPath pool_;
  ServerProcess server_;
};

}  // namespace

// A watcher learns of every attempt begun and version sealed as it happens,
// and WATCH tells it where the job stands when it starts.
TEST_F(LivenessTest, WatcherIsToldOfAttemptsAndSeals) {
  auto primary = server_.connect();
  const uint64_t attempt = primary.begin("w", kPrimary);
  checkpoint(primary, "w", 1);
  auto watcher = server_.connect();
  const auto state = watcher.watch("w", kPrimary);
  EXPECT_EQ(state.attempt, attempt);
  EXPECT_EQ(state.instance, kPrimary);
  EXPECT_EQ(state.life, Life::Running);
  EXPECT_FALSE(state.instance_failed);
  ASSERT_TRUE(state.has_sealed);
  EXPECT_EQ(state.sealed, 1u);
  checkpoint(primary, "w", 2);
  auto sealed = wait_for(watcher, EventKind::Sealed);
  ASSERT_TRUE(sealed);
  EXPECT_EQ(sealed->version, 2u);
  EXPECT_EQ(sealed->nranks, 1u);
  EXPECT_EQ(sealed->attempt, attempt);
  // A relaunch is a new attempt, and says which launch it is.
  auto relaunch = server_.connect();
  const uint64_t next = relaunch.begin("w", 0x3333);
  auto begun = wait_for(watcher, EventKind::Begun);
  ASSERT_TRUE(begun);
  EXPECT_EQ(begun->attempt, next);
  EXPECT_EQ(begun->instance, 0x3333u);
  EXPECT_FALSE(begun->takeover);
  // Another job's events never reach it.
  auto other = server_.connect();
  other.begin("other");
  checkpoint(other, "other", 1);
  auto ev = watcher.next_event(300ms);
  EXPECT_FALSE(ev) << "an event of another job: " << pmcr::proto::event_name(ev->kind);
}

// A rank that stops renewing (SIGSTOP, a hung node) fails the attempt after
// its lease; the failed attempt then writes, seals and deletes nothing.
TEST_F(LivenessTest, LapsedLeaseFailsTheAttemptAndFencesIt) {
  auto primary = server_.connect();
  const uint64_t attempt = primary.begin("lapse", kPrimary);
  checkpoint(primary, "lapse", 1);
  auto watcher = server_.connect();
  watcher.watch("lapse", kPrimary);
  auto silent = server_.connect();
  silent.join("lapse", attempt);
  const auto t0 = std::chrono::steady_clock::now();
  silent.hold_lease("lapse", 0, 1, 300);  // and never renews it
  auto failed = wait_for(watcher, EventKind::Failed);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->instance, kPrimary);
  EXPECT_NE(failed->reason.find("lease"), std::string::npos) << failed->reason;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3s) << "the lease is checked every 100 ms";
  EXPECT_EQ(code_of([&] { checkpoint(primary, "lapse", 2); }), PMCR_E_FENCED);
  EXPECT_EQ(code_of([&] { primary.remove("lapse", 1); }), PMCR_E_FENCED);
  EXPECT_EQ(code_of([&] { silent.renew_lease("lapse"); }), PMCR_E_FENCED);
  const auto state = watcher.watch("lapse", kPrimary);
  EXPECT_EQ(state.life, Life::Failed);
  EXPECT_TRUE(state.instance_failed);
  EXPECT_EQ(state.sealed, 1u) << "version 1 must be intact";
}

// Leases kept by their holders' threads keep the attempt alive for as long
// as they run, however long the rank does not talk to the server itself.
TEST_F(LivenessTest, RenewedLeasesKeepTheAttemptAlive) {
  auto primary = server_.connect();
  const uint64_t attempt = primary.begin("kept", kPrimary);
  auto watcher = server_.connect();
  watcher.watch("kept", kPrimary);
  std::vector<std::unique_ptr<LeaseHolder>> ranks;
  for (uint32_t r = 0; r < 3; ++r) {
    ranks.push_back(std::make_unique<LeaseHolder>(server_.client_options(), 200ms));
    ranks.back()->hold("kept", attempt, r, 3);
  }
  auto ev = watcher.next_event(1500ms);  // more than seven leases
  EXPECT_FALSE(ev) << pmcr::proto::event_name(ev->kind) << ": " << ev->reason;
  checkpoint(primary, "kept", 1);
  EXPECT_TRUE(wait_for(watcher, EventKind::Sealed));
  // All leave: the attempt ended, not failed.
  for (auto& r : ranks) EXPECT_TRUE(r->leave());
  auto ended = wait_for(watcher, EventKind::Ended);
  ASSERT_TRUE(ended);
  EXPECT_EQ(ended->attempt, attempt);
  EXPECT_EQ(watcher.watch("kept", kPrimary).life, Life::Ended);
  // Its launcher may still say it failed (a rank erred after pmcr_finalize,
  // the launcher exited non-zero): then the standby takes over.
  const auto r = watcher.fail("kept", kPrimary, "mpirun exited with code 1");
  EXPECT_TRUE(r.failed);
  auto failed = wait_for(watcher, EventKind::Failed);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->reason, "mpirun exited with code 1");
  EXPECT_FALSE(watcher.fail("kept", kPrimary, "again").failed) << "failing twice is not news";
}

// A rank's process dies: its lease's connection closes, and the attempt
// fails at once, long before the lease would lapse.
TEST_F(LivenessTest, LostConnectionFailsTheAttemptAtOnce) {
  auto primary = server_.connect();
  const uint64_t attempt = primary.begin("lost", kPrimary);
  auto watcher = server_.connect();
  watcher.watch("lost", kPrimary);
  LeaseHolder survivor(server_.client_options(), 60s);
  survivor.hold("lost", attempt, 0, 2);
  auto dying = std::make_unique<LeaseHolder>(server_.client_options(), 60s);
  dying->hold("lost", attempt, 1, 2);
  const auto t0 = std::chrono::steady_clock::now();
  dying.reset();  // closes without LEAVE
  auto failed = wait_for(watcher, EventKind::Failed, 5s);
  ASSERT_TRUE(failed);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_NE(failed->reason.find("rank 1"), std::string::npos) << failed->reason;
  // The survivor's attempt is over: it can give up nothing any more.
  EXPECT_FALSE(survivor.leave());
}

// The takeover: a standby's BEGIN fences every earlier attempt for good.
// The old primary, still connected (a zombie), can no longer create, commit,
// seal, delete or renew; what the new primary writes is intact.
TEST_F(LivenessTest, TakeoverFencesTheOldPrimary) {
  auto zombie = server_.connect();
  const uint64_t old_attempt = zombie.begin("fence", kPrimary);
  checkpoint(zombie, "fence", 1);
  LeaseHolder lease(server_.client_options(), 60s);
  lease.hold("fence", old_attempt, 0, 1);
  const auto pending = zombie.create("fence", 2, 0, 0, 4096);
  auto watcher = server_.connect();
  watcher.watch("fence", kPrimary);
  auto standby = server_.connect();
  const uint64_t attempt = standby.begin("fence", kStandby, true);
  EXPECT_GT(attempt, old_attempt);
  auto begun = wait_for(watcher, EventKind::Begun);
  ASSERT_TRUE(begun);
  EXPECT_TRUE(begun->takeover);
  EXPECT_EQ(begun->instance, kStandby);
  EXPECT_EQ(code_of([&] { zombie.put(pending, pattern(4096, 9).data()); zombie.commit(pending, 0); }), PMCR_E_FENCED);
  EXPECT_EQ(code_of([&] { zombie.create("fence", 2, 0, 1, 10); }), PMCR_E_FENCED);
  EXPECT_EQ(code_of([&] { zombie.seal("fence", 1, 1, 1); }), PMCR_E_FENCED);
  EXPECT_EQ(code_of([&] { zombie.remove("fence", 1); }), PMCR_E_FENCED);
  std::this_thread::sleep_for(100ms);
  checkpoint(standby, "fence", 2);
  EXPECT_EQ(code_of([&] { zombie.remove("fence", 2); }), PMCR_E_FENCED);
  const auto versions = standby.list_versions("fence");
  ASSERT_EQ(versions.size(), 2u);
  // And a tool (no attempt) may still delete: fencing is about the job's runs.
  auto tool = server_.connect();
  EXPECT_EQ(tool.remove("fence", 1).versions, 1u);
}

// pmcr-run's FAIL of a launch that died before it began an attempt: the
// watchers are told at once, and a standby that WATCHes later learns it too.
TEST_F(LivenessTest, FailOfALaunchThatNeverBegan) {
  auto watcher = server_.connect();
  watcher.watch("early", kPrimary);
  auto launcher = server_.connect();
  EXPECT_FALSE(launcher.fail("early", kPrimary, "mpirun exited with code 134").failed);
  auto failed = wait_for(watcher, EventKind::Failed);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->attempt, 0u);
  EXPECT_EQ(failed->instance, kPrimary);
  auto late = server_.connect();
  EXPECT_TRUE(late.watch("early", kPrimary).instance_failed);
  EXPECT_FALSE(late.watch("early", kStandby).instance_failed);
}

// What a hostile or broken client can do with the liveness requests: ask
// for absurd leases, renew what it does not hold, join attempts that are
// not current, watch without end, FAIL nothing in particular, and never
// take its events. Each gets a clear refusal or loses only its connection.
TEST_F(LivenessTest, HostileLivenessRequestsAreRefused) {
  auto c = server_.connect();
  const uint64_t attempt = c.begin("hostile", kPrimary);
  EXPECT_EQ(code_of([&] { c.hold_lease("hostile", 0, 1, 0); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { c.hold_lease("hostile", 0, 1, 99); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { c.hold_lease("hostile", 0, 1, 3600 * 1000 + 1); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { c.hold_lease("hostile", 5, 5, 1000); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { c.hold_lease("hostile", 0, 0, 1000); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { c.renew_lease("hostile"); }), PMCR_E_NOT_FOUND);
  EXPECT_EQ(code_of([&] { c.leave_lease("hostile"); }), PMCR_E_NOT_FOUND);
  auto liar = server_.connect();
  liar.join("hostile", attempt + 1);  // an attempt that never began
  EXPECT_EQ(code_of([&] { liar.hold_lease("hostile", 0, 1, 1000); }), PMCR_E_STATE);
  liar.join("hostile", attempt - 1);  // one before the current
  EXPECT_NE(code_of([&] { liar.hold_lease("hostile", 0, 1, 1000); }), 0);
  EXPECT_EQ(code_of([&] { liar.fail("hostile", 0, ""); }), PMCR_E_INVAL);
  EXPECT_EQ(code_of([&] { liar.watch("no such/name", 0); }), PMCR_E_INVAL);
  // Watching is bounded per connection.
  auto greedy = server_.connect();
  int refused = 0;
  for (int i = 0; i < 80; ++i) refused += code_of([&] { greedy.watch("job" + std::to_string(i), 0); }) == PMCR_E_BUSY;
  EXPECT_EQ(refused, 80 - 64);
  // A watcher that never takes its events loses its connection, nothing
  // else: the job goes on sealing.
  auto deaf = server_.connect();
  deaf.watch("hostile", 0);
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t v = 1; v <= 1200; ++v) {
    const auto bytes = pattern(64, v);
    c.write_region("hostile", v, 0, 0, bytes.data(), bytes.size());
    c.seal("hostile", v, 1, 1);
    if (v > 2) c.remove("hostile", v - 2);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
  EXPECT_GE(c.stat().connections, 3u) << "only the deaf watcher may have lost its connection";
  // Woken at last, it finds the newest news (or learns it was dropped).
  std::optional<Event> last;
  try {
    while (auto ev = deaf.next_event(200ms)) last = ev;
    ASSERT_TRUE(last);
    EXPECT_EQ(last->version, 1200u);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), PMCR_E_SERVER_LOST) << e.what();
  }
}
