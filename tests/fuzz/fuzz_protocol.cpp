#include "fuzz_protocol.hpp"

#include "protocol.hpp"

namespace pmcr::fuzz {

std::string check_protocol(const uint8_t* data, size_t size) {
  proto::Request req;
  if (proto::decode(data, size, &req) == proto::DecodeStatus::Ok) {
    const auto again = proto::encode(req);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data))
      return "request decodes but does not re-encode to the same bytes";
  }
  proto::Reply rep;
  if (proto::decode(data, size, &rep) == proto::DecodeStatus::Ok) {
    const auto again = proto::encode(rep);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data))
      return "reply decodes but does not re-encode to the same bytes";
  }
  proto::Event ev;
  if (proto::decode(data, size, &ev) == proto::DecodeStatus::Ok) {
    const auto again = proto::encode(ev);
    if (again.size() != size || !std::equal(again.begin(), again.end(), data))
      return "event decodes but does not re-encode to the same bytes";
  }
  proto::DataHeader dh;
  if (proto::decode(data, size, &dh) == proto::DecodeStatus::Ok) {
    const auto again = proto::encode(dh);
    if (!std::equal(again.begin(), again.end(), data)) return "data header decodes but does not re-encode to the same bytes";
  }
  proto::Header h;
  (void)proto::decode_header(data, size, &h);
  return "";
}

std::vector<std::vector<uint8_t>> sample_messages() {
  using namespace proto;
  std::vector<std::vector<uint8_t>> out;
  const std::vector<RequestBody> requests = {
      Hello{"pmcr@node1", 4242, {7, 7, 7}}, Stat{}, Create{"heat2d", 7, 3, 1, 1 << 20, 1764093540123456789ull},
      Create{"heat2d", 8, 3, 1, 1 << 20, 1764093540123456789ull, 1 << 16, true, 7},
      Create{"heat2d", 9, 3, 1, 1 << 20, 17, 1 << 20, false, 0, 8, 6, 3},
      Commit{0x100000002ull, 1 << 20, 0xabcdef}, Seal{"heat2d", 7, 4, 8, 1764093540123456789ull}, ListVersions{""},
      ListRegions{"heat2d", 7}, Open{"heat2d", 7, 3, 1}, Close{0x100000002ull}, Delete{"heat2d", 0, true},
      Read{0x100000002ull, 0, 1 << 20}, Begin{"heat2d"}, Abort{"heat2d", 7}, Verify{"heat2d", 7},
      Auth{AuthMethod::Key, std::vector<uint8_t>(32, 0x5a)}, Auth{AuthMethod::Munge, {'M', 'U', 'N', 'G', 'E', ':'}},
      RegionCreate{"heat2d", "state/grid", 1 << 20, 2}, RegionOpen{"heat2d", "state/grid"},
      RegionClear{0x8000000000000001ull}, RegionCommit{0x8000000000000001ull, 12345},
      RegionStat{0x8000000000000002ull}, RegionRead{0x8000000000000002ull, 3, 4096, 1 << 20},
      RegionChanged{0x8000000000000002ull, 2, 3}, RegionRemove{"heat2d", "state/grid"},
      Begin{"heat2d", 0x5eed5eed5eed5eedull, true}, Delete{"heat2d", 7, false, 1764093540123456789ull},
      Join{"heat2d", 1764093540123456789ull, 3, 4, 3000}, Renew{"heat2d", 1764093540123456789ull},
      Leave{"heat2d", 1764093540123456789ull}, Watch{"heat2d", 0x5eed5eed5eed5eedull},
      Fail{"heat2d", 0x5eed5eed5eed5eedull, "mpirun exited with code 137"}};
  uint64_t tag = 1;
  for (const auto& b : requests) out.push_back(encode(Request{tag++, b}));
  HelloReply hello;
  hello.pool_uuid[0] = 1;
  hello.pool_size = 1ull << 30;
  hello.server_version = "0.1.0";
  hello.rma = true;
  hello.transport = "rc_mlx5";
  hello.auth = AuthMethod::Munge;
  hello.nonce[31] = 0xee;
  StatReply stat;
  stat.pool_size = 1ull << 30;
  stat.pool_path = "/dev/shm/pool";
  const std::vector<std::pair<Type, ReplyBody>> replies = {
      {Type::Hello, hello},
      {Type::Stat, stat},
      {Type::Create, CreateReply{5, 0x7f0000001000ull, {1, 2, 3, 4}, true}},
      {Type::Open, OpenReply{5, 0x7f0000001000ull, 4096, 99, {9, 8, 7}, 1 << 20, {1, 2, 3}}},
      {Type::RegionCreate, RegionReply{0x8000000000000001ull, 3, 12345, 1 << 20, 2}},
      {Type::RegionChanged, RangesReply{{{0, 4096}, {1 << 20, 1 << 20}}}},
      {Type::ListVersions, ListVersionsReply{{{"heat2d", 7, true, 4, 8, 1 << 26, false, "", 4},
                                               {"other", 1, false, 1, 1, 0, false, "", 1},
                                               {"part", 3, true, 8, 6, 1 << 20, false, "", 3},
                                               {"bad", 2, false, 2, 2, 8192, true, "region rank 1 id 0 fails its checksum", 2}}}},
      {Type::ListRegions, ListRegionsReply{true, {{0, 0, 10, 11, RegionState::Committed}}}},
      {Type::Delete, DeleteReply{1, 8}},
      {Type::Begin, BeginReply{1764093540123456789ull}},
      {Type::Abort, AbortReply{3}},
      {Type::Auth, AuthReply{1000, 1000, false, "user alice (uid 1000)", std::vector<uint8_t>(32, 1)}},
      {Type::Verify, Empty{}},
      {Type::Watch, WatchReply{1764093540123456789ull, 0x5eedull, Life::Failed, "rank 2's connection was lost", true,
                               true, 700}},
      {Type::Fail, FailReply{true, 1764093540123456789ull}},
      {Type::Join, Empty{}},
      {Type::Commit, Empty{}},
  };
  for (const auto& [type, body] : replies) out.push_back(encode(Reply{type, tag++, 0, "", body}));
  out.push_back(encode(Reply{Type::Create, tag++, -20, "no space in the pool", Empty{}}));
  out.push_back(encode(Event{EventKind::Sealed, "heat2d", 1764093540123456789ull, 0x5eedull, false, 700, 4, ""}));
  out.push_back(encode(Event{EventKind::Failed, "heat2d", 0, 0x5eedull, false, 0, 0, "mpirun exited with code 137"}));
  out.push_back(encode(Event{EventKind::Begun, "heat2d", 1764093540123456790ull, 0xfeedull, true, 0, 0, ""}));
  const auto dh = encode(DataHeader{0x100000002ull, 8u << 20});
  out.emplace_back(dh.begin(), dh.end());
  return out;
}

}  // namespace pmcr::fuzz
