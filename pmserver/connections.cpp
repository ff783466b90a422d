// Connection lifecycle: accept (within --max-connections), the HELLO and
// AUTH time limit, failures and teardown, and TCP peers that never start UCX's
// handshake.
#include <dirent.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <thread>

#include "error.hpp"
#include "fault.hpp"
#include "server.hpp"

namespace pmcr::server {
namespace {

std::string sockaddr_text(const struct sockaddr* sa, socklen_t len) {
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
  return std::string(host) + ":" + port;
}

uint16_t port_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
  return 0;
}

}  // namespace

void Server::on_conn_request(ucp_conn_request_h request, void* arg) {
  static_cast<Server*>(arg)->pending_accepts_.push_back(request);
}

void Server::on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status) {
  const auto* where = static_cast<const WorkerRef*>(arg);
  Server* self = where->server;
  self->post(*where, [self, ep, status] {
    if (!self->live(ep)) return;  // closed already (a silent refusal is never a connection)
    Connection* c = self->connections_.at(ep).get();
    if (c->dead) return;
    c->dead = true;
    spdlog::debug("connection {} from {} failed: {}", c->id, c->peer, ucs_status_string(status));
    self->failed_.push_back(c);
  });
}

bool Server::live(ucp_ep_h ep) const { return connections_.count(ep) && !closing_eps_.count(ep); }

Server::Connection* Server::connection(Owner id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() || it->second->dead ? nullptr : it->second;
}


bool Server::accept_pending() {
  const bool any = !pending_accepts_.empty();
  while (!pending_accepts_.empty()) {
    const ucp_conn_request_h request = pending_accepts_.front();
    pending_accepts_.pop_front();
    accept(request);
  }
  return any;
}

void Server::accept(ucp_conn_request_h request) {
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
  std::string peer = "?";
  if (ucp_conn_request_query(request, &attr) == UCS_OK)
    peer = sockaddr_text(reinterpret_cast<const sockaddr*>(&attr.client_address), sizeof attr.client_address);
  // Beyond the cap a connection is accepted only to be told so at HELLO
  // (PMCR_E_BUSY) and closed; those already in go on being served. (UCX
  // 1.13's ucp_listener_reject can trip an assertion in its tcp connection
  // manager when the client goes at the same moment: it is not used.) A
  // flood beyond that is closed at once, without a word.
  const bool over = stopping_ || served_ >= options_.max_connections;
  const bool silent = over && refusing_ >= 256;
  auto c = std::make_unique<Connection>();
  c->id = next_owner_++;
  c->peer = peer;
  c->accepted = Clock::now();
  c->refused = over;
  c->grants = std::make_unique<Grants>(context_.get(), pool_.base(), false);
  // The receive thread with the fewest connections (none: the event loop).
  DataWorker* dw = nullptr;
  for (const auto& w : data_workers_)
    if (!dw || w->connections < dw->connections) dw = w.get();
  c->worker = dw;
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                  UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep.conn_request = request;
  ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep.err_handler.cb = &Server::on_ep_error;
  ep.err_handler.arg = const_cast<WorkerRef*>(&ref_of(*c));
  PMCR_FAULT_POINT("server.accept");  // tests: hold the loop while connections come and go
  ucs_status_t st = ucp_ep_create(dw ? dw->worker.get() : worker_.get(), &ep, &c->ep);
  if (st != UCS_OK) {
    spdlog::warn("cannot accept a connection from {}: {}", peer, ucs_status_string(st));
    return;
  }
  if (closing_eps_.count(c->ep)) {
    // UCX gave the new endpoint the address of one whose close has
    // completed but whose work is still in the inbox: that work is run
    // first (up to the close's own completion), so that none of it is
    // taken for the new connection's.
    const ucp_ep_h reused = c->ep;
    spdlog::debug("connection {} from {}: its endpoint reuses the address of one being closed", c->id, peer);
    const auto until = Clock::now() + std::chrono::seconds(5);
    while (closing_eps_.count(reused) && Clock::now() < until)
      if (!run_inbox([&] { return !closing_eps_.count(reused); })) std::this_thread::sleep_for(std::chrono::microseconds(50));
    if (closing_eps_.erase(reused))
      spdlog::error("connection {} from {}: the close of an earlier endpoint at its address never completed", c->id,
                    peer);
  }
  if (over) {
    static Clock::time_point last_warning{};
    if (Clock::now() - last_warning > std::chrono::seconds(10)) {
      spdlog::warn("refusing connections (from {} and maybe others): {} connections is the limit "
                   "(pmserver --max-connections)", peer, options_.max_connections);
      last_warning = Clock::now();
    }
    if (options_.metrics) options_.metrics->connection_refused();
    if (silent) {
      close_ep(c->ep, dw);
      return;
    }
    refusing_++;
  } else {
    served_++;
    if (options_.metrics) options_.metrics->connection_accepted();
  }
  if (dw) dw->connections++;
  spdlog::debug("connection {} from {}", c->id, peer);
  awaiting_hello_.push_back(c->id);
  by_id_[c->id] = c.get();
  connections_.emplace(c->ep, std::move(c));
}

