#include "ucx_limit.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "error.hpp"
#include "ucx.hpp"

namespace pmcr::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr unsigned kData = 1, kControl = 2;       // active-message ids
enum Control : uint8_t { kReady = 1, kGo = 2, kDone = 3, kBye = 4 };
constexpr auto kLimit = std::chrono::seconds(120);  // a stream that takes longer has failed
constexpr uint8_t kHeld = 7;                        // the bytes the receiving end holds; rank R's are 100 + R

[[noreturn]] void fail(const std::string& what) { throw pmcr::Error(PMCR_E_IO, "UCX baseline: " + what); }

// One end of one rank's stream: its worker (progressed by one thread), its
// endpoint, where its data lands.
struct End {
  ucp_worker_h worker = nullptr;
  ucp_ep_h ep = nullptr;
  ucp_conn_request_h conn = nullptr;  // the listening end: the connection to accept
  uint8_t* dest = nullptr;
  uint64_t landed = 0;
  unsigned controls = 0;  // bit K: control K arrived
  bool failed = false;
  struct Pending {
    void* desc;
    uint64_t offset, length;
  };
  std::vector<Pending> rndv;  // rendezvous data to fetch
};

ucs_status_t on_data(void* arg, const void* header, size_t header_length, void* data, size_t length,
                     const ucp_am_recv_param_t* param) {
  auto* e = static_cast<End*>(arg);
  uint64_t offset = 0;
  if (header_length != sizeof offset) {
    e->failed = true;
    return UCS_OK;
  }
  std::memcpy(&offset, header, sizeof offset);
  if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
    e->rndv.push_back({data, offset, length});  // fetched outside the callback
    return UCS_INPROGRESS;
  }
  std::memcpy(e->dest + offset, data, length);
  e->landed += length;
  return UCS_OK;
}

ucs_status_t on_control(void* arg, const void* header, size_t header_length, void*, size_t,
                        const ucp_am_recv_param_t*) {
  auto* e = static_cast<End*>(arg);
  if (header_length == 1) e->controls |= 1u << *static_cast<const uint8_t*>(header);
  return UCS_OK;
}

void on_error(void* arg, ucp_ep_h, ucs_status_t) { static_cast<End*>(arg)->failed = true; }

void fetch(End& e) {
  for (const End::Pending& d : std::exchange(e.rndv, {})) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    p.cb.recv_am = [](void* req, ucs_status_t st, size_t n, void* user) {
      auto* end = static_cast<End*>(user);
      if (st == UCS_OK) end->landed += n;
      else end->failed = true;
      ucp_request_free(req);
    };
    p.user_data = &e;
    void* req = ucp_am_recv_data_nbx(e.worker, d.desc, e.dest + d.offset, d.length, &p);
    if (req == nullptr) e.landed += d.length;  // (done at once: no callback)
    else if (UCS_PTR_IS_ERR(req)) e.failed = true;
  }
}

// Progresses E's worker until DONE says so (sleeping on its event fd when
// there is nothing to do, as a blocking socket would); false if the
// stream failed or took too long.
bool progress_until(End& e, const std::function<bool()>& done) {
  const auto until = Clock::now() + kLimit;
  int fd = -1;
  if (ucp_worker_get_efd(e.worker, &fd) != UCS_OK) return false;
  while (!done()) {
    if (e.failed || Clock::now() > until) return false;
    fetch(e);
    if (ucp_worker_progress(e.worker) || !e.rndv.empty()) continue;
    if (ucp_worker_arm(e.worker) == UCS_ERR_BUSY) continue;
    pollfd pfd{fd, POLLIN, 0};
    ::poll(&pfd, 1, 50);
  }
  return true;
}

// Waits for control C from the other end, and consumes it (the next round
// sends it again).
bool take(End& e, Control c) {
  const bool ok = progress_until(e, [&] { return (e.controls & (1u << c)) != 0; });
  e.controls &= ~(1u << c);
  return ok;
}

bool complete(End& e, void* req) {
  if (req == nullptr) return true;
  if (UCS_PTR_IS_ERR(req)) return false;
  const bool ok = progress_until(e, [req] { return ucp_request_check_status(req) != UCS_INPROGRESS; }) &&
                  ucp_request_check_status(req) == UCS_OK;
  ucp_request_free(req);
  return ok;
}

bool send_control(End& e, Control c) {
  static const uint8_t kinds[] = {0, kReady, kGo, kDone, kBye};
  ucp_request_param_t p{};
  return complete(e, ucp_am_send_nbx(e.ep, kControl, &kinds[c], 1, nullptr, 0, &p));
}

