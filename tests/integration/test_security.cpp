// Authentication, authorisation and the pool's key, tried the way an
// untrusted client would: no credential, a wrong key, a replayed
// credential, another user, a handle used on another connection, a key
// file others can read, a pool under another key. Every refusal is
// asserted together with "no byte changed": the owner reads its data back
// bit for bit afterwards.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <nlohmann/json.hpp>

#include "auth.hpp"
#include "checksum.hpp"
#include "credential.hpp"
#include "error.hpp"
#include "munged.hpp"
#include "process.hpp"
#include "server_process.hpp"
#include "ucx_peers.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using pmcr::test::code_of;
using pmcr::test::message_of;
using pmcr::test::pattern;
using pmcr::test::ServerConfig;
using pmcr::test::ServerProcess;
using pmcr::test::TempPath;
using pmcr::test::UcxPeers;
namespace proto = pmcr::proto;

namespace {

void new_key(const std::string& path) {
  ::unlink(path.c_str());
  pmcr::auth::write_key_file(path, pmcr::auth::Key::generate());
}

template <class F>
bool wait_until(F&& done, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// The owner's job every test tries to reach.
constexpr const char* kJob = "secret";
const std::vector<uint8_t>& region(uint32_t id) {
  static const std::vector<uint8_t> r0 = pattern(1 << 20, 51), r1 = pattern(4096 + 17, 52);
  return id == 0 ? r0 : r1;
}

void write_secret(pmcr::client::Client& c) {
  c.begin(kJob);
  for (uint32_t id = 0; id < 2; ++id) c.write_region(kJob, 1, 0, id, region(id).data(), region(id).size());
  c.seal(kJob, 1, 1, 2);
}

void expect_untouched(pmcr::client::Client& c) {
  const auto versions = c.list_versions(kJob);
  ASSERT_EQ(versions.size(), 1u) << "versions of the job appeared or went";
  EXPECT_TRUE(versions[0].sealed);
  EXPECT_EQ(versions[0].nregions, 2u);
  for (uint32_t id = 0; id < 2; ++id) {
    std::vector<uint8_t> got(region(id).size());
    c.read_region(kJob, 1, 0, id, got.data(), got.size());
    EXPECT_EQ(got, region(id)) << "region " << id << " changed";
  }
}

// A server that authenticates with a key, holding the owner's job.
class KeyServer : public ::testing::Test {
 protected:
  void SetUp() override {
    new_key(key_.str());
    ServerConfig cfg(pool_.str(), "128M");
    cfg.key_file = key_.str();
    server_ = std::make_unique<ServerProcess>(cfg);
    ASSERT_TRUE(server_->start()) << server_->log();
    auto c = server_->connect();
    write_secret(c);
  }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "---- pmserver log ----\n" << server_->log();
  }
  void expect_untouched_now() {
    auto c = server_->connect();
    expect_untouched(c);
  }
  // The reply of TAG on PEERS, waiting for it.
  proto::Reply reply(UcxPeers& peers, uint64_t tag) {
    std::optional<proto::Reply> r;
    EXPECT_TRUE(wait_until(
        [&] {
          peers.progress_for(5ms);
          return (r = peers.reply(tag)).has_value();
        },
        10s))
        << "no reply to tag " << tag;
    return r ? *r : proto::Reply{};
  }
  // HELLO with NONCE on peer I; returns the server's reply.
  proto::HelloReply hello(UcxPeers& peers, size_t i, uint64_t tag, const proto::Nonce& nonce) {
    peers.send(i, proto::encode(proto::Request{tag, proto::Hello{"attacker", 1, nonce}}));
    const proto::Reply r = reply(peers, tag);
    EXPECT_EQ(r.status, 0) << r.message;
    const auto* h = std::get_if<proto::HelloReply>(&r.body);
    return h ? *h : proto::HelloReply{};
  }

  TempPath pool_{"pool"}, key_{"key"}, other_key_{"other-key"};
  std::unique_ptr<ServerProcess> server_;
};

}  // namespace

