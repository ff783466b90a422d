#include "client.hpp"

#include <netdb.h>
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>

#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "log.hpp"
#include "text.hpp"

namespace pmcr::client {
namespace {

// Progress calls before sleeping on the event fd. Few: with TCP each empty
// call is an epoll_wait, and on a node whose ranks outnumber its cores a rank
// that spins takes the core from the rank (or pmserver) that would make the
// progress it waits for. 64 spent 175 ms of the ranks' CPU per 4 x 64 MiB
// checkpoint on a 2-core machine, 4 spends 98 ms, and the checkpoint went
// from 156 to 116 ms; a lone 4 KiB put+commit is no slower.
constexpr int kSpins = 4;

std::mutex& lifecycle_mutex() {
  static std::mutex m;
  return m;
}

struct RecvDone {
  bool done = false;
  ucs_status_t status = UCS_OK;
};

void on_recv_done(void*, ucs_status_t status, size_t, void* user_data) {
  auto* d = static_cast<RecvDone*>(user_data);
  d->done = true;
  d->status = status;
}

}  // namespace

Client::Lifecycle::Lifecycle() { lock(); }
Client::Lifecycle::~Lifecycle() { unlock(); }
void Client::Lifecycle::lock() {
  if (!held) lifecycle_mutex().lock();
  held = true;
}
void Client::Lifecycle::unlock() {
  if (held) lifecycle_mutex().unlock();
  held = false;
}

template <class R>
R Client::handshake(proto::RequestBody body, const char* what) {
  proto::Request req{next_tag_++, std::move(body)};
  start();
  proto::Reply rep = exchange(proto::encode(req), req.tag, Limit{options_.connect_timeout, "PMCR_CONNECT_TIMEOUT"});
  if (rep.status != 0) throw Error(rep.status, "pmserver at " + options_.server + " refused " + what + ": " + rep.message);
  if (!std::holds_alternative<R>(rep.body))
    throw Error(PMCR_E_PROTOCOL, "pmserver at " + options_.server + " answered " + what + " with the wrong message");
  return std::get<R>(rep.body);
}

Client::Client(Options options) : options_(std::move(options)), context_("pmcr"), worker_(context_) {
  const HostPort hp = parse_host_port(options_.server, kDefaultPort);
  options_.server = to_string(hp);

  ucx::set_am_handler(worker_.get(), proto::kAmReply, &Client::on_reply, this);
  ucx::set_am_handler(worker_.get(), proto::kAmData, &Client::on_data, this);
  ucx::set_am_handler(worker_.get(), proto::kAmProgress, &Client::on_progress, this);
  ucx::set_am_handler(worker_.get(), proto::kAmEvent, &Client::on_event, this);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp.port);
  if (int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    throw Error(PMCR_E_UNREACHABLE, "cannot resolve pmserver address " + options_.server + ": " + gai_strerror(rc));
  const ucs_status_t st = ucx::connect(worker_.get(), res->ai_addr, res->ai_addrlen, &Client::on_ep_error, this, &ep_);
  freeaddrinfo(res);
  if (st != UCS_OK)
    throw Error(PMCR_E_UNREACHABLE, "cannot connect to pmserver at " + options_.server + ": " + ucs_status_string(st));

  proto::Hello hello;
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  hello.client = (options_.name.empty() ? std::string("pmcr") : options_.name) + "@" + host;
  hello.pid = static_cast<uint32_t>(getpid());
  hello.nonce = auth::make_nonce();
  try {
    hello_ = handshake<proto::HelloReply>(hello, "HELLO");
  } catch (const Error& e) {
    const int code = (e.code() == PMCR_E_SERVER_LOST || e.code() == PMCR_E_TIMEDOUT) ? PMCR_E_UNREACHABLE : e.code();
    throw Error(code, std::string(e.what()) +
                          (code == PMCR_E_UNREACHABLE
                               ? " (is a pmserver running there? start one with: pmserver --pool PATH --size SIZE)"
                               : ""));
  }
  // AUTH: a failure here is the server's final word on this connection.
  identity_ = handshake<proto::AuthReply>(make_auth(options_.credential, options_.server, hello_, hello.nonce), "AUTH");
  check_server(options_.credential, options_.server, hello_, hello.nonce, identity_);
  if (options_.data_path == DataPath::Rma && !hello_.rma)
    throw Error(PMCR_E_CONFIG,
                "PMCR_DATA_PATH=rma: pmserver at " + options_.server + " does not offer put/get on this connection, which "
                "runs over " + hello_.transport + ": without an RDMA NIC that enforces remote keys, put/get would let "
                "any client read and write the whole pool, so the server refuses them. Use the am data path (the "
                "default: unset PMCR_DATA_PATH)");
  log()->debug("connected to pmserver {} at {} over {}", hello_.server_version, options_.server, transports());
  lifecycle_.unlock();
}

Client::~Client() {
  lifecycle_.lock();  // until the worker and the context are gone (lifecycle_ goes last)
  if (ep_) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    // (A caller that cancelled does not wait for a graceful close either.)
    const bool force = !broken_.empty() || (options_.cancelled && options_.cancelled());
    p.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    void* req = ucp_ep_close_nbx(ep_, &p);
    // A graceful close needs the server; a stalled one must not hold the
    // job: after 2 s the endpoint is force-closed instead.
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    while (req && !UCS_PTR_IS_ERR(req) && ucp_request_check_status(req) == UCS_INPROGRESS && Clock::now() < deadline)
      ucp_worker_progress(worker_.get());
    if (req && !UCS_PTR_IS_ERR(req)) {
      if (ucp_request_check_status(req) == UCS_INPROGRESS) {
        log()->warn("closing the connection to pmserver {} timed out; closing it by force", options_.server);
        ucp_request_cancel(worker_.get(), req);
      }
      finish_request(req);
    }
    ep_ = nullptr;
  }
  for (const auto& p : rndv_) ucp_am_data_release(worker_.get(), p.desc);
  for (const auto& c : read_.chunks) ucp_am_data_release(worker_.get(), c.desc);
}