// BYTES from SRC as rendezvous active messages of CHUNK, all in flight at once.
bool send_data(End& e, const uint8_t* src, uint64_t bytes, uint64_t chunk) {
  std::vector<uint64_t> offsets;
  for (uint64_t at = 0; at < bytes; at += chunk) offsets.push_back(at);
  std::vector<void*> reqs;
  bool ok = true;
  for (const uint64_t& at : offsets) {  // (each header lives until its send completes)
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_AM_SEND_FLAG_RNDV | UCP_AM_SEND_FLAG_REPLY;
    void* req = ucp_am_send_nbx(e.ep, kData, &at, sizeof at, src + at, std::min(chunk, bytes - at), &p);
    if (UCS_PTR_IS_ERR(req)) ok = false;
    else if (req) reqs.push_back(req);
  }
  for (void* req : reqs) ok = complete(e, req) && ok;
  return ok;
}

void handlers(End& e) {
  pmcr::ucx::set_am_handler(e.worker, kData, on_data, &e);
  pmcr::ucx::set_am_handler(e.worker, kControl, on_control, &e);
}

// What rank RANK sends in ROUND of a checkpoint: each round differs from the last.
uint8_t pattern(int rank, int round) { return static_cast<uint8_t>(100 + rank + round); }

// A rank: connects to PORT, and ROUNDS times says it is ready, then at "go"
// sends its bytes (TO_SERVER: pattern(RANK, round)) or receives them and
// says when they all landed, then waits for the other end's "bye".
// CPU: the seconds it spent in each round, from "go" to its part done.
bool rank_process(uint16_t port, uint64_t bytes, bool to_server, uint64_t chunk, int rank, int rounds,
                  std::vector<double>* cpu) {
  std::vector<uint8_t> mine(bytes, pattern(rank, 0));  // (touched)
  pmcr::ucx::Context ctx("pmcr-bench-ucx-rank", UCP_FEATURE_AM | UCP_FEATURE_WAKEUP);
  pmcr::ucx::Worker worker(ctx);
  End e;
  e.worker = worker.get();
  e.dest = mine.data();
  handlers(e);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (pmcr::ucx::connect(e.worker, reinterpret_cast<const sockaddr*>(&a), sizeof a, on_error, &e, &e.ep) != UCS_OK)
    return false;
  bool ok = true;
  for (int round = 0; round < rounds && ok; ++round) {
    if (to_server && round > 0) std::fill(mine.begin(), mine.end(), pattern(rank, round));
    e.landed = 0;
    ok = send_control(e, kReady) && take(e, kGo);
    const double cpu0 = own_cpu_seconds();
    if (ok && to_server) ok = send_data(e, mine.data(), bytes, chunk);
    if (ok && !to_server) ok = progress_until(e, [&] { return e.landed >= bytes; }) && send_control(e, kDone);
    cpu->push_back(own_cpu_seconds() - cpu0);
    if (ok && !to_server)
      ok = e.landed == bytes && std::all_of(mine.begin(), mine.end(), [](uint8_t b) { return b == kHeld; });
    // The other end has it all: the next round may begin, or the endpoint
    // close (a send completes when its bytes are on their way, and a closed
    // endpoint drops what is still on the wire).
    ok = ok && take(e, kBye);
  }
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_EP_CLOSE_FLAG_FORCE;
  complete(e, ucp_ep_close_nbx(e.ep, &p));
  return ok;
}

