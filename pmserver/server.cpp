#include "server.hpp"

#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "error.hpp"

namespace pmcr::server {
namespace {

bool context_has_rdma(ucp_context_h context) {
  char* text = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&text, &len);
  if (!f) return false;
  ucp_context_print_info(context, f);
  std::fclose(f);
  const std::string s(text, len);
  std::free(text);
  for (const char* t : kRkeyTransports)
    if (s.find(t) != std::string::npos) return true;
  return false;
}

// The server's UCX context: active messages always; RMA only with a NIC that
// enforces remote keys. Without the RMA feature UCX installs no handler for
// emulated put/get, so a client cannot make the server write or read
// anywhere with a forged key (it logs and drops such messages).
ucx::Context make_context(bool allow_rma, bool shared, bool* rma) {
  *rma = false;
  if (allow_rma) {
    ucx::Context probe("pmserver", UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP, shared);
    if (context_has_rdma(probe.get())) {
      *rma = true;
      return probe;
    }
  }
  return ucx::Context("pmserver", UCP_FEATURE_AM | UCP_FEATURE_WAKEUP, shared);
}

}  // namespace

bool rkeys_enforced(const std::string& transports) {
  if (transports.empty()) return false;
  for (size_t b = 0; b < transports.size();) {
    const size_t e = std::min(transports.find(',', b), transports.size());
    bool ok = false;
    for (const char* t : kRkeyTransports) ok = ok || transports.compare(b, std::strlen(t), t) == 0;
    if (!ok) return false;
    b = e + 1;
  }
  return true;
}

