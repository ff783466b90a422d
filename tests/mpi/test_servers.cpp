// Several servers (README, "Several servers"): heat2d with PMCR_SERVERS
// listing three pmservers of the test's own and PMCR_REPLICAS=2. Every
// version is spread as documented (placement.hpp) whatever order the list
// is given in; a server SIGKILLed (and its pool deleted) before, during or
// after sealing its part leaves the job checkpointing to the others, and a
// relaunch restarts bit-identical from the survivors; with one copy, a
// lost server's versions are named as lost.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "jobs.hpp"
#include "placement.hpp"

namespace pmcr::test {
namespace {

class Servers : public ::testing::Test {
 protected:
  void SetUp() override {
    expected_ = reference_checksum();
    ASSERT_FALSE(expected_.empty());
  }
  void TearDown() override {
    join_reaper();
    if (HasFailure())
      for (size_t i = 0; i < servers_.size(); ++i)
        if (servers_[i]) std::cerr << "---- pmserver " << i << " log ----\n" << servers_[i]->log();
  }
  // N servers; FAULT[i]: server i's PMCR_FAULT (empty: none).
  void start(size_t n, const std::vector<std::string>& fault = {}) {
    for (size_t i = 0; i < n; ++i) {
      pools_.push_back(std::make_unique<TempPath>("pool" + std::to_string(i)));
      std::vector<std::string> env;
      if (i < fault.size() && !fault[i].empty()) env.push_back("PMCR_FAULT=" + fault[i]);
      servers_.push_back(std::make_unique<ServerProcess>(ServerConfig(pools_.back()->str(), "256M", 0, env)));
      ASSERT_TRUE(servers_.back()->start()) << servers_.back()->log();
    }
    std::vector<std::string> addresses;
    for (const auto& s : servers_) addresses.push_back(s->address());
    order_ = placement::order(addresses);
  }
  // The server at position I of the placement order.
  ServerProcess& at(size_t i) {
    for (auto& s : servers_)
      if (s->address() == order_.at(i)) return *s;
    throw std::logic_error("no server " + order_.at(i));
  }
  size_t index_of(const ServerProcess& s) const {
    return static_cast<size_t>(std::find(order_.begin(), order_.end(), s.address()) - order_.begin());
  }
  // The servers' addresses in an order that is not the placement order.
  std::string list(bool reversed) const {
    std::vector<std::string> a = order_;
    if (reversed) std::reverse(a.begin(), a.end());
    else std::rotate(a.begin(), a.begin() + 1, a.end());
    std::string out;
    for (const auto& s : a) out += (out.empty() ? "" : ",") + s;
    return out;
  }
  std::vector<std::string> env(const std::string& servers, unsigned replicas) const {
    return {"PMCR_SERVERS=" + servers, "PMCR_REPLICAS=" + std::to_string(replicas), "PMCR_JOB=" + job_name(),
            "PMCR_SERVER_RETRY=1"};
  }
  static std::vector<std::string> heat(const std::vector<std::string>& more = {}) {
    std::vector<std::string> p = heat2d();
    p.insert(p.end(), more.begin(), more.end());
    return mpiexec(kRanks, p);
  }
  // Server I's part of VERSION: the ranks whose regions it holds, sealed or not.
  std::set<uint32_t> ranks_on(size_t i, uint64_t version, bool* sealed) {
    std::set<uint32_t> out;
    *sealed = false;
    for (const auto& v : at(i).connect().list_versions(job_name()))
      if (v.version == version) *sealed = v.sealed;
    if (!*sealed) return out;
    for (const auto& g : at(i).connect().list_regions(job_name(), version).regions) out.insert(g.rank);
    return out;
  }
  // The ranks placement puts on server I with COPIES copies.
  std::set<uint32_t> placed_on(size_t i, unsigned copies) const {
    std::set<uint32_t> out;
    for (uint32_t r = 0; r < static_cast<uint32_t>(kRanks); ++r) {
      const auto s = placement::replicas(r, order_.size(), copies);
      if (std::find(s.begin(), s.end(), i) != s.end()) out.insert(r);
    }
    return out;
  }