void Client::finish_request(void* request) {
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  while (ucp_request_check_status(request) == UCS_INPROGRESS && Clock::now() < deadline)
    ucp_worker_progress(worker_.get());
  if (ucp_request_check_status(request) == UCS_INPROGRESS)
    log()->warn("a UCX request to pmserver {} did not end within 3 s; abandoning it", options_.server);
  ucp_request_free(request);  // released by UCX once it ends, if it has not
}

std::string Client::transports() const { return ep_ ? ucx::ep_transports(ep_) : ""; }

// ------------------------------------------------------------ callbacks

ucs_status_t Client::on_reply(void* arg, const void*, size_t, void* data, size_t length,
                              const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Client*>(arg);
  if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
    if (length > proto::kMaxReply) return UCS_OK;  // dropped: the call times out with a clear error
    self->rndv_.push_back(PendingRndv{data, length});
    return UCS_INPROGRESS;
  }
  proto::Header h;
  if (proto::decode_header(data, length, &h) == proto::DecodeStatus::Ok) {
    const auto* p = static_cast<const uint8_t*>(data);
    self->replies_[h.tag].assign(p, p + length);
    self->touch();
  }
  return UCS_OK;
}

// Region data of the READ in progress; anything else is dropped (the READ
// then fails its byte count or checksum).
ucs_status_t Client::on_data(void* arg, const void* header, size_t header_length, void* data, size_t length,
                             const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Client*>(arg);
  ActiveRead& r = self->read_;
  proto::DataHeader h;
  const bool ok = r.active && proto::decode(header, header_length, &h) == proto::DecodeStatus::Ok && h.handle == r.handle &&
                  h.offset >= r.base && h.offset - r.base <= r.size && length <= r.size - (h.offset - r.base);
  if (!ok) {
    r.status = UCS_ERR_INVALID_PARAM;
    return UCS_OK;
  }
  h.offset -= r.base;
  self->touch();
  if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
    r.chunks.push_back(DataChunk{data, h.offset, length});
    return UCS_INPROGRESS;
  }
  std::memcpy(r.buf + h.offset, data, length);
  r.received += length;
  r.pieces.push_back({h.offset, length, nullptr});
  return UCS_OK;
}

uint64_t Client::ActiveRead::landed_prefix() {
  while (!pieces.empty()) {
    const Piece& p = pieces.front();
    if (p.offset != prefix) break;  // (out of order: the rest is checked at the end)
    if (p.req && ucp_request_check_status(p.req) == UCS_INPROGRESS) break;
    prefix += p.length;
    pieces.pop_front();
  }
  return prefix;
}

void Client::on_data_done(void*, ucs_status_t status, size_t length, void* user_data) {
  auto* self = static_cast<Client*>(user_data);
  if (status == UCS_OK) {
    self->read_.received += length;
    self->touch();
  } else {
    self->read_.status = status;
  }
}

// The server is still working on a request of ours (a verification).
ucs_status_t Client::on_progress(void* arg, const void*, size_t, void*, size_t, const ucp_am_recv_param_t*) {
  static_cast<Client*>(arg)->touch();
  return UCS_OK;
}

// News of a watched job. Events are small (eager); a malformed one, or
// one beyond what a caller that never takes them should hold, is dropped.
ucs_status_t Client::on_event(void* arg, const void*, size_t, void* data, size_t length,
                              const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Client*>(arg);
  constexpr size_t kMaxQueued = 4096;
  proto::Event ev;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) || proto::decode(data, length, &ev) != proto::DecodeStatus::Ok) {
    log()->warn("dropped a malformed event from pmserver {}", self->options_.server);
    return UCS_OK;
  }
  if (self->events_.size() >= kMaxQueued) self->events_.pop_front();
  self->events_.push_back(std::move(ev));
  self->touch();
  return UCS_OK;
}

void Client::on_ep_error(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* self = static_cast<Client*>(arg);
  self->ep_status_ = status;
}