TEST_F(KeyServer, NoCredentialIsRefused) {
  // A client without the key, or one that offers none.
  auto o = server_->client_options();
  o.credential = pmcr::client::Credential{};
  EXPECT_EQ(code_of([&] { pmcr::client::Client c(o); }), PMCR_E_AUTH);
  EXPECT_NE(message_of([&] { pmcr::client::Client c(o); }).find("PMCR_KEY_FILE"), std::string::npos);
  o.credential = pmcr::client::Credential::from("none", "", "");  // refused by the client itself
  EXPECT_EQ(code_of([&] { pmcr::client::Client c(o); }), PMCR_E_AUTH);

  // A hand-made client that skips AUTH: every request is refused.
  UcxPeers peers;
  ASSERT_EQ(peers.connect(server_->address(), 1, false, 200ms), 1u);
  const auto h = hello(peers, 0, 1, pmcr::auth::make_nonce());
  EXPECT_EQ(h.auth, proto::AuthMethod::Key);
  const std::vector<proto::RequestBody> requests = {
      proto::Stat{},          proto::ListVersions{""},        proto::ListRegions{kJob, 1}, proto::Open{kJob, 1, 0, 0},
      proto::Delete{kJob, 0, true}, proto::Begin{kJob},       proto::Create{kJob, 2, 0, 0, 4096, 1},
      proto::Verify{kJob, 1}, proto::Read{0x100000001ull, 0, 16}, proto::Abort{kJob, 1}, proto::Seal{kJob, 1, 1, 2, 1},
      proto::Commit{0x100000001ull, 16, 0}, proto::Close{0x100000001ull}};
  uint64_t tag = 10;
  for (const auto& body : requests) peers.send(0, proto::encode(proto::Request{tag++, body}));
  for (uint64_t t = 10; t < tag; ++t) {
    const proto::Reply r = reply(peers, t);
    EXPECT_EQ(r.status, PMCR_E_AUTH) << proto::type_name(r.type) << ": " << r.message;
  }
  // And an AUTH that claims the wrong method ends the connection.
  peers.send(0, proto::encode(proto::Request{100, proto::Auth{proto::AuthMethod::None, {}}}));
  EXPECT_EQ(reply(peers, 100).status, PMCR_E_AUTH);
  EXPECT_TRUE(wait_until([&] { peers.progress_for(5ms); return peers.failed(0); }, 10s)) << "connection left open";
  expect_untouched_now();
}

TEST_F(KeyServer, WrongKeyIsRefused) {
  new_key(other_key_.str());
  auto o = server_->client_options();
  o.credential = pmcr::client::Credential::from("key", other_key_.str(), "");
  EXPECT_EQ(code_of([&] { pmcr::client::Client c(o); }), PMCR_E_AUTH);
  EXPECT_NE(server_->log().find("authentication failed"), std::string::npos);
  // A guess of the proof, by hand: one guess per connection.
  UcxPeers peers;
  ASSERT_EQ(peers.connect(server_->address(), 1, false, 200ms), 1u);
  hello(peers, 0, 1, pmcr::auth::make_nonce());
  std::vector<uint8_t> guess(32);
  pmcr::auth::random_bytes(guess.data(), guess.size());
  peers.send(0, proto::encode(proto::Request{2, proto::Auth{proto::AuthMethod::Key, guess}}));
  peers.send(0, proto::encode(proto::Request{3, proto::Delete{kJob, 0, true}}));
  EXPECT_EQ(reply(peers, 2).status, PMCR_E_AUTH);
  EXPECT_TRUE(wait_until([&] { peers.progress_for(5ms); return peers.failed(0); }, 10s)) << "connection left open";
  EXPECT_FALSE(peers.reply(3) && peers.reply(3)->status == 0) << "a DELETE after a failed AUTH was served";
  expect_untouched_now();
}