  // pmcr ARGS --servers (the list) --json, parsed (null if it failed).
  nlohmann::json cli(std::vector<std::string> args, int* code = nullptr) {
    args.insert(args.begin(), PMCR_CLI);
    args.insert(args.end(), {"--servers", list(true), "--json"});
    const JobRun r = run(args, {}, 120s);
    if (code) *code = r.code;
    const auto brace = r.out.find('{');
    if (brace == std::string::npos) {
      ADD_FAILURE() << r.out;
      return nullptr;
    }
    try {
      return nlohmann::json::parse(r.out.substr(brace));
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what() << ": " << r.out;
      return nullptr;
    }
  }
  // The versions `pmcr ls` shows for the job: version -> (state, copies).
  std::map<uint64_t, std::pair<std::string, size_t>> health() {
    std::map<uint64_t, std::pair<std::string, size_t>> out;
    const auto j = cli({"ls", "--job", job_name(), "--replicas", "2"});
    if (j.is_null()) return out;
    for (const auto& v : j["versions"])
      out[v["version"].get<uint64_t>()] = {v["state"].get<std::string>(), v["copies"].get<size_t>()};
    return out;
  }
  // Kills server I (in the order) at its fault point FAULT and deletes its
  // pool when it is gone (a thread of its own, as the job runs).
  void lose_at(size_t i, const std::string& fault) {
    ServerProcess& victim = at(i);
    victim.stop();
    victim.env().push_back("PMCR_FAULT=" + fault);
    ASSERT_TRUE(victim.start()) << victim.log();
    std::string pool;
    for (size_t k = 0; k < servers_.size(); ++k)
      if (servers_[k].get() == &victim) pool = pools_[k]->str();
    reaper_ = std::thread([&victim, pool] {
      if (victim.wait_exit(120s)) ::unlink(pool.c_str());
    });
  }
  void join_reaper() {
    if (reaper_.joinable()) reaper_.join();
  }

  std::string expected_;
  std::thread reaper_;
  std::vector<std::unique_ptr<TempPath>> pools_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::vector<std::string> order_;
};

}  // namespace

// Two copies on three servers, the list given rotated: every kept version's
// parts are where placement puts them, sealed by each server itself, and
// retention applies on every server. A relaunch given the list in yet
// another order finds them and restarts bit-identical.
TEST_F(Servers, TwoCopiesOnThreeServersArePlacedAsDocumented) {
  start(3);
  const JobRun r = run(heat(), env(list(false), 2), 120s);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected_) << r.out;
  for (size_t i = 0; i < 3; ++i) {
    bool sealed = false;
    EXPECT_EQ(ranks_on(i, 400, &sealed), placed_on(i, 2)) << "server " << i;
    EXPECT_TRUE(sealed);
    EXPECT_EQ(ranks_on(i, 350, &sealed), placed_on(i, 2)) << "server " << i;
    // PMCR_KEEP=2 (the default) on every server.
    for (const auto& v : at(i).connect().list_versions(job_name())) EXPECT_GE(v.version, 350u) << "server " << i;
    EXPECT_NE(at(i).log().find("sealed its part of version 400"), std::string::npos) << at(i).log();
  }
  const JobRun again = run(heat(), env(list(true), 2), 120s);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("restarted from version 400"), std::string::npos) << again.out;
  EXPECT_EQ(final_checksum(again.out), expected_) << again.out;
}