// ------------------------------------------------------------ connection state

void Client::close_now() {
  if (!ep_) return;
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_EP_CLOSE_FLAG_FORCE;
  void* close = ucp_ep_close_nbx(ep_, &p);
  ep_ = nullptr;
  if (close && !UCS_PTR_IS_ERR(close)) finish_request(close);
}

void Client::check_alive() const {
  if (!broken_.empty()) throw Error(PMCR_E_SERVER_LOST, broken_);
}

void Client::fail_connection(int code, const std::string& message) {
  if (broken_.empty()) broken_ = "connection to pmserver " + options_.server + " is unusable: " + message;
  throw Error(code, message);
}

// ------------------------------------------------------------ waiting

void Client::start() {
  last_activity_ = last_tick_ = Clock::now();
  stopped_ = {};
}

// A wait loop passes here at least every ~100 ms. A much longer gap means
// this process did not run (SIGSTOP, a debugger, a starved node): that time
// is not the server's fault, so it does not count as inactivity.
void Client::tick() {
  const auto now = Clock::now();
  const auto gap = now - last_tick_;
  if (gap > std::chrono::seconds(1)) {
    last_activity_ += gap;
    stopped_ += gap;
    log()->debug("this process did not run for {} ms; not counted against pmserver {}",
                 std::chrono::duration_cast<std::chrono::milliseconds>(gap).count(), options_.server);
  }
  last_tick_ = now;
}

void Client::timed_out(const std::string& what, const Limit& limit) {
  if (cancelled_) fail_connection(PMCR_E_STATE, what + ": given up, as its caller asked (it is stopping)");
  std::string text = what + ": pmserver " + options_.server + " showed no progress for " +
                     std::to_string(limit.ms.count()) + " ms (" + limit.setting + ")";
  if (stopped_ > Clock::duration::zero())
    text += "; this process was itself stopped for " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(stopped_).count()) +
            " ms meanwhile, which is not counted";
  fail_connection(PMCR_E_TIMEDOUT, text + ". Is the server overloaded, stopped or cut off?");
}

void Client::progress_or_sleep() {
  tick();
  for (int i = 0; i < kSpins; ++i)
    if (ucp_worker_progress(worker_.get())) return;
  if (!rndv_.empty() || !read_.chunks.empty()) return;
  if (idle_ && idle_()) return;
  const ucs_status_t st = ucp_worker_arm(worker_.get());
  if (st != UCS_OK) return;  // events arrived meanwhile (BUSY), or cannot sleep: keep spinning
  pollfd pfd{worker_.event_fd(), POLLIN, 0};
  poll(&pfd, 1, 100);
}

void Client::wait(void* request, const char* what, const Limit& limit) {
  if (request == nullptr) {
    touch();
    return;
  }
  if (UCS_PTR_IS_ERR(request)) {
    const ucs_status_t st = UCS_PTR_STATUS(request);
    fail_connection(ucx::to_error(st), std::string(what) + " failed: " + ucs_status_string(st));
  }
  ucs_status_t st;
  while ((st = ucp_request_check_status(request)) == UCS_INPROGRESS) {
    if (stalled(limit)) {
      // The request may still touch the caller's buffer: force the endpoint
      // closed, which ends it, before giving the buffer back.
      close_now();
      finish_request(request);
      timed_out(what, limit);
    }
    progress_or_sleep();
  }
  touch();
  ucp_request_free(request);
  if (st != UCS_OK) {
    const int code = ep_status_ != UCS_OK ? PMCR_E_SERVER_LOST : ucx::to_error(st);
    fail_connection(code, std::string(what) + " failed: " + ucs_status_string(st) +
                              (ep_status_ != UCS_OK ? " (the connection to pmserver " + options_.server + " was lost)"
                                                    : ""));
  }
}

void Client::fetch_rndv() {
  while (!rndv_.empty()) {
    const PendingRndv p = rndv_.front();
    rndv_.pop_front();
    std::vector<uint8_t> bytes(p.length);
    RecvDone done;
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.recv_am = on_recv_done;
    rp.user_data = &done;
    void* req = ucp_am_recv_data_nbx(worker_.get(), p.desc, bytes.data(), p.length, &rp);
    wait(req, "receiving a large reply", op_limit());
    if (req != nullptr && done.status != UCS_OK) continue;
    proto::Header h;
    if (proto::decode_header(bytes.data(), bytes.size(), &h) == proto::DecodeStatus::Ok) replies_[h.tag] = std::move(bytes);
  }
}

