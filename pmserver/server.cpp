#include "server.hpp"

#include <netdb.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "error.hpp"

namespace pmcr::server {
namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

std::string sockaddr_text(const struct sockaddr* sa, socklen_t len) {
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
  return std::string(host) + ":" + port;
}

}  // namespace

Server::Server(Pool& pool, Catalogue& catalogue, ServerOptions options)
    : pool_(pool), catalogue_(catalogue), options_(std::move(options)), context_("pmserver"), worker_(context_) {
  catalogue_.on_extent_freed = [this](uint64_t offset, uint64_t) { unregister(offset); };

  ucx::set_am_handler(worker_.get(), proto::kAmRequest, &Server::on_am, this);
  ucx::set_am_handler(worker_.get(), proto::kAmData, &Server::on_data, this);

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
  spdlog::info("listening on {}:{}", options_.listen.host, port_);
  write_ready_file();
}

Server::~Server() {
  for (auto& [ep, c] : connections_) {
    catalogue_.release_owner(c->id);
    close_ep(ep);
  }
  connections_.clear();
  reap_closing(true);
  for (auto& [offset, reg] : registrations_) ucp_mem_unmap(context_.get(), reg.memh);
  registrations_.clear();
  if (listener_) ucp_listener_destroy(listener_);
  for (const auto& p : rndv_) ucp_am_data_release(worker_.get(), p.desc);
  rndv_.clear();
  for (const auto& d : data_)
    if (d.desc) ucp_am_data_release(worker_.get(), d.desc);
  data_.clear();
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

// ------------------------------------------------------------ UCX callbacks
// Callbacks only queue work: everything is handled from the main loop,
// outside UCX's progress context.

void Server::on_conn_request(ucp_conn_request_h request, void* arg) {
  static_cast<Server*>(arg)->pending_accepts_.push_back(request);
}

ucs_status_t Server::on_am(void* arg, const void*, size_t, void* data, size_t length, const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Server*>(arg);
  if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) || param->reply_ep == nullptr) {
    spdlog::warn("dropping a request sent without a reply endpoint");
    return UCS_OK;
  }
  if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
    if (length > proto::kMaxRequest) {
      // Dropped unread; the client is told through an empty (malformed) message.
      self->incoming_.push_back(Incoming{param->reply_ep, {}});
      return UCS_OK;
    }
    self->rndv_.push_back(PendingRndv{param->reply_ep, data, length});
    return UCS_INPROGRESS;
  }
  const auto* p = static_cast<const uint8_t*>(data);
  self->incoming_.push_back(Incoming{param->reply_ep, std::vector<uint8_t>(p, p + length)});
  return UCS_OK;
}

void Server::on_rndv_done(void* request, ucs_status_t status, size_t, void* user_data) {
  auto* r = static_cast<RndvRecv*>(user_data);
  if (status == UCS_OK) r->server->incoming_.push_back(Incoming{r->ep, std::move(r->bytes)});
  else spdlog::warn("receiving a large request failed: {}", ucs_status_string(status));
  delete r;
  ucp_request_free(request);
}

ucs_status_t Server::on_data(void* arg, const void* header, size_t header_length, void* data, size_t length,
                             const ucp_am_recv_param_t* param) {
  auto* self = static_cast<Server*>(arg);
  const bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
  if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) || param->reply_ep == nullptr) {
    spdlog::warn("dropping region data sent without a reply endpoint");
    return UCS_OK;  // a rendezvous is released by UCX
  }
  PendingData d{param->reply_ep, {}, header_length == proto::kDataHeaderSize, nullptr, {}, length};
  if (d.header_ok) std::memcpy(d.header.data(), header, proto::kDataHeaderSize);
  if (rndv) {
    d.desc = data;
  } else {
    const auto* p = static_cast<const uint8_t*>(data);
    d.bytes.assign(p, p + length);
  }
  self->data_.push_back(std::move(d));
  return rndv ? UCS_INPROGRESS : UCS_OK;
}

void Server::on_data_done(void* request, ucs_status_t status, size_t, void* user_data) {
  auto* r = static_cast<DataRecv*>(user_data);
  if (status != UCS_OK) spdlog::debug("receiving region data failed: {}", ucs_status_string(status));
  r->server->data_finished(r->handle, r->owner);
  delete r;
  ucp_request_free(request);
}