// A valid AUTH captured on one connection is worth nothing on another,
// even one that says HELLO with the same client nonce.
TEST_F(KeyServer, ReplayedCredentialIsRefused) {
  const auto key = pmcr::auth::read_key_file(key_.str());
  UcxPeers peers;
  ASSERT_EQ(peers.connect(server_->address(), 2, false, 200ms), 2u);
  const proto::Nonce mine = pmcr::auth::make_nonce();
  const auto h0 = hello(peers, 0, 1, mine);
  const auto proof =
      pmcr::auth::prove(key, pmcr::auth::transcript(pmcr::auth::kClientRole, h0.nonce, mine, h0.pool_uuid));
  const proto::Auth captured{proto::AuthMethod::Key, std::vector<uint8_t>(proof.begin(), proof.end())};
  peers.send(0, proto::encode(proto::Request{2, captured}));
  ASSERT_EQ(reply(peers, 2).status, 0) << "the genuine AUTH";

  const auto h1 = hello(peers, 1, 11, mine);
  EXPECT_NE(h1.nonce, h0.nonce) << "the server's nonce must be fresh per connection";
  peers.send(1, proto::encode(proto::Request{12, captured}));
  peers.send(1, proto::encode(proto::Request{13, proto::Delete{kJob, 0, true}}));
  const proto::Reply r = reply(peers, 12);
  EXPECT_EQ(r.status, PMCR_E_AUTH) << r.message;
  EXPECT_TRUE(wait_until([&] { peers.progress_for(5ms); return peers.failed(1); }, 10s));
  EXPECT_FALSE(peers.reply(13) && peers.reply(13)->status == 0) << "the replayed connection deleted the job";
  expect_untouched_now();
}

// Handles (and what they translate to) are valid only on the connection
// they were given to: another connection of the same principal may not
// read through, write into, commit or close them.
TEST_F(KeyServer, HandlesAreValidOnlyOnTheirConnection) {
  auto a = server_->connect();
  auto b = server_->connect();
  const auto src = a.open(kJob, 1, 0, 0);
  proto::Reply r = b.raw_request(proto::encode(proto::Request{900, proto::Read{src.handle, 0, 4096}}), 900);
  EXPECT_EQ(r.status, PMCR_E_NOT_FOUND) << r.message;
  r = b.raw_request(proto::encode(proto::Request{901, proto::Close{src.handle}}), 901);
  EXPECT_EQ(r.status, PMCR_E_NOT_FOUND) << r.message;

  a.begin("w");
  const auto data = pattern(64 << 10, 7);
  const auto target = a.create("w", 1, 0, 0, data.size());
  const std::vector<uint8_t> junk(data.size(), 0xee);
  const auto header = proto::encode(proto::DataHeader{target.handle, 0});
  b.raw_data(std::vector<uint8_t>(header.begin(), header.end()), junk);
  r = b.raw_request(proto::encode(proto::Request{902, proto::Commit{target.handle, data.size(), pmcr::checksum(junk.data(), junk.size())}}), 902);
  EXPECT_NE(r.status, 0) << "another connection committed the region";
  EXPECT_TRUE(wait_until([&] { return server_->log().find("holds no region with that handle") != std::string::npos; }, 10s))
      << "the foreign data was not refused by the grant check";
  a.put(target, data.data());
  a.commit(target, pmcr::checksum(data.data(), data.size()));
  a.seal("w", 1, 1, 1);
  std::vector<uint8_t> got(data.size());
  a.read_region("w", 1, 0, 0, got.data(), got.size());
  EXPECT_EQ(got, data) << "foreign bytes landed in the region";
  std::vector<uint8_t> secret(src.size);
  a.get(src, secret.data());
  EXPECT_EQ(secret, region(0));
  a.close(src);
  expect_untouched_now();
}

