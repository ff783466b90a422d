// Thin RAII owners for the UCX handles both sides use, and the one place
// where a UCX status becomes a pmcr error code.
#pragma once

#include <ucp/api/ucp.h>

#include <string>
#include <utility>

namespace pmcr::ucx {

// PMCR_E_* for a UCX status.
int to_error(ucs_status_t status) noexcept;
// Throws Error(to_error(status), what + ": " + ucs_status_string(status)).
[[noreturn]] void throw_status(const std::string& what, ucs_status_t status);

class Context {
 public:
  // A context with FEATURES (default: active messages, RMA and, for
  // blocking waits, wakeup). `name` shows up in UCX's own logs. SHARED:
  // its workers are used from several threads at once.
  explicit Context(const char* name, uint64_t features = UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP,
                   bool shared = false);
  Context(Context&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  Context& operator=(Context&&) = delete;
  ~Context();
  ucp_context_h get() const { return h_; }

 private:
  ucp_context_h h_ = nullptr;
};

class Worker {
 public:
  // MULTI: other threads call UCX on it while its own thread progresses
  // it (UCS_THREAD_MODE_MULTI: UCX serializes them with the worker's lock).
  explicit Worker(const Context& ctx, bool multi = false);
  Worker(Worker&& o) noexcept : h_(std::exchange(o.h_, nullptr)), efd_(o.efd_) {}
  Worker& operator=(Worker&&) = delete;
  ~Worker();
  ucp_worker_h get() const { return h_; }
  int event_fd() const { return efd_; }  // for epoll; re-arm with ucp_worker_arm

 private:
  ucp_worker_h h_ = nullptr;
  int efd_ = -1;
};

// Creates a client endpoint to the listener at ADDR (sockaddr connection
// establishment), with peer failure detection: ON_ERROR(ARG, ...) hears of
// a failure. Returns UCX's status; *EP is set on success.
ucs_status_t connect(ucp_worker_h worker, const sockaddr* addr, socklen_t len, ucp_err_handler_cb_t on_error, void* arg,
                     ucp_ep_h* ep);

// Routes active messages with ID on WORKER to CB(ARG, ...).
void set_am_handler(ucp_worker_h worker, unsigned id, ucp_am_recv_callback_t cb, void* arg);

// The transports of EP's lanes as "tl/device" names, e.g. "tcp/lo", comma
// separated and sorted ("unknown" if UCX does not say).
std::string ep_transports(ucp_ep_h ep);

// Releases a UCX request once it is complete (or immediately if it is not a
// request pointer). Returns the request's final status.
ucs_status_t request_status(void* request) noexcept;

}  // namespace pmcr::ucx
