// Keys, proofs and the access table, without a network.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "access.hpp"
#include "auth.hpp"
#include "code_of.hpp"
#include "error.hpp"
#include "fuzz_auth.hpp"
#include "fuzz_protocol.hpp"

using namespace pmcr;
namespace proto = pmcr::proto;
using pmcr::test::code_of;

namespace {

std::string temp(const std::string& tag) {
  return "/dev/shm/pmcr-unit-auth-" + std::to_string(getpid()) + "-" + tag;
}

}  // namespace

TEST(Auth, KeyFilesRoundTripAndAreCheckedStrictly) {
  const std::string path = temp("key");
  ::unlink(path.c_str());
  const auth::Key k = auth::Key::generate();
  auth::write_key_file(path, k);
  EXPECT_TRUE(auth::read_key_file(path) == k);
  EXPECT_FALSE(auth::Key::generate() == k);
  EXPECT_EQ(code_of([&] { auth::write_key_file(path, k); }), PMCR_E_EXISTS);
  ::chmod(path.c_str(), 0640);
  EXPECT_EQ(code_of([&] { auth::read_key_file(path); }), PMCR_E_CONFIG);
  ::chmod(path.c_str(), 0400);
  EXPECT_NO_THROW(auth::read_key_file(path));
  ::unlink(path.c_str());
  EXPECT_EQ(code_of([&] { auth::read_key_file(path); }), PMCR_E_CONFIG);
  for (const std::string& bad : std::vector<std::string>{"", "pmcr-key-1 00", "pmcr-key-2 " + std::string(64, '0'),
                                "pmcr-key-1 " + std::string(63, '0') + "g", "pmcr-key-1 " + std::string(66, '0')})
    EXPECT_EQ(code_of([&] { auth::Key::parse(bad, "test"); }), PMCR_E_CONFIG) << bad;
  EXPECT_TRUE(auth::Key::parse(k.text(), "test") == k);
}

TEST(Auth, ProofsBindRoleNoncesAndPool) {
  const auth::Key k = auth::Key::generate();
  const proto::Nonce s = auth::make_nonce(), c = auth::make_nonce();
  const std::array<uint8_t, 16> uuid{1, 2, 3};
  const auto t = auth::transcript(auth::kClientRole, s, c, uuid);
  const auth::Mac p = auth::prove(k, t);
  EXPECT_TRUE(auth::check(k, t, p.data(), p.size()));
  EXPECT_FALSE(auth::check(auth::Key::generate(), t, p.data(), p.size())) << "another key";
  EXPECT_FALSE(auth::check(k, auth::transcript(auth::kServerRole, s, c, uuid), p.data(), p.size())) << "the other role";
  EXPECT_FALSE(auth::check(k, auth::transcript(auth::kClientRole, auth::make_nonce(), c, uuid), p.data(), p.size()))
      << "another server nonce (another connection)";
  EXPECT_FALSE(auth::check(k, auth::transcript(auth::kClientRole, s, auth::make_nonce(), uuid), p.data(), p.size()));
  EXPECT_FALSE(auth::check(k, auth::transcript(auth::kClientRole, s, c, {9}), p.data(), p.size())) << "another pool";
  EXPECT_FALSE(auth::check(k, t, p.data(), p.size() - 1)) << "a short proof";
  EXPECT_FALSE(auth::check(k, t, nullptr, 0));
  // The pool's MAC is under another subkey: never a valid proof.
  const auth::Mac m = auth::pool_mac(k, t.data(), t.size());
  EXPECT_NE(m, p);
  EXPECT_TRUE(auth::check_pool_mac(k, t.data(), t.size(), m.data()));
}

