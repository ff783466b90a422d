// The pmcr control protocol: messages between libpmcr and pmserver, carried
// as UCX active messages. Bulk data never travels in these messages; it
// moves by UCX RMA into and out of pool memory, or (writes on the "am" data
// path) as rendezvous active messages with a DataHeader that the server
// receives straight into pool memory.
//
// Frame: a 24-byte header, then the body.
//   u32 magic "PMCR" | u16 protocol version | u16 type | u64 tag | u32 body length | u32 reserved (0)
// All fields are fixed-width little-endian. Strings and blobs are a u32
// length followed by the bytes; every length is checked against the bytes
// left and against a per-field limit before anything is read. Replies carry
// type (request type | kReplyBit), the request's tag, an i32 status
// (0 or PMCR_E_*), an error text, and, on success only, the reply payload.
//
// This module does no I/O and no logging.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace pmcr::proto {

constexpr uint32_t kMagic = 0x52434d50;  // bytes 'P' 'M' 'C' 'R'
constexpr uint16_t kVersion = 6;  // 2: BEGIN/ABORT/VERIFY, attempts, quarantine; 3: AUTH, nonces; 4: named regions;
                                  // 5: standby (JOIN/RENEW/LEAVE/WATCH/FAIL, events, fencing);
                                  // 6: parts of a version (several servers), sealed by the server itself
constexpr size_t kHeaderSize = 24;
constexpr uint16_t kReplyBit = 0x8000;

constexpr size_t kMaxJobName = 64;         // bytes, not counting a terminator
constexpr size_t kMaxRegionName = 255;     // a named region's name
constexpr size_t kMaxText = 4096;          // client names, error messages, paths
constexpr size_t kMaxRkey = 4096;          // packed UCX remote key
constexpr size_t kMaxCredential = 4096;    // a MUNGE credential is about 200 bytes
constexpr size_t kNonceSize = 32;
constexpr size_t kMaxRequest = 64 * 1024;  // no request is larger
constexpr size_t kMaxReply = 64u << 20;    // listings of very many regions
constexpr uint32_t kMaxEntries = 1u << 20;

// UCX active-message ids.
constexpr unsigned kAmRequest = 17;
constexpr unsigned kAmReply = 18;
constexpr unsigned kAmData = 19;  // region bytes (DataHeader + payload): writes to, READ replies from the server
// A sign of life from the server: a request of this connection is still
// being worked on (a verification). Payload: nothing; the client counts it
// as progress, so a long verification does not look like a stalled server.
constexpr unsigned kAmProgress = 20;
// News of a job a connection WATCHes (an Event frame, tag 0): pushed by the
// server, never asked for.
constexpr unsigned kAmEvent = 21;

enum class Type : uint16_t {
  Hello = 1,
  Stat = 2,
  Create = 3,
  Commit = 4,
  Seal = 5,
  ListVersions = 6,
  ListRegions = 7,
  Open = 8,
  Close = 9,
  Delete = 10,
  Read = 11,  // the server sends an open region's bytes as kAmData messages, then replies
  Begin = 12,   // starts an attempt of a job: supersedes every earlier one
  Abort = 13,   // drops this connection's unsealed regions of a version (a failed checkpoint)
  Verify = 14,  // checks every region of a sealed version against its checksum
  Auth = 15,    // proves who the client is; every request but HELLO needs it first
  // Named regions with generations (region.h). Their handles are closed
  // with CLOSE; their bytes are written as kAmData messages (DataHeader
  // offsets within the region) and read with REGION_READ.
  RegionCreate = 16,   // opens (creating it if need be) a region for writing
  RegionOpen = 17,     // opens a region for reading
  RegionClear = 18,    // the writer's next generation starts empty
  RegionCommit = 19,   // publishes the writer's changes as the next generation
  RegionStat = 20,     // the latest committed generation and its size
  RegionRead = 21,     // bytes of a kept generation, as kAmData messages (region offsets)
  RegionChanged = 22,  // the byte ranges that differ between two generations
  RegionRemove = 23,   // removes a region and all its generations
  // A job's liveness, for a standby that follows it (the standby issue).
  Join = 24,   // this connection holds a lease for one rank of the job's current attempt
  Renew = 25,  // ... and renews it
  Leave = 26,  // ... and gives it up: the rank finished (pmcr_finalize)
  Watch = 27,  // pushes the job's events (kAmEvent) to this connection from now on
  Fail = 28,   // declares a launch of the job failed (its launcher exited): pmcr-run
};
constexpr uint16_t kLastType = static_cast<uint16_t>(Type::Fail);

