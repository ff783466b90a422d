#include "ucx.hpp"

#include <cctype>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "error.hpp"

namespace pmcr::ucx {

int to_error(ucs_status_t status) noexcept {
  switch (status) {
    case UCS_OK: return PMCR_OK;
    case UCS_ERR_NO_MEMORY: return PMCR_E_NOMEM;
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_ENDPOINT_TIMEOUT: return PMCR_E_TIMEDOUT;
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_REJECTED:
    case UCS_ERR_INVALID_ADDR: return PMCR_E_UNREACHABLE;
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_CANCELED: return PMCR_E_SERVER_LOST;
    case UCS_ERR_INVALID_PARAM: return PMCR_E_INVAL;
    case UCS_ERR_MESSAGE_TRUNCATED: return PMCR_E_PROTOCOL;
    case UCS_ERR_BUSY: return PMCR_E_BUSY;
    default: return PMCR_E_TRANSPORT;
  }
}

void throw_status(const std::string& what, ucs_status_t status) {
  throw Error(to_error(status), what + ": " + ucs_status_string(status));
}

Context::Context(const char* name, uint64_t features, bool shared) {
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) throw_status("reading the UCX configuration", st);
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = features;
  params.name = name;
  params.mt_workers_shared = shared ? 1 : 0;
  st = ucp_init(&params, config, &h_);
  ucp_config_release(config);
  if (st != UCS_OK) throw_status("initialising UCX", st);
}

Context::~Context() {
  if (h_) ucp_cleanup(h_);
}

Worker::Worker(const Context& ctx, bool multi) {
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = multi ? UCS_THREAD_MODE_MULTI : UCS_THREAD_MODE_SINGLE;
  ucs_status_t st = ucp_worker_create(ctx.get(), &params, &h_);
  if (st != UCS_OK) throw_status("creating a UCX worker", st);
  if (multi) {
    ucp_worker_attr_t attr{};
    attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
    if (ucp_worker_query(h_, &attr) != UCS_OK || attr.thread_mode != UCS_THREAD_MODE_MULTI) {
      ucp_worker_destroy(h_);
      h_ = nullptr;
      throw Error(PMCR_E_TRANSPORT, "this UCX cannot share a worker between threads (it was built without "
                                    "--enable-mt): run pmserver with --receive-threads 0");
    }
  }
  st = ucp_worker_get_efd(h_, &efd_);
  if (st != UCS_OK) {
    ucp_worker_destroy(h_);
    h_ = nullptr;
    throw_status("getting the UCX worker's event fd", st);
  }
}

Worker::~Worker() {
  if (h_) ucp_worker_destroy(h_);
}

ucs_status_t connect(ucp_worker_h worker, const sockaddr* addr, socklen_t len, ucp_err_handler_cb_t on_error, void* arg,
                     ucp_ep_h* ep) {
  ucp_ep_params_t p{};
  p.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                 UCP_EP_PARAM_FIELD_ERR_HANDLER;
  p.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  p.sockaddr.addr = addr;
  p.sockaddr.addrlen = len;
  p.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  p.err_handler.cb = on_error;
  p.err_handler.arg = arg;
  return ucp_ep_create(worker, &p, ep);
}

void set_am_handler(ucp_worker_h worker, unsigned id, ucp_am_recv_callback_t cb, void* arg) {
  ucp_am_handler_param_t am{};
  am.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  am.id = id;
  am.cb = cb;
  am.arg = arg;
  const ucs_status_t st = ucp_worker_set_am_recv_handler(worker, &am);
  if (st != UCS_OK) throw_status("registering an active-message handler", st);
}

std::string ep_transports(ucp_ep_h ep) {
  char* text = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&text, &len);
  if (!f) return "unknown";
  ucp_ep_print_info(ep, f);
  std::fclose(f);
  const std::string s(text, len);
  std::free(text);
  // Lanes print as "lane[0]:  1:tcp/lo.0 md[1] ...": take each "N:tl/dev"
  // word, without the ".N" of the device's port.
  std::set<std::string> found;
  for (size_t pos = s.find('/'); pos != std::string::npos; pos = s.find('/', pos + 1)) {
    size_t b = pos;
    while (b > 0 && (std::isalnum(static_cast<unsigned char>(s[b - 1])) || s[b - 1] == '_')) --b;
    if (b == pos || b == 0 || s[b - 1] != ':' || b < 2 || !std::isdigit(static_cast<unsigned char>(s[b - 2]))) continue;
    size_t e = pos + 1;
    while (e < s.size() && (std::isalnum(static_cast<unsigned char>(s[e])) || std::strchr("_.:-", s[e]))) ++e;
    std::string t = s.substr(b, e - b);
    if (auto dot = t.rfind('.'); dot != std::string::npos && dot > t.find('/')) t.resize(dot);
    if (t.size() > t.find('/') + 1) found.insert(t);
  }
  std::string out;
  for (const auto& t : found) out += (out.empty() ? "" : ",") + t;
  return out.empty() ? "unknown" : out;
}

ucs_status_t request_status(void* request) noexcept {
  if (request == nullptr) return UCS_OK;
  if (UCS_PTR_IS_ERR(request)) return UCS_PTR_STATUS(request);
  const ucs_status_t st = ucp_request_check_status(request);
  if (st != UCS_INPROGRESS) ucp_request_free(request);
  return st;
}

}  // namespace pmcr::ucx
