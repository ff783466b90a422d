// UcxPeers: many UCX connections to one pmserver from one process (one
// context, one worker), speaking the project's own protocol: what a flood
// of real clients, or a client that forges what libpmcr never sends, looks
// like to the server. Every wait is bounded.
#pragma once

#include <ucp/api/ucp.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocol.hpp"
#include "ucx.hpp"

namespace pmcr::test {

class UcxPeers {
 public:
  // FEATURES of the context: AM always; RMA to forge put/get.
  explicit UcxPeers(bool rma = false);
  ~UcxPeers();
  UcxPeers(const UcxPeers&) = delete;
  UcxPeers& operator=(const UcxPeers&) = delete;

  // Tags of the HELLOs connect() sends (kHelloTag + peer number); its
  // AUTHs have the peer number (from 1) as their tag.
  static constexpr uint64_t kHelloTag = 1ull << 40;

  // Opens N more endpoints to SERVER (HOST:PORT). With HELLO, each says
  // HELLO and AUTH (no credential) and this waits up to TIMEOUT for the
  // answers; returns how many were authenticated. Without, it progresses for TIMEOUT and returns how many
  // have not failed.
  size_t connect(const std::string& server, size_t n, bool hello, std::chrono::milliseconds timeout);
  // Endpoints UCX has reported failed (closed by the server).
  size_t failed() const;
  // Endpoints whose HELLO the server answered with an error.
  size_t refused() const;
  size_t size() const { return peers_.size(); }
  void progress_for(std::chrono::milliseconds d);
  // Sends BYTES (an encoded request; give it a tag above size()) on
  // endpoint I, without waiting for the reply.
  void send(size_t i, const std::vector<uint8_t>& bytes);
  // The status of every reply received so far, by tag.
  const std::map<uint64_t, int32_t>& replies() const { return replies_; }
  // The whole reply of TAG, once it arrived.
  std::optional<proto::Reply> reply(uint64_t tag) const;
  ucp_ep_h ep(size_t i) const { return peers_.at(i)->ep; }
  bool failed(size_t i) const { return peers_.at(i)->failed; }
  ucp_worker_h worker() const { return worker_.get(); }
  ucp_context_h context() const { return context_.get(); }
  // Raises this process's soft open-file limit to the hard one; returns it.
  static uint64_t raise_fd_limit();

 private:
  struct Peer {
    ucp_ep_h ep = nullptr;
    bool failed = false;
    bool answered = false;
    int32_t status = 0;  // of the HELLO reply
  };
  static void on_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  static ucs_status_t on_reply(void* arg, const void* header, size_t header_length, void* data, size_t length,
                               const ucp_am_recv_param_t* param);

  static uint64_t prepare();

  uint64_t fd_limit_;
  ucx::Context context_;
  ucx::Worker worker_;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::map<uint64_t, int32_t> replies_;
  std::map<uint64_t, proto::Reply> full_;
};

// Raw TCP sockets to 127.0.0.1:PORT (no UCX): idle, or sending garbage.
class RawSockets {
 public:
  ~RawSockets();
  // Opens N; each sends GARBAGE bytes of junk first (0: nothing). Returns
  // how many connected.
  size_t open(uint16_t port, size_t n, size_t garbage);
  // How many the server has closed (EOF or reset), without blocking.
  size_t closed_by_peer() const;
  size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
};

}  // namespace pmcr::test