proto::Reply Client::exchange(const std::vector<uint8_t>& bytes, uint64_t tag, const Limit& limit) {
  check_alive();
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_AM_SEND_FLAG_REPLY;
  void* req = ucp_am_send_nbx(ep_, proto::kAmRequest, nullptr, 0, bytes.data(), bytes.size(), &p);
  wait(req, "sending a request", limit);
  for (;;) {
    fetch_rndv();
    auto it = replies_.find(tag);
    if (it != replies_.end()) {
      std::vector<uint8_t> raw = std::move(it->second);
      replies_.erase(it);
      proto::Reply rep;
      const proto::DecodeStatus ds = proto::decode(raw.data(), raw.size(), &rep);
      if (ds != proto::DecodeStatus::Ok)
        fail_connection(PMCR_E_PROTOCOL, std::string("malformed reply from pmserver ") + options_.server + ": " +
                                             proto::decode_status_text(ds));
      return rep;
    }
    replies_.clear();  // stale replies to requests that timed out
    if (ep_status_ != UCS_OK)
      fail_connection(ucx::to_error(ep_status_) == PMCR_E_UNREACHABLE ? PMCR_E_UNREACHABLE : PMCR_E_SERVER_LOST,
                      "connection to pmserver " + options_.server + " lost: " + ucs_status_string(ep_status_));
    if (stalled(limit)) timed_out("waiting for a reply", limit);
    progress_or_sleep();
  }
}

proto::ReplyBody Client::call(proto::RequestBody body) {
  const proto::Type type = proto::type_of(body);
  proto::Request req{next_tag_++, std::move(body)};
  start();
  proto::Reply rep = exchange(proto::encode(req), req.tag, op_limit());
  if (rep.status != 0) throw Error(rep.status, rep.message);
  if (rep.type != type) fail_connection(PMCR_E_PROTOCOL, "pmserver answered with a reply of the wrong type");
  return std::move(rep.body);
}

proto::Reply Client::raw_request(const std::vector<uint8_t>& bytes, uint64_t tag) {
  start();
  return exchange(bytes, tag, op_limit());
}

void Client::raw_data(const std::vector<uint8_t>& header, const std::vector<uint8_t>& payload) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_AM_SEND_FLAG_RNDV | UCP_AM_SEND_FLAG_REPLY;
  start();
  wait(ucp_am_send_nbx(ep_, proto::kAmData, header.data(), header.size(), payload.data(), payload.size(), &p),
       "sending raw data", op_limit());
}

// ------------------------------------------------------------ requests

proto::StatReply Client::stat() { return std::get<proto::StatReply>(call(proto::Stat{})); }

uint64_t Client::begin(const std::string& job, uint64_t instance, bool takeover) {
  const uint64_t attempt = std::get<proto::BeginReply>(call(proto::Begin{job, instance, takeover})).attempt;
  attempts_[job] = attempt;
  return attempt;
}

void Client::join(const std::string& job, uint64_t attempt) { attempts_[job] = attempt; }

uint64_t Client::attempt_for(const std::string& job) const {
  auto it = attempts_.find(job);
  if (it == attempts_.end())
    throw Error(PMCR_E_STATE, "no attempt of job '" + job + "' was begun on this connection: call begin() (or join() "
                              "the attempt another connection began) before writing");
  return it->second;
}

uint32_t Client::abort(const std::string& job, uint64_t version) {
  return std::get<proto::AbortReply>(call(proto::Abort{job, version})).regions;
}

void Client::verify(const std::string& job, uint64_t version) { call(proto::Verify{job, version}); }

WriteTarget Client::create(const std::string& job, uint64_t version, uint32_t rank, uint32_t id, uint64_t size,
                           uint64_t block_size, std::optional<uint64_t> base_version) {
  const bool expected = expect_.job == job && expect_.version == version;
  auto r = std::get<proto::CreateReply>(call(proto::Create{job, version, rank, id, size, attempt_for(job), block_size,
                                                           base_version.has_value(), base_version.value_or(0),
                                                           expected ? expect_.nranks : 0u,
                                                           expected ? expect_.nregions : 0u,
                                                           expected ? expect_.part_ranks : 0u}));
  return WriteTarget{r.handle, size, r.remote_addr, std::move(r.rkey), block_size, r.based};
}

void Client::pipeline(uint64_t size, size_t chunk, const char* what, const std::function<void*(uint64_t, size_t)>& issue,
                      bool flush, uint64_t origin) {
  std::vector<std::pair<uint64_t, size_t>> pieces;
  for (uint64_t off = 0; off < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk - (origin + off) % chunk, size - off));
    pieces.emplace_back(off, n);
    off += n;
  }
  pipeline(pieces, what, issue, flush);
}