Server::Server(Pool& pool, Catalogue& catalogue, ServerOptions options)
    : pool_(pool),
      catalogue_(catalogue),
      options_(std::move(options)),
      context_(make_context(options_.allow_rma, options_.receive_threads > 0, &rma_offered_)),
      worker_(context_),
      main_ref_{this, worker_.get(), false},
      credentials_(options_.auth),
      verifier_(options_.scrub_rate, options_.commit_threads),
      persist_([this](const void* p, size_t n) { pool_.persist(p, n); }),
      committer_(options_.commit_threads, persist_) {
  catalogue_.on_extent_freed = [this](uint64_t offset, uint64_t) { unregister(offset); };
  if (!options_.drain_dir.empty()) drainer_ = std::make_unique<Drainer>(options_.drain_dir, options_.drain_rate);

  ucx::set_am_handler(worker_.get(), proto::kAmRequest, &Server::on_am, &main_ref_);
  ucx::set_am_handler(worker_.get(), proto::kAmData, &Server::on_data, &main_ref_);
  for (unsigned i = 0; i < options_.receive_threads; ++i)
    data_workers_.push_back(std::make_unique<DataWorker>(this, context_));

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(options_.listen.port);
  if (int rc = getaddrinfo(options_.listen.host.c_str(), port_text.c_str(), &hints, &res); rc != 0)
    throw Error(PMCR_E_INVAL, "cannot resolve listen address " + to_string(options_.listen) + ": " + gai_strerror(rc));
  ucp_listener_params_t lp{};
  lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  lp.sockaddr.addr = res->ai_addr;
  lp.sockaddr.addrlen = res->ai_addrlen;
  lp.conn_handler.cb = &Server::on_conn_request;
  lp.conn_handler.arg = this;
  ucs_status_t st = ucp_listener_create(worker_.get(), &lp, &listener_);
  freeaddrinfo(res);
  if (st != UCS_OK)
    throw Error(ucx::to_error(st), "cannot listen on " + to_string(options_.listen) + ": " + ucs_status_string(st) +
                                       (st == UCS_ERR_BUSY ? " (the port is in use: pick another with --listen)" : ""));
  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  st = ucp_listener_query(listener_, &attr);
  if (st != UCS_OK) ucx::throw_status("querying the listener", st);
  const auto* sa = reinterpret_cast<const struct sockaddr*>(&attr.sockaddr);
  port_ = ntohs(sa->sa_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port
                                          : reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  spdlog::info("listening on {}:{} (at most {} connections; put/get {}); {}", options_.listen.host, port_,
               options_.max_connections,
               rma_offered_ ? "offered on RDMA transports" : "not offered: no transport here enforces remote keys",
               data_workers_.empty() ? std::string("connections served on the event loop's thread")
                                     : "connections spread over " + std::to_string(data_workers_.size()) +
                                           " receive threads");
  write_ready_file();
  schedule_scrub();
}

Server::~Server() {
  if (listener_) fence_listener();
  for (auto& [ep, c] : connections_) {
    catalogue_.release_owner(c->id);
    catalogue_.release_named(c->id);
    for (uint64_t handle : c->grants->read_handles()) catalogue_.close_region(handle);
    close_ep(ep, c->worker);
  }
  connections_.clear();
  by_id_.clear();
  reap_closing(true);  // (the receive threads progress their own endpoints' closes)
  if (listener_) ucp_listener_destroy(listener_);
  // The receive threads stop; what they posted is run (it releases
  // descriptors and pins), now on this thread alone.
  for (auto& w : data_workers_) {
    w->stop = true;
    w->stop_signal.signal();
    w->thread.join();
  }
  for (const auto& w : data_workers_) w->ref.own_thread = false;
  for (const auto& w : data_workers_) w->run_tasks();  // (what it had not taken yet)
  run_inbox();
  for (const auto& p : rndv_) ucp_am_data_release(p.where->worker, p.desc);
  rndv_.clear();
  for (const auto& d : data_)
    if (d.desc) ucp_am_data_release(d.worker, d.desc);
  data_.clear();
  // Receives and sends still in flight end with the endpoints; then
  // nothing pins region memory and the registrations can go.
  for (int i = 0; i < 1000 && ucp_worker_progress(worker_.get()) != 0; ++i) {
  }
  for (const auto& w : data_workers_)
    for (int i = 0; i < 1000 && ucp_worker_progress(w->worker.get()) != 0; ++i) {
    }
  run_inbox();
  reap_closing(false);  // (closes the receive threads left to this one)
  data_workers_.clear();
  for (auto& [offset, reg] : registrations_) ucp_mem_unmap(context_.get(), reg.memh);
  registrations_.clear();
  catalogue_.on_extent_freed = nullptr;
}

void Server::write_ready_file() {
  if (options_.ready_file.empty()) return;
  std::string host = options_.listen.host;
  if (host == "0.0.0.0" || host == "::") host = "127.0.0.1";
  const std::string tmp = options_.ready_file + ".tmp";
  {
    std::ofstream out(tmp);
    out << to_string(HostPort{host, port_}) << "\n";
    if (!out) throw Error(PMCR_E_IO, "cannot write ready file " + tmp);
  }
  if (std::rename(tmp.c_str(), options_.ready_file.c_str()) != 0)
    throw Error(PMCR_E_IO, "cannot rename " + tmp + ": " + std::strerror(errno));
}

void Server::refresh_metrics() {
  if (options_.metrics)
    options_.metrics->refresh(pool_.size(), catalogue_.stats(), served_, data_in_, data_out_);
}

proto::StatReply Server::stat() const {
  const CatalogueStats s = catalogue_.stats();
  proto::StatReply r;
  r.pool_size = pool_.size();
  r.data_size = s.data_size;
  r.used_bytes = s.used_bytes;
  r.free_bytes = s.free_bytes;
  r.store_granularity = pool_.granularity_bytes();
  r.regions = s.regions;
  r.versions = s.sealed_versions;
  r.jobs = s.jobs;
  r.connections = served_;
  r.catalogue_slots = s.slots;
  r.catalogue_used = s.slots_used;
  r.pool_path = pool_.path();
  r.data_in = data_in_;
  r.data_out = data_out_;
  r.named_regions = s.named_regions;
  return r;
}

// ------------------------------------------------------------ event loop
// UCX callbacks only queue work: everything is handled here, outside UCX's
// progress context.

Server::DataWorker::DataWorker(Server* server, const ucx::Context& context)
    : worker(context, true), ref{server, worker.get(), true, this} {
  ucx::set_am_handler(worker.get(), proto::kAmRequest, &Server::on_am, &ref);
  ucx::set_am_handler(worker.get(), proto::kAmData, &Server::on_data, &ref);
  thread = std::thread([this] { loop(); });
}

Server::DataWorker::~DataWorker() {
  if (!thread.joinable()) return;
  stop = true;
  stop_signal.signal();
  thread.join();
}

// A receive thread: progresses its worker (the bytes of its connections
// move here), sleeping on the worker's event fd when there is nothing to
// do. Its callbacks post their work to the event loop.
void Server::DataWorker::loop() {
  while (!stop) {
    run_tasks();
    if (ucp_worker_progress(worker.get()) != 0) continue;
    const ucs_status_t st = ucp_worker_arm(worker.get());
    if (st == UCS_ERR_BUSY) continue;
    pollfd fds[3] = {{worker.event_fd(), POLLIN, 0}, {stop_signal.fd(), POLLIN, 0}, {task_signal.fd(), POLLIN, 0}};
    ::poll(fds, 3, st == UCS_OK ? 100 : 1);
  }
}

void Server::DataWorker::submit(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(tasks_mu);
    tasks.push_back(std::move(work));
  }
  tasks_waiting = true;
  task_signal.signal();
}