// Full checkpoints (not incremental) on two copies: each rank hashes its
// buffers once for both (SharedChecksummer), and each server's COMMIT
// verified that one checksum against the bytes it received: both servers
// list every region with the same checksum, and a relaunch with one of them
// gone restarts bit-identical from the other's copy.
TEST_F(Servers, FullCopiesCommitOneChecksumAndEitherRestartsBitIdentical) {
  start(2);
  std::vector<std::string> e = env(list(false), 2);
  e.push_back("PMCR_INCREMENTAL=0");
  const JobRun r = run(heat(), e, 120s);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected_) << r.out;
  std::map<std::pair<uint32_t, uint32_t>, std::vector<uint64_t>> sums;
  for (size_t i = 0; i < 2; ++i) {
    const auto listed = at(i).connect().list_regions(job_name(), 400);
    EXPECT_TRUE(listed.sealed) << "server " << i;
    for (const auto& g : listed.regions) sums[{g.rank, g.id}].push_back(g.checksum);
  }
  ASSERT_FALSE(sums.empty());
  for (const auto& [key, both] : sums) {
    ASSERT_EQ(both.size(), 2u) << "rank " << key.first << " id " << key.second << " is not on both servers";
    EXPECT_EQ(both[0], both[1]) << "rank " << key.first << " id " << key.second;
  }
  for (size_t gone = 0; gone < 2; ++gone) {
    at(gone).stop();
    const JobRun again = run(heat(), e, 120s);
    ASSERT_EQ(again.code, 0) << again.out;
    EXPECT_NE(again.out.find("restarted from version 400"), std::string::npos) << again.out;
    EXPECT_EQ(final_checksum(again.out), expected_) << again.out;
    ASSERT_TRUE(at(gone).start()) << at(gone).log();
    if (gone == 0) {
      // The relaunch wrote its versions to server 1 alone: put version 400
      // back as the newest on both before server 1 goes.
      for (size_t i = 0; i < 2; ++i)
        for (const auto& v : at(i).connect().list_versions(job_name()))
          if (v.version > 400) at(i).connect().remove(job_name(), v.version);
    }
  }
}

// PMCR_REPLICAS above the number of servers is a configuration error that
// says how many there are.
TEST_F(Servers, MoreCopiesThanServersIsRefused) {
  start(2);
  const JobRun r = run(heat(), env(list(false), 3), 60s);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("from 1 to 2, the number of servers in PMCR_SERVERS"), std::string::npos) << r.out;
}

// Each server in turn is SIGKILLed by its own fault point (before it seals
// its part of a version, in the middle of the seal, right after it), and
// its pool deleted: the job goes on checkpointing to the two others with a
// warning naming it, finishes with the reference result, and a relaunch
// restarts bit-identical from the survivors.
struct Loss {
  size_t server;
  const char* fault;
};
void PrintTo(const Loss& l, std::ostream* os) { *os << "server " << l.server << " at " << l.fault; }
class ServerLoss : public Servers, public ::testing::WithParamInterface<Loss> {};

TEST_P(ServerLoss, JobGoesOnWithTheOthersAndRestartsFromThem) {
  const Loss loss = GetParam();
  start(3);
  ServerProcess& victim = at(loss.server);
  lose_at(loss.server, loss.fault);
  const JobRun r = run(heat({"--sleep-ms", "2"}), env(list(false), 2), 180s);
  join_reaper();
  ASSERT_FALSE(victim.running()) << "the fault point " << loss.fault << " was never reached";
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected_) << r.out;
  EXPECT_NE(r.out.find("server " + victim.address() + " lost at version"), std::string::npos) << r.out;
  const JobRun again = run(heat(), env(list(true), 2), 120s);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("restarted from version 400"), std::string::npos) << again.out;
  EXPECT_EQ(final_checksum(again.out), expected_) << again.out;
}

INSTANTIATE_TEST_SUITE_P(Servers, ServerLoss,
                         ::testing::Values(Loss{0, "commit.state:5:kill"}, Loss{1, "seal.body:3:kill"},
                                           Loss{2, "seal.state:3:kill"}),
                         [](const ::testing::TestParamInfo<Loss>& i) {
                           return std::string(i.param.server == 0 ? "BeforeASeal" : i.param.server == 1 ? "DuringASeal" : "AfterASeal") +
                                  "Server" + std::to_string(i.param.server);
                         });

// One copy: a lost server takes its ranks' data with it. The relaunch
// fails, naming the versions and the server, instead of starting over.
TEST_F(Servers, OneCopyALostServersVersionsAreNamed) {
  start(2);
  const JobRun r = run(heat(), env(list(false), 1), 120s);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected_) << r.out;
  ServerProcess& lost = at(1);
  lost.kill9();
  const JobRun again = run(heat(), env(list(true), 1), 120s);
  EXPECT_NE(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("version 400 (2 ranks' data)"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("lost: " + lost.address()), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("final checksum"), std::string::npos) << again.out;
}

}  // namespace pmcr::test