// One set of fresh rank processes (forked before this process touches UCX)
// and a fresh UCX context here, moving the bytes ROUNDS times on the same
// connections. Each round's seconds and CPU seconds (both ends).
std::vector<std::pair<double, double>> once(int ranks, uint64_t bytes, bool to_server, uint64_t chunk, int rounds,
                                            uint8_t* held) {
  const auto rank_bytes = [&](int r) { return held + static_cast<uint64_t>(r) * bytes; };
  std::vector<int> ports_to(static_cast<size_t>(ranks), -1);  // pipe: the port each rank connects to
  std::vector<int> cpu_from(static_cast<size_t>(ranks), -1);  // pipe: the CPU time each rank spent in each round
  std::vector<pid_t> children;
  std::vector<double> ranks_cpu(static_cast<size_t>(rounds), 0);
  const auto reap = [&](bool kill_them) {
    bool ok = true;
    for (size_t i = 0; i < children.size(); ++i) {
      if (kill_them) ::kill(children[i], SIGKILL);
      int status = 0;
      ::waitpid(children[i], &status, 0);
      std::vector<double> cpu(static_cast<size_t>(rounds), 0);
      const auto size = static_cast<ssize_t>(cpu.size() * sizeof(double));
      ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0 && ::read(cpu_from[i], cpu.data(), size) == size;
      for (size_t k = 0; k < cpu.size(); ++k) ranks_cpu[k] += cpu[k];
    }
    for (int fd : ports_to) ::close(fd);
    for (int fd : cpu_from) ::close(fd);
    children.clear();
    ports_to.clear();
    cpu_from.clear();
    return ok;
  };
  for (int r = 0; r < ranks; ++r) {
    int fds[2], back[2];
    if (::pipe2(fds, O_CLOEXEC) != 0 || ::pipe2(back, O_CLOEXEC) != 0) fail(std::string("pipe: ") + std::strerror(errno));
    const pid_t pid = ::fork();
    if (pid < 0) fail(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      bool ok = false;
      try {
        ::close(fds[1]);
        ::close(back[0]);
        uint16_t port = 0;
        std::vector<double> cpu;
        ok = ::read(fds[0], &port, sizeof port) == static_cast<ssize_t>(sizeof port) &&
             rank_process(port, bytes, to_server, chunk, r, rounds, &cpu);
        const auto size = static_cast<ssize_t>(cpu.size() * sizeof(double));
        ok = ok && ::write(back[1], cpu.data(), static_cast<size_t>(size)) == size;
      } catch (...) {  // never back into the parent's code
      }
      ::_exit(ok ? 0 : 1);
    }
    ::close(fds[0]);
    ::close(back[1]);
    ports_to[static_cast<size_t>(r)] = fds[1];
    cpu_from[static_cast<size_t>(r)] = back[0];
    children.push_back(pid);
  }
  std::vector<double> elapsed(static_cast<size_t>(rounds), 0), own_cpu(static_cast<size_t>(rounds), 0);
  bool ok = true;
  {
    pmcr::ucx::Context ctx("pmcr-bench-ucx", UCP_FEATURE_AM | UCP_FEATURE_WAKEUP);
    std::vector<pmcr::ucx::Worker> workers;
    workers.reserve(static_cast<size_t>(ranks));
    std::vector<End> ends(static_cast<size_t>(ranks));
    std::vector<ucp_listener_h> listeners;
    for (int r = 0; r < ranks; ++r) {
      End& e = ends[static_cast<size_t>(r)];
      workers.emplace_back(ctx);
      e.worker = workers.back().get();
      e.dest = rank_bytes(r);
      handlers(e);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ucp_listener_params_t lp{};
      lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
      lp.sockaddr.addr = reinterpret_cast<const sockaddr*>(&a);
      lp.sockaddr.addrlen = sizeof a;
      lp.conn_handler.cb = [](ucp_conn_request_h req, void* arg) { static_cast<End*>(arg)->conn = req; };
      lp.conn_handler.arg = &e;
      ucp_listener_h l = nullptr;
      ucs_status_t st = ucp_listener_create(e.worker, &lp, &l);
      if (st != UCS_OK) {
        reap(true);
        pmcr::ucx::throw_status("UCX baseline: listening on 127.0.0.1", st);
      }
      listeners.push_back(l);
      ucp_listener_attr_t la{};
      la.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
      st = ucp_listener_query(l, &la);
      const uint16_t port = st == UCS_OK ? ntohs(reinterpret_cast<const sockaddr_in*>(&la.sockaddr)->sin_port) : 0;
      if (::write(ports_to[static_cast<size_t>(r)], &port, sizeof port) != static_cast<ssize_t>(sizeof port))
        ok = false;
    }
    // One thread per stream, as the socket baseline: accept, then each
    // round wait for the rank, and at "go" move the bytes.
    std::mutex mu;
    std::condition_variable cv;
    int ready = 0, go = -1;  // streams ready, summed over the rounds; the round let go
    std::vector<char> good(static_cast<size_t>(ranks), 0);
    std::vector<std::vector<Clock::time_point>> ends_at(static_cast<size_t>(rounds),
                                                        std::vector<Clock::time_point>(static_cast<size_t>(ranks)));
    std::vector<std::thread> streams;
    for (int r = 0; r < ranks && ok; ++r)
      streams.emplace_back([&, r] {
        End& e = ends[static_cast<size_t>(r)];
        bool fine = progress_until(e, [&] { return e.conn != nullptr; });
        if (fine) {
          ucp_ep_params_t p{};
          p.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                         UCP_EP_PARAM_FIELD_ERR_HANDLER;
          p.conn_request = e.conn;
          p.err_mode = UCP_ERR_HANDLING_MODE_PEER;
          p.err_handler.cb = on_error;
          p.err_handler.arg = &e;
          fine = ucp_ep_create(e.worker, &p, &e.ep) == UCS_OK;
        }
        for (int round = 0; round < rounds; ++round) {  // (a failed stream still counts itself ready)
          fine = fine && take(e, kReady);
          e.landed = 0;
          {
            std::unique_lock<std::mutex> lock(mu);
            ready++;
            cv.notify_all();
            cv.wait(lock, [&] { return go >= round; });
          }
          fine = fine && send_control(e, kGo);
          if (fine && to_server) fine = progress_until(e, [&] { return e.landed >= bytes; });
          if (fine && !to_server) {
            fine = send_data(e, e.dest, bytes, chunk) && take(e, kDone);
          }
          ends_at[static_cast<size_t>(round)][static_cast<size_t>(r)] = Clock::now();
          fine = fine && (!to_server || e.landed == bytes) && send_control(e, kBye);
        }
        good[static_cast<size_t>(r)] = fine;
      });
    const int streams_n = static_cast<int>(streams.size());
    // (Not timed: what landed in ROUND is what the ranks sent in it.)
    const auto landed_right = [&](int round) {
      for (int r = 0; r < ranks && to_server; ++r)
        if (!std::all_of(rank_bytes(r), rank_bytes(r + 1), [&](uint8_t b) { return b == pattern(r, round); })) return false;
      return true;
    };
    double cpu0 = 0;
    Clock::time_point t0;
    const auto ended = [&](int round) {  // (every stream is past ROUND: ready for the next, or done)
      own_cpu[static_cast<size_t>(round)] = own_cpu_seconds() - cpu0;
      for (const auto& at : ends_at[static_cast<size_t>(round)])
        elapsed[static_cast<size_t>(round)] =
            std::max(elapsed[static_cast<size_t>(round)], std::chrono::duration<double>(at - t0).count());
      ok = ok && landed_right(round);
    };
    for (int round = 0; round < rounds; ++round) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return ready == streams_n * (round + 1); });
      }
      if (round > 0) ended(round - 1);
      // What a restart sends; for a checkpoint, bytes unlike those each rank sends in this round.
      for (int r = 0; r < ranks; ++r)
        std::memset(rank_bytes(r), to_server ? static_cast<uint8_t>(~pattern(r, round)) : kHeld, bytes);
      std::lock_guard<std::mutex> lock(mu);
      t0 = Clock::now();
      cpu0 = own_cpu_seconds();
      go = round;
      cv.notify_all();
    }
    for (auto& t : streams) t.join();
    ended(rounds - 1);
    for (char g : good) ok = ok && g;
    ok = reap(!ok) && ok;  // (the ranks close first: nothing here waits for them)
    for (End& e : ends) {
      if (!e.ep) continue;
      ucp_request_param_t p{};
      p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      p.flags = UCP_EP_CLOSE_FLAG_FORCE;
      complete(e, ucp_ep_close_nbx(e.ep, &p));
    }
    for (ucp_listener_h l : listeners) ucp_listener_destroy(l);
  }
  if (!ok) fail("a stream failed (" + std::to_string(ranks) + " ranks, " + std::to_string(bytes) + " bytes each)");
  std::vector<std::pair<double, double>> each;
  for (int k = 0; k < rounds; ++k)
    each.emplace_back(elapsed[static_cast<size_t>(k)], own_cpu[static_cast<size_t>(k)] + ranks_cpu[static_cast<size_t>(k)]);
  return each;
}

}  // namespace

Limit ucx_limit(int ranks, uint64_t bytes, bool to_server, int reps, uint64_t chunk) {
  Buffer held(static_cast<uint64_t>(ranks) * bytes);
  ::madvise(held.data, held.size, MADV_DONTFORK);  // not the ranks': they are fresh processes
  const auto [sets, rounds, untimed] = rounds_for(to_server, reps);
  std::vector<double> times, cpu;
  for (int set = 0; set < sets; ++set) {
    const auto each = once(ranks, bytes, to_server, chunk, rounds, held.data);
    for (size_t k = static_cast<size_t>(untimed); k < each.size(); ++k) {
      times.push_back(each[k].first);
      cpu.push_back(each[k].second);
    }
  }
  return {median(times) * 1e3, median(cpu) * 1e3};
}

}  // namespace pmcr::bench