// How a client proves who it is (pmserver --auth). The server names the
// method it requires in its HELLO reply.
enum class AuthMethod : uint8_t {
  None = 0,   // nobody is checked: loopback, or --insecure
  Key = 1,    // a challenge-response over a shared secret key (both nonces)
  Munge = 2,  // a MUNGE credential whose payload binds both nonces
};
const char* auth_method_name(AuthMethod m) noexcept;
const char* type_name(Type t) noexcept;

// ---- requests ----
using Nonce = std::array<uint8_t, kNonceSize>;

struct Hello {
  std::string client;  // free text for logs: program name, host, pid
  uint32_t pid = 0;
  Nonce nonce{};  // the client's challenge: fresh random bytes per connection
};
struct Stat {};
struct Create {
  std::string job;
  uint64_t version = 0;
  uint32_t rank = 0;
  uint32_t id = 0;
  uint64_t size = 0;
  uint64_t attempt = 0;  // from BEGIN: the job's current attempt
  // 0: one extent. Else the region is kept in blocks of this size, its
  // bytes sent as kAmData messages that never straddle a block, and its
  // checksum is over its blocks' hashes (checksum.hpp, combine_hashes).
  uint64_t block_size = 0;
  // With a block size: start from the sealed version BASE_VERSION's region
  // of the same rank and id (an incremental checkpoint sends only what
  // changed).
  bool has_base = false;
  uint64_t base_version = 0;
  // The version's whole size, when the server is to seal it by itself: at
  // the commit that makes EXPECT_NREGIONS regions of EXPECT_NRANKS ranks
  // committed (0: the writer seals it, SEAL). Every CREATE of the version
  // must say the same.
  uint32_t expect_nranks = 0;
  uint32_t expect_nregions = 0;
  // The version is spread over several servers (README, "Several
  // servers"): this server holds a part of it, the EXPECT_NREGIONS regions
  // of EXPECT_PART_RANKS of the EXPECT_NRANKS ranks, and seals that part.
  // 0: it holds every rank's regions.
  uint32_t expect_part_ranks = 0;
};
struct Commit {
  uint64_t handle = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;
};
struct Seal {
  std::string job;
  uint64_t version = 0;
  uint32_t nranks = 0;
  uint32_t nregions = 0;
  uint64_t attempt = 0;
};
struct ListVersions {
  std::string job;  // empty: every job
};
struct ListRegions {
  std::string job;
  uint64_t version = 0;
};
struct Open {
  std::string job;
  uint64_t version = 0;
  uint32_t rank = 0;
  uint32_t id = 0;
};
struct Close {
  uint64_t handle = 0;
};
struct Delete {
  std::string job;
  uint64_t version = 0;
  bool all_versions = false;
  uint64_t attempt = 0;  // a job's own retention: refused unless it is the current attempt (0: a tool, not fenced)
};