void Server::disconnect(Connection& c, const char* why, bool flush) {
  // Its unsealed regions go now; receives into them still in flight hold
  // pins, so their memory is reused only once those have ended.
  forget_liveness(c);  // a rank's lease lost with its connection fails its attempt
  const uint32_t reclaimed = catalogue_.release_owner(c.id);
  catalogue_.release_named(c.id);
  for (uint64_t handle : c.grants->read_handles()) {
    try {
      catalogue_.close_region(handle);
    } catch (const Error& e) {
      spdlog::warn("connection {}: closing a region it had open: {}", c.id, e.what());
    }
  }
  // Connections that never said HELLO (a flood, a scanner) are not worth an
  // info line each.
  spdlog::log(c.hello ? spdlog::level::info : spdlog::level::debug, "connection {} ({}{}{}) closed: {}; {} unsealed regions reclaimed",
              c.id, c.peer, c.client.empty() ? "" : ", ", c.client, why, reclaimed);
  const ucp_ep_h ep = c.ep;
  // Messages still queued from this endpoint are dropped.
  for (auto it = rndv_.begin(); it != rndv_.end();) {
    if (it->ep == ep) {
      release_data(it->where, it->desc);
      it = rndv_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = incoming_.begin(); it != incoming_.end();) it = it->ep == ep ? incoming_.erase(it) : std::next(it);
  for (auto it = deferred_.begin(); it != deferred_.end();) it = it->in.ep == ep ? deferred_.erase(it) : std::next(it);
  for (auto it = data_.begin(); it != data_.end();) {
    if (it->ep == ep) {
      if (it->desc) release_data(it->where, it->desc);
      it = data_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = failed_.begin(); it != failed_.end();) it = *it == &c ? failed_.erase(it) : std::next(it);
  for (auto it = arrival_sums_.begin(); it != arrival_sums_.end();)
    it = it->second->writer == c.id ? arrival_sums_.erase(it) : std::next(it);
  (c.refused ? refusing_ : served_)--;
  DataWorker* dw = c.worker;
  if (dw) dw->connections--;
  by_id_.erase(c.id);
  connections_.erase(ep);
  close_ep(ep, dw, flush);
}

void Server::close_ep(ucp_ep_h ep, DataWorker* worker, bool flush) {
  if (worker) closing_eps_.insert(ep);  // (see closing_eps_)
  const WorkerRef* where = worker ? &worker->ref : &main_ref_;
  const auto close = [this, ep, worker, where, flush] {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = flush ? 0 : UCP_EP_CLOSE_FLAG_FORCE;
    ClosingEp* closing = nullptr;
    if (worker) {
      closing = new ClosingEp{this, ep, &worker->ref};
      p.op_attr_mask |= UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      p.cb.send = &Server::on_closed;
      p.user_data = closing;
    }
    void* req = ucp_ep_close_nbx(ep, &p);
    if (req && !UCS_PTR_IS_ERR(req)) {  // (reaped by the event loop)
      post(*where, [this, req] { closing_.push_back(req); });
      return;
    }
    if (closing) {  // closed at once: forgotten after the work already queued
      post(*where, [this, ep] { closing_eps_.erase(ep); });
      delete closing;
    }
  };
  // On the endpoint's own thread, after what was asked of it before.
  run_on(*where, close);
}

void Server::on_closed(void*, ucs_status_t, void* user_data) {
  auto* closing = static_cast<ClosingEp*>(user_data);
  Server* self = closing->server;
  const ucp_ep_h ep = closing->ep;
  self->post(*closing->where, [self, ep] { self->closing_eps_.erase(ep); });
  delete closing;  // (the request is freed by reap_closing)
}

void Server::reap_closing(bool wait) {
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  do {
    if (wait) run_inbox();  // (the receive threads' closes come in through it)
    for (auto it = closing_.begin(); it != closing_.end();)
      it = ucx::request_status(*it) == UCS_INPROGRESS ? std::next(it) : closing_.erase(it);
    // (Waiting: also for the closes a receive thread has yet to report.)
    if (!wait || (closing_.empty() && closing_eps_.empty())) return;
    if (ucp_worker_progress(worker_.get()) == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
  } while (Clock::now() < deadline);
  spdlog::warn("{} endpoints did not finish closing", std::max(closing_.size(), closing_eps_.size()));
}

// Two kinds of peers hold server resources without ever becoming clients:
//  - a UCX connection that does not say HELLO and authenticate in time (a
//    broken client, or one that connects and stalls): its endpoint is
//    closed;
//  - a TCP connection to the listening port that never completes UCX's
//    connection handshake (a port scanner, a flood of raw sockets). UCX 1.13
//    keeps such sockets open forever (no timeout in its tcp listener), one
//    fd each. They are found among this process's sockets (a socket of the
//    listening port whose peer is no connection), and after the same time
//    limit shut down: UCX then sees the peer go and closes its socket
//    itself.
void Server::expire_handshakes() {
  const auto now = Clock::now();
  if (now < next_handshake_check_) return;
  next_handshake_check_ = now + std::max<Clock::duration>(options_.hello_timeout / 4, std::chrono::milliseconds(100));

  while (!awaiting_hello_.empty()) {
    Connection* c = connection(awaiting_hello_.front());
    if (c && !c->principal) {
      if (now - c->accepted < options_.hello_timeout) break;
      disconnect(*c, "no HELLO and AUTH within the time limit (pmserver --hello-timeout)");
    }
    awaiting_hello_.pop_front();
  }

  std::map<int, Suspect> seen;
  uint32_t dropped = 0;
  for (const auto& [fd, peer] : strangers()) {
    if (peer.empty()) continue;  // the listener
    auto old = half_open_.find(fd);
    Suspect s{peer, now};
    if (old != half_open_.end() && old->second.peer == peer) s.since = old->second.since;
    if (now - s.since >= options_.hello_timeout) {
      ::shutdown(fd, SHUT_RDWR);
      dropped++;
      continue;
    }
    seen.emplace(fd, s);
  }
  half_open_ = std::move(seen);
  if (dropped)
    spdlog::warn("dropped {} TCP connection(s) to port {} that did not start the UCX handshake within {} ms", dropped,
                 port_, options_.hello_timeout.count());
}

std::vector<std::pair<int, std::string>> Server::strangers() const {
  std::set<std::string> peers;
  for (const auto& [ep, c] : connections_) peers.insert(c->peer);
  std::vector<std::pair<int, std::string>> found;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return found;
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || fd < 0 || fd == ::dirfd(dir)) continue;
    struct stat st {};
    if (::fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{}, remote{};
    socklen_t llen = sizeof local, rlen = sizeof remote;
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &llen) != 0 ||
        (local.ss_family != AF_INET && local.ss_family != AF_INET6) || port_of(local) != port_)
      continue;
    if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&remote), &rlen) != 0) {
      found.emplace_back(static_cast<int>(fd), std::string());  // the listener
      continue;
    }
    std::string peer = sockaddr_text(reinterpret_cast<const sockaddr*>(&remote), rlen);
    if (!peers.count(peer)) found.emplace_back(static_cast<int>(fd), std::move(peer));
  }
  ::closedir(dir);
  return found;
}