namespace pmcr::test {

// A server lost at version 150 and back, empty, only after the job ended:
// `pmcr ls` shows the kept versions with one copy of two, `pmcr repair`
// writes the lost server's parts back (every region of its ranks, counted
// exactly) and they have two copies again; a relaunch that then loses
// another server restarts bit-identical, reading the ranks it held from the
// repaired copies.
TEST_F(Servers, RepairBringsTheKeptVersionsBackToTwoCopies) {
  start(3);
  lose_at(1, "seal.state:3:kill");
  const JobRun r = run(heat(), env(list(false), 2), 120s);
  join_reaper();
  ASSERT_EQ(r.code, 0) << r.out;
  ASSERT_EQ(final_checksum(r.out), expected_) << r.out;
  auto h = health();
  ASSERT_EQ(h.size(), 2u) << "PMCR_KEEP=2";
  for (const auto& [v, state] : h) EXPECT_EQ(state, std::make_pair(std::string("degraded"), size_t{1})) << v;
  // Back, empty.
  ServerProcess& back = at(1);
  back.env().pop_back();
  ASSERT_TRUE(back.start()) << back.log();
  int code = -1;
  const auto rep = cli({"repair", "--job", job_name(), "--replicas", "2"}, &code);
  EXPECT_EQ(code, 0) << rep.dump(2);
  ASSERT_EQ(rep["parts"].size(), 2u) << rep.dump(2);
  // Exactly the regions and bytes placement gives server 1, as a healthy
  // server holds them.
  uint64_t regions = 0, bytes = 0;
  const auto placed = placed_on(1, 2);
  for (uint64_t v : {350u, 400u}) {
    std::map<std::pair<uint32_t, uint32_t>, uint64_t> sizes;  // (rank, id) -> bytes, from the survivors
    for (size_t i : {0, 2})
      for (const auto& g : at(i).connect().list_regions(job_name(), v).regions)
        if (placed.count(g.rank)) sizes[{g.rank, g.id}] = g.size;
    regions += sizes.size();
    for (const auto& [key, size] : sizes) bytes += size;
  }
  EXPECT_EQ(rep["regions"].get<uint64_t>(), regions) << rep.dump(2);
  EXPECT_EQ(rep["bytes"].get<uint64_t>(), bytes) << rep.dump(2);
  EXPECT_EQ(back.connect().stat().regions, regions);
  EXPECT_LE(rep["sent"].get<uint64_t>(), bytes);
  h = health();
  for (const auto& [v, state] : h) EXPECT_EQ(state, std::make_pair(std::string("complete"), size_t{2})) << v;
  for (size_t i = 0; i < 3; ++i) {
    bool sealed = false;
    EXPECT_EQ(ranks_on(i, 400, &sealed), placed_on(i, 2)) << "server " << i;
  }
  // A second repair has nothing to do.
  const auto again = cli({"repair", "--job", job_name(), "--replicas", "2"}, &code);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(again["parts"].size(), 0u) << again.dump(2);
  EXPECT_EQ(again["healthy"], 2) << again.dump(2);
  // Server 0 lost now: its ranks come from their other copies, among them
  // the repaired ones.
  at(0).kill9();
  const JobRun relaunch = run(heat(), env(list(true), 2), 120s);
  ASSERT_EQ(relaunch.code, 0) << relaunch.out;
  EXPECT_NE(relaunch.out.find("restarted from version 400"), std::string::npos) << relaunch.out;
  EXPECT_EQ(final_checksum(relaunch.out), expected_) << relaunch.out;
}

// A server lost mid-run comes back (empty) while the job still runs: the
// job finds it again (PMCR_SERVER_RETRY) and writes its next checkpoints
// there, so the last versions have their two copies without a repair.
TEST_F(Servers, AServerBackMidRunGetsTheNextCheckpoints) {
  start(3);
  lose_at(2, "seal.state:2:kill");
  Background job(heat({"--sleep-ms", "10"}), env(list(false), 2));
  join_reaper();
  // Back, empty, started from this thread (a server started from a thread
  // that ends gets its parent-death signal).
  at(2).env().pop_back();
  ASSERT_TRUE(at(2).start()) << at(2).log();
  ASSERT_EQ(job.finish(180s), 0) << job.output();
  const std::string out = job.output();
  EXPECT_EQ(final_checksum(out), expected_) << out;
  EXPECT_NE(out.find("server " + at(2).address() + " lost at version 100"), std::string::npos) << out;
  EXPECT_NE(out.find("server " + at(2).address() + " answers again"), std::string::npos) << out;
  const auto h = health();
  ASSERT_EQ(h.count(400), 1u);
  EXPECT_EQ(h.at(400), std::make_pair(std::string("complete"), size_t{2}));
  bool sealed = false;
  EXPECT_EQ(ranks_on(2, 400, &sealed), placed_on(2, 2));
}

}  // namespace pmcr::test