TEST(Security, KeyFileOthersCanReadIsRefused) {
  TempPath key("key"), pool("pool");
  new_key(key.str());
  ASSERT_EQ(::chmod(key.str().c_str(), 0644), 0);
  const std::string why = message_of([&] { pmcr::client::Credential::from("key", key.str(), ""); });
  EXPECT_NE(why.find("chmod 600"), std::string::npos) << why;
  EXPECT_EQ(code_of([&] { pmcr::auth::read_key_file(key.str()); }), PMCR_E_CONFIG);
  ServerConfig cfg(pool.str(), "64M");
  cfg.key_file = key.str();
  ServerProcess server(cfg);
  EXPECT_FALSE(server.start());
  EXPECT_NE(server.log().find("chmod 600"), std::string::npos) << server.log();
  EXPECT_FALSE(fs::exists(pool.str())) << "a pool was made before the key was checked";
  // A key is never written over.
  EXPECT_EQ(code_of([&] { pmcr::auth::write_key_file(key.str(), pmcr::auth::Key::generate()); }), PMCR_E_EXISTS);
  std::string out, err;
  EXPECT_NE(pmcr::test::run_cli({"keygen", key.str()}, &out, &err), 0);
  ::unlink(key.str().c_str());
  ASSERT_EQ(pmcr::test::run_cli({"keygen", key.str()}, &out, &err), 0) << err;
  struct stat st {};
  ASSERT_EQ(::stat(key.str().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NO_THROW(pmcr::auth::read_key_file(key.str()));
}

// The pool header carries a MAC under the server's key: a pool is served
// only by a server that holds its key.
TEST(Security, PoolUnderAnotherKeyIsRefused) {
  TempPath pool("pool"), key1("key1"), key2("key2");
  new_key(key1.str());
  new_key(key2.str());
  const auto start = [&](const std::string& key, std::vector<std::string> args = {}) {
    ServerConfig cfg(pool.str(), "64M");
    cfg.key_file = key;
    cfg.args = std::move(args);
    return std::make_unique<ServerProcess>(cfg);
  };
  {
    auto s = start(key1.str());
    ASSERT_TRUE(s->start()) << s->log();
    auto c = s->connect();
    write_secret(c);
  }
  {
    auto s = start(key2.str());
    EXPECT_FALSE(s->start());
    EXPECT_NE(s->log().find("does not verify under the key"), std::string::npos) << s->log();
  }
  {
    auto s = start("");  // no key at all
    EXPECT_FALSE(s->start());
    EXPECT_NE(s->log().find("is bound to a key"), std::string::npos) << s->log();
  }
  {
    auto s = start(key2.str(), {"--adopt-pool"});  // adoption never overrides another key
    EXPECT_FALSE(s->start());
  }
  {
    auto s = start(key1.str());
    ASSERT_TRUE(s->start()) << s->log();
    auto c = s->connect();
    expect_untouched(c);
  }
}

TEST(Security, PoolWithoutKeyIsAdoptedOnlyWhenAsked) {
  TempPath pool("pool"), key("key");
  new_key(key.str());
  {
    ServerProcess s({pool.str(), "64M"});
    ASSERT_TRUE(s.start()) << s.log();
    auto c = s.connect();
    write_secret(c);
  }
  ServerConfig cfg(pool.str(), "64M");
  cfg.key_file = key.str();
  {
    ServerProcess s(cfg);
    EXPECT_FALSE(s.start());
    EXPECT_NE(s.log().find("--adopt-pool"), std::string::npos) << s.log();
  }
  cfg.args = {"--adopt-pool"};
  {
    ServerProcess s(cfg);
    ASSERT_TRUE(s.start()) << s.log();
    auto c = s.connect();
    expect_untouched(c);
  }
  {
    ServerProcess s({pool.str(), "64M"});  // now bound: not without its key
    EXPECT_FALSE(s.start());
  }
}

// No authentication is the default only on loopback; anywhere else
// pmserver refuses to start and says how to choose.
TEST(Security, NoAuthenticationOnlyOnLoopback) {
  TempPath pool("pool"), key("key");
  const auto refused = [&](std::vector<std::string> args, const std::string& expect) {
    std::vector<std::string> argv = {PMSERVER_PATH, "--pool", pool.str(), "--size", "64M"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = pmcr::tools::run(argv, {}, 30s, true);
    EXPECT_NE(r.code, 0) << "pmserver started with " << ::testing::PrintToString(args);
    EXPECT_NE(r.out.find(expect), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(pool.str())) << "a pool was made before the refusal";
  };
  refused({"--listen", "0.0.0.0:0"}, "not a loopback address");
  refused({"--listen", "0.0.0.0:0", "--auth", "none"}, "--insecure");
  refused({"--listen", "127.0.0.1:0", "--auth", "key"}, "--key-file");
  refused({"--listen", "127.0.0.1:0", "--auth", "munge"}, "--key-file");
  refused({"--listen", "127.0.0.1:0", "--auth", "kerberos"}, "munge, key or none");
}

// ---- MUNGE: real users ----

namespace {

class MungeServer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = pmcr::test::Munged::unavailable(); !why.empty()) GTEST_SKIP() << why;
    munged_ = std::make_unique<pmcr::test::Munged>();
    ASSERT_TRUE(munged_->ok()) << munged_->error();
    new_key(key_.str());
    ServerConfig cfg(pool_.str(), "128M");
    cfg.args = {"--auth", "munge", "--key-file", key_.str(), "--munge-socket", munged_->socket()};
    server_ = std::make_unique<ServerProcess>(cfg);
    ASSERT_TRUE(server_->start()) << server_->log();
    // The other users run a copy of the pmcr tool they can reach, in a
    // directory of their own.
    dir_ = fs::path("/tmp") / ("pmcr-security-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ::chmod(dir_.c_str(), 0755);
    cli_ = (dir_ / "pmcr").string();
    fs::copy_file(PMCR_CLI_PATH, cli_);
    ::chmod(cli_.c_str(), 0755);
  }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "---- pmserver log ----\n" << server_->log();
    if (HasFailure() && munged_) std::cerr << "---- munged log ----\n" << munged_->log();
    server_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  // The pmcr tool as USER (nullptr: this process's, root), with munge.
  pmcr::tools::RunResult as(const pmcr::test::TestUser* user, std::vector<std::string> args) {
    std::vector<std::string> argv;
    if (user)
      argv = {"setpriv", "--reuid=" + std::to_string(user->uid), "--regid=" + std::to_string(user->gid),
              "--clear-groups", "--"};
    argv.push_back(cli_);
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--server", server_->address()});
    return pmcr::tools::run(argv, {"PMCR_AUTH=munge", "PMCR_MUNGE_SOCKET=" + munged_->socket()}, 60s, false);
  }
  // A directory USER owns.
  fs::path dir_for(const pmcr::test::TestUser& user, const std::string& name) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    EXPECT_EQ(::chown(d.c_str(), user.uid, user.gid), 0);
    return d;
  }
  pmcr::client::Options root_options() {
    auto o = server_->client_options();
    o.credential = pmcr::client::Credential::from("munge", "", munged_->socket());
    return o;
  }

  std::unique_ptr<pmcr::test::Munged> munged_;
  TempPath pool_{"pool"}, key_{"key"};
  std::unique_ptr<ServerProcess> server_;
  fs::path dir_;
  std::string cli_;
};

void write_file(const fs::path& p, const std::vector<uint8_t>& data) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ::chmod(p.c_str(), 0644);
}

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