void Server::on_ep_error(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* c = static_cast<Connection*>(arg);
  if (c->dead) return;
  c->dead = true;
  spdlog::debug("connection {} from {} failed: {}", c->id, c->peer, ucs_status_string(status));
  c->server->failed_.push_back(c);
}

void Server::on_send_done(void* request, ucs_status_t status, void* user_data) {
  if (status != UCS_OK && status != UCS_ERR_CANCELED)
    spdlog::debug("sending a reply failed: {}", ucs_status_string(status));
  delete static_cast<std::vector<uint8_t>*>(user_data);
  ucp_request_free(request);
}

// ------------------------------------------------------------ connections

void Server::accept(ucp_conn_request_h request) {
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
  std::string peer = "?";
  if (ucp_conn_request_query(request, &attr) == UCS_OK)
    peer = sockaddr_text(reinterpret_cast<const sockaddr*>(&attr.client_address), sizeof attr.client_address);
  if (stopping_) {
    ucp_listener_reject(listener_, request);
    return;
  }
  auto c = std::make_unique<Connection>();
  c->server = this;
  c->id = next_owner_++;
  c->peer = peer;
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                  UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep.conn_request = request;
  ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep.err_handler.cb = &Server::on_ep_error;
  ep.err_handler.arg = c.get();
  ucs_status_t st = ucp_ep_create(worker_.get(), &ep, &c->ep);
  if (st != UCS_OK) {
    spdlog::warn("cannot accept a connection from {}: {}", peer, ucs_status_string(st));
    return;
  }
  spdlog::info("connection {} from {}", c->id, peer);
  connections_.emplace(c->ep, std::move(c));
}

void Server::disconnect(Connection& c, const char* why) {
  // Its region receives end (with an error, once UCX notices) before its
  // regions can be freed: until then it waits in draining_.
  if (owner_inflight_.count(c.id)) {
    c.dead = true;
    if (std::find(draining_.begin(), draining_.end(), &c) == draining_.end()) draining_.push_back(&c);
    return;
  }
  const uint32_t reclaimed = catalogue_.release_owner(c.id);
  for (uint64_t handle : c.open_handles) {
    try {
      catalogue_.close_region(handle);
    } catch (const Error& e) {
      spdlog::warn("connection {}: closing a region it had open: {}", c.id, e.what());
    }
  }
  spdlog::info("connection {} ({}{}{}) closed: {}; {} unsealed regions reclaimed", c.id, c.peer,
               c.client.empty() ? "" : ", ", c.client, why, reclaimed);
  const ucp_ep_h ep = c.ep;
  // Messages still queued from this endpoint are dropped.
  for (auto it = rndv_.begin(); it != rndv_.end();) {
    if (it->ep == ep) {
      ucp_am_data_release(worker_.get(), it->desc);
      it = rndv_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = incoming_.begin(); it != incoming_.end();) it = it->ep == ep ? incoming_.erase(it) : std::next(it);
  for (auto it = deferred_.begin(); it != deferred_.end();) it = it->in.ep == ep ? deferred_.erase(it) : std::next(it);
  for (auto it = data_.begin(); it != data_.end();) {
    if (it->ep == ep) {
      if (it->desc) ucp_am_data_release(worker_.get(), it->desc);
      it = data_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = draining_.begin(); it != draining_.end();) it = *it == &c ? draining_.erase(it) : std::next(it);
  for (auto it = failed_.begin(); it != failed_.end();) it = *it == &c ? failed_.erase(it) : std::next(it);
  connections_.erase(ep);
  close_ep(ep);
}

void Server::close_ep(ucp_ep_h ep) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_EP_CLOSE_FLAG_FORCE;
  void* req = ucp_ep_close_nbx(ep, &p);
  if (req && !UCS_PTR_IS_ERR(req)) closing_.push_back(req);
}

void Server::reap_closing(bool wait) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    for (auto it = closing_.begin(); it != closing_.end();)
      it = ucx::request_status(*it) == UCS_INPROGRESS ? std::next(it) : closing_.erase(it);
    if (!wait || closing_.empty()) return;
    ucp_worker_progress(worker_.get());
  } while (std::chrono::steady_clock::now() < deadline);
  spdlog::warn("{} endpoints did not finish closing", closing_.size());
}