void Client::pipeline(const std::vector<std::pair<uint64_t, size_t>>& pieces, const char* what,
                      const std::function<void*(uint64_t, size_t)>& issue, bool flush) {
  check_alive();
  start();
  std::deque<void*> inflight;
  std::deque<size_t> inflight_bytes;
  size_t next = 0;
  uint64_t moved = 0;
  try {
    while (next < pieces.size() || !inflight.empty()) {
      while (next < pieces.size() && inflight.size() < options_.depth) {
        void* req = issue(pieces[next].first, pieces[next].second);
        const size_t n = pieces[next].second;
        next++;
        if (UCS_PTR_IS_ERR(req)) wait(req, what, op_limit());
        if (req) {
          inflight.push_back(req);
          inflight_bytes.push_back(n);
        } else {
          moved += n;
        }
      }
      if (!inflight.empty()) {
        void* req = inflight.front();
        inflight.pop_front();
        wait(req, what, op_limit());
        moved += inflight_bytes.front();
        inflight_bytes.pop_front();
        if (transfer_) transfer_(moved);
      }
    }
    if (flush) {
      // Remote completion of every put before COMMIT is sent.
      ucp_request_param_t p{};
      wait(ucp_ep_flush_nbx(ep_, &p), "flushing puts", op_limit());
    }
  } catch (...) {
    // The connection is failed by now, which ends what is in flight.
    close_now();
    for (void* req : inflight) finish_request(req);
    throw;
  }
}

void Client::rma(bool put, void* local, uint64_t size, uint64_t remote, const std::vector<uint8_t>& rkey_bytes) {
  if (size == 0) return;
  check_alive();
  ucp_rkey_h rkey = nullptr;
  ucs_status_t st = ucp_ep_rkey_unpack(ep_, rkey_bytes.data(), &rkey);
  if (st != UCS_OK) throw Error(PMCR_E_PROTOCOL, std::string("cannot unpack the region's remote key: ") +
                                                     ucs_status_string(st));
  struct RkeyOwner {
    ucp_rkey_h h;
    ~RkeyOwner() { ucp_rkey_destroy(h); }
  } owner{rkey};
  auto* base = static_cast<uint8_t*>(local);
  pipeline(size, options_.chunk, put ? "putting region data" : "getting region data",
           [&](uint64_t off, size_t n) {
             ucp_request_param_t p{};
             return put ? ucp_put_nbx(ep_, base + off, n, remote + off, rkey, &p)
                        : ucp_get_nbx(ep_, base + off, n, remote + off, rkey, &p);
           },
           put);
}

// Region data as rendezvous active messages: the server checks the handle
// and the bounds, then receives each chunk straight into the region. A send
// completes once the server has fetched its bytes.
void Client::send_data(const WriteTarget& target, const void* buf) {
  send_chunks(target.handle, 0, buf, target.size, options_.am_chunk);
}

void Client::send_chunks(uint64_t handle, uint64_t at, const void* buf, uint64_t size, size_t chunk) {
  if (size == 0) return;
  const auto* base = static_cast<const uint8_t*>(buf);
  std::deque<std::array<uint8_t, proto::kDataHeaderSize>> headers;  // alive until their sends complete
  pipeline(size, chunk, "sending region data",
           [&](uint64_t off, size_t n) { return send_piece(handle, at + off, base + off, n, headers); }, false, at);
}

size_t Client::block_chunk(uint64_t block_size) const {
  // Messages never straddle a block: the server puts each in one block.
  return block_size <= options_.am_chunk || block_size % options_.am_chunk ? static_cast<size_t>(block_size)
                                                                           : options_.am_chunk;
}

void* Client::send_piece(uint64_t handle, uint64_t at, const uint8_t* src, size_t n,
                         std::deque<std::array<uint8_t, proto::kDataHeaderSize>>& headers) {
  headers.push_back(proto::encode(proto::DataHeader{handle, at}));
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_AM_SEND_FLAG_RNDV | UCP_AM_SEND_FLAG_REPLY;
  void* req = ucp_am_send_nbx(ep_, proto::kAmData, headers.back().data(), headers.back().size(), src, n, &p);
  PMCR_FAULT_POINT("client.send.chunk");  // tests: a writer stalled with data in flight
  return req;
}

void Client::put_blocks(const WriteTarget& target, const void* buf, const std::vector<uint64_t>& blocks) {
  if (!target.block_size) throw Error(PMCR_E_INTERNAL, "put_blocks on a region not kept in blocks");
  const uint64_t bs = target.block_size;
  const size_t chunk = block_chunk(bs);
  std::vector<std::pair<uint64_t, size_t>> pieces;
  for (uint64_t i : blocks) {
    const uint64_t end = std::min(target.size, (i + 1) * bs);
    for (uint64_t off = i * bs; off < end; off += chunk) pieces.emplace_back(off, std::min<uint64_t>(chunk, end - off));
  }
  std::deque<std::array<uint8_t, proto::kDataHeaderSize>> headers;
  pipeline(pieces, "sending region data", [&](uint64_t off, size_t n) {
    return send_piece(target.handle, off, static_cast<const uint8_t*>(buf) + off, n, headers);
  }, false);
}

void Client::put(const WriteTarget& target, const void* buf) {
  if (target.block_size) send_chunks(target.handle, 0, buf, target.size, block_chunk(target.block_size));
  else if (options_.data_path == DataPath::Am) send_data(target, buf);
  else rma(true, const_cast<void*>(buf), target.size, target.remote_addr, target.rkey);
}

void Client::commit(const WriteTarget& target, uint64_t checksum_value) {
  call(proto::Commit{target.handle, target.size, checksum_value});
}

