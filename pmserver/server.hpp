// Server: the UCX side of pmserver. One context, one worker, one listener;
// clients connect by sockaddr and speak the control protocol over active
// messages, while region data moves by RMA straight into and out of pool
// memory. Single-threaded: the worker is progressed from one event loop that
// sleeps on the worker's event fd (no busy polling when idle).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "catalogue.hpp"
#include "protocol.hpp"
#include "text.hpp"
#include "ucx.hpp"

namespace pmcr::server {

struct ServerOptions {
  HostPort listen{"0.0.0.0", kDefaultPort};
  std::string ready_file;  // written with "HOST:PORT" once listening
  uint32_t max_bad_messages = 16;  // malformed messages before a connection is closed
};

class Server {
 public:
  Server(Pool& pool, Catalogue& catalogue, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves until a SIGTERM or SIGINT arrives (the caller blocks them and
  // passes a signalfd) or stop() is called.
  void run(int signal_fd);
  uint16_t port() const { return port_; }

 private:
  struct Connection {
    Server* server = nullptr;
    Owner id = 0;
    ucp_ep_h ep = nullptr;
    std::string peer;
    std::string client;
    bool hello = false;
    bool dead = false;
    uint32_t bad_messages = 0;
    std::multiset<uint64_t> open_handles;
    std::map<uint64_t, RegionView> open_views;  // where each open region lies
  };
  struct Registration {
    ucp_mem_h memh = nullptr;
    std::vector<uint8_t> rkey;
  };
  struct Incoming {
    ucp_ep_h ep;
    std::vector<uint8_t> bytes;
  };
  struct PendingRndv {  // a large request whose data the main loop fetches
    ucp_ep_h ep;
    void* desc;
    size_t length;
  };
  struct RndvRecv {
    Server* server;
    ucp_ep_h ep;
    std::vector<uint8_t> bytes;
  };
  struct PendingData {  // region bytes sent as an active message (DataHeader + payload)
    ucp_ep_h ep;
    std::array<uint8_t, proto::kDataHeaderSize> header;
    bool header_ok;
    void* desc;                  // rendezvous: fetched by the main loop
    std::vector<uint8_t> bytes;  // eager: already here
    size_t length;
  };
  struct DataRecv {  // one rendezvous receive into a region
    Server* server;
    uint64_t handle;
    Owner owner;
  };

  static void on_conn_request(ucp_conn_request_h request, void* arg);
  static ucs_status_t on_am(void* arg, const void* header, size_t header_length, void* data, size_t length,
                            const ucp_am_recv_param_t* param);
  static void on_rndv_done(void* request, ucs_status_t status, size_t length, void* user_data);
  static ucs_status_t on_data(void* arg, const void* header, size_t header_length, void* data, size_t length,
                              const ucp_am_recv_param_t* param);
  static void on_data_done(void* request, ucs_status_t status, size_t length, void* user_data);
  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  static void on_send_done(void* request, ucs_status_t status, void* user_data);
  static void on_data_sent(void* request, ucs_status_t status, void* user_data);

  bool drain();  // handles queued work; false if there was none
  void accept(ucp_conn_request_h request);
  void fetch(const PendingRndv& p);
  void receive(PendingData& d);
  void data_finished(uint64_t handle, Owner owner);
  void send_data(Connection& c, const proto::Read& m);
  void handle(Incoming& in);
  proto::ReplyBody dispatch(Connection& c, proto::RequestBody& body);
  void send(Connection& c, const proto::Reply& reply);
  void disconnect(Connection& c, const char* why);
  void close_ep(ucp_ep_h ep);
  void reap_closing(bool wait);
  const std::vector<uint8_t>& rkey_for(uint64_t offset, uint64_t capacity);
  void unregister(uint64_t offset);
  void write_ready_file();
  proto::StatReply stat() const;

  Pool& pool_;
  Catalogue& catalogue_;
  ServerOptions options_;
  ucx::Context context_;
  ucx::Worker worker_;
  ucp_listener_h listener_ = nullptr;
  uint16_t port_ = 0;
  Owner next_owner_ = 1;
  std::map<ucp_ep_h, std::unique_ptr<Connection>> connections_;
  std::deque<ucp_conn_request_h> pending_accepts_;
  std::deque<Incoming> incoming_;
  std::deque<PendingRndv> rndv_;
  std::deque<PendingData> data_;
  struct DeferredCommit {  // a COMMIT waiting for its region's data
    uint64_t handle;
    Incoming in;
  };
  std::deque<DeferredCommit> deferred_;
  std::map<uint64_t, uint32_t> data_inflight_;  // rendezvous receives by region handle
  std::map<Owner, uint32_t> owner_inflight_;    // ... and by connection
  std::deque<Connection*> failed_;
  std::deque<Connection*> draining_;  // failed, waiting for their receives to end
  std::vector<void*> closing_;
  std::map<uint64_t, Registration> registrations_;  // by extent offset
  bool stopping_ = false;
};

}  // namespace pmcr::server
