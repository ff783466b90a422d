// Server: the UCX side of pmserver. One context, one listener; clients
// connect by sockaddr and speak the control protocol over active messages,
// while region data moves as rendezvous active messages straight into and
// out of pool memory (or by RMA, on transports whose remote keys the
// hardware enforces). One event loop owns the catalogue and decides
// everything; it sleeps on its worker's event fd (no busy polling when
// idle). The connections are spread over --receive-threads workers, each
// progressed by a thread of its own, so different clients' bytes move on
// different cores; their UCX callbacks post what they learnt to the event
// loop (post(), the inbox). Checksums of stored data are computed by the
// Verifier's thread, large commits by the Committer's.
//
// The implementation is split by concern:
//   server.cpp       set-up, the event loop, statistics
//   connections.cpp  accept, HELLO, limits and time-outs, teardown
//   requests.cpp     decoding, the dispatcher and the request handlers
//   access.cpp       what each request needs (one table), job ownership
//   credentials.cpp  who a connection is (AUTH: munge, key, none)
//   grants.cpp       each connection's handles, rights and remote keys
//   data_path.cpp    region bytes in (writes) and out (READ), registration
//   scrub.cpp        verification of stored data: on OPEN, VERIFY, scrub
//   liveness.cpp     leases, watchers and events: what a standby follows
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "catalogue.hpp"
#include "credentials.hpp"
#include "grants.hpp"
#include "protocol.hpp"
#include "quota.hpp"
#include "text.hpp"
#include "ucx.hpp"
#include "committer.hpp"
#include "drainer.hpp"
#include "metrics.hpp"
#include "verifier.hpp"
#include "workers.hpp"