namespace pmcr::test {

// pmcr-run over three servers with two copies: a rank killed, the relaunch
// (told the list in another order) resumes where the job left off, as
// pmcr-run says, from the parts placement put on each server.
TEST_F(Servers, PmcrRunRelaunchesFromThePartsOnEveryServer) {
  start(3);
  TempPath once("once");
  std::vector<std::string> argv = {PMCR_RUN, "--servers", list(false), "--job", job_name(),
                                   "--max-restarts", "3", "--delay", "0.1", "--"};
  const auto cmd = heat();
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  const JobRun r = run(argv, {"PMCR_REPLICAS=2", "PMCR_FAULT=ckpt.begin:3:kill", "PMCR_FAULT_RANK=2",
                              "PMCR_FAULT_ONCE=" + once.str()}, 240s);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("attempt 2 of 4: job " + job_name() + " restarts from version 100"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("heat2d: restarted from version 100"), std::string::npos) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected_) << r.out;
  for (size_t i = 0; i < 3; ++i) {
    bool sealed = false;
    EXPECT_EQ(ranks_on(i, 400, &sealed), placed_on(i, 2)) << "server " << i;
  }
}

}  // namespace pmcr::test

namespace pmcr::test {

// pmserver --peers (the job's servers) --replicas 2 repairs on its own: a
// server lost at version 150 (its pool deleted) and back empty after the
// job ended gets its parts of the kept versions back without a command.
TEST_F(Servers, ServersWithPeersRepairOnTheirOwn) {
  std::vector<uint16_t> ports;
  std::string peers;
  for (int i = 0; i < 3; ++i) {
    ports.push_back(tools::free_port());  // (the servers name each other before they start)
    peers += (peers.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(ports.back());
  }
  for (int i = 0; i < 3; ++i) {
    pools_.push_back(std::make_unique<TempPath>("pool" + std::to_string(i)));
    servers_.push_back(std::make_unique<ServerProcess>(
        ServerConfig(pools_.back()->str(), "256M", ports[static_cast<size_t>(i)], {},
                     {"--peers", peers, "--replicas", "2", "--repair-interval", "300ms"})));
    ASSERT_TRUE(servers_.back()->start()) << servers_.back()->log();
  }
  std::vector<std::string> addresses;
  for (const auto& srv : servers_) addresses.push_back(srv->address());
  order_ = placement::order(addresses);
  lose_at(1, "seal.state:3:kill");
  // (The servers repair every 300 ms while the job checkpoints: they leave
  // what the job is writing alone.)
  const JobRun r = run(heat({"--sleep-ms", "2"}), env(list(false), 2), 120s);
  join_reaper();
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(final_checksum(r.out), expected_) << r.out;
  ServerProcess& back = at(1);
  back.env().pop_back();
  ASSERT_TRUE(back.start()) << back.log();
  std::map<uint64_t, std::pair<std::string, size_t>> h;
  const auto until = std::chrono::steady_clock::now() + 60s;
  const auto healthy = [&] {
    h = health();
    if (h.size() != 2) return false;
    for (const auto& [v, state] : h)
      if (state != std::make_pair(std::string("complete"), size_t{2})) return false;
    return true;
  };
  while (!healthy() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(200ms);
  for (const auto& [v, state] : h) EXPECT_EQ(state, std::make_pair(std::string("complete"), size_t{2})) << v;
  bool sealed = false;
  EXPECT_EQ(ranks_on(1, 400, &sealed), placed_on(1, 2));
  std::string logs;
  for (const auto& srv : servers_) logs += srv->log();
  EXPECT_NE(logs.find("parts written back to 2 copies"), std::string::npos);
}

}  // namespace pmcr::test

namespace pmcr::test {

// The capacity tier: two servers (one copy) drain every sealed version into
// a directory; both are then lost with their pools and replaced by empty
// ones. A relaunch with PMCR_DRAIN restarts from the drained copy,
// bit-identical; with a drained file of the newest version damaged
// afterwards, the relaunch finds it by its checksum and restarts from the
// version before.
TEST_F(Servers, RestartFromTheDrainWhenEveryServerHoldingTheVersionIsLost) {
  char tmpl[] = "/tmp/pmcr-drain-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  struct Remove {
    std::string dir;
    ~Remove() { std::filesystem::remove_all(dir); }
  } remove{dir};
  for (int i = 0; i < 2; ++i) {
    pools_.push_back(std::make_unique<TempPath>("pool" + std::to_string(i)));
    servers_.push_back(std::make_unique<ServerProcess>(
        ServerConfig(pools_.back()->str(), "256M", 0, {}, {"--drain", dir, "--drain-rate", "0"})));
    ASSERT_TRUE(servers_.back()->start()) << servers_.back()->log();
  }
  std::vector<std::string> addresses;
  for (const auto& srv : servers_) addresses.push_back(srv->address());
  order_ = placement::order(addresses);
  const JobRun r = run(heat(), env(list(false), 1), 120s);
  ASSERT_EQ(r.code, 0) << r.out;
  ASSERT_EQ(final_checksum(r.out), expected_) << r.out;
  // Both parts of version 400 drained.
  const std::filesystem::path v400 = std::filesystem::path(dir) / job_name() / "400";
  const auto parts = [&](const std::filesystem::path& version) {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(version, ec))
      n += e.path().filename().string().rfind("pmcr-manifest.part-", 0) == 0;
    return n;
  };
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (parts(v400) < 2 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(50ms);
  ASSERT_EQ(parts(v400), 2u) << at(0).log() << at(1).log();
  ASSERT_EQ(parts(v400.parent_path() / "350"), 2u) << "version 350 was not drained before 400";
  // Every server lost, with its pool; empty ones in their place.
  for (size_t i = 0; i < 2; ++i) {
    servers_[i]->kill9();
    ::unlink(pools_[i]->str().c_str());
    ASSERT_TRUE(servers_[i]->start()) << servers_[i]->log();
  }
  std::vector<std::string> drain_env = env(list(true), 1);
  drain_env.push_back("PMCR_DRAIN=" + dir);
  const JobRun again = run(heat(), drain_env, 120s);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_NE(again.out.find("restarted from version 400"), std::string::npos) << again.out;
  EXPECT_EQ(final_checksum(again.out), expected_) << again.out;
  // pmcr ls says where each version lives: only in the drain now.
  const auto ls = cli({"ls", "--job", job_name(), "--drain", dir});
  bool seen = false;
  for (const auto& v : ls["versions"])
    if (v["version"] == 400) {
      seen = true;
      EXPECT_EQ(v["state"], "drained") << ls.dump(2);
      EXPECT_TRUE(v["drained"].get<bool>());
    }
  EXPECT_TRUE(seen) << ls.dump(2);
  // With a byte of version 400's drained copy damaged, the restart checks
  // every file first and falls back to version 350, drained too.
  for (size_t i = 0; i < 2; ++i) {
    servers_[i]->kill9();
    ::unlink(pools_[i]->str().c_str());
    ASSERT_TRUE(servers_[i]->start()) << servers_[i]->log();
  }
  {
    std::fstream f(v400 / "1" / "1", std::ios::in | std::ios::out | std::ios::binary);  // rank 1's grid
    f.seekg(100);
    const int c = f.get();
    f.seekp(100);
    f.put(static_cast<char>(~c));
  }
  const JobRun damaged = run(heat(), drain_env, 120s);
  ASSERT_EQ(damaged.code, 0) << damaged.out;
  EXPECT_NE(damaged.out.find("rank 1: " + (v400 / "1" / "1").string() + " does not match its checksum"), std::string::npos)
      << damaged.out;
  EXPECT_NE(damaged.out.find("the drained copy of version 400 in " + dir + " is damaged"), std::string::npos)
      << damaged.out;
  EXPECT_NE(damaged.out.find("restarted from version 350"), std::string::npos) << damaged.out;
  EXPECT_EQ(final_checksum(damaged.out), expected_) << damaged.out;
}

}  // namespace pmcr::test
