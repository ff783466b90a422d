#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "fuzz_protocol.hpp"
#include "protocol.hpp"

using namespace pmcr::proto;

namespace {

Request round_trip(const Request& in) {
  const auto bytes = encode(in);
  Request out;
  EXPECT_EQ(decode(bytes.data(), bytes.size(), &out), DecodeStatus::Ok);
  EXPECT_EQ(encode(out), bytes);
  return out;
}

Reply round_trip(const Reply& in) {
  const auto bytes = encode(in);
  Reply out;
  EXPECT_EQ(decode(bytes.data(), bytes.size(), &out), DecodeStatus::Ok);
  EXPECT_EQ(encode(out), bytes);
  return out;
}

}  // namespace

TEST(Protocol, HeaderIsExplicitLittleEndian) {
  const auto bytes = encode(Request{0x0102030405060708ull, Stat{}});
  ASSERT_EQ(bytes.size(), kHeaderSize);
  const std::vector<uint8_t> expect = {'P', 'M', 'C', 'R', 6, 0, 2, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(bytes, expect);
}

TEST(Protocol, RequestsRoundTrip) {
  auto c = round_trip(Request{9, Create{"job.a", 1ull << 40, 7, 0xffffffffu, 12345}});
  ASSERT_TRUE(std::holds_alternative<Create>(c.body));
  const auto& m = std::get<Create>(c.body);
  EXPECT_EQ(c.tag, 9u);
  EXPECT_EQ(m.job, "job.a");
  EXPECT_EQ(m.version, 1ull << 40);
  EXPECT_EQ(m.rank, 7u);
  EXPECT_EQ(m.id, 0xffffffffu);
  EXPECT_EQ(m.size, 12345u);
  auto d = round_trip(Request{10, Delete{"j", 3, true}});
  EXPECT_TRUE(std::get<Delete>(d.body).all_versions);
  auto rd = round_trip(Request{12, Read{7, 1u << 20, 8u << 20}});
  EXPECT_EQ(std::get<Read>(rd.body).length, 8u << 20);
  auto k = round_trip(Request{11, Commit{1, 2, 0xfedcba9876543210ull}});
  EXPECT_EQ(std::get<Commit>(k.body).checksum, 0xfedcba9876543210ull);
  for (const auto& bytes : pmcr::fuzz::sample_messages()) EXPECT_EQ(pmcr::fuzz::check_protocol(bytes.data(), bytes.size()), "");
}

TEST(Protocol, RepliesRoundTrip) {
  ListVersionsReply lv;
  lv.versions.push_back({"a", 1, true, 4, 8, 100, false, ""});
  lv.versions.push_back({"b", 2, false, 1, 1, 0, true, "damaged"});
  auto r = round_trip(Reply{Type::ListVersions, 5, 0, "", lv});
  const auto& got = std::get<ListVersionsReply>(r.body);
  ASSERT_EQ(got.versions.size(), 2u);
  EXPECT_EQ(got.versions[1].job, "b");
  EXPECT_FALSE(got.versions[1].sealed);
  EXPECT_TRUE(got.versions[1].quarantined);
  EXPECT_EQ(got.versions[1].reason, "damaged");
  auto o = round_trip(Reply{Type::Open, 6, 0, "", OpenReply{1, 2, 3, 4, std::vector<uint8_t>(300, 0xaa), 0, {}}});
  EXPECT_EQ(std::get<OpenReply>(o.body).rkey.size(), 300u);
  // An error reply carries the status and message, and no payload.
  auto e = round_trip(Reply{Type::Open, 7, -4, "no such region", Empty{}});
  EXPECT_EQ(e.status, -4);
  EXPECT_EQ(e.message, "no such region");
  EXPECT_TRUE(std::holds_alternative<Empty>(e.body));
}

TEST(Protocol, EventsRoundTripAndAreNeverRequestsOrReplies) {
  const Event ev{EventKind::Failed, "heat2d", 42, 0x5eed, false, 0, 0, "rank 2 did not renew its lease"};
  const auto bytes = encode(ev);
  Event got;
  ASSERT_EQ(decode(bytes.data(), bytes.size(), &got), DecodeStatus::Ok);
  EXPECT_EQ(got.kind, EventKind::Failed);
  EXPECT_EQ(got.job, "heat2d");
  EXPECT_EQ(got.attempt, 42u);
  EXPECT_EQ(got.instance, 0x5eedu);
  EXPECT_EQ(got.reason, "rank 2 did not renew its lease");
  Request req;
  Reply rep;
  EXPECT_EQ(decode(bytes.data(), bytes.size(), &req), DecodeStatus::BadType);
  EXPECT_EQ(decode(bytes.data(), bytes.size(), &rep), DecodeStatus::BadType);
  // A kind beyond the known ones, and a reply dressed as an event.
  auto bad = bytes;
  bad[kHeaderSize] = 9;
  EXPECT_EQ(decode(bad.data(), bad.size(), &got), DecodeStatus::BadValue);
  const auto reply = encode(Reply{Type::Watch, 0, 0, "", WatchReply{}});
  EXPECT_EQ(decode(reply.data(), reply.size(), &got), DecodeStatus::BadType);
  auto life = encode(Reply{Type::Watch, 3, 0, "", WatchReply{1, 2, Life::Ended, "", false, false, 0}});
  life[kHeaderSize + 4 + 4 + 16] = 4;  // status, message length, attempt, instance: then the life
  EXPECT_EQ(decode(life.data(), life.size(), &rep), DecodeStatus::BadValue);
}

TEST(Protocol, EveryTruncationIsRejected) {
  for (const auto& bytes : pmcr::fuzz::sample_messages()) {
    for (size_t n = 0; n < bytes.size(); ++n) {
      Request req;
      Reply rep;
      EXPECT_NE(decode(bytes.data(), n, &req), DecodeStatus::Ok) << "prefix " << n;
      EXPECT_NE(decode(bytes.data(), n, &rep), DecodeStatus::Ok) << "prefix " << n;
      Event ev;
      EXPECT_NE(decode(bytes.data(), n, &ev), DecodeStatus::Ok) << "prefix " << n;
    }
  }
}

TEST(Protocol, RejectsBadHeaders) {
  auto bytes = encode(Request{1, Stat{}});
  Request req;
  auto bad = bytes;
  bad[0] = 'X';
  EXPECT_EQ(decode(bad.data(), bad.size(), &req), DecodeStatus::BadMagic);
  bad = bytes;
  bad[4] = 1;  // the previous protocol version
  EXPECT_EQ(decode(bad.data(), bad.size(), &req), DecodeStatus::BadVersion);
  bad = bytes;
  bad[6] = 99;
  EXPECT_EQ(decode(bad.data(), bad.size(), &req), DecodeStatus::BadType);
  bad = bytes;
  bad[6] = 0x02;
  bad[7] = 0x80;  // a reply type where a request is expected
  EXPECT_EQ(decode(bad.data(), bad.size(), &req), DecodeStatus::BadType);
  bad = bytes;
  bad.push_back(0);  // a byte beyond the length field
  EXPECT_EQ(decode(bad.data(), bad.size(), &req), DecodeStatus::BadLength);
  bad = bytes;
  bad[20] = 1;  // reserved must be zero
  EXPECT_EQ(decode(bad.data(), bad.size(), &req), DecodeStatus::BadValue);
}

TEST(Protocol, RejectsOversizedAndLyingFields) {
  // A job name beyond 64 bytes.
  auto bytes = encode(Request{1, Create{std::string(65, 'x'), 1, 0, 0, 1}});
  Request req;
  EXPECT_EQ(decode(bytes.data(), bytes.size(), &req), DecodeStatus::FieldTooLong);
  // A string length that claims more than the message holds.
  bytes = encode(Request{1, ListVersions{"abc"}});
  bytes[kHeaderSize] = 0xff;
  EXPECT_EQ(decode(bytes.data(), bytes.size(), &req), DecodeStatus::FieldTooLong);
  bytes[kHeaderSize] = 60;  // within the limit, beyond the bytes
  EXPECT_EQ(decode(bytes.data(), bytes.size(), &req), DecodeStatus::Truncated);
  // A list count of a billion entries in a short reply must not allocate them.
  auto rep_bytes = encode(Reply{Type::ListVersions, 1, 0, "", ListVersionsReply{}});
  const size_t count_at = rep_bytes.size() - 4;
  rep_bytes[count_at + 3] = 0x3b;
  Reply rep;
  EXPECT_NE(decode(rep_bytes.data(), rep_bytes.size(), &rep), DecodeStatus::Ok);
  // A bool that is neither 0 nor 1.
  bytes = encode(Request{1, Delete{"j", 1, false}});
  bytes[bytes.size() - 9] = 7;  // all_versions, before the attempt
  EXPECT_EQ(decode(bytes.data(), bytes.size(), &req), DecodeStatus::BadValue);
  // An oversized request body.
  std::vector<uint8_t> big = encode(Request{1, Stat{}});
  big.resize(kHeaderSize + kMaxRequest + 1, 0);
  const uint32_t len = static_cast<uint32_t>(kMaxRequest + 1);
  for (int i = 0; i < 4; ++i) big[16 + i] = static_cast<uint8_t>(len >> (8 * i));
  EXPECT_EQ(decode(big.data(), big.size(), &req), DecodeStatus::FieldTooLong);
}

TEST(Protocol, RandomGarbageNeverDecodesInconsistently) {
  std::mt19937_64 rng(7);
  const auto samples = pmcr::fuzz::sample_messages();
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> bytes = samples[rng() % samples.size()];
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
    ASSERT_EQ(pmcr::fuzz::check_protocol(bytes.data(), bytes.size()), "");
  }
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> bytes(rng() % 200);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    ASSERT_EQ(pmcr::fuzz::check_protocol(bytes.data(), bytes.size()), "");
  }
}

// The fuzzer's seed corpus, replayed as an ordinary test.
TEST(ProtocolCorpus, SeedsPass) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(PMCR_CORPUS_DIR)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(pmcr::fuzz::check_protocol(bytes.data(), bytes.size()), "") << entry.path();
    ++n;
  }
  EXPECT_GE(n, 10u) << "seed corpus missing from " << PMCR_CORPUS_DIR;
}