TEST(Access, EveryRequestTypeHasItsRule) {
  for (uint16_t t = 1; t <= proto::kLastType; ++t)
    EXPECT_EQ(static_cast<uint16_t>(server::rule_for(static_cast<proto::Type>(t)).type), t);
  EXPECT_EQ(server::rule_for(proto::Type::Hello).need, server::Need::Nothing);
  EXPECT_EQ(server::rule_for(proto::Type::Auth).need, server::Need::Nothing);
  EXPECT_EQ(server::rule_for(proto::Type::Delete).need, server::Need::Own);
  EXPECT_EQ(server::rule_for(proto::Type::Read).need, server::Need::Handle);
}

TEST(Access, OwnersAdminsAndStrangers) {
  const std::string path = temp("pool");
  ::unlink(path.c_str());
  {
    auto pool = server::Pool::open_or_create(path, 16ull << 20);
    server::Catalogue cat(pool);
    const server::Principal alice{1000, 1000, false, "alice"}, bob{1001, 1001, false, "bob"},
        root{0, 0, true, "root"};
    EXPECT_EQ(code_of([&] { server::authorize(nullptr, proto::Stat{}, cat); }), PMCR_E_AUTH);
    EXPECT_EQ(code_of([&] { server::authorize(nullptr, proto::Hello{}, cat); }), 0);
    EXPECT_EQ(code_of([&] { server::authorize(&alice, proto::Begin{"j"}, cat); }), 0);
    EXPECT_EQ(cat.job_owner("j"), 1000u) << "BEGIN claims a free name";
    for (const proto::RequestBody& body :
         std::vector<proto::RequestBody>{proto::Begin{"j"}, proto::Create{"j", 1, 0, 0, 1, 1}, proto::Seal{"j", 1, 1, 1, 1},
                                         proto::ListRegions{"j", 1}, proto::Open{"j", 1, 0, 0}, proto::Delete{"j", 1, false},
                                         proto::Abort{"j", 1}, proto::Verify{"j", 1}, proto::ListVersions{"j"},
                                         // the standby's: watching, leases, failing and taking over the job
                                         proto::Watch{"j", 0}, proto::Join{"j", 1, 0, 1, 1000}, proto::Renew{"j", 1},
                                         proto::Leave{"j", 1}, proto::Fail{"j", 7, ""}, proto::Begin{"j", 7, true}}) {
      EXPECT_EQ(code_of([&] { server::authorize(&bob, body, cat); }), PMCR_E_PERM) << body.index();
      EXPECT_EQ(code_of([&] { server::authorize(&alice, body, cat); }), 0) << body.index();
      EXPECT_EQ(code_of([&] { server::authorize(&root, body, cat); }), 0) << body.index();
    }
    EXPECT_EQ(code_of([&] { server::authorize(&bob, proto::ListVersions{""}, cat); }), 0) << "filtered, not refused";
    EXPECT_EQ(code_of([&] { server::authorize(&bob, proto::Read{1, 0, 1}, cat); }), 0) << "checked by the grants";
    EXPECT_TRUE(server::visible(alice, 1000u));
    EXPECT_FALSE(server::visible(bob, 1000u));
    EXPECT_TRUE(server::visible(root, server::kUnknownOwner));
    EXPECT_FALSE(server::visible(alice, server::kUnknownOwner));
    EXPECT_EQ(code_of([&] { server::authorize(&bob, proto::Begin{std::string(65, 'x')}, cat); }), PMCR_E_INVAL);
  }
  ::unlink(path.c_str());
}

// The auth fuzzer's seeds (the protocol's corpus and samples), replayed as an ordinary test.
TEST(AuthCorpus, SeedsPass) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(PMCR_CORPUS_DIR)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(pmcr::fuzz::check_auth(bytes.data(), bytes.size()), "") << entry.path();
    ++n;
  }
  for (const auto& bytes : pmcr::fuzz::sample_messages()) EXPECT_EQ(pmcr::fuzz::check_auth(bytes.data(), bytes.size()), "");
  // A victim's request is among them, and is checked.
  const auto del = proto::encode(proto::Request{1, proto::Delete{"victim", 0, true}});
  EXPECT_EQ(pmcr::fuzz::check_auth(del.data(), del.size()), "");
  EXPECT_GE(n, 10u);
}