namespace pmcr::server {

// RMA is offered only where remote keys are enforced by the NIC: the
// InfiniBand/RoCE transports. Everything else UCX 1.13 has (tcp, the
// shared-memory ones) either carries out put/get on the server's CPU at any
// address the client names, or maps the whole address space: a remote key
// protects nothing there (README, "Security").
inline constexpr const char* kRkeyTransports[] = {"rc_verbs", "rc_mlx5", "dc_mlx5"};
// True if every transport of TRANSPORTS ("tl/dev,tl/dev") is one of them.
bool rkeys_enforced(const std::string& transports);

// What one connection may leave pending on the server, of each kind.
inline constexpr uint32_t kMaxPending = 64;

struct ServerOptions {
  HostPort listen{"0.0.0.0", kDefaultPort};
  std::string ready_file;          // written with "HOST:PORT" once listening
  uint32_t max_bad_messages = 16;  // malformed messages before a connection is closed
  uint32_t max_connections = 8192;
  std::chrono::milliseconds hello_timeout{5000};  // to finish the handshake and say HELLO
  uint32_t max_unanswered = 1024;  // replies a client has not taken before it is dropped
  Quotas quotas{4096, 1ull << 40, 1024};
  uint64_t scrub_rate = 256ull << 20;  // background verification, bytes/s; 0: no scrub
  std::chrono::seconds scrub_interval{24 * 3600};
  bool allow_rma = true;  // offer put/get where the transport enforces remote keys
  AuthOptions auth;
  // Threads that persist and checksum committed data (committer.hpp); 0:
  // the event loop does it. As many (at least one) verify data for readers
  // (verifier.hpp).
  unsigned commit_threads = 0;
  // Threads that each progress a UCX worker of their own, over which the
  // connections are spread: the bytes of different clients move on
  // different cores. 0: every connection is on the event loop's worker.
  unsigned receive_threads = 0;
  // The capacity tier (drainer.hpp): every sealed version copied into this
  // directory, at no more than DRAIN_RATE bytes per second. Empty: none.
  std::string drain_dir;
  uint64_t drain_rate = 256ull << 20;
  // Prometheus metrics (metrics.hpp), or none.
  Metrics* metrics = nullptr;
};

class Server {
 public:
  Server(Pool& pool, Catalogue& catalogue, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until a SIGTERM or SIGINT arrives (the caller blocks them and
  // passes a signalfd).
  void run(int signal_fd);
  uint16_t port() const { return port_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct DataWorker;
  struct Connection {
    Owner id = 0;
    ucp_ep_h ep = nullptr;
    DataWorker* worker = nullptr;  // the receive thread it is on (none: the event loop's)
    std::string peer;
    std::string client;
    std::string transport;  // UCX transports of its lanes, from HELLO
    Clock::time_point accepted;
    bool hello = false;
    std::optional<Principal> principal;  // once AUTH succeeded
    proto::Nonce server_nonce{}, client_nonce{};
    bool dead = false;
    bool refused = false;  // over --max-connections: told so at HELLO, then closed
    bool refused_auth = false;  // AUTH failed: told so, then closed
    bool rma = false;  // may use put/get: its transport enforces remote keys
    uint32_t bad_messages = 0;
    uint32_t unanswered = 0;  // replies sent but not yet taken by the client
    // Work a client can leave pending on the server, each bounded
    // (kMaxPending): verifications (OPEN, VERIFY), COMMITs waiting for their
    // data, READ messages the client has not taken, BEGINs.
    uint32_t checks = 0, deferred_commits = 0, sends = 0, begins = 0, commits = 0;
    std::unique_ptr<Grants> grants;  // the handles it was given, and their rights
    std::map<std::string, uint64_t> attempts;   // job -> the attempt it wrote under
    // Regions it is writing of versions the server seals by itself: handle -> (job, version).
    std::map<uint64_t, std::pair<std::string, uint64_t>> sealing;
    std::set<std::string> leases;    // jobs it holds a lease of (JOIN)
    std::set<std::string> watching;  // jobs it WATCHes
    // With metrics: the requests not answered yet, by tag (what and since when).
    std::unordered_map<uint64_t, std::pair<proto::Type, Clock::time_point>> started;
  };
  struct Registration {  // of an extent, for receives into it (am data path)
    ucp_mem_h memh = nullptr;
  };
  struct Incoming {
    ucp_ep_h ep;
    std::vector<uint8_t> bytes;
  };
  // Where a UCX callback ran: its worker (a rendezvous descriptor is that
  // worker's) and, on a receive thread, that thread's.
  struct WorkerRef {
    Server* server;
    ucp_worker_h worker;
    bool own_thread;  // a receive thread's: its callbacks post their work to the event loop
    DataWorker* thread = nullptr;  // ... that thread
  };
  // A receive thread: a worker it progresses, its connections' endpoints.
  struct DataWorker {
    DataWorker(Server* server, const ucx::Context& context);
    ~DataWorker();  // stops and joins the thread
    void loop();
    // WORK runs on this thread, in the order given. The event loop hands it
    // the UCX calls on this worker that move region data and close its
    // endpoints: the worker's lock is then taken by its own thread alone
    // (UCX's lock is a spinlock: the loop used to spin on it while this
    // thread held it for a large receive), and an endpoint is closed only
    // after what was asked of it before. After the thread stopped:
    // run_tasks() on the caller's.
    void submit(std::function<void()> work);
    void run_tasks();
    ucx::Worker worker;
    WorkerRef ref;
    Wakeup stop_signal;
    Wakeup task_signal;
    std::mutex tasks_mu;
    std::vector<std::function<void()>> tasks;
    std::atomic<bool> tasks_waiting{false};  // (so the progress loop takes the lock only when there are some)
    std::atomic<bool> stop{false};
    uint32_t connections = 0;  // the event loop's count
    std::thread thread;
  };
  struct PendingRndv {  // a large request whose data the main loop fetches
    ucp_ep_h ep;
    const WorkerRef* where;  // its worker (the descriptor is that worker's)
    void* desc;
    size_t length;
  };
  struct RndvRecv {
    Server* server;
    ucp_ep_h ep;
    std::vector<uint8_t> bytes;
    const WorkerRef* where;
  };
  struct PendingData {  // region bytes sent as an active message (DataHeader + payload)
    ucp_ep_h ep;
    ucp_worker_h worker;
    std::array<uint8_t, proto::kDataHeaderSize> header;
    bool header_ok;
    void* desc;                  // rendezvous: fetched by the main loop
    std::vector<uint8_t> bytes;  // eager: already here
    size_t length;
    const WorkerRef* where = nullptr;  // the worker's (release_data)
  };
  // A region in one extent checksummed (and persisted) as its bytes land,
  // on the thread that received them, while later bytes are still on the
  // way: its COMMIT then makes no pass over the data. In order only: bytes
  // that come early wait (a few), and bytes written twice or too far out
  // of order give up on it (the COMMIT hashes the region as before).
  struct ArrivalSum {
    // PERSIST makes a range of the pool durable (any thread); it outlives this.
    ArrivalSum(Owner writer, const std::function<void(const void*, size_t)>& persist);
    ~ArrivalSum();
    // LENGTH bytes at region offset OFFSET landed at DATA.
    void landed(uint64_t offset, const uint8_t* data, uint64_t length);
    // Bytes that did not arrive: the region is hashed at its COMMIT.
    void fail();
    // The checksum of the region's SIZE bytes, if all of them, and only
    // they, were seen in order (and persisted).
    std::optional<uint64_t> value(uint64_t size);
    const Owner writer;

   private:
    void take(const uint8_t* data, uint64_t length);
    const std::function<void(const void*, size_t)>& persist_;
    std::mutex mu_;  // (the eager bytes the loop copies itself, and a receive thread's)
    void* state_;    // XXH3_state_t
    uint64_t next_ = 0;
    std::map<uint64_t, std::pair<const uint8_t*, uint64_t>> early_;
    bool broken_ = false;
  };
  struct DataIo {  // one rendezvous receive into, or send from, a region; pins it
    Server* server;
    uint64_t handle;
    Owner conn;                                          // sends: whose READ
    std::array<uint8_t, proto::kDataHeaderSize> header;  // sends: alive until done
    GenerationRef generation;  // named regions: the generation a send is from
    WorkingRef working;        // named regions: the writer a receive lands for
    const WorkerRef* where = nullptr;  // the connection's worker
    std::shared_ptr<ArrivalSum> sum{};  // a checkpoint region in one extent: its checksum so far
    uint64_t offset = 0;              // ... and where these bytes go
    uint8_t* dest = nullptr;
    uint64_t length = 0;
  };
  struct SentReply {  // a reply or an event
    Server* server;
    Owner conn;
    std::vector<uint8_t> bytes;
    const WorkerRef* where;
  };
  struct ClosingEp {  // an endpoint of a receive thread being closed
    Server* server;
    ucp_ep_h ep;
    const WorkerRef* where;
  };
  // A job's current attempt, as a standby sees it (liveness.cpp): alive
  // while every rank that JOINed holds its lease. In memory only: after a
  // restart of the server every job begins again.
  struct Lease {
    uint32_t rank = 0;
    std::chrono::milliseconds length{0};
    Clock::time_point deadline{};
  };
  struct JobLife {
    uint64_t attempt = 0;
    uint64_t instance = 0;
    proto::Life life = proto::Life::None;
    std::string reason;
    std::map<Owner, Lease> leases;  // by connection
    std::set<Owner> watchers;
    std::deque<uint64_t> failed_instances;  // launches declared failed (FAIL), newest last, a few
  };
  struct DeferredCommit {  // a COMMIT waiting for its region's data
    uint64_t handle;
    Incoming in;
    Owner conn;
  };
  // Verification of stored data: a task (a reader's OPEN, a VERIFY, one
  // version of the scrub) waits for the checks of its regions.
  enum class TaskKind { Open, Verify, Scrub };
  struct Task {
    Task(TaskKind k, Owner c, uint64_t t, std::string j, uint64_t v, uint64_t id)
        : kind(k), conn(c), tag(t), job(std::move(j)), version(v), version_id(id) {}
    TaskKind kind;
    Owner conn;    // Open, Verify: who gets the reply
    uint64_t tag;  // ... to which request
    std::string job;
    uint64_t version;
    uint64_t version_id;  // Catalogue::version_id: which sealed version this is
    proto::OpenReply open;  // Open: the reply once the region verified
    RegionView opened;      // Open: the region, granted to the reader only once it verified
    uint32_t pending = 0;
    uint32_t fresh = 0;  // Open: checks not repeated, as they passed moments ago
    std::vector<RegionView> later;  // Scrub: regions checked one at a time, pinned only while checked
    bool given_up = false;          // Scrub: its version went meanwhile (abandon_stale_scrub)
    std::string failure;
  };
  struct CheckRef {
    uint64_t task;
    RegionView region;  // pinned until its check is done
    uint64_t expected;  // the checksum of the region, or of the block checked
    uint64_t offset;    // where the bytes checked are in the pool
    uint64_t size;
    Clock::time_point submitted;
  };
  // Checks that passed, by the bytes' place, length and checksum, with when:
  // an OPEN of the same bytes soon after (pmcr_restart_test's VERIFY, then
  // the restart's OPENs) does not hash them again. Sealed bytes are never
  // written; the reader checks what it receives against the checksum too.
  std::map<std::tuple<uint64_t, uint64_t, uint64_t>, Clock::time_point> passed_;
  void forget_stale_checks();  // (every second)
  // Arrival checksums of regions freed before their COMMIT (ABORT, a new
  // attempt, a writer superseded): kept until disconnect otherwise. (Every second.)
  void forget_stale_arrival_sums();

  // ---- UCX callbacks (queue work only) ----
  // On a receive thread a callback runs its work through post(): queued
  // in order for the event loop (inbox_), which runs it at its next pass;
  // on the event loop's own worker, at once.
  void post(const WorkerRef& where, std::function<void()> work);
  void enqueue(std::function<void()> work);  // always queued, after what is there
  // post() for what a message of EP brought: run on the loop unless, run
  // later from the inbox, EP has been closed meanwhile; then DROPPED runs
  // instead (it releases what the message holds).
  void post_for(const WorkerRef& where, ucp_ep_h ep, std::function<void()> work, std::function<void()> dropped = {});
  // Runs the queued work (all of it, or until DONE is true); false if none.
  bool run_inbox(const std::function<bool()>& done = {});
  // The endpoint EP is served (a connection not closed).
  bool live(ucp_ep_h ep) const;
  const WorkerRef& ref_of(const Connection& c) const { return c.worker ? c.worker->ref : main_ref_; }
  // Wakes the receive threads after the event loop gave their workers
  // work (a send, a receive, a close): they may be asleep.
  void wake_receivers();
  static void on_conn_request(ucp_conn_request_h request, void* arg);
  static ucs_status_t on_am(void* arg, const void* header, size_t header_length, void* data, size_t length,
                            const ucp_am_recv_param_t* param);
  static void on_rndv_done(void* request, ucs_status_t status, size_t length, void* user_data);
  static ucs_status_t on_data(void* arg, const void* header, size_t header_length, void* data, size_t length,
                              const ucp_am_recv_param_t* param);
  static void on_data_received(void* request, ucs_status_t status, size_t length, void* user_data);
  // Gives back a descriptor of WHERE's worker unread. ucp_am_data_release of
  // a rendezvous sends its acknowledgement without taking the worker's
  // lock (UCX 1.13, ucp_am.c; found by ThreadSanitizer racing the receive
  // thread's own sends): on a receive thread's worker, that thread does it.
  static void release_data(const WorkerRef* where, void* desc);
  // WORK on WHERE's receive thread (DataWorker::submit), or here if it has
  // none (or has stopped): the other way round from post().
  static void run_on(const WorkerRef& where, std::function<void()> work);
  // Receives the rendezvous data DESC (of WORKER) into IO's place, on the
  // thread of C's worker; MEMH: the place's registration, if any.
  void fetch(Connection& c, DataIo* io, ucp_worker_h worker, void* desc, ucp_mem_h memh);
  // IO's bytes landed (or not: STATUS), told on the thread that learned it.
  static void fetched(DataIo* io, ucs_status_t status);
  // IO's bytes went (or not), likewise.
  static void sent(DataIo* io, ucs_status_t status);
  static void on_data_sent(void* request, ucs_status_t status, void* user_data);
  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  static void on_reply_sent(void* request, ucs_status_t status, void* user_data);
  static void on_closed(void* request, ucs_status_t status, void* user_data);

  // ---- event loop (server.cpp) ----
  bool drain();  // handles queued work; false if there was none
  void write_ready_file();
  proto::StatReply stat() const;
  void refresh_metrics();  // the gauges of options_.metrics, if any

  // ---- connections (connections.cpp) ----
  void accept(ucp_conn_request_h request);
  // FLUSH: let replies already sent reach the client first (a refusal).
  void disconnect(Connection& c, const char* why, bool flush = false);
  void close_ep(ucp_ep_h ep, DataWorker* worker, bool flush = false);
  void reap_closing(bool wait);
  // Drops connections that did not say HELLO in time, and TCP connections
  // to the listening port that never started UCX's handshake.
  void expire_handshakes();
  // The sockets of the listening port that are not connections: fd and
  // peer (none: the listener itself).
  std::vector<std::pair<int, std::string>> strangers() const;
  // Before the listener is destroyed: nothing new reaches it (see there).
  void fence_listener();
  // Accepts the connection requests UCX has handed over; true if any.
  bool accept_pending();
  Connection* connection(Owner id);

  // ---- requests (requests.cpp) ----
  void fetch(const PendingRndv& p);
  void handle(Incoming& in);
  // The reply, or nothing when it will be sent later (verification).
  std::optional<proto::ReplyBody> dispatch(Connection& c, uint64_t tag, proto::RequestBody& body);
  void send(Connection& c, const proto::Reply& reply);
  void reply_error(Connection& c, proto::Type type, uint64_t tag, int status, const std::string& message);
  proto::HelloReply hello(Connection& c, const proto::Hello& m);
  proto::AuthReply authenticate(Connection& c, const proto::Auth& m);
  [[noreturn]] void throw_unknown_handle(const Connection& c, uint64_t handle) const;
  // Sends BYTES as active message AM_ID (a reply, an event), counted
  // against the connection's max_unanswered.
  void send_message(Connection& c, unsigned am_id, std::vector<uint8_t> bytes);

  // A CREATE's expectation of its version's size (it must agree with the
  // other CREATEs of the version), and the seal it allows once the last
  // region commits (no-op until then). Both throw like SEAL.
  void expect(const proto::Create& m);
  void seal_if_complete(const std::string& job, uint64_t version);

  // ---- liveness (liveness.cpp) ----
  // Refuses writes (CREATE, SEAL, DELETE) of an attempt declared failed:
  // FENCED, like those of an attempt a standby replaced.
  void check_alive(const std::string& job, uint64_t attempt) const;
  JobLife& life_of(const std::string& job);
  void began(const std::string& job, uint64_t attempt, uint64_t instance, bool takeover);
  void sealed(const std::string& job, uint64_t version, uint32_t nranks);
  void join(Connection& c, const proto::Join& m);
  void renew(Connection& c, const proto::Renew& m);
  void leave(Connection& c, const proto::Leave& m);
  proto::WatchReply watch(Connection& c, const proto::Watch& m);
  proto::FailReply fail(const proto::Fail& m);
  void fail_attempt(const std::string& job, JobLife& l, const std::string& reason);
  void notify(const std::string& job, JobLife& l, const proto::Event& ev);
  // A connection is going: a lease it held fails its attempt.
  void forget_liveness(Connection& c);
  void check_leases();

  // ---- data path (data_path.cpp) ----
  void receive(PendingData& d);
  void data_finished(uint64_t handle);
  void send_data(Connection& c, const proto::Read& m);
  void send_generation(Connection& c, const proto::RegionRead& m);
  // One kAmData message of N bytes at pool OFFSET; IO is handed to UCX
  // (the pin it carries is released when the send ends).
  void send_chunk(Connection& c, DataIo* io, uint64_t offset, uint64_t n, ucp_mem_h memh);
  // Region data for a region kept in blocks (receive()).
  void receive_blocks(Connection& c, PendingData& d, const proto::DataHeader& h, bool named);
  void send_segments(Connection& c, uint64_t handle, uint64_t at, const std::vector<Segment>& segments,
                     const GenerationRef& g, ucp_mem_h memh);
  const Registration& registration(uint64_t offset, uint64_t capacity);
  // An extent went back to the allocator: its registration, and every
  // grant's remote key into it, end.
  void unregister(uint64_t offset);

  // ---- verification and scrub (scrub.cpp) ----
  uint64_t start_task(Task task, std::vector<RegionView> regions);
  void check(uint64_t task, Task& t, const RegionView& region);
  void verified();  // results from the Verifier
  void committed();  // results from the Committer
  void schedule_drain();  // the next sealed version to the Drainer
  void drained();         // results from the Drainer
  // What follows a region's commit on connection C: its grant revoked, its
  // version sealed if it was the last region the server waited for.
  void after_commit(Connection& c, uint64_t handle);
  void finish_task(Task& t);
  void schedule_scrub();
  // A scrub of a version deleted or quarantined since gives up its checks,
  // so the space of what it pinned is free again at once.
  void abandon_stale_scrub();
  // Every pass of the loop, at most every 100 ms: time limits, closing
  // endpoints, the scrub, signals, and a sign of life to clients whose
  // request waits for a verification.
  void housekeeping(int signal_fd);

  Pool& pool_;
  Catalogue& catalogue_;
  ServerOptions options_;
  ucx::Context context_;
  ucx::Worker worker_;
  WorkerRef main_ref_;
  std::vector<std::unique_ptr<DataWorker>> data_workers_;
  std::mutex inbox_mu_;
  std::deque<std::function<void()>> inbox_;
  Wakeup inbox_wakeup_;
  // Endpoints of receive threads being closed: work their threads posted
  // before the close may still be in the inbox, and a new endpoint may
  // reuse the address once UCX freed the old one. Each is forgotten at
  // the close's completion, which is posted after all of its work.
  std::set<ucp_ep_h> closing_eps_;
  bool rma_offered_ = false;  // the context has a transport whose remote keys the hardware enforces
  ucp_listener_h listener_ = nullptr;
  uint16_t port_ = 0;
  Owner next_owner_ = 1;
  std::map<ucp_ep_h, std::unique_ptr<Connection>> connections_;
  uint32_t served_ = 0, refusing_ = 0;  // connections within the cap, and beyond it
  std::unordered_map<Owner, Connection*> by_id_;
  std::deque<Owner> awaiting_hello_;  // in order of acceptance
  struct Suspect {
    std::string peer;
    Clock::time_point since;
  };
  std::map<int, Suspect> half_open_;  // fd -> a TCP peer of the listener not (yet) a connection
  Clock::time_point next_handshake_check_{};
  std::deque<ucp_conn_request_h> pending_accepts_;
  std::deque<Incoming> incoming_;
  std::deque<PendingRndv> rndv_;
  std::deque<PendingData> data_;
  std::deque<DeferredCommit> deferred_;
  std::map<uint64_t, uint32_t> data_inflight_;  // rendezvous receives by region handle
  std::deque<Connection*> failed_;
  std::vector<void*> closing_;
  std::map<uint64_t, Registration> registrations_;  // by extent offset
  Credentials credentials_;
  Verifier verifier_;
  // COMMITs whose data a Committer thread persists and checksums, by job id.
  struct Committing {
    Owner conn;
    uint64_t tag;
    uint64_t handle;
    uint64_t size;
    uint64_t checksum;
    bool blocks;  // kept in blocks (Catalogue::commit_blocks_data) ...
    WorkingRef work;  // ... whose blocks stay until the worker is done with them
  };
  std::map<uint64_t, Committing> committing_;
  std::set<uint64_t> committing_handles_;
  uint64_t next_commit_ = 0;
  std::unordered_map<uint64_t, std::shared_ptr<ArrivalSum>> arrival_sums_;  // by region handle
  const std::function<void(const void*, size_t)> persist_;  // a range of the pool made durable (any thread)
  Committer committer_;
  // The capacity tier: what is drained (or found drained) already, and
  // versions whose drain failed, with when to try again.
  std::unique_ptr<Drainer> drainer_;
  std::set<std::pair<std::string, uint64_t>> drained_;
  std::map<std::pair<std::string, uint64_t>, Clock::time_point> drain_retry_;
  std::map<uint64_t, Task> tasks_;
  std::map<uint64_t, CheckRef> checks_;
  uint64_t next_id_ = 1;
  std::deque<std::pair<std::string, uint64_t>> scrub_queue_;
  bool scrubbing_ = false;  // a scrub task is running
  Clock::time_point next_scrub_pass_{};
  Clock::time_point next_housekeeping_{}, next_ping_{};
  bool stopping_ = false;
  uint64_t data_in_ = 0, data_out_ = 0;  // region bytes received and sent (STAT)
  std::map<std::string, JobLife> lives_;
  // Versions the server seals by itself once their last region commits
  // (CREATE with expect_*): what they must hold, and under which attempt.
  struct Expected {
    uint32_t nranks = 0, nregions = 0, part_ranks = 0;
    uint64_t attempt = 0;
  };
  std::map<std::pair<std::string, uint64_t>, Expected> expected_;
  Clock::time_point next_lease_ = Clock::time_point::max();  // the earliest lease deadline: the loop wakes for it
};

}  // namespace pmcr::server
