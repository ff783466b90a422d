#include "ucx_peers.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ucs/config/global_opts.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "protocol.hpp"
#include "text.hpp"

namespace pmcr::test {
uint64_t UcxPeers::raise_fd_limit() {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  ::getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

// This process holds thousands of endpoints too: UCX's default of 1024
// async events would break it (the server raises its own, main.cpp).
uint64_t UcxPeers::prepare() {
  const uint64_t limit = raise_fd_limit();
  ucs_global_opts_set_value("ASYNC_MAX_EVENTS", std::to_string(limit + 64).c_str());
  return limit;
}

UcxPeers::UcxPeers(bool rma)
    : fd_limit_(prepare()),
      context_("ucx-peers", UCP_FEATURE_AM | UCP_FEATURE_WAKEUP | (rma ? UCP_FEATURE_RMA : 0)),
      worker_(context_) {
  ucx::set_am_handler(worker_.get(), proto::kAmReply, &UcxPeers::on_reply, this);
}

UcxPeers::~UcxPeers() {
  std::vector<void*> closing;
  for (auto& p : peers_) {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* req = ucp_ep_close_nbx(p->ep, &rp);
    if (req && !UCS_PTR_IS_ERR(req)) closing.push_back(req);
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (void* req : closing) {
    while (ucp_request_check_status(req) == UCS_INPROGRESS && std::chrono::steady_clock::now() < until)
      ucp_worker_progress(worker_.get());
    ucp_request_free(req);
  }
}

void UcxPeers::on_error(void* arg, ucp_ep_h, ucs_status_t) { static_cast<Peer*>(arg)->failed = true; }

ucs_status_t UcxPeers::on_reply(void* arg, const void*, size_t, void* data, size_t length, const ucp_am_recv_param_t*) {
  auto* self = static_cast<UcxPeers*>(arg);
  proto::Reply rep;
  if (proto::decode(data, length, &rep) != proto::DecodeStatus::Ok) return UCS_OK;
  self->replies_[rep.tag] = rep.status;
  self->full_[rep.tag] = rep;
  // A peer is answered by its AUTH's reply, or by a refused HELLO.
  const bool hello = rep.tag > kHelloTag;
  const uint64_t i = hello ? rep.tag - kHelloTag : rep.tag;
  if (i >= 1 && i <= self->peers_.size() && (!hello || rep.status != 0)) {
    self->peers_[i - 1]->answered = true;
    self->peers_[i - 1]->status = rep.status;
  }
  return UCS_OK;
}

std::optional<proto::Reply> UcxPeers::reply(uint64_t tag) const {
  auto it = full_.find(tag);
  if (it == full_.end()) return std::nullopt;
  return it->second;
}

void UcxPeers::progress_for(std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until)
    if (ucp_worker_progress(worker_.get()) == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
}

void UcxPeers::send(size_t i, const std::vector<uint8_t>& bytes) {
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  rp.flags = UCP_AM_SEND_FLAG_REPLY;
  void* req = ucp_am_send_nbx(peers_.at(i)->ep, proto::kAmRequest, nullptr, 0, bytes.data(), bytes.size(), &rp);
  if (req && !UCS_PTR_IS_ERR(req)) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (ucp_request_check_status(req) == UCS_INPROGRESS && std::chrono::steady_clock::now() < until)
      ucp_worker_progress(worker_.get());
    ucp_request_free(req);
  }
}

size_t UcxPeers::refused() const {
  size_t n = 0;
  for (const auto& p : peers_) n += p->answered && p->status != 0;
  return n;
}

size_t UcxPeers::failed() const {
  size_t n = 0;
  for (const auto& p : peers_) n += p->failed;
  return n;
}

size_t UcxPeers::connect(const std::string& server, size_t n, bool hello, std::chrono::milliseconds timeout) {
  const HostPort hp = parse_host_port(server, kDefaultPort);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(hp.host.c_str(), std::to_string(hp.port).c_str(), &hints, &res) != 0)
    throw std::runtime_error("cannot resolve " + server);
  const size_t first = peers_.size();
  for (size_t i = 0; i < n; ++i) {
    auto p = std::make_unique<Peer>();
    if (ucx::connect(worker_.get(), res->ai_addr, res->ai_addrlen, &UcxPeers::on_error, p.get(), &p->ep) != UCS_OK) {
      freeaddrinfo(res);
      throw std::runtime_error("ucp_ep_create failed after " + std::to_string(i) + " endpoints");
    }
    peers_.push_back(std::move(p));
    if (i % 64 == 0) ucp_worker_progress(worker_.get());
  }
  freeaddrinfo(res);
  if (!hello) {
    progress_for(timeout);
    size_t alive = 0;
    for (size_t i = first; i < peers_.size(); ++i) alive += !peers_[i]->failed;
    return alive;
  }
  std::vector<std::vector<uint8_t>> bytes;
  bytes.reserve(2 * n);
  std::vector<void*> sends;
  for (size_t i = first; i < peers_.size(); ++i) {
    // HELLO and AUTH at once (the servers of these tests ask for no
    // credential: --auth none on loopback).
    bytes.push_back(proto::encode(
        proto::Request{kHelloTag + i + 1, proto::Hello{"ucx-peers", static_cast<uint32_t>(getpid()), {}}}));
    bytes.push_back(proto::encode(proto::Request{i + 1, proto::Auth{proto::AuthMethod::None, {}}}));
    for (size_t k = bytes.size() - 2; k < bytes.size(); ++k) {
      ucp_request_param_t rp{};
      rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      rp.flags = UCP_AM_SEND_FLAG_REPLY;
      void* req = ucp_am_send_nbx(peers_[i]->ep, proto::kAmRequest, nullptr, 0, bytes[k].data(), bytes[k].size(), &rp);
      if (req && !UCS_PTR_IS_ERR(req)) sends.push_back(req);
    }
    if (i % 64 == 0) ucp_worker_progress(worker_.get());
  }
  const auto until = std::chrono::steady_clock::now() + timeout;
  size_t answered = 0;
  while (std::chrono::steady_clock::now() < until) {
    answered = 0;
    size_t settled = 0;
    for (size_t i = first; i < peers_.size(); ++i) {
      answered += peers_[i]->answered && peers_[i]->status == 0;
      settled += peers_[i]->answered || peers_[i]->failed;
    }
    if (settled == n) break;
    progress_for(std::chrono::milliseconds(5));
  }
  for (void* req : sends) {
    while (ucp_request_check_status(req) == UCS_INPROGRESS && std::chrono::steady_clock::now() < until)
      ucp_worker_progress(worker_.get());
    ucp_request_free(req);
  }
  return answered;
}

RawSockets::~RawSockets() {
  for (int fd : fds_) ::close(fd);
}

size_t RawSockets::open(uint16_t port, size_t n, size_t garbage) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<uint8_t> junk(garbage);
  for (size_t i = 0; i < garbage; ++i) junk[i] = static_cast<uint8_t>(i * 131 + 7);
  size_t ok = 0;
  for (size_t i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      ::close(fd);
      continue;
    }
    if (garbage) (void)!::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    fds_.push_back(fd);
    ok++;
  }
  return ok;
}

size_t RawSockets::closed_by_peer() const {
  size_t n = 0;
  for (int fd : fds_) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) {
      char b[4096];
      const ssize_t r = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || (p.revents & (POLLHUP | POLLERR))) n++;
    }
  }
  return n;
}

}  // namespace pmcr::test