struct Read {
  uint64_t handle = 0;  // of a region this connection has open
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct Begin {
  std::string job;
  // Which launch of the job begins (pmcr-run gives each one a token; 0:
  // none), so that a standby and pmcr-run can tell launches apart.
  uint64_t instance = 0;
  // A standby taking over: the attempt it replaces is fenced (its writes,
  // seals and deletes get PMCR_E_FENCED from now on).
  bool takeover = false;
};
struct Abort {
  std::string job;
  uint64_t version = 0;
};
struct Verify {
  std::string job;
  uint64_t version = 0;
};
struct Auth {
  AuthMethod method = AuthMethod::None;
  std::vector<uint8_t> credential;  // key: a MAC over both nonces; munge: the credential; none: empty
};

struct RegionCreate {
  std::string job;
  std::string name;
  uint64_t block_size = 0;  // for a new region; 0: the server's default
  uint32_t keep = 0;        // generations a new region keeps; 0: the server's default
};
struct RegionOpen {
  std::string job;
  std::string name;
};
struct RegionClear {
  uint64_t handle = 0;
};
struct RegionCommit {
  uint64_t handle = 0;
  uint64_t size = 0;  // what the writer believes the new generation holds: checked
};
struct RegionStat {
  uint64_t handle = 0;
};
struct RegionRead {
  uint64_t handle = 0;
  uint64_t generation = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
};
struct RegionChanged {
  uint64_t handle = 0;
  uint64_t since = 0;  // 0: everything
  uint64_t generation = 0;
};
struct RegionRemove {
  std::string job;
  std::string name;
};

// Leases: while a rank of the current attempt holds one, renewing it
// within LEASE_MS, the attempt is alive. It fails when a holder's
// connection is lost, or a holder is silent longer than its lease.
constexpr uint32_t kMinLeaseMs = 100;
constexpr uint32_t kMaxLeaseMs = 3600 * 1000;
struct Join {
  std::string job;
  uint64_t attempt = 0;
  uint32_t rank = 0;
  uint32_t nranks = 0;
  uint32_t lease_ms = 0;
};
struct Renew {
  std::string job;
  uint64_t attempt = 0;
};
struct Leave {
  std::string job;
  uint64_t attempt = 0;
};
struct Watch {
  std::string job;
  uint64_t instance = 0;  // the launch the watcher follows: the reply says if it was declared failed
};
struct Fail {
  std::string job;
  uint64_t instance = 0;
  std::string reason;
};

// In the order of Type (the variant index is the type - 1).
using RequestBody = std::variant<Hello, Stat, Create, Commit, Seal, ListVersions, ListRegions, Open, Close, Delete, Read,
                                 Begin, Abort, Verify, Auth, RegionCreate, RegionOpen, RegionClear, RegionCommit,
                                 RegionStat, RegionRead, RegionChanged, RegionRemove, Join, Renew, Leave, Watch, Fail>;

struct Request {
  uint64_t tag = 0;
  RequestBody body;
};
Type type_of(const RequestBody& body) noexcept;

// ---- replies ----
struct Empty {};
struct HelloReply {
  std::array<uint8_t, 16> pool_uuid{};
  uint64_t pool_size = 0;
  std::string server_version;
  bool rma = false;       // this connection may use put/get (its transport enforces remote keys)
  std::string transport;  // what the server sees this connection on, e.g. "tcp"
  AuthMethod auth = AuthMethod::None;  // what AUTH must prove with
  Nonce nonce{};  // the server's challenge: fresh random bytes per connection
};
struct AuthReply {
  uint32_t uid = 0;  // the principal requests act as (kSharedPrincipal for key and none)
  uint32_t gid = 0;
  bool admin = false;         // may see and act on every job
  std::string principal;      // for messages: "user alice (uid 1000)", "holders of the server key"
  std::vector<uint8_t> proof;  // key: the server's MAC over both nonces (mutual authentication)
};
// The one principal of --auth key and --auth none: every holder of the
// server's key (or everyone) is the same owner.
constexpr uint32_t kSharedPrincipal = 0xfffffffe;
struct StatReply {
  uint64_t pool_size = 0;
  uint64_t data_size = 0;
  uint64_t used_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t store_granularity = 0;  // bytes: 8 (byte), 64 (cache line) or 4096 (page)
  uint32_t regions = 0;
  uint32_t versions = 0;  // sealed versions
  uint32_t jobs = 0;
  uint32_t connections = 0;
  uint32_t catalogue_slots = 0;
  uint32_t catalogue_used = 0;
  std::string pool_path;
  uint64_t data_in = 0;   // region bytes received since the server started (what writers sent)
  uint64_t data_out = 0;  // region bytes sent since the server started (what readers fetched)
  uint32_t named_regions = 0;
};
struct CreateReply {
  uint64_t handle = 0;
  uint64_t remote_addr = 0;
  std::vector<uint8_t> rkey;  // empty for a 0-byte region, or one kept in blocks
  bool based = false;  // the region starts as its base version's: send only the blocks that changed
};
struct OpenReply {
  uint64_t handle = 0;
  uint64_t remote_addr = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;
  std::vector<uint8_t> rkey;
  uint64_t block_size = 0;  // kept in blocks: the checksum is over its blocks' hashes
  std::vector<uint64_t> hashes;  // ... and those hashes (when there are at most kMaxEntries)
};
struct VersionEntry {
  std::string job;
  uint64_t version = 0;
  bool sealed = false;  // sealed and intact: readable
  uint32_t nranks = 0;   // sealed: as sealed (the whole job's); open: distinct ranks so far
  uint32_t nregions = 0;
  uint64_t bytes = 0;
  bool quarantined = false;  // found damaged: never served; `reason` says why
  std::string reason;
  uint32_t part_ranks = 0;  // the ranks whose regions this server holds (nranks: all of them)
};
struct ListVersionsReply {
  std::vector<VersionEntry> versions;
};
enum class RegionState : uint8_t { Created = 1, Committed = 2 };
struct RegionEntry {
  uint32_t rank = 0;
  uint32_t id = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;
  RegionState state = RegionState::Created;
};
struct ListRegionsReply {
  bool sealed = false;
  std::vector<RegionEntry> regions;
};
struct DeleteReply {
  uint32_t versions = 0;
  uint32_t regions = 0;
};
struct BeginReply {
  uint64_t attempt = 0;
};
struct AbortReply {
  uint32_t regions = 0;
};

// A named region as a handle sees it: its latest committed generation
// (0: none yet) and that generation's size.
struct RegionReply {
  uint64_t handle = 0;
  uint64_t generation = 0;
  uint64_t size = 0;
  uint64_t block_size = 0;
  uint32_t keep = 0;
};
struct Range {
  uint64_t offset = 0;
  uint64_t length = 0;
};
struct RangesReply {
  std::vector<Range> ranges;
};

// The state of a job's current attempt as the server sees it.
enum class Life : uint8_t {
  None = 0,     // no attempt began since the server started
  Running = 1,  // begun, and no lease holder lost
  Ended = 2,    // every lease holder left (pmcr_finalize): the launch may still have failed after
  Failed = 3,   // a holder's connection was lost or its lease ran out, or its launcher said so (FAIL)
};
const char* life_name(Life l) noexcept;
struct WatchReply {
  uint64_t attempt = 0;   // the job's current attempt (0: none)
  uint64_t instance = 0;  // ... the launch that began it
  Life life = Life::None;
  std::string reason;     // Failed: why
  bool instance_failed = false;  // Watch::instance was declared failed (FAIL), maybe before it began
  bool has_sealed = false;
  uint64_t sealed = 0;  // the job's newest sealed, intact version
};
struct FailReply {
  bool failed = false;  // the attempt of that launch is now failed (false: it was not the current one)
  uint64_t attempt = 0;
};

using ReplyBody = std::variant<Empty, HelloReply, StatReply, CreateReply, OpenReply, ListVersionsReply, ListRegionsReply,
                               DeleteReply, BeginReply, AbortReply, AuthReply, RegionReply, RangesReply, WatchReply,
                               FailReply>;

// ---- events (kAmEvent) ----
// Frame: the 24-byte header with type kEventType and tag 0, then the body.
constexpr uint16_t kEventType = 0x4000;
enum class EventKind : uint8_t {
  Begun = 1,   // an attempt began (INSTANCE; TAKEOVER if a standby's)
  Sealed = 2,  // VERSION was sealed (NRANKS ranks)
  Failed = 3,  // the attempt of INSTANCE failed (ATTEMPT 0: it never began), REASON says how
  Ended = 4,   // every lease holder of ATTEMPT left
};
struct Event {
  EventKind kind = EventKind::Begun;
  std::string job;
  uint64_t attempt = 0;
  uint64_t instance = 0;
  bool takeover = false;
  uint64_t version = 0;
  uint32_t nranks = 0;
  std::string reason;
};
const char* event_name(EventKind k) noexcept;

struct Reply {
  Type type = Type::Hello;  // the request type this answers
  uint64_t tag = 0;
  int32_t status = 0;
  std::string message;  // error detail when status != 0
  ReplyBody body;       // Empty when status != 0
};

// ---- encode / decode ----
enum class DecodeStatus {
  Ok,
  Truncated,       // fewer bytes than the header or a field needs
  BadMagic,
  BadVersion,
  BadType,         // unknown type, or a reply where a request was expected
  BadLength,       // header length disagrees with the bytes given
  FieldTooLong,    // a string, blob or list beyond its limit
  BadValue,        // a field outside its range (e.g. a bool that is 7)
  TrailingBytes,   // bytes left after the body
};
const char* decode_status_text(DecodeStatus s) noexcept;

struct Header {
  uint32_t magic = 0;
  uint16_t version = 0;
  uint16_t type = 0;
  uint64_t tag = 0;
  uint32_t length = 0;
};
// Parses only the header (for answering a message whose body is bad).
DecodeStatus decode_header(const void* data, size_t size, Header* out) noexcept;

// The AM header of region data sent as an active message (the "am" data
// path). Writes: the server receives the payload straight into the region
// at OFFSET, after checking the handle and the bounds itself. Reads (READ):
// the server sends the region's bytes from pool memory, and the client
// receives them straight into its buffer at OFFSET.
//   u32 magic "PMCD" | u16 protocol version | u16 reserved (0) | u64 handle | u64 offset
constexpr uint32_t kDataMagic = 0x44434d50;  // bytes 'P' 'M' 'C' 'D'
constexpr size_t kDataHeaderSize = 24;
struct DataHeader {
  uint64_t handle = 0;
  uint64_t offset = 0;
};
std::array<uint8_t, kDataHeaderSize> encode(const DataHeader& h);
DecodeStatus decode(const void* data, size_t size, DataHeader* out) noexcept;

std::vector<uint8_t> encode(const Event& ev);
DecodeStatus decode(const void* data, size_t size, Event* out);
std::vector<uint8_t> encode(const Request& req);
std::vector<uint8_t> encode(const Reply& rep);
DecodeStatus decode(const void* data, size_t size, Request* out);
DecodeStatus decode(const void* data, size_t size, Reply* out);

}  // namespace pmcr::proto
