#include "protocol.hpp"

#include <cstring>
#include <type_traits>

namespace pmcr::proto {
namespace {

// Writer and Reader share one description of every message (the io()
// functions below), so encoding and decoding cannot drift apart.
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}
  void u8(uint8_t& v) { out_.push_back(v); }
  void u16(uint16_t& v) { le(v); }
  void u32(uint32_t& v) { le(v); }
  void u64(uint64_t& v) { le(v); }
  void i32(int32_t& v) {
    uint32_t u = static_cast<uint32_t>(v);
    le(u);
  }
  void boolean(bool& v) { out_.push_back(v ? 1 : 0); }
  void str(std::string& s, size_t) {
    uint32_t n = static_cast<uint32_t>(s.size());
    le(n);
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void blob(std::vector<uint8_t>& b, size_t) {
    uint32_t n = static_cast<uint32_t>(b.size());
    le(n);
    out_.insert(out_.end(), b.begin(), b.end());
  }
  template <size_t N>
  void fixed(std::array<uint8_t, N>& a) {
    out_.insert(out_.end(), a.begin(), a.end());
  }
  void state(RegionState& s) { out_.push_back(static_cast<uint8_t>(s)); }
  void method(AuthMethod& m) { out_.push_back(static_cast<uint8_t>(m)); }
  void life(Life& l) { out_.push_back(static_cast<uint8_t>(l)); }
  void kind(EventKind& k) { out_.push_back(static_cast<uint8_t>(k)); }
  template <class T, class F>
  void list(std::vector<T>& v, uint32_t, F&& each) {
    uint32_t n = static_cast<uint32_t>(v.size());
    le(n);
    for (auto& e : v) each(e);
  }
  bool ok() const { return true; }

 private:
  template <class T>
  void le(T v) {
    for (size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t>& out_;
};

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  void u8(uint8_t& v) {
    if (need(1)) v = p_[pos_++];
  }
  void u16(uint16_t& v) { le(v); }
  void u32(uint32_t& v) { le(v); }
  void u64(uint64_t& v) { le(v); }
  void i32(int32_t& v) {
    uint32_t u = 0;
    le(u);
    v = static_cast<int32_t>(u);
  }
  void boolean(bool& v) {
    uint8_t b = 0;
    u8(b);
    if (b > 1) fail(DecodeStatus::BadValue);
    v = b == 1;
  }
  void str(std::string& s, size_t max) {
    uint32_t n = 0;
    le(n);
    if (n > max) return fail(DecodeStatus::FieldTooLong);
    if (need(n)) {
      s.assign(reinterpret_cast<const char*>(p_ + pos_), n);
      pos_ += n;
    }
  }
  void blob(std::vector<uint8_t>& b, size_t max) {
    uint32_t n = 0;
    le(n);
    if (n > max) return fail(DecodeStatus::FieldTooLong);
    if (need(n)) {
      b.assign(p_ + pos_, p_ + pos_ + n);
      pos_ += n;
    }
  }
  template <size_t N>
  void fixed(std::array<uint8_t, N>& a) {
    if (need(N)) {
      std::memcpy(a.data(), p_ + pos_, N);
      pos_ += N;
    }
  }
  void state(RegionState& s) {
    uint8_t b = 0;
    u8(b);
    if (b != static_cast<uint8_t>(RegionState::Created) && b != static_cast<uint8_t>(RegionState::Committed))
      return fail(DecodeStatus::BadValue);
    s = static_cast<RegionState>(b);
  }
  void method(AuthMethod& m) {
    uint8_t b = 0;
    u8(b);
    if (b > static_cast<uint8_t>(AuthMethod::Munge)) return fail(DecodeStatus::BadValue);
    m = static_cast<AuthMethod>(b);
  }
  void life(Life& l) {
    uint8_t b = 0;
    u8(b);
    if (b > static_cast<uint8_t>(Life::Failed)) return fail(DecodeStatus::BadValue);
    l = static_cast<Life>(b);
  }
  void kind(EventKind& k) {
    uint8_t b = 0;
    u8(b);
    if (b < static_cast<uint8_t>(EventKind::Begun) || b > static_cast<uint8_t>(EventKind::Ended))
      return fail(DecodeStatus::BadValue);
    k = static_cast<EventKind>(b);
  }
  template <class T, class F>
  void list(std::vector<T>& v, uint32_t max, F&& each) {
    uint32_t n = 0;
    le(n);
    if (n > max) return fail(DecodeStatus::FieldTooLong);
    // Every entry takes at least one byte: a count beyond the bytes left is
    // a lie, and must not make us reserve memory for it.
    if (n > n_ - pos_) return fail(DecodeStatus::Truncated);
    v.clear();
    v.reserve(n);
    for (uint32_t i = 0; i < n && status_ == DecodeStatus::Ok; ++i) {
      v.emplace_back();
      each(v.back());
    }
  }
  bool ok() const { return status_ == DecodeStatus::Ok; }
  DecodeStatus status() const { return status_; }
  size_t left() const { return n_ - pos_; }
  void fail(DecodeStatus s) {
    if (status_ == DecodeStatus::Ok) status_ = s;
  }

 private:
  bool need(size_t k) {
    if (status_ != DecodeStatus::Ok) return false;
    if (k > n_ - pos_) {
      status_ = DecodeStatus::Truncated;
      return false;
    }
    return true;
  }
  template <class T>
  void le(T& v) {
    if (!need(sizeof(T))) return;
    T r = 0;
    for (size_t i = 0; i < sizeof(T); ++i) r |= static_cast<T>(static_cast<T>(p_[pos_ + i]) << (8 * i));
    pos_ += sizeof(T);
    v = r;
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  DecodeStatus status_ = DecodeStatus::Ok;
};

// ---- one description per message ----
template <class X> void io(X& x, Hello& m) { x.str(m.client, kMaxText); x.u32(m.pid); x.fixed(m.nonce); }
template <class X> void io(X&, Stat&) {}
template <class X> void io(X& x, Create& m) {
  x.str(m.job, kMaxJobName); x.u64(m.version); x.u32(m.rank); x.u32(m.id); x.u64(m.size); x.u64(m.attempt);
  x.u64(m.block_size); x.boolean(m.has_base); x.u64(m.base_version); x.u32(m.expect_nranks); x.u32(m.expect_nregions);
  x.u32(m.expect_part_ranks);
}
template <class X> void io(X& x, Commit& m) { x.u64(m.handle); x.u64(m.size); x.u64(m.checksum); }
template <class X> void io(X& x, Seal& m) { x.str(m.job, kMaxJobName); x.u64(m.version); x.u32(m.nranks); x.u32(m.nregions); x.u64(m.attempt); }
template <class X> void io(X& x, ListVersions& m) { x.str(m.job, kMaxJobName); }
template <class X> void io(X& x, ListRegions& m) { x.str(m.job, kMaxJobName); x.u64(m.version); }
template <class X> void io(X& x, Open& m) { x.str(m.job, kMaxJobName); x.u64(m.version); x.u32(m.rank); x.u32(m.id); }
template <class X> void io(X& x, Close& m) { x.u64(m.handle); }
template <class X> void io(X& x, Read& m) { x.u64(m.handle); x.u64(m.offset); x.u64(m.length); }
template <class X> void io(X& x, Delete& m) { x.str(m.job, kMaxJobName); x.u64(m.version); x.boolean(m.all_versions); x.u64(m.attempt); }
template <class X> void io(X& x, Begin& m) { x.str(m.job, kMaxJobName); x.u64(m.instance); x.boolean(m.takeover); }
template <class X> void io(X& x, Abort& m) { x.str(m.job, kMaxJobName); x.u64(m.version); }
template <class X> void io(X& x, Verify& m) { x.str(m.job, kMaxJobName); x.u64(m.version); }
template <class X> void io(X& x, Auth& m) { x.method(m.method); x.blob(m.credential, kMaxCredential); }
template <class X> void io(X& x, RegionCreate& m) { x.str(m.job, kMaxJobName); x.str(m.name, kMaxRegionName); x.u64(m.block_size); x.u32(m.keep); }
template <class X> void io(X& x, RegionOpen& m) { x.str(m.job, kMaxJobName); x.str(m.name, kMaxRegionName); }
template <class X> void io(X& x, RegionClear& m) { x.u64(m.handle); }
template <class X> void io(X& x, RegionCommit& m) { x.u64(m.handle); x.u64(m.size); }
template <class X> void io(X& x, RegionStat& m) { x.u64(m.handle); }
template <class X> void io(X& x, RegionRead& m) { x.u64(m.handle); x.u64(m.generation); x.u64(m.offset); x.u64(m.length); }
template <class X> void io(X& x, RegionChanged& m) { x.u64(m.handle); x.u64(m.since); x.u64(m.generation); }
template <class X> void io(X& x, RegionRemove& m) { x.str(m.job, kMaxJobName); x.str(m.name, kMaxRegionName); }
template <class X> void io(X& x, Join& m) { x.str(m.job, kMaxJobName); x.u64(m.attempt); x.u32(m.rank); x.u32(m.nranks); x.u32(m.lease_ms); }
template <class X> void io(X& x, Renew& m) { x.str(m.job, kMaxJobName); x.u64(m.attempt); }
template <class X> void io(X& x, Leave& m) { x.str(m.job, kMaxJobName); x.u64(m.attempt); }
template <class X> void io(X& x, Watch& m) { x.str(m.job, kMaxJobName); x.u64(m.instance); }
template <class X> void io(X& x, Fail& m) { x.str(m.job, kMaxJobName); x.u64(m.instance); x.str(m.reason, kMaxText); }

template <class X> void io(X&, Empty&) {}
template <class X> void io(X& x, HelloReply& m) {
  x.fixed(m.pool_uuid); x.u64(m.pool_size); x.str(m.server_version, kMaxText); x.boolean(m.rma); x.str(m.transport, kMaxText);
  x.method(m.auth); x.fixed(m.nonce);
}
template <class X> void io(X& x, AuthReply& m) {
  x.u32(m.uid); x.u32(m.gid); x.boolean(m.admin); x.str(m.principal, kMaxText); x.blob(m.proof, kMaxCredential);
}
template <class X> void io(X& x, StatReply& m) {
  x.u64(m.pool_size); x.u64(m.data_size); x.u64(m.used_bytes); x.u64(m.free_bytes); x.u64(m.store_granularity);
  x.u32(m.regions); x.u32(m.versions); x.u32(m.jobs); x.u32(m.connections);
  x.u32(m.catalogue_slots); x.u32(m.catalogue_used); x.str(m.pool_path, kMaxText);
  x.u64(m.data_in); x.u64(m.data_out); x.u32(m.named_regions);
}
template <class X> void io(X& x, CreateReply& m) { x.u64(m.handle); x.u64(m.remote_addr); x.blob(m.rkey, kMaxRkey); x.boolean(m.based); }
template <class X> void io(X& x, OpenReply& m) {
  x.u64(m.handle); x.u64(m.remote_addr); x.u64(m.size); x.u64(m.checksum); x.blob(m.rkey, kMaxRkey); x.u64(m.block_size);
  x.list(m.hashes, kMaxEntries, [&x](uint64_t& h) { x.u64(h); });
}
template <class X> void io(X& x, VersionEntry& m) {
  x.str(m.job, kMaxJobName); x.u64(m.version); x.boolean(m.sealed); x.u32(m.nranks); x.u32(m.nregions); x.u64(m.bytes);
  x.boolean(m.quarantined); x.str(m.reason, kMaxText); x.u32(m.part_ranks);
}
template <class X> void io(X& x, ListVersionsReply& m) { x.list(m.versions, kMaxEntries, [&x](VersionEntry& e) { io(x, e); }); }
template <class X> void io(X& x, RegionEntry& m) { x.u32(m.rank); x.u32(m.id); x.u64(m.size); x.u64(m.checksum); x.state(m.state); }
template <class X> void io(X& x, ListRegionsReply& m) {
  x.boolean(m.sealed);
  x.list(m.regions, kMaxEntries, [&x](RegionEntry& e) { io(x, e); });
}
template <class X> void io(X& x, DeleteReply& m) { x.u32(m.versions); x.u32(m.regions); }
template <class X> void io(X& x, BeginReply& m) { x.u64(m.attempt); }
template <class X> void io(X& x, AbortReply& m) { x.u32(m.regions); }
template <class X> void io(X& x, RegionReply& m) {
  x.u64(m.handle); x.u64(m.generation); x.u64(m.size); x.u64(m.block_size); x.u32(m.keep);
}
template <class X> void io(X& x, Range& m) { x.u64(m.offset); x.u64(m.length); }
template <class X> void io(X& x, RangesReply& m) { x.list(m.ranges, kMaxEntries, [&x](Range& e) { io(x, e); }); }
template <class X> void io(X& x, WatchReply& m) {
  x.u64(m.attempt); x.u64(m.instance); x.life(m.life); x.str(m.reason, kMaxText); x.boolean(m.instance_failed);
  x.boolean(m.has_sealed); x.u64(m.sealed);
}
template <class X> void io(X& x, FailReply& m) { x.boolean(m.failed); x.u64(m.attempt); }
template <class X> void io(X& x, Event& m) {
  x.kind(m.kind); x.str(m.job, kMaxJobName); x.u64(m.attempt); x.u64(m.instance); x.boolean(m.takeover);
  x.u64(m.version); x.u32(m.nranks); x.str(m.reason, kMaxText);
}

// The reply payload type for each request type.
ReplyBody empty_reply_for(Type t) {
  switch (t) {
    case Type::Hello: return HelloReply{};
    case Type::Stat: return StatReply{};
    case Type::Create: return CreateReply{};
    case Type::Open: return OpenReply{};
    case Type::ListVersions: return ListVersionsReply{};
    case Type::ListRegions: return ListRegionsReply{};
    case Type::Delete: return DeleteReply{};
    case Type::Begin: return BeginReply{};
    case Type::Abort: return AbortReply{};
    case Type::Auth: return AuthReply{};
    case Type::RegionCreate:
    case Type::RegionOpen:
    case Type::RegionCommit:
    case Type::RegionStat: return RegionReply{};
    case Type::RegionChanged: return RangesReply{};
    case Type::Watch: return WatchReply{};
    case Type::Fail: return FailReply{};
    case Type::Join:
    case Type::Renew:
    case Type::Leave:
    case Type::RegionClear:
    case Type::RegionRead:
    case Type::RegionRemove:
    case Type::Commit:
    case Type::Seal:
    case Type::Close:
    case Type::Read:
    case Type::Verify: return Empty{};
  }
  return Empty{};
}

bool valid_type(uint16_t t) { return t >= static_cast<uint16_t>(Type::Hello) && t <= kLastType; }

RequestBody empty_request_for(Type t) {
  switch (t) {
    case Type::Hello: return Hello{};
    case Type::Stat: return Stat{};
    case Type::Create: return Create{};
    case Type::Commit: return Commit{};
    case Type::Seal: return Seal{};
    case Type::ListVersions: return ListVersions{};
    case Type::ListRegions: return ListRegions{};
    case Type::Open: return Open{};
    case Type::Close: return Close{};
    case Type::Delete: return Delete{};
    case Type::Read: return Read{};
    case Type::Begin: return Begin{};
    case Type::Abort: return Abort{};
    case Type::Verify: return Verify{};
    case Type::Auth: return Auth{};
    case Type::RegionCreate: return RegionCreate{};
    case Type::RegionOpen: return RegionOpen{};
    case Type::RegionClear: return RegionClear{};
    case Type::RegionCommit: return RegionCommit{};
    case Type::RegionStat: return RegionStat{};
    case Type::RegionRead: return RegionRead{};
    case Type::RegionChanged: return RegionChanged{};
    case Type::RegionRemove: return RegionRemove{};
    case Type::Join: return Join{};
    case Type::Renew: return Renew{};
    case Type::Leave: return Leave{};
    case Type::Watch: return Watch{};
    case Type::Fail: return Fail{};
  }
  return Stat{};
}

void write_header(std::vector<uint8_t>& out, uint16_t type, uint64_t tag) {
  Writer w(out);
  uint32_t magic = kMagic, length = 0, reserved = 0;
  uint16_t version = kVersion;
  w.u32(magic); w.u16(version); w.u16(type); w.u64(tag); w.u32(length); w.u32(reserved);
}

void patch_length(std::vector<uint8_t>& out) {
  const uint32_t len = static_cast<uint32_t>(out.size() - kHeaderSize);
  for (int i = 0; i < 4; ++i) out[16 + i] = static_cast<uint8_t>(len >> (8 * i));
}

// Validates the header and that exactly header.length body bytes follow.
DecodeStatus check_frame(const void* data, size_t size, Header* h) {
  const DecodeStatus s = decode_header(data, size, h);
  if (s != DecodeStatus::Ok) return s;
  if (size - kHeaderSize < h->length) return DecodeStatus::Truncated;
  if (size - kHeaderSize > h->length) return DecodeStatus::BadLength;
  return DecodeStatus::Ok;
}

}  // namespace

const char* type_name(Type t) noexcept {
  switch (t) {
    case Type::Hello: return "HELLO";
    case Type::Stat: return "STAT";
    case Type::Create: return "CREATE";
    case Type::Commit: return "COMMIT";
    case Type::Seal: return "SEAL";
    case Type::ListVersions: return "LIST_VERSIONS";
    case Type::ListRegions: return "LIST_REGIONS";
    case Type::Open: return "OPEN";
    case Type::Close: return "CLOSE";
    case Type::Delete: return "DELETE";
    case Type::Read: return "READ";
    case Type::Begin: return "BEGIN";
    case Type::Abort: return "ABORT";
    case Type::Verify: return "VERIFY";
    case Type::Auth: return "AUTH";
    case Type::RegionCreate: return "REGION_CREATE";
    case Type::RegionOpen: return "REGION_OPEN";
    case Type::RegionClear: return "REGION_CLEAR";
    case Type::RegionCommit: return "REGION_COMMIT";
    case Type::RegionStat: return "REGION_STAT";
    case Type::RegionRead: return "REGION_READ";
    case Type::RegionChanged: return "REGION_CHANGED";
    case Type::RegionRemove: return "REGION_REMOVE";
    case Type::Join: return "JOIN";
    case Type::Renew: return "RENEW";
    case Type::Leave: return "LEAVE";
    case Type::Watch: return "WATCH";
    case Type::Fail: return "FAIL";
  }
  return "UNKNOWN";
}

const char* life_name(Life l) noexcept {
  switch (l) {
    case Life::None: return "none";
    case Life::Running: return "running";
    case Life::Ended: return "ended";
    case Life::Failed: return "failed";
  }
  return "unknown";
}

const char* event_name(EventKind k) noexcept {
  switch (k) {
    case EventKind::Begun: return "begun";
    case EventKind::Sealed: return "sealed";
    case EventKind::Failed: return "failed";
    case EventKind::Ended: return "ended";
  }
  return "unknown";
}

const char* auth_method_name(AuthMethod m) noexcept {
  switch (m) {
    case AuthMethod::None: return "none";
    case AuthMethod::Key: return "key";
    case AuthMethod::Munge: return "munge";
  }
  return "unknown";
}

const char* decode_status_text(DecodeStatus s) noexcept {
  switch (s) {
    case DecodeStatus::Ok: return "ok";
    case DecodeStatus::Truncated: return "message truncated";
    case DecodeStatus::BadMagic: return "bad magic (not a pmcr message)";
    case DecodeStatus::BadVersion: return "unsupported protocol version";
    case DecodeStatus::BadType: return "unknown or unexpected message type";
    case DecodeStatus::BadLength: return "length field disagrees with the message size";
    case DecodeStatus::FieldTooLong: return "a field exceeds its size limit";
    case DecodeStatus::BadValue: return "a field has an invalid value";
    case DecodeStatus::TrailingBytes: return "trailing bytes after the message body";
  }
  return "unknown decode status";
}

Type type_of(const RequestBody& body) noexcept { return static_cast<Type>(body.index() + 1); }

DecodeStatus decode_header(const void* data, size_t size, Header* out) noexcept {
  if (size < kHeaderSize) return DecodeStatus::Truncated;
  Reader r(static_cast<const uint8_t*>(data), size);
  Header h;
  uint32_t reserved = 0;
  r.u32(h.magic); r.u16(h.version); r.u16(h.type); r.u64(h.tag); r.u32(h.length); r.u32(reserved);
  if (h.magic != kMagic) return DecodeStatus::BadMagic;
  if (h.version != kVersion) return DecodeStatus::BadVersion;
  if (reserved != 0) return DecodeStatus::BadValue;
  *out = h;
  return DecodeStatus::Ok;
}

std::array<uint8_t, kDataHeaderSize> encode(const DataHeader& h) {
  std::vector<uint8_t> out;
  Writer w(out);
  uint32_t magic = kDataMagic;
  uint16_t version = kVersion, reserved = 0;
  uint64_t handle = h.handle, offset = h.offset;
  w.u32(magic); w.u16(version); w.u16(reserved); w.u64(handle); w.u64(offset);
  std::array<uint8_t, kDataHeaderSize> a{};
  std::memcpy(a.data(), out.data(), kDataHeaderSize);
  return a;
}

DecodeStatus decode(const void* data, size_t size, DataHeader* out) noexcept {
  if (size < kDataHeaderSize) return DecodeStatus::Truncated;
  if (size > kDataHeaderSize) return DecodeStatus::TrailingBytes;
  Reader r(static_cast<const uint8_t*>(data), size);
  uint32_t magic = 0;
  uint16_t version = 0, reserved = 0;
  DataHeader h;
  r.u32(magic); r.u16(version); r.u16(reserved); r.u64(h.handle); r.u64(h.offset);
  if (magic != kDataMagic) return DecodeStatus::BadMagic;
  if (version != kVersion) return DecodeStatus::BadVersion;
  if (reserved != 0) return DecodeStatus::BadValue;
  *out = h;
  return DecodeStatus::Ok;
}

std::vector<uint8_t> encode(const Event& ev) {
  std::vector<uint8_t> out;
  out.reserve(96);
  write_header(out, kEventType, 0);
  Writer w(out);
  io(w, const_cast<Event&>(ev));
  patch_length(out);
  return out;
}

DecodeStatus decode(const void* data, size_t size, Event* out) {
  Header h;
  DecodeStatus s = check_frame(data, size, &h);
  if (s != DecodeStatus::Ok) return s;
  if (h.type != kEventType || h.tag != 0) return DecodeStatus::BadType;
  if (h.length > kMaxRequest) return DecodeStatus::FieldTooLong;
  Event ev;
  Reader r(static_cast<const uint8_t*>(data) + kHeaderSize, h.length);
  io(r, ev);
  if (!r.ok()) return r.status();
  if (r.left() != 0) return DecodeStatus::TrailingBytes;
  *out = std::move(ev);
  return DecodeStatus::Ok;
}

std::vector<uint8_t> encode(const Request& req) {
  std::vector<uint8_t> out;
  out.reserve(128);
  write_header(out, static_cast<uint16_t>(type_of(req.body)), req.tag);
  Writer w(out);
  std::visit([&w](const auto& m) { io(w, const_cast<std::decay_t<decltype(m)>&>(m)); }, req.body);
  patch_length(out);
  return out;
}

std::vector<uint8_t> encode(const Reply& rep) {
  std::vector<uint8_t> out;
  out.reserve(128);
  write_header(out, static_cast<uint16_t>(static_cast<uint16_t>(rep.type) | kReplyBit), rep.tag);
  Writer w(out);
  int32_t status = rep.status;
  w.i32(status);
  w.str(const_cast<std::string&>(rep.message), kMaxText);
  if (rep.status == 0)
    std::visit([&w](const auto& m) { io(w, const_cast<std::decay_t<decltype(m)>&>(m)); }, rep.body);
  patch_length(out);
  return out;
}

DecodeStatus decode(const void* data, size_t size, Request* out) {
  Header h;
  DecodeStatus s = check_frame(data, size, &h);
  if (s != DecodeStatus::Ok) return s;
  if (h.length > kMaxRequest) return DecodeStatus::FieldTooLong;
  if (!valid_type(h.type)) return DecodeStatus::BadType;
  Request req;
  req.tag = h.tag;
  req.body = empty_request_for(static_cast<Type>(h.type));
  Reader r(static_cast<const uint8_t*>(data) + kHeaderSize, h.length);
  std::visit([&r](auto& m) { io(r, m); }, req.body);
  if (!r.ok()) return r.status();
  if (r.left() != 0) return DecodeStatus::TrailingBytes;
  *out = std::move(req);
  return DecodeStatus::Ok;
}

DecodeStatus decode(const void* data, size_t size, Reply* out) {
  Header h;
  DecodeStatus s = check_frame(data, size, &h);
  if (s != DecodeStatus::Ok) return s;
  if (h.length > kMaxReply) return DecodeStatus::FieldTooLong;
  if (!(h.type & kReplyBit) || !valid_type(h.type & ~kReplyBit)) return DecodeStatus::BadType;
  Reply rep;
  rep.type = static_cast<Type>(h.type & ~kReplyBit);
  rep.tag = h.tag;
  Reader r(static_cast<const uint8_t*>(data) + kHeaderSize, h.length);
  r.i32(rep.status);
  r.str(rep.message, kMaxText);
  if (r.ok() && rep.status > 0) r.fail(DecodeStatus::BadValue);
  if (r.ok() && rep.status == 0) {
    rep.body = empty_reply_for(rep.type);
    std::visit([&r](auto& m) { io(r, m); }, rep.body);
  }
  if (!r.ok()) return r.status();
  if (r.left() != 0) return DecodeStatus::TrailingBytes;
  *out = std::move(rep);
  return DecodeStatus::Ok;
}

}  // namespace pmcr::proto