// ------------------------------------------------------------ requests

void Server::fetch(const PendingRndv& p) {
  auto* r = new RndvRecv{this, p.ep, std::vector<uint8_t>(p.length)};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &Server::on_rndv_done;
  rp.user_data = r;
  void* req = ucp_am_recv_data_nbx(worker_.get(), p.desc, r->bytes.data(), p.length, &rp);
  if (req == nullptr) {
    incoming_.push_back(Incoming{r->ep, std::move(r->bytes)});
    delete r;
  } else if (UCS_PTR_IS_ERR(req)) {
    spdlog::warn("receiving a large request failed: {}", ucs_status_string(UCS_PTR_STATUS(req)));
    delete r;
  }
}

// Region data: checked here, against the catalogue and the region's
// bounds, before a byte of it lands in the pool. Bad data is dropped (its
// region's COMMIT then fails its checksum) and counts as a bad message.
void Server::receive(PendingData& d) {
  const auto drop = [&](Connection* c, const std::string& why) {
    if (d.desc) ucp_am_data_release(worker_.get(), d.desc);
    if (!c) return;
    spdlog::warn("connection {} ({}): dropped region data: {}", c->id, c->peer, why);
    if (++c->bad_messages >= options_.max_bad_messages) disconnect(*c, "too many malformed messages");
  };
  auto it = connections_.find(d.ep);
  if (it == connections_.end() || it->second->dead) return drop(nullptr, "");
  Connection& c = *it->second;
  proto::DataHeader h;
  if (!c.hello) return drop(&c, "sent before HELLO");
  if (!d.header_ok || proto::decode(d.header.data(), d.header.size(), &h) != proto::DecodeStatus::Ok)
    return drop(&c, "malformed data header");
  RegionView v;
  try {
    v = catalogue_.writable_region(h.handle, c.id);
  } catch (const Error& e) {
    return drop(&c, e.what());
  }
  if (h.offset > v.size || d.length > v.size - h.offset)
    return drop(&c, std::to_string(d.length) + " bytes at offset " + std::to_string(h.offset) +
                        " do not fit a region of " + std::to_string(v.size) + " bytes");
  uint8_t* dest = pool_.base() + v.offset + h.offset;
  if (!d.desc) {
    std::memcpy(dest, d.bytes.data(), d.length);
    return;
  }
  auto* r = new DataRecv{this, h.handle, c.id};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &Server::on_data_done;
  rp.user_data = r;
  if (auto reg = registrations_.find(v.offset); reg != registrations_.end()) {
    rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;  // the region's own registration: nothing to register per chunk
    rp.memh = reg->second.memh;
  }
  ++data_inflight_[h.handle];
  ++owner_inflight_[c.id];
  void* req = ucp_am_recv_data_nbx(worker_.get(), d.desc, dest, d.length, &rp);
  if (req == nullptr || UCS_PTR_IS_ERR(req)) {
    if (UCS_PTR_IS_ERR(req)) spdlog::warn("receiving region data failed: {}", ucs_status_string(UCS_PTR_STATUS(req)));
    data_finished(h.handle, c.id);
    delete r;
  }
}

void Server::data_finished(uint64_t handle, Owner owner) {
  if (auto it = data_inflight_.find(handle); it != data_inflight_.end() && --it->second == 0) data_inflight_.erase(it);
  if (auto it = owner_inflight_.find(owner); it != owner_inflight_.end() && --it->second == 0) owner_inflight_.erase(it);
}

