// Client: libpmcr's connection to one pmserver (RAII over a UCX context,
// worker and endpoint). It speaks the control protocol over active messages
// and moves region data with pipelined ucp_put_nbx / ucp_get_nbx straight
// from and into the caller's memory: no staging copies on either side.
//
// A Client is used by one thread at a time. Every call either succeeds or
// throws pmcr::Error with a PMCR_E_* code and a message that says what
// failed and what to do. Waiting sleeps on the worker's event fd after a
// short spin, so a rank waiting for the server does not steal its CPU.
//
// Every wait is bounded, close included. Options::timeout is an inactivity
// limit: an operation fails when the server has shown no progress on it
// (no reply, no completed transfer) for that long, however long the whole
// transfer takes. Time this process itself spent stopped (SIGSTOP, a
// debugger, a starved node) is not counted against the server.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checksum.hpp"
#include "credential.hpp"
#include "protocol.hpp"
#include "ucx.hpp"

namespace pmcr::client {

// How region bytes travel. Am: rendezvous active messages, received
// straight into the region by the server (it picks the address and checks
// the bounds) and, for reads (READ), straight into the caller's buffer by
// the client; over tcp UCX moves them with zero-copy sends, several times
// faster than its emulated put and get. Rma: ucp_put_nbx / ucp_get_nbx with
// the region's rkey (what an RDMA NIC does without the server's CPU).
enum class DataPath { Am, Rma };

struct Options {
  std::string server;  // HOST:PORT
  std::string name;    // shown in the server's log
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{60000};  // no progress for this long fails an operation
  size_t chunk = 1u << 20;                   // RMA operation size
  size_t am_chunk = 16u << 20;                // active-message size on the am data path
  unsigned depth = 4;                        // operations in flight (writes)
  unsigned read_depth = 2;  // READ messages received at once: each completes in its turn, a sign of progress
  DataPath data_path = DataPath::Am;
  Credential credential;  // how to authenticate (default: only to a server that asks for nothing)
  // Asked on every pass of every wait: when it returns true the operation
  // gives up at once (PMCR_E_STATE, the connection closed), as it would at
  // its timeout. For a thread that must stop promptly whatever the server
  // does (pmserver's own repair thread at shutdown).
  std::function<bool()> cancelled;
};

// A region being written: where its bytes go on the server.
struct WriteTarget {
  uint64_t handle = 0;
  uint64_t size = 0;
  uint64_t remote_addr = 0;
  std::vector<uint8_t> rkey;
  uint64_t block_size = 0;  // kept in blocks (0: one extent)
  bool based = false;       // starts as its base version's region: send only the blocks that changed
};

// A committed region of a sealed version, open for reading.
struct ReadSource {
  uint64_t handle = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;
  uint64_t remote_addr = 0;
  std::vector<uint8_t> rkey;
  uint64_t block_size = 0;  // kept in blocks: CHECKSUM is over its blocks' hashes
  std::vector<uint64_t> hashes;  // ... and those hashes
};

class Client {
 public:
  // Connects, says HELLO and authenticates. Throws UNREACHABLE (no server
  // there, or it refused the connection), INVAL (bad address), PROTOCOL
  // (not a compatible pmserver), AUTH (no credential the server accepts, or
  // the server failed to prove its key), CONFIG (the rma data path over a
  // transport where the server does not offer it).
  explicit Client(Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const proto::HelloReply& server_info() const { return hello_; }
  // Who the server knows this connection as.
  const proto::AuthReply& identity() const { return identity_; }
  const std::string& address() const { return options_.server; }
  // The UCX transports of the endpoint's lanes, e.g. "tcp/lo".
  std::string transports() const;

  proto::StatReply stat();

  // Starts a new attempt of JOB on the server (superseding every earlier
  // one: their unsealed regions are dropped and they can write nothing
  // more) and uses it for this connection's writes of JOB. INSTANCE names
  // the launch (pmcr-run's token; 0: none); TAKEOVER: a standby takes the
  // job over, fencing every earlier attempt (FENCED).
  uint64_t begin(const std::string& job, uint64_t instance = 0, bool takeover = false);
  // Uses ATTEMPT (begun by another connection, e.g. rank 0's) for this
  // connection's writes of JOB.
  void join(const std::string& job, uint64_t attempt);
  // Frees this connection's unsealed regions of a version (after a failed
  // checkpoint). Returns how many.
  uint32_t abort(const std::string& job, uint64_t version);
  // Has the server check every region of a sealed version against its
  // checksum. Throws CORRUPT (now quarantined), NOT_FOUND.
  void verify(const std::string& job, uint64_t version);

  // Creates a region of JOB under the attempt begun or joined for it
  // (throws STATE if none). With BLOCK_SIZE it is kept in blocks; with
  // BASE_VERSION too, it starts as that version's region (WriteTarget::based).
  WriteTarget create(const std::string& job, uint64_t version, uint32_t rank, uint32_t id, uint64_t size,
                     uint64_t block_size = 0, std::optional<uint64_t> base_version = std::nullopt);
  // Sends the blocks BLOCKS (indices) of BUF into a region kept in blocks
  // (the am data path), pipelined; the others stay as they are.
  void put_blocks(const WriteTarget& target, const void* buf, const std::vector<uint64_t>& blocks);
  // Sends SIZE bytes from BUF into the region (by Options::data_path); when
  // it returns, the server has them or will have them before it handles
  // the COMMIT (not yet durable).
  void put(const WriteTarget& target, const void* buf);
  // Makes the region durable: the server persists it and verifies CHECKSUM.
  void commit(const WriteTarget& target, uint64_t checksum);
  // create + put + commit, with the checksum computed here, or with SHARED
  // by every thread writing the same bytes to a server of its own.
  void write_region(const std::string& job, uint64_t version, uint32_t rank, uint32_t id, const void* buf,
                    uint64_t size, SharedChecksummer* shared = nullptr);
  void seal(const std::string& job, uint64_t version, uint32_t nranks, uint32_t nregions);
  // From now on, this connection's CREATEs of VERSION of JOB tell the server
  // that the version holds NREGIONS regions of NRANKS ranks, and the server
  // seals it itself when the last of them commits (no SEAL needed). With
  // PART_RANKS, the server holds a part of the version: NREGIONS regions of
  // PART_RANKS of the NRANKS ranks.
  void expect(const std::string& job, uint64_t version, uint32_t nranks, uint32_t nregions, uint32_t part_ranks = 0);

  // ---- liveness (a standby follows the job) ----
  // Holds the lease of RANK of the job's attempt (begun or joined on this
  // connection), to be renewed within LEASE_MS; renews it; gives it up.
  void hold_lease(const std::string& job, uint32_t rank, uint32_t nranks, uint32_t lease_ms);
  void renew_lease(const std::string& job);
  void leave_lease(const std::string& job);
  // Has the server push JOB's events to this connection from now on;
  // returns the job's state (INSTANCE: a launch the caller follows).
  proto::WatchReply watch(const std::string& job, uint64_t instance);
  // The next event of a watched job, waiting up to TIMEOUT (sleeping on the
  // worker's event fd: no busy wait). Nothing if none came. Throws
  // SERVER_LOST if the connection is lost meanwhile.
  std::optional<proto::Event> next_event(std::chrono::milliseconds timeout);
  // Declares the launch INSTANCE of JOB failed (its launcher exited).
  proto::FailReply fail(const std::string& job, uint64_t instance, const std::string& reason);

  std::vector<proto::VersionEntry> list_versions(const std::string& job = "");
  proto::ListRegionsReply list_regions(const std::string& job, uint64_t version);
  // The highest sealed (and not quarantined) version of JOB, if any.
  std::optional<uint64_t> latest_sealed(const std::string& job);

  ReadSource open(const std::string& job, uint64_t version, uint32_t rank, uint32_t id);
  // Gets the region into BUF (source.size bytes) and verifies its checksum.
  // Throws CHECKSUM if the bytes do not match the committed checksum. For a
  // region kept in blocks, *HASHES (if given) gets its blocks' hashes.
  void get(const ReadSource& source, void* buf, std::vector<uint64_t>* hashes = nullptr);
  void close(const ReadSource& source);
  // Gets only the bytes of BLOCKS (indices; a region kept in blocks) into
  // BUF, which must already hold every other block; then verifies the whole
  // against the region's checksum. (An export of several versions fetches
  // each block they share once.)
  // With TRUST_KEPT, the other blocks are known to hold what SOURCE's
  // hashes say (a standby's buffer, verified when it was fetched): only the
  // blocks fetched are hashed, against SOURCE's hashes, and those hashes
  // against its checksum.
  void get_blocks(const ReadSource& source, void* buf, const std::vector<uint64_t>& blocks, bool trust_kept = false);
  // FN is called with the bytes of the current put or get that have moved so
  // far, as they move (a tool's progress bar); nullptr: none (the default).
  void on_transfer(std::function<void(uint64_t)> fn) { transfer_ = std::move(fn); }
  // open + get + verify + close into BUF, which must hold exactly SIZE bytes
  // (throws SIZE otherwise; use open() to learn the size first).
  void read_region(const std::string& job, uint64_t version, uint32_t rank, uint32_t id, void* buf, uint64_t size,
                   ReadSource* source = nullptr, std::vector<uint64_t>* hashes = nullptr);

  proto::DeleteReply remove(const std::string& job, std::optional<uint64_t> version);

  // ---- named regions (region.h) ----
  // Opens JOB/NAME for writing (creating it with BLOCK_SIZE and KEEP, 0:
  // the server's defaults) or for reading.
  proto::RegionReply region_create(const std::string& job, const std::string& name, uint64_t block_size, uint32_t keep);
  proto::RegionReply region_open(const std::string& job, const std::string& name);
  // LEN bytes from BUF at OFFSET of the writer's next generation, in
  // messages that never straddle a block of BLOCK_SIZE; when it returns the
  // server has them.
  void region_write(uint64_t handle, uint64_t block_size, uint64_t offset, const void* buf, uint64_t len);
  void region_clear(uint64_t handle);
  proto::RegionReply region_commit(uint64_t handle, uint64_t size);
  proto::RegionReply region_stat(uint64_t handle);
  // LEN bytes at OFFSET of GENERATION into BUF (the region's BLOCK_SIZE).
  void region_read(uint64_t handle, uint64_t block_size, uint64_t generation, uint64_t offset, void* buf,
                   uint64_t len);
  std::vector<proto::Range> region_changed(uint64_t handle, uint64_t since, uint64_t generation);
  void region_close(uint64_t handle);
  void region_remove(const std::string& job, const std::string& name);

  // Sends BYTES as a request as they are and returns the reply (tests).
  proto::Reply raw_request(const std::vector<uint8_t>& bytes, uint64_t tag);
  // Sends PAYLOAD as region data with HEADER as it is (tests).
  void raw_data(const std::vector<uint8_t>& header, const std::vector<uint8_t>& payload);

 private:
  struct PendingRndv {
    void* desc;
    size_t length;
  };
  using Clock = std::chrono::steady_clock;
  // How long a wait may see no progress, and the setting that says so.
  struct Limit {
    std::chrono::milliseconds ms;
    const char* setting;
  };
  Limit op_limit() const { return {options_.timeout, "PMCR_TIMEOUT"}; }

  static ucs_status_t on_reply(void* arg, const void* header, size_t header_length, void* data, size_t length,
                               const ucp_am_recv_param_t* param);
  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  static ucs_status_t on_data(void* arg, const void* header, size_t header_length, void* data, size_t length,
                              const ucp_am_recv_param_t* param);
  static void on_data_done(void* request, ucs_status_t status, size_t length, void* user_data);
  static ucs_status_t on_progress(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                  const ucp_am_recv_param_t* param);
  static ucs_status_t on_event(void* arg, const void* header, size_t header_length, void* data, size_t length,
                               const ucp_am_recv_param_t* param);

  proto::ReplyBody call(proto::RequestBody body);
  // One request of the handshake (HELLO, AUTH), within PMCR_CONNECT_TIMEOUT:
  // its reply, or an error naming WHAT.
  template <class R>
  R handshake(proto::RequestBody body, const char* what);
  proto::Reply exchange(const std::vector<uint8_t>& bytes, uint64_t tag, const Limit& limit);
  // Progresses until REQUEST completes; throws on failure, or when nothing
  // progressed for LIMIT.
  void wait(void* request, const char* what, const Limit& limit);
  std::function<void(uint64_t)> transfer_;  // on_transfer()
  // Progresses UCX; with nothing to progress, a slice of the idle work
  // (idle_) if there is any, else sleeps until UCX has something (100 ms at
  // most).
  void progress_or_sleep();
  // Work for the moments a wait would sleep (a slice per call; false when
  // there is none left): write_region hashes the buffer being sent.
  std::function<bool()> idle_;
  // Inactivity bookkeeping: start() at the beginning of an operation,
  // touch() on every sign of progress, tick() once per pass of a wait loop
  // (it notices that this process was stopped and does not count that).
  void start();
  void touch() { last_activity_ = Clock::now(); }
  void tick();
  // True when the server has shown no progress for LIMIT (after tick()),
  // or the caller cancelled.
  bool stalled(const Limit& limit) {
    tick();
    if (options_.cancelled && options_.cancelled()) return cancelled_ = true;
    return Clock::now() - last_activity_ >= limit.ms;
  }
  [[noreturn]] void timed_out(const std::string& what, const Limit& limit);
  // Bounded: gives up (and leaks REQUEST to UCX) after a few seconds.
  void finish_request(void* request);
  void fetch_rndv();
  uint64_t attempt_for(const std::string& job) const;
  // Issues ISSUE(offset, length) over SIZE bytes in CHUNKs (cut where
  // ORIGIN + offset is a multiple of CHUNK), DEPTH at a time, and waits for
  // all (and a flush, if FLUSH) before it returns.
  void pipeline(uint64_t size, size_t chunk, const char* what, const std::function<void*(uint64_t, size_t)>& issue,
                bool flush, uint64_t origin = 0);
  // The same over PIECES (offset, length), in order.
  void pipeline(const std::vector<std::pair<uint64_t, size_t>>& pieces, const char* what,
                const std::function<void*(uint64_t, size_t)>& issue, bool flush);
  // One region-data message: N bytes from SRC at region offset AT of HANDLE.
  void* send_piece(uint64_t handle, uint64_t at, const uint8_t* src, size_t n,
                   std::deque<std::array<uint8_t, proto::kDataHeaderSize>>& headers);
  // The largest message into a region kept in blocks of BLOCK_SIZE.
  size_t block_chunk(uint64_t block_size) const;
  void rma(bool put, void* local, uint64_t size, uint64_t remote, const std::vector<uint8_t>& rkey);
  void send_data(const WriteTarget& target, const void* buf);
  // SIZE bytes from BUF as kAmData messages for HANDLE at offset AT on, in
  // CHUNKs cut at multiples of CHUNK.
  void send_chunks(uint64_t handle, uint64_t at, const void* buf, uint64_t size, size_t chunk);
  // SIZE bytes of HANDLE from offset BASE on into BUF: REQUEST(offset,
  // length) asks for each segment; the server sends its bytes as kAmData
  // messages, each received straight into BUF.
  void receive_data(uint64_t handle, uint64_t base, void* buf, uint64_t size, uint64_t block_size,
                    const std::function<void(uint64_t, uint64_t)>& request);
  [[noreturn]] void fail_connection(int code, const std::string& message);
  // Force-closes the endpoint, which ends every operation still on it.
  void close_now();
  void check_alive() const;

  // UCX 1.13 mishandles an asynchronous event of a connection closed in
  // one worker when another worker of the process is given the same file
  // descriptor meanwhile (openucx/ucx#9942, fixed in 1.17): it aborts. The
  // clients of one process (threads of a tool or a test) therefore create
  // and tear down their UCX objects one at a time. Declared first: held
  // while the members below are built, and again while they are destroyed.
  struct Lifecycle {
    Lifecycle();
    ~Lifecycle();
    void lock();
    void unlock();
    bool held = false;
  } lifecycle_;
  Options options_;
  ucx::Context context_;
  ucx::Worker worker_;
  ucp_ep_h ep_ = nullptr;
  ucs_status_t ep_status_ = UCS_OK;
  std::string broken_;  // why the connection is unusable, once it is
  uint64_t next_tag_ = 1;
  std::map<uint64_t, std::vector<uint8_t>> replies_;  // by tag
  std::deque<PendingRndv> rndv_;
  std::map<std::string, uint64_t> attempts_;  // job -> attempt this connection writes under
  struct Expectation {
    std::string job;
    uint64_t version = 0;
    uint32_t nranks = 0, nregions = 0, part_ranks = 0;
  } expect_;  // expect()'s, for the CREATEs of that version
  std::deque<proto::Event> events_;  // of watched jobs, not yet taken
  Clock::time_point last_activity_{}, last_tick_{};
  Clock::duration stopped_{};  // this process stopped during the current operation
  bool cancelled_ = false;     // Options::cancelled said so
  // The READ in progress: region data arriving into the caller's buffer.
  struct DataChunk {
    void* desc;  // rendezvous descriptor, received by the waiting loop
    uint64_t offset;
    size_t length;
  };
  struct ActiveRead {
    uint64_t handle = 0;
    uint64_t base = 0;  // the region offset of buf[0]
    uint8_t* buf = nullptr;
    uint64_t size = 0;
    uint64_t received = 0;  // bytes landed in buf
    ucs_status_t status = UCS_OK;
    std::deque<DataChunk> chunks;
    std::deque<void*> requests;  // receives in progress
    bool active = false;
    // The pieces taken, in order (REQ: its receive, if it did not land at
    // once), and how far from buf[0] every byte has landed: what can be
    // checked while the rest is still on its way.
    struct Piece {
      uint64_t offset, length;
      void* req;
    };
    std::deque<Piece> pieces;
    uint64_t prefix = 0;
    uint64_t landed_prefix();
  } read_;
  proto::HelloReply hello_;
  proto::AuthReply identity_;
};

}  // namespace pmcr::client