void Server::DataWorker::run_tasks() {
  if (!tasks_waiting.exchange(false)) return;
  task_signal.clear();
  std::vector<std::function<void()>> now;
  {
    std::lock_guard<std::mutex> lock(tasks_mu);
    now.swap(tasks);
  }
  for (auto& work : now) work();
}

void Server::release_data(const WorkerRef* where, void* desc) {
  run_on(*where, [worker = where->worker, desc] { ucp_am_data_release(worker, desc); });
}

void Server::run_on(const WorkerRef& where, std::function<void()> work) {
  if (where.thread && where.own_thread) where.thread->submit(std::move(work));
  else work();
}

void Server::wake_receivers() {
  for (const auto& w : data_workers_) ucp_worker_signal(w->worker.get());
}

void Server::post(const WorkerRef& where, std::function<void()> work) {
  if (!where.own_thread) return work();
  enqueue(std::move(work));
}

void Server::post_for(const WorkerRef& where, ucp_ep_h ep, std::function<void()> work, std::function<void()> dropped) {
  post(where, [this, own = where.own_thread, ep, work = std::move(work), dropped = std::move(dropped)] {
    if (own && !live(ep)) {
      if (dropped) dropped();
      return;
    }
    work();
  });
}

void Server::enqueue(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox_.push_back(std::move(work));
  }
  inbox_wakeup_.signal();
}

bool Server::run_inbox(const std::function<bool()>& done) {
  inbox_wakeup_.clear();
  bool did = false;
  // (A bounded number at a time: the loop's other work is not starved by
  // a flood; what is left keeps the loop from sleeping.)
  for (int n = 0; n < 4096; ++n) {
    if (done && done()) {
      std::lock_guard<std::mutex> lock(inbox_mu_);
      if (!inbox_.empty()) inbox_wakeup_.signal();  // (the rest at the loop's next pass)
      return did;
    }
    std::function<void()> work;
    {
      std::lock_guard<std::mutex> lock(inbox_mu_);
      if (inbox_.empty()) return did;
      work = std::move(inbox_.front());
      inbox_.pop_front();
    }
    work();
    did = true;
  }
  inbox_wakeup_.signal();
  return did;
}