void Client::write_region(const std::string& job, uint64_t version, uint32_t rank, uint32_t id, const void* buf,
                          uint64_t size, SharedChecksummer* shared) {
  const WriteTarget t = create(job, version, rank, id, size);
  // The checksum is computed while the bytes go out, in slices, whenever
  // the wait for them would sleep (the transport takes no more for now).
  // SHARED when other threads send the same buffer elsewhere, else our own.
  std::optional<SharedChecksummer> own;
  SharedChecksummer* sum = shared ? shared : &own.emplace(buf, size);
  constexpr size_t kSlice = 256u << 10;
  idle_ = [sum] { return sum->step(kSlice); };
  try {
    put(t, buf);
  } catch (...) {
    idle_ = nullptr;
    throw;
  }
  idle_ = nullptr;
  commit(t, sum->value());
}

void Client::seal(const std::string& job, uint64_t version, uint32_t nranks, uint32_t nregions) {
  call(proto::Seal{job, version, nranks, nregions, attempt_for(job)});
}

void Client::expect(const std::string& job, uint64_t version, uint32_t nranks, uint32_t nregions,
                    uint32_t part_ranks) {
  expect_ = Expectation{job, version, nranks, nregions, part_ranks};
}

void Client::hold_lease(const std::string& job, uint32_t rank, uint32_t nranks, uint32_t lease_ms) {
  call(proto::Join{job, attempt_for(job), rank, nranks, lease_ms});
}

void Client::renew_lease(const std::string& job) { call(proto::Renew{job, attempt_for(job)}); }

void Client::leave_lease(const std::string& job) { call(proto::Leave{job, attempt_for(job)}); }

proto::WatchReply Client::watch(const std::string& job, uint64_t instance) {
  return std::get<proto::WatchReply>(call(proto::Watch{job, instance}));
}

proto::FailReply Client::fail(const std::string& job, uint64_t instance, const std::string& reason) {
  return std::get<proto::FailReply>(call(proto::Fail{job, instance, reason}));
}

std::optional<proto::Event> Client::next_event(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!events_.empty()) {
      proto::Event ev = std::move(events_.front());
      events_.pop_front();
      return ev;
    }
    check_alive();
    if (ep_status_ != UCS_OK)
      fail_connection(PMCR_E_SERVER_LOST, std::string("the connection to pmserver ") + options_.server +
                                              " was lost: " + ucs_status_string(ep_status_));
    if (Clock::now() >= deadline) return std::nullopt;
    progress_or_sleep();
  }
}

std::vector<proto::VersionEntry> Client::list_versions(const std::string& job) {
  return std::get<proto::ListVersionsReply>(call(proto::ListVersions{job})).versions;
}

proto::ListRegionsReply Client::list_regions(const std::string& job, uint64_t version) {
  return std::get<proto::ListRegionsReply>(call(proto::ListRegions{job, version}));
}

std::optional<uint64_t> Client::latest_sealed(const std::string& job) {
  std::optional<uint64_t> best;
  for (const auto& v : list_versions(job))
    if (v.sealed && v.job == job && (!best || v.version > *best)) best = v.version;
  return best;
}

ReadSource Client::open(const std::string& job, uint64_t version, uint32_t rank, uint32_t id) {
  auto r = std::get<proto::OpenReply>(call(proto::Open{job, version, rank, id}));
  return ReadSource{r.handle, r.size, r.checksum, r.remote_addr, std::move(r.rkey), r.block_size, std::move(r.hashes)};
}