bool Server::drain() {
  bool did = false;
  while (!failed_.empty()) {
    Connection* c = failed_.front();
    failed_.pop_front();
    disconnect(*c, "peer disconnected or failed");
    did = true;
  }
  for (auto it = draining_.begin(); it != draining_.end();) {
    if (owner_inflight_.count((*it)->id)) {
      ++it;
      continue;
    }
    Connection* c = *it;
    it = draining_.erase(it);
    disconnect(*c, "peer disconnected or failed, or closed");
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
    incoming_.push_back(std::move(it->in));
    it = deferred_.erase(it);
    did = true;
  }
  while (!pending_accepts_.empty()) {
    auto req = pending_accepts_.front();
    pending_accepts_.pop_front();
    accept(req);
    did = true;
  }
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

void Server::handle(Incoming& in) {
  auto it = connections_.find(in.ep);
  if (it == connections_.end() || it->second->dead) return;
  Connection& c = *it->second;
  proto::Request req;
  proto::Reply rep;
  const proto::DecodeStatus ds = proto::decode(in.bytes.data(), in.bytes.size(), &req);
  if (ds != proto::DecodeStatus::Ok) {
    proto::Header h;
    if (proto::decode_header(in.bytes.data(), in.bytes.size(), &h) == proto::DecodeStatus::Ok) {
      rep.tag = h.tag;
      if (h.type >= 1 && h.type <= static_cast<uint16_t>(proto::Type::Read)) rep.type = static_cast<proto::Type>(h.type);
    }
    rep.status = PMCR_E_PROTOCOL;
    rep.message = std::string("malformed request (") + proto::decode_status_text(ds) + ", " +
                  std::to_string(in.bytes.size()) + " bytes); this server speaks pmcr protocol version " +
                  std::to_string(proto::kVersion);
    spdlog::warn("connection {} ({}): {}", c.id, c.peer, rep.message);
    send(c, rep);
    if (++c.bad_messages >= options_.max_bad_messages) disconnect(c, "too many malformed messages");
    return;
  }
  // A COMMIT waits until the region's data has all arrived.
  if (const auto* commit = std::get_if<proto::Commit>(&req.body); commit && data_inflight_.count(commit->handle)) {
    deferred_.push_back(DeferredCommit{commit->handle, std::move(in)});
    return;
  }
  rep.type = proto::type_of(req.body);
  rep.tag = req.tag;
  try {
    rep.body = dispatch(c, req.body);
  } catch (const Error& e) {
    rep.status = e.code();
    rep.message = e.what();
    rep.body = proto::Empty{};
    spdlog::debug("connection {}: {} failed: {}", c.id, proto::type_name(rep.type), e.what());
  } catch (const std::bad_alloc&) {
    rep.status = PMCR_E_NOMEM;
    rep.message = "pmserver is out of memory";
    rep.body = proto::Empty{};
  } catch (const std::exception& e) {
    rep.status = PMCR_E_INTERNAL;
    rep.message = std::string("pmserver internal error: ") + e.what();
    rep.body = proto::Empty{};
    spdlog::error("connection {}: {}: {}", c.id, proto::type_name(rep.type), e.what());
  }
  send(c, rep);
}

proto::ReplyBody Server::dispatch(Connection& c, proto::RequestBody& body) {
  if (!c.hello && !std::holds_alternative<proto::Hello>(body))
    throw Error(PMCR_E_PROTOCOL, "the first request on a connection must be HELLO");
  const auto addr = [this](uint64_t offset) { return reinterpret_cast<uint64_t>(pool_.base() + offset); };
  return std::visit(
      Overloaded{
          [&](proto::Hello& m) -> proto::ReplyBody {
            c.hello = true;
            c.client = m.client + " pid " + std::to_string(m.pid);
            spdlog::info("connection {}: hello from {}", c.id, c.client);
            proto::HelloReply r;
            std::memcpy(r.pool_uuid.data(), pool_.header()->uuid, 16);
            r.pool_size = pool_.size();
            r.server_version = PMCR_VERSION;
            return r;
          },
          [&](proto::Stat&) -> proto::ReplyBody { return stat(); },
          [&](proto::Create& m) -> proto::ReplyBody {
            const RegionView v = catalogue_.create_region({m.job, m.version, m.rank, m.id}, m.size, c.id);
            proto::CreateReply r;
            r.handle = v.handle;
            r.remote_addr = addr(v.offset);
            if (v.capacity) r.rkey = rkey_for(v.offset, v.capacity);
            return r;
          },
          [&](proto::Commit& m) -> proto::ReplyBody {
            catalogue_.commit_region(m.handle, m.size, m.checksum, c.id);
            return proto::Empty{};
          },
          [&](proto::Seal& m) -> proto::ReplyBody {
            catalogue_.seal(m.job, m.version, m.nranks, m.nregions);
            spdlog::info("sealed version {} of job '{}' ({} ranks, {} regions)", m.version, m.job, m.nranks,
                         m.nregions);
            return proto::Empty{};
          },
          [&](proto::ListVersions& m) -> proto::ReplyBody {
            proto::ListVersionsReply r;
            for (const auto& v : catalogue_.list_versions(m.job))
              r.versions.push_back({v.job, v.version, v.sealed, v.nranks, v.nregions, v.bytes});
            return r;
          },
          [&](proto::ListRegions& m) -> proto::ReplyBody {
            auto [sealed, regions] = catalogue_.list_regions(m.job, m.version);
            proto::ListRegionsReply r;
            r.sealed = sealed;
            for (const auto& g : regions)
              r.regions.push_back({g.rank, g.id, g.size, g.checksum,
                                   g.committed ? proto::RegionState::Committed : proto::RegionState::Created});
            return r;
          },
          [&](proto::Open& m) -> proto::ReplyBody {
            const RegionView v = catalogue_.open_region({m.job, m.version, m.rank, m.id});
            c.open_handles.insert(v.handle);
            c.open_views[v.handle] = v;
            proto::OpenReply r;
            r.handle = v.handle;
            r.remote_addr = addr(v.offset);
            r.size = v.size;
            r.checksum = v.checksum;
            try {
              if (v.capacity) r.rkey = rkey_for(v.offset, v.capacity);
            } catch (...) {
              c.open_handles.erase(c.open_handles.find(v.handle));
              if (!c.open_handles.count(v.handle)) c.open_views.erase(v.handle);
              catalogue_.close_region(v.handle);
              throw;
            }
            return r;
          },
          [&](proto::Close& m) -> proto::ReplyBody {
            auto h = c.open_handles.find(m.handle);
            if (h == c.open_handles.end())
              throw Error(PMCR_E_NOT_FOUND, "this connection has no open region with that handle");
            c.open_handles.erase(h);
            if (!c.open_handles.count(m.handle)) c.open_views.erase(m.handle);
            catalogue_.close_region(m.handle);
            return proto::Empty{};
          },
          [&](proto::Read& m) -> proto::ReplyBody {
            send_data(c, m);
            return proto::Empty{};
          },
          [&](proto::Delete& m) -> proto::ReplyBody {
            auto [versions, regions] =
                catalogue_.delete_versions(m.job, m.all_versions ? std::nullopt : std::optional<uint64_t>(m.version));
            return proto::DeleteReply{versions, regions};
          },
      },
      body);
}

void Server::send(Connection& c, const proto::Reply& reply) {
  auto* buf = new std::vector<uint8_t>(proto::encode(reply));
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &Server::on_send_done;
  p.user_data = buf;
  void* req = ucp_am_send_nbx(c.ep, proto::kAmReply, nullptr, 0, buf->data(), buf->size(), &p);
  if (req == nullptr) {
    delete buf;
  } else if (UCS_PTR_IS_ERR(req)) {
    spdlog::debug("connection {}: reply not sent: {}", c.id, ucs_status_string(UCS_PTR_STATUS(req)));
    delete buf;
  }
}

// A READ: the bytes of a region this connection has open (so pinned: its
// extent cannot be freed under the sends) go out as rendezvous active
// messages of at most kReadChunk bytes; the client receives each one
// straight into its buffer. The reply follows the sends it started.
void Server::send_data(Connection& c, const proto::Read& m) {
  constexpr uint64_t kReadChunk = 16u << 20;
  const auto it = c.open_views.find(m.handle);
  if (it == c.open_views.end()) throw Error(PMCR_E_NOT_FOUND, "this connection has no open region with that handle");
  const RegionView& v = it->second;
  if (m.offset > v.size || m.length > v.size - m.offset)
    throw Error(PMCR_E_INVAL, std::to_string(m.length) + " bytes at offset " + std::to_string(m.offset) +
                                  " are outside the region's " + std::to_string(v.size) + " bytes");
  const auto reg = registrations_.find(v.offset);
  for (uint64_t off = m.offset; off < m.offset + m.length; off += kReadChunk) {
    const uint64_t n = std::min(kReadChunk, m.offset + m.length - off);
    auto* header = new std::array<uint8_t, proto::kDataHeaderSize>(proto::encode(proto::DataHeader{m.handle, off}));
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_AM_SEND_FLAG_RNDV;
    p.cb.send = &Server::on_data_sent;
    p.user_data = header;
    if (reg != registrations_.end()) {
      p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      p.memh = reg->second.memh;
    }
    void* req = ucp_am_send_nbx(c.ep, proto::kAmData, header->data(), header->size(), pool_.base() + v.offset + off, n, &p);
    if (req == nullptr) {
      delete header;
    } else if (UCS_PTR_IS_ERR(req)) {
      delete header;
      throw Error(ucx::to_error(UCS_PTR_STATUS(req)),
                  std::string("sending region data failed: ") + ucs_status_string(UCS_PTR_STATUS(req)));
    }
  }
}

void Server::on_data_sent(void* request, ucs_status_t status, void* user_data) {
  if (status != UCS_OK && status != UCS_ERR_CANCELED) spdlog::debug("sending region data failed: {}", ucs_status_string(status));
  delete static_cast<std::array<uint8_t, proto::kDataHeaderSize>*>(user_data);
  ucp_request_free(request);
}

// ------------------------------------------------------------ memory

const std::vector<uint8_t>& Server::rkey_for(uint64_t offset, uint64_t capacity) {
  auto it = registrations_.find(offset);
  if (it != registrations_.end()) return it->second.rkey;
  // One registration per region extent: on an RDMA NIC each region's rkey
  // then grants access to that region only. (Over tcp UCX emulates RMA and
  // the rkey protects nothing; see README, "Security".)
  Registration reg;
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = pool_.base() + offset;
  mp.length = capacity;
  ucs_status_t st = ucp_mem_map(context_.get(), &mp, &reg.memh);
  if (st != UCS_OK) ucx::throw_status("registering region memory", st);
  void* packed = nullptr;
  size_t packed_size = 0;
  st = ucp_rkey_pack(context_.get(), reg.memh, &packed, &packed_size);
  if (st != UCS_OK) {
    ucp_mem_unmap(context_.get(), reg.memh);
    ucx::throw_status("packing a remote key", st);
  }
  reg.rkey.assign(static_cast<uint8_t*>(packed), static_cast<uint8_t*>(packed) + packed_size);
  ucp_rkey_buffer_release(packed);
  return registrations_.emplace(offset, std::move(reg)).first->second.rkey;
}

void Server::unregister(uint64_t offset) {
  auto it = registrations_.find(offset);
  if (it == registrations_.end()) return;
  const ucs_status_t st = ucp_mem_unmap(context_.get(), it->second.memh);
  if (st != UCS_OK) spdlog::warn("unregistering region memory: {}", ucs_status_string(st));
  registrations_.erase(it);
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
  r.connections = static_cast<uint32_t>(connections_.size());
  r.catalogue_slots = s.slots;
  r.catalogue_used = s.slots_used;
  r.pool_path = pool_.path();
  return r;
}

// ------------------------------------------------------------ event loop

void Server::run(int signal_fd) {
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) throw Error(PMCR_E_IO, std::string("epoll_create1: ") + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{epfd};
  for (int fd : {worker_.event_fd(), signal_fd}) {
    if (fd < 0) continue;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
      throw Error(PMCR_E_IO, std::string("epoll_ctl: ") + std::strerror(errno));
  }
  while (!stopping_) {
    while (ucp_worker_progress(worker_.get()) != 0) {
    }
    if (drain()) continue;
    reap_closing(false);
    const ucs_status_t st = ucp_worker_arm(worker_.get());
    if (st == UCS_ERR_BUSY) continue;  // events arrived meanwhile
    if (st != UCS_OK) ucx::throw_status("arming the UCX worker", st);
    epoll_event evs[4];
    // Sleep until UCX or a signal wakes us; wake up once a second for UCX's
    // own keepalive, and often while endpoints are closing.
    const int n = epoll_wait(epfd, evs, 4, closing_.empty() ? 1000 : 10);
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.fd != signal_fd) continue;
      signalfd_siginfo si{};
      if (::read(signal_fd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        spdlog::info("received {}, shutting down", strsignal(static_cast<int>(si.ssi_signo)));
        stopping_ = true;
      }
    }
  }
}

}  // namespace pmcr::server