// UCX 1.13 frees a listener without waiting for the connection requests its
// tcp connection manager is still reading (a request read after the free
// makes UCX's thread crash: fixed in later UCX, which counts them). So
// before the listener goes, nothing new may reach it: a filter that drops
// every packet goes on the listening socket (new clients' SYNs are dropped
// until the socket closes, then refused; the sockets it accepts inherit the
// filter) and on each socket accepted but not yet a connection; what
// already arrived is read meanwhile, and its requests are accepted (to be
// refused as the server is stopping) and closed with the rest.
void Server::fence_listener() {
  static sock_filter drop_all[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  const sock_fprog program{1, drop_all};
  std::set<std::pair<int, std::string>> fenced;
  const auto fence = [&] {
    auto found = strangers();
    for (const auto& s : found)  // (again for one UCX accepted meanwhile from before the filter)
      if (!fenced.count(s) && ::setsockopt(s.first, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) == 0)
        fenced.insert(s);
    return found;
  };
  fence();
  // Until every socket of the port is the listener or a connection (twice
  // in a row, 2 ms apart: a request being read now is one or the other by
  // then), for at most 100 ms (a socket of a connection just closed that
  // UCX has not closed yet, a client that never sends).
  const auto until = Clock::now() + std::chrono::milliseconds(100);
  for (int quiet = 0; quiet < 2 && Clock::now() < until;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    while (ucp_worker_progress(worker_.get()) != 0) {
    }
    accept_pending();
    run_inbox();
    const auto left = fence();
    quiet = std::all_of(left.begin(), left.end(), [](const auto& s) { return s.second.empty(); }) ? quiet + 1 : 0;
  }
  spdlog::debug("the listener is fenced ({} sockets)", fenced.size());
}

}  // namespace pmcr::server