// READ: the server sends the region; each chunk is received straight into
// BUF. Returns once every byte is in, or throws (and then nothing is still
// writing into BUF).
void Client::receive_data(uint64_t handle, uint64_t base, void* buf, uint64_t size, uint64_t block_size,
                          const std::function<void(uint64_t, uint64_t)>& request) {
  if (size == 0) return;
  check_alive();
  read_ = ActiveRead{};
  read_.handle = handle;
  read_.base = base;
  read_.buf = static_cast<uint8_t*>(buf);
  read_.size = size;
  read_.active = true;
  const auto finish = [&] {
    for (const auto& c : read_.chunks) ucp_am_data_release(worker_.get(), c.desc);
    read_.chunks.clear();
    bool pending = false;
    for (void* req : read_.requests) pending = pending || ucp_request_check_status(req) == UCS_INPROGRESS;
    if (pending && ep_) {
      // Receives still running into the caller's buffer (a failure or a
      // timeout): close the endpoint, which ends them, before handing it back.
      close_now();
      if (broken_.empty()) broken_ = "connection to pmserver " + options_.server + " closed after a failed read";
    }
    for (void* req : read_.requests) finish_request(req);
    read_.requests.clear();
    read_.active = false;
  };
  // In READs of at most 16 messages: the server bounds the messages a
  // connection leaves untaken (it sends at most 16 MiB in one, and none
  // across a block of a region kept in blocks).
  constexpr uint64_t kMessage = 16ull << 20;
  const uint64_t segment = 16 * (block_size ? std::min(block_size, kMessage) : kMessage);
  try {
   for (uint64_t seg = 0; seg < size; seg += segment) {
    const uint64_t seg_end = std::min(size, seg + segment);
    request(base + seg, seg_end - seg);
    while (read_.received < seg_end) {
      if (transfer_) transfer_(read_.received);
      if (read_.status != UCS_OK)
        fail_connection(PMCR_E_TRANSPORT, std::string("receiving region data failed: ") + ucs_status_string(read_.status));
      if (ep_status_ != UCS_OK)
        fail_connection(PMCR_E_SERVER_LOST, std::string("the connection was lost while receiving region data: ") +
                                                ucs_status_string(ep_status_));
      // A bounded number at a time: they share the link, and each must
      // finish in its turn for the wait to see progress.
      const auto receiving = [&] {
        size_t n = 0;
        for (void* req : read_.requests) n += ucp_request_check_status(req) == UCS_INPROGRESS;
        return n;
      };
      while (!read_.chunks.empty() && receiving() < options_.read_depth) {
        const DataChunk c = read_.chunks.front();
        read_.chunks.pop_front();
        ucp_request_param_t p{};
        p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
        p.cb.recv_am = &Client::on_data_done;
        p.user_data = this;
        void* req = ucp_am_recv_data_nbx(worker_.get(), c.desc, read_.buf + c.offset, c.length, &p);
        if (req == nullptr) read_.received += c.length;
        else if (UCS_PTR_IS_ERR(req)) read_.status = UCS_PTR_STATUS(req);
        else read_.requests.push_back(req);
        if (!UCS_PTR_IS_ERR(req)) read_.pieces.push_back({c.offset, c.length, req});
      }
      if (read_.received >= seg_end) break;
      if (stalled(op_limit())) timed_out("receiving region data", op_limit());
      progress_or_sleep();
    }
   }
  } catch (...) {
    finish();
    throw;
  }
  finish();
}

void Client::get(const ReadSource& source, void* buf, std::vector<uint64_t>* hashes) {
  auto* const bytes = static_cast<uint8_t*>(buf);
  const uint64_t size = source.size, bs = source.block_size;
  // Tests: damage a byte as it arrives (before it is checked), so the check
  // below must catch it.
  bool damage = PMCR_FAULT_POINT("client.get.data") && size > 0;
  const auto land = [&](uint64_t upto) {
    if (damage && size / 2 < upto) {
      bytes[size / 2] ^= 0x01;
      damage = false;
    }
  };
  // What arrived is checked (a slice, or a block, at a time) whenever the
  // wait for the rest would sleep; what is left, at the end.
  Checksummer sum(bytes, bs ? 0 : size);
  std::vector<uint64_t> mine;
  const auto check_upto = [&](uint64_t ready, bool all) {
    land(ready);
    if (!bs) return sum.step(all ? ready - sum.done() : std::min<uint64_t>(256u << 10, ready - sum.done()));
    bool did = false;
    for (uint64_t at = mine.size() * bs; at < ready && (all || !did); at += bs) {
      const uint64_t end = std::min(size, at + bs);
      if (end > ready) break;
      mine.push_back(checksum(bytes + at, end - at));
      did = true;
    }
    return did;
  };
  if (options_.data_path == DataPath::Am) {
    idle_ = [&] {
      const uint64_t ready = read_.landed_prefix();
      return ready > (bs ? mine.size() * bs : sum.done()) && check_upto(ready, false);
    };
    try {
      receive_data(source.handle, 0, buf, size, bs,
                   [&](uint64_t offset, uint64_t length) { call(proto::Read{source.handle, offset, length}); });
    } catch (...) {
      idle_ = nullptr;
      throw;
    }
    idle_ = nullptr;
  } else {
    rma(false, buf, size, source.remote_addr, source.rkey);
  }
  check_upto(size, true);
  uint64_t actual = 0;
  if (bs) {
    actual = combine_hashes(mine.data(), mine.size());
    if (hashes) *hashes = std::move(mine);
  } else {
    actual = sum.value();
  }
  if (actual != source.checksum) {
    char text[96];
    std::snprintf(text, sizeof text, "read %016llx, committed %016llx", static_cast<unsigned long long>(actual),
                  static_cast<unsigned long long>(source.checksum));
    throw Error(PMCR_E_CHECKSUM, std::string("region data read from pmserver ") + options_.server +
                                     " does not match its checksum (" + text + ")");
  }
}

void Client::close(const ReadSource& source) { call(proto::Close{source.handle}); }