bool Server::drain() {
  bool did = false;
  while (!failed_.empty()) {
    Connection* c = failed_.front();
    failed_.pop_front();
    disconnect(*c, "peer disconnected or failed");
    did = true;
  }
  while (!data_.empty()) {
    PendingData d = std::move(data_.front());
    data_.pop_front();
    receive(d);
    did = true;
  }
  for (auto it = deferred_.begin(); it != deferred_.end();) {
    if (data_inflight_.count(it->handle)) {
      ++it;
      continue;
    }
    if (Connection* c = connection(it->conn)) c->deferred_commits--;
    incoming_.push_back(std::move(it->in));
    it = deferred_.erase(it);
    did = true;
  }
  did = accept_pending() || did;
  while (!rndv_.empty()) {
    const PendingRndv p = rndv_.front();
    rndv_.pop_front();
    fetch(p);
    did = true;
  }
  while (!incoming_.empty() && failed_.empty()) {
    Incoming in = std::move(incoming_.front());
    incoming_.pop_front();
    handle(in);
    did = true;
  }
  return did;
}

void Server::run(int signal_fd) {
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) throw Error(PMCR_E_IO, std::string("epoll_create1: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{epfd};
  for (int fd : {worker_.event_fd(), signal_fd, verifier_.event_fd(), committer_.event_fd(),
                 drainer_ ? drainer_->event_fd() : -1, inbox_wakeup_.fd()}) {
    if (fd < 0) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
      throw Error(PMCR_E_IO, std::string("epoll_ctl: ") + std::strerror(errno));
  }
  refresh_metrics();
  while (!stopping_) {
    while (ucp_worker_progress(worker_.get()) != 0) {
    }
    const bool posted = run_inbox();
    verified();
    committed();
    drained();
    const bool busy = drain() || posted;
    housekeeping(signal_fd);  // even while busy: a steady stream of requests must not stop the clocks
    wake_receivers();  // (what was done may have given their workers sends, receives, closes)
    if (busy || stopping_) continue;
    const ucs_status_t st = ucp_worker_arm(worker_.get());
    if (st == UCS_ERR_BUSY) continue;  // events arrived meanwhile
    if (st != UCS_OK) ucx::throw_status("arming the UCX worker", st);
    epoll_event evs[8];
    // Sleep until UCX, the verifier or a signal wakes us; wake up once a
    // second for UCX's keepalive and the handshake timer, often while
    // endpoints are closing, and when a lease may lapse.
    int timeout = closing_.empty() ? 1000 : 10;
    if (next_lease_ != Clock::time_point::max()) {  // a lease may lapse before then: be awake to see it
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_lease_ - Clock::now()).count() + 1;
      timeout = static_cast<int>(std::clamp<long long>(ms, 1, timeout));
    }
    epoll_wait(epfd, evs, 8, timeout);
  }
}

void Server::housekeeping(int signal_fd) {
  const auto now = Clock::now();
  if (now < next_housekeeping_) return;
  next_housekeeping_ = now + std::chrono::milliseconds(100);
  signalfd_siginfo si{};
  if (signal_fd >= 0 && ::read(signal_fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {  // non-blocking
    spdlog::info("received {}, shutting down", strsignal(static_cast<int>(si.ssi_signo)));
    stopping_ = true;
  }
  reap_closing(false);
  expire_handshakes();
  check_leases();
  abandon_stale_scrub();
  schedule_scrub();
  schedule_drain();
  if (now >= next_ping_) {
    next_ping_ = now + std::chrono::seconds(1);
    refresh_metrics();
    forget_stale_checks();
    forget_stale_arrival_sums();
    std::set<Owner> waiting;
    for (const auto& [id, t] : tasks_)
      if (t.kind != TaskKind::Scrub) waiting.insert(t.conn);
    for (Owner id : waiting) {
      Connection* c = connection(id);
      if (!c) continue;
      ucp_request_param_t p{};
      void* req = ucp_am_send_nbx(c->ep, proto::kAmProgress, nullptr, 0, nullptr, 0, &p);
      if (req && !UCS_PTR_IS_ERR(req)) ucp_request_free(req);  // UCX completes it by itself
    }
  }
}

}  // namespace pmcr::server