// A job belongs to the user who made it: another user can neither see it
// nor read, write, seal or delete it; the owner and root (an admin) can.
TEST_F(MungeServer, AnotherUserCannotTouchAJob) {
  const auto alice = pmcr::test::test_user("pmcr-test-alice");
  const auto bob = pmcr::test::test_user("pmcr-test-bob");
  const fs::path in = dir_ / "in";
  write_file(in / "0" / "0", region(0));
  write_file(in / "0" / "1", region(1));
  for (const auto& d : {in, in / "0"}) ::chmod(d.c_str(), 0755);
  auto r = as(&alice, {"import", "--job", kJob, "--version", "1", in.string()});
  ASSERT_EQ(r.code, 0) << r.out << r.err;

  // Bob: sees nothing of it, and every request on it is refused.
  r = as(&bob, {"ls", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find(kJob), std::string::npos) << "bob's listing shows alice's job: " << r.out;
  const fs::path bob_out = dir_for(bob, "bob-out");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"ls", "--job", kJob},
           {"export", "--job", kJob, (bob_out / "x").string()},
           {"rm", "--job", kJob},
           {"rm", "--job", kJob, "--version", "1"},
           {"import", "--job", kJob, "--version", "2", in.string()},
           {"watch", "--job", kJob, "--count", "1", "--timeout", "1"}}) {
    r = as(&bob, args);
    EXPECT_NE(r.code, 0) << ::testing::PrintToString(args) << " succeeded for bob";
    EXPECT_NE(r.err.find("belongs to another owner"), std::string::npos) << ::testing::PrintToString(args) << ": " << r.err;
  }
  // Bob's own job is his: alice cannot touch it either.
  r = as(&bob, {"import", "--job", "bobs", "--version", "1", in.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  r = as(&alice, {"rm", "--job", "bobs"});
  EXPECT_NE(r.err.find("belongs to another owner"), std::string::npos) << r.err;

  // Alice still has every byte; root sees both jobs.
  const fs::path alice_out = dir_for(alice, "alice-out");
  r = as(&alice, {"export", "--job", kJob, (alice_out / "x").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_file(alice_out / "x" / "0" / "0"), region(0));
  EXPECT_EQ(read_file(alice_out / "x" / "0" / "1"), region(1));
  r = as(nullptr, {"ls", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(kJob), std::string::npos);
  EXPECT_NE(r.out.find("bobs"), std::string::npos);
  pmcr::client::Client root(root_options());
  EXPECT_TRUE(root.identity().admin);
  EXPECT_EQ(root.identity().uid, 0u);
  expect_untouched(root);
}

// A MUNGE credential binds the connection's nonces: captured and sent on
// another connection, it is refused.
TEST_F(MungeServer, ReplayedCredentialIsRefused) {
  UcxPeers peers;
  ASSERT_EQ(peers.connect(server_->address(), 2, false, 200ms), 2u);
  const auto cred = pmcr::client::Credential::from("munge", "", munged_->socket());
  const auto hello_on = [&](size_t i, uint64_t tag, const proto::Nonce& nonce) {
    peers.send(i, proto::encode(proto::Request{tag, proto::Hello{"replayer", 1, nonce}}));
    std::optional<proto::Reply> r;
    EXPECT_TRUE(wait_until([&] { peers.progress_for(5ms); return (r = peers.reply(tag)).has_value(); }, 10s));
    return r ? std::get<proto::HelloReply>(r->body) : proto::HelloReply{};
  };
  const proto::Nonce mine = pmcr::auth::make_nonce();
  const auto h0 = hello_on(0, 1, mine);
  ASSERT_EQ(h0.auth, proto::AuthMethod::Munge);
  const proto::Auth captured = pmcr::client::make_auth(cred, server_->address(), h0, mine);
  hello_on(1, 11, mine);
  peers.send(1, proto::encode(proto::Request{12, captured}));
  std::optional<proto::Reply> r;
  ASSERT_TRUE(wait_until([&] { peers.progress_for(5ms); return (r = peers.reply(12)).has_value(); }, 10s));
  EXPECT_EQ(r->status, PMCR_E_AUTH) << r->message;
  // Nor is it good afterwards on the connection it was made for: munged
  // remembers a credential it decoded once.
  peers.send(0, proto::encode(proto::Request{2, captured}));
  ASSERT_TRUE(wait_until([&] { peers.progress_for(5ms); return (r = peers.reply(2)).has_value(); }, 10s));
  EXPECT_EQ(r->status, PMCR_E_AUTH) << r->message;
  EXPECT_NE(r->message.find("already used"), std::string::npos) << r->message;
}

// A client that holds a key does not settle for a server that proves
// nothing (one that asks for no credential, e.g. a listener put in the real
// server's place), unless PMCR_AUTH says so.
TEST(Security, AClientWithAKeyRefusesAServerThatAsksForLess) {
  TempPath pool("pool"), key("key");
  new_key(key.str());
  ServerProcess server({pool.str(), "64M"});  // --auth none (loopback)
  ASSERT_TRUE(server.start()) << server.log();
  auto o = server.client_options();
  o.credential = pmcr::client::Credential::from("", key.str(), "");
  const std::string why = message_of([&] { pmcr::client::Client c(o); });
  EXPECT_NE(why.find("PMCR_KEY_FILE is set"), std::string::npos) << why;
  o.credential = pmcr::client::Credential::from("none", key.str(), "");
  EXPECT_NO_THROW(pmcr::client::Client c(o));
}

// A peer that says HELLO and then stalls before AUTH holds its connection
// only until --hello-timeout; an AUTH that lies about its credential's size
// is malformed.
TEST(Security, APeerThatStallsBeforeAuthIsDropped) {
  TempPath pool("pool");
  ServerProcess server(ServerConfig(pool.str(), "64M", 0, {}, {"--hello-timeout", "1s"}));
  ASSERT_TRUE(server.start()) << server.log();
  UcxPeers peers;
  ASSERT_EQ(peers.connect(server.address(), 2, false, 200ms), 2u);
  peers.send(0, proto::encode(proto::Request{1, proto::Hello{"staller", 1, pmcr::auth::make_nonce()}}));
  std::vector<uint8_t> lie = proto::encode(proto::Request{2, proto::Auth{proto::AuthMethod::None, {}}});
  lie[lie.size() - 4] = 0xff;  // an empty credential whose length field says 255 bytes follow
  peers.send(1, proto::encode(proto::Request{3, proto::Hello{"liar", 1, pmcr::auth::make_nonce()}}));
  peers.send(1, lie);
  EXPECT_TRUE(wait_until([&] { peers.progress_for(5ms); return peers.reply(2).has_value(); }, 10s));
  if (peers.reply(2)) {
    EXPECT_EQ(peers.reply(2)->status, PMCR_E_PROTOCOL) << peers.reply(2)->message;
  }
  EXPECT_TRUE(wait_until([&] { peers.progress_for(5ms); return peers.failed(0) && peers.failed(1); }, 10s))
      << "connections that never authenticated are still open";
  EXPECT_NE(server.log().find("no HELLO and AUTH within the time limit"), std::string::npos) << server.log();
  auto c = server.connect();
  EXPECT_NO_THROW(c.stat());
}

// munged gone: AUTH is refused saying so, within a bound, and the server
// goes on serving the connections it has.
TEST_F(MungeServer, MungedGoneRefusesAuthQuickly) {
  pmcr::client::Client root(root_options());
  UcxPeers peers;
  ASSERT_EQ(peers.connect(server_->address(), 1, false, 200ms), 1u);
  const proto::Nonce mine = pmcr::auth::make_nonce();
  peers.send(0, proto::encode(proto::Request{1, proto::Hello{"late", 1, mine}}));
  std::optional<proto::Reply> h;
  ASSERT_TRUE(wait_until([&] { peers.progress_for(5ms); return (h = peers.reply(1)).has_value(); }, 10s));
  const proto::Auth auth = pmcr::client::make_auth(pmcr::client::Credential::from("munge", "", munged_->socket()),
                                                   server_->address(), std::get<proto::HelloReply>(h->body), mine);
  munged_.reset();  // stopped by its pid
  const auto t0 = std::chrono::steady_clock::now();
  peers.send(0, proto::encode(proto::Request{2, auth}));
  std::optional<proto::Reply> r;
  ASSERT_TRUE(wait_until([&] { peers.progress_for(5ms); return (r = peers.reply(2)).has_value(); }, 30s));
  EXPECT_EQ(r->status, PMCR_E_AUTH) << r->message;
  EXPECT_NE(r->message.find("munged"), std::string::npos) << r->message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
  EXPECT_NO_THROW(root.stat()) << "an authenticated connection stopped being served";
}