void Client::get_blocks(const ReadSource& source, void* buf, const std::vector<uint64_t>& blocks, bool trust_kept) {
  if (!source.block_size) throw Error(PMCR_E_INVAL, "get_blocks of a region not kept in blocks");
  auto* base = static_cast<uint8_t*>(buf);
  const uint64_t bs = source.block_size;
  const uint64_t nblocks = (source.size + bs - 1) / bs;
  if (trust_kept) {
    if (source.hashes.size() != nblocks)
      throw Error(PMCR_E_INVAL, "get_blocks trusting the kept blocks needs every block's hash from OPEN");
    if (combine_hashes(source.hashes.data(), source.hashes.size()) != source.checksum)
      throw Error(PMCR_E_CHECKSUM, "the block hashes pmserver " + options_.server + " sent do not match the region's checksum");
  }
  for (size_t k = 0; k < blocks.size();) {  // runs of adjacent blocks in one receive
    size_t end = k + 1;
    while (end < blocks.size() && blocks[end] == blocks[end - 1] + 1) ++end;
    const uint64_t from = blocks[k] * bs, to = std::min(source.size, (blocks[end - 1] + 1) * bs);
    receive_data(source.handle, from, base + from, to - from, bs,
                 [&](uint64_t offset, uint64_t length) { call(proto::Read{source.handle, offset, length}); });
    k = end;
  }
  if (trust_kept) {
    for (uint64_t i : blocks)
      if (checksum(base + i * bs, std::min(bs, source.size - i * bs)) != source.hashes[i])
        throw Error(PMCR_E_CHECKSUM, "block " + std::to_string(i) + " of a region read from pmserver " + options_.server +
                                         " does not match its hash");
    return;
  }
  const auto mine = block_hashes(buf, source.size, bs);
  if (combine_hashes(mine.data(), mine.size()) != source.checksum)
    throw Error(PMCR_E_CHECKSUM, "region data read from pmserver " + options_.server +
                                     " (the blocks fetched and those kept from another version) does not match its checksum");
}

void Client::read_region(const std::string& job, uint64_t version, uint32_t rank, uint32_t id, void* buf,
                         uint64_t size, ReadSource* source, std::vector<uint64_t>* hashes) {
  const ReadSource src = open(job, version, rank, id);
  if (source) *source = src;
  try {
    if (src.size != size)
      throw Error(PMCR_E_SIZE, "region rank " + std::to_string(rank) + " id " + std::to_string(id) + " of version " +
                                   std::to_string(version) + " holds " + std::to_string(src.size) +
                                   " bytes, the buffer has " + std::to_string(size));
    get(src, buf, hashes);
  } catch (...) {
    if (broken_.empty()) {
      try {
        close(src);
      } catch (const Error&) {
      }
    }
    throw;
  }
  close(src);
}

proto::DeleteReply Client::remove(const std::string& job, std::optional<uint64_t> version) {
  // A connection writing the job deletes only while its attempt is the live one.
  const auto a = attempts_.find(job);
  return std::get<proto::DeleteReply>(call(
      proto::Delete{job, version.value_or(0), !version.has_value(), a == attempts_.end() ? 0 : a->second}));
}

// ------------------------------------------------------------ named regions

proto::RegionReply Client::region_create(const std::string& job, const std::string& name, uint64_t block_size,
                                         uint32_t keep) {
  return std::get<proto::RegionReply>(call(proto::RegionCreate{job, name, block_size, keep}));
}

proto::RegionReply Client::region_open(const std::string& job, const std::string& name) {
  return std::get<proto::RegionReply>(call(proto::RegionOpen{job, name}));
}

void Client::region_write(uint64_t handle, uint64_t block_size, uint64_t offset, const void* buf, uint64_t len) {
  if (block_size == 0 || (block_size & (block_size - 1)))
    throw Error(PMCR_E_PROTOCOL, "pmserver gave the region a block size of " + std::to_string(block_size));
  send_chunks(handle, offset, buf, len, block_chunk(block_size));
}

void Client::region_clear(uint64_t handle) { call(proto::RegionClear{handle}); }

proto::RegionReply Client::region_commit(uint64_t handle, uint64_t size) {
  return std::get<proto::RegionReply>(call(proto::RegionCommit{handle, size}));
}

proto::RegionReply Client::region_stat(uint64_t handle) {
  return std::get<proto::RegionReply>(call(proto::RegionStat{handle}));
}

void Client::region_read(uint64_t handle, uint64_t block_size, uint64_t generation, uint64_t offset, void* buf,
                         uint64_t len) {
  if (len == 0) {
    call(proto::RegionRead{handle, generation, offset, 0});  // the server still checks the generation and the bounds
    return;
  }
  // (An unaligned start may cost one message more per READ: still far
  // below the server's bound.)
  receive_data(handle, offset, buf, len, block_size, [&](uint64_t at, uint64_t length) {
    call(proto::RegionRead{handle, generation, at, length});
  });
}

std::vector<proto::Range> Client::region_changed(uint64_t handle, uint64_t since, uint64_t generation) {
  return std::get<proto::RangesReply>(call(proto::RegionChanged{handle, since, generation})).ranges;
}

void Client::region_close(uint64_t handle) { call(proto::Close{handle}); }

void Client::region_remove(const std::string& job, const std::string& name) { call(proto::RegionRemove{job, name}); }

}  // namespace pmcr::client
