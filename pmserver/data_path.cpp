// The data path: region bytes into the pool (rendezvous active messages whose
// destination the server picks after checking the handle and the bounds)
// and out of it (READ), and the per-extent UCX registrations.
//
// Every receive into a region and every send from it holds a pin on the
// region (Catalogue::pin): if the region is replaced, reclaimed or deleted
// meanwhile, its memory is not reused until the transfer has ended, so late
// bytes can never land in another region.
#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <cstring>
#include <new>

#include "error.hpp"
#include "fault.hpp"
#include "server.hpp"

namespace pmcr::server {
namespace {
constexpr uint64_t kReadChunk = 16u << 20;  // bytes of one region-data message from the server
}

ucs_status_t Server::on_data(void* arg, const void* header, size_t header_length, void* data, size_t length,
                             const ucp_am_recv_param_t* param) {
  const auto* where = static_cast<const WorkerRef*>(arg);
  Server* self = where->server;
  const bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
  if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) || param->reply_ep == nullptr) {
    spdlog::warn("dropping region data sent without a reply endpoint");
    return UCS_OK;  // a rendezvous is released by UCX
  }
  PendingData d{param->reply_ep, where->worker, {}, header_length == proto::kDataHeaderSize, nullptr, {}, length, where};
  if (d.header_ok) std::memcpy(d.header.data(), header, proto::kDataHeaderSize);
  if (rndv) {
    d.desc = data;
  } else {
    const auto* p = static_cast<const uint8_t*>(data);
    d.bytes.assign(p, p + length);
  }
  const ucp_ep_h ep = d.ep;
  void* const desc = d.desc;
  self->post_for(
      *where, ep, [self, d = std::move(d)]() mutable { self->data_.push_back(std::move(d)); },
      [where, desc] {
        if (desc) release_data(where, desc);
      });
  return rndv ? UCS_INPROGRESS : UCS_OK;
}

// Region data: checked here, against the catalogue and the region's
// bounds, before a byte of it lands in the pool. Bad data is dropped (its
// region's COMMIT then fails its checksum) and counts as a bad message.
void Server::receive(PendingData& d) {
  const auto drop = [&](Connection* c, const std::string& why) {
    if (d.desc) release_data(d.where, d.desc);
    if (!c) return;
    spdlog::warn("connection {} ({}): dropped region data: {}", c->id, c->peer, why);
    if (++c->bad_messages >= options_.max_bad_messages) disconnect(*c, "too many malformed messages");
  };
  auto it = connections_.find(d.ep);
  if (it == connections_.end() || it->second->dead) return drop(nullptr, "");
  Connection& c = *it->second;
  proto::DataHeader h;
  if (!c.principal) return drop(&c, "sent before HELLO and AUTH");
  if (!d.header_ok || proto::decode(d.header.data(), d.header.size(), &h) != proto::DecodeStatus::Ok)
    return drop(&c, "malformed data header");
  if (is_named_handle(h.handle)) return receive_blocks(c, d, h, true);
  // The connection's own grant first (its handle, its bounds), then the
  // catalogue (the region is still being written by this connection: not
  // superseded, reclaimed or committed meanwhile).
  RegionView v;
  try {
    c.grants->check(h.handle, Grants::Right::Write, h.offset, d.length);  // and the bounds
    v = catalogue_.writable_region(h.handle, c.id);
  } catch (const Error& e) {
    return drop(&c, e.what());
  }
  if (v.block_size) return receive_blocks(c, d, h, false);
  uint8_t* dest = pool_.base() + v.offset + h.offset;
  data_in_ += d.length;
  // Checksummed as they land only on a receive thread (not on the loop),
  // and never where put/get could change the bytes behind its back.
  std::shared_ptr<ArrivalSum> sum;
  if (ref_of(c).own_thread && !c.rma) {
    auto& s = arrival_sums_[h.handle];
    if (!s) s = std::make_shared<ArrivalSum>(c.id, persist_);
    sum = s;
  }
  if (!d.desc) {
    std::memcpy(dest, d.bytes.data(), d.length);
    if (sum) sum->landed(h.offset, dest, d.length);
    return;
  }
  catalogue_.pin(h.handle);
  ++data_inflight_[h.handle];
  auto* io = new DataIo{this, h.handle, c.id, {}, nullptr, nullptr, &ref_of(c), sum, h.offset, dest, d.length};
  // (The region's own registration: nothing to register per chunk.)
  const auto reg = registrations_.find(v.offset);
  fetch(c, io, d.worker, d.desc, reg != registrations_.end() ? reg->second.memh : nullptr);
  PMCR_FAULT_POINT("server.data.chunk");  // tests: a server stalled or killed mid-transfer
}

void Server::fetch(Connection& c, DataIo* io, ucp_worker_h worker, void* desc, ucp_mem_h memh) {
  run_on(ref_of(c), [io, worker, desc, memh] {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.recv_am = &Server::on_data_received;
    rp.user_data = io;
    if (memh) {
      rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      rp.memh = memh;
    }
    void* req = ucp_am_recv_data_nbx(worker, desc, io->dest, io->length, &rp);
    if (req == nullptr) fetched(io, UCS_OK);  // (done at once: no callback)
    else if (UCS_PTR_IS_ERR(req)) fetched(io, UCS_PTR_STATUS(req));
  });
}

void Server::fetched(DataIo* io, ucs_status_t status) {
  if (status != UCS_OK) spdlog::debug("receiving region data failed: {}", ucs_status_string(status));
  // (Here, on the receive thread, while the bytes are still in its cache.)
  if (io->sum) {
    if (status == UCS_OK) io->sum->landed(io->offset, io->dest, io->length);
    else io->sum->fail();
  }
  io->server->post(*io->where, [io, status] {
    if (io->working) io->server->catalogue_.release_write(io->working, status == UCS_OK);
    io->server->data_finished(io->handle);
    delete io;
  });
}

// Bytes for a region kept in blocks (a named region's next generation, an
// incremental checkpoint's region): the catalogue picks the block (copying
// it first if this writer had not written it yet) and checks that they are
// this connection's writer's, within one block and not past the end.
void Server::receive_blocks(Connection& c, PendingData& d, const proto::DataHeader& h, bool named) {
  WorkingRef pin;
  uint8_t* dest = nullptr;
  try {
    dest = named ? catalogue_.region_write(h.handle, c.id, h.offset, d.length, options_.quotas.bytes, &pin)
                 : catalogue_.write_blocks(h.handle, c.id, h.offset, d.length, &pin);
  } catch (const Error& e) {
    if (d.desc) release_data(d.where, d.desc);
    spdlog::warn("connection {} ({}): dropped region data: {}", c.id, c.peer, e.what());
    // Refused for what the writer asked (a hole, its quota, a generation
    // already failed): its commit says why. Anything else (a handle not its
    // writer's, bytes straddling blocks) is a bad message.
    const int code = e.code();
    if (code != PMCR_E_RANGE && code != PMCR_E_QUOTA && code != PMCR_E_NOSPACE && code != PMCR_E_STATE &&
        ++c.bad_messages >= options_.max_bad_messages)
      disconnect(c, "too many malformed messages");
    return;
  }
  if (!dest) {
    if (d.desc) release_data(d.where, d.desc);
    return;
  }
  data_in_ += d.length;
  if (!d.desc) {
    std::memcpy(dest, d.bytes.data(), d.length);
    catalogue_.release_write(pin, true);
    return;
  }
  if (!named) catalogue_.pin(h.handle);  // as every receive into a checkpoint's region (data_finished)
  ++data_inflight_[h.handle];
  auto* io = new DataIo{this, h.handle, c.id, {}, nullptr, std::move(pin), &ref_of(c)};
  io->dest = dest;
  io->length = d.length;
  fetch(c, io, d.worker, d.desc, nullptr);
  PMCR_FAULT_POINT("server.data.chunk");
}

void Server::on_data_received(void* request, ucs_status_t status, size_t, void* user_data) {
  fetched(static_cast<DataIo*>(user_data), status);
  ucp_request_free(request);
}

Server::ArrivalSum::ArrivalSum(Owner w, const std::function<void(const void*, size_t)>& persist)
    : writer(w), persist_(persist), state_(XXH3_createState()) {
  if (!state_) throw std::bad_alloc();
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}

Server::ArrivalSum::~ArrivalSum() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

void Server::ArrivalSum::take(const uint8_t* data, uint64_t length) {
  persist_(data, length);
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), data, length);
  next_ += length;
}

void Server::ArrivalSum::landed(uint64_t offset, const uint8_t* data, uint64_t length) {
  constexpr size_t kMaxEarly = 64;
  std::lock_guard<std::mutex> lock(mu_);
  if (broken_ || length == 0) return;
  if (offset != next_) {
    // Early (kept for later), or bytes at a place already seen: give up.
    if (offset < next_ || early_.size() >= kMaxEarly || !early_.emplace(offset, std::make_pair(data, length)).second) {
      broken_ = true;
      early_.clear();
    }
    return;
  }
  take(data, length);
  for (auto it = early_.begin(); it != early_.end() && it->first <= next_; it = early_.erase(it)) {
    if (it->first < next_) {  // overlaps what came before
      broken_ = true;
      early_.clear();
      return;
    }
    take(it->second.first, it->second.second);
  }
}

void Server::ArrivalSum::fail() {
  std::lock_guard<std::mutex> lock(mu_);
  broken_ = true;
  early_.clear();
}

std::optional<uint64_t> Server::ArrivalSum::value(uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  if (broken_ || next_ != size || !early_.empty()) return std::nullopt;
  return XXH3_64bits_digest(static_cast<XXH3_state_t*>(state_));
}

void Server::forget_stale_arrival_sums() {
  size_t forgot = 0;
  for (auto it = arrival_sums_.begin(); it != arrival_sums_.end();) {
    try {
      catalogue_.writable_region(it->first, it->second->writer);
      ++it;
    } catch (const Error&) {  // freed, or someone else's now: no COMMIT of it will come
      it = arrival_sums_.erase(it);
      forgot++;
    }
  }
  if (forgot) spdlog::debug("forgot {} arrival checksums of regions freed before their commit", forgot);
}

void Server::data_finished(uint64_t handle) {
  if (auto it = data_inflight_.find(handle); it != data_inflight_.end() && --it->second == 0) data_inflight_.erase(it);
  if (is_named_handle(handle)) return;  // pinned by its DataIo, not by handle
  try {
    catalogue_.unpin(handle);
  } catch (const Error& e) {
    spdlog::error("releasing a region after a transfer: {}", e.what());
  }
}

// A READ: the bytes of a region this connection has open go out as
// rendezvous active messages of at most kReadChunk bytes, each holding a pin
// until UCX is done with it; the client receives each one straight into its
// buffer. The reply follows the sends it started.
void Server::send_data(Connection& c, const proto::Read& m) {
  const RegionView& v = c.grants->check(m.handle, Grants::Right::Read, m.offset, m.length).region;
  const auto reg = registrations_.find(v.offset);
  send_segments(c, m.handle, m.offset, catalogue_.segments(v, m.offset, m.length), nullptr,
                v.capacity && reg != registrations_.end() ? reg->second.memh : nullptr);
}

// A READ of a named region's generation: each message holds the
// generation, so its blocks stay while they are being sent.
void Server::send_generation(Connection& c, const proto::RegionRead& m) {
  GenerationRef g;
  const auto segments = catalogue_.region_read(m.handle, c.id, m.generation, m.offset, m.length, &g);
  send_segments(c, m.handle, m.offset, segments, g, nullptr);
}

// The bytes of SEGMENTS (region offsets from AT on) as messages of at most
// kReadChunk bytes, none across a segment (a block), each holding a pin:
// on the region HANDLE, or on the generation G.
void Server::send_segments(Connection& c, uint64_t handle, uint64_t at, const std::vector<Segment>& segments,
                           const GenerationRef& g, ucp_mem_h memh) {
  // The messages a client has not taken each hold a pin and a UCX request:
  // bounded per connection.
  uint64_t messages = 0;
  for (const Segment& s : segments) messages += (s.length + kReadChunk - 1) / kReadChunk;
  if (c.sends + messages > kMaxPending)
    throw Error(PMCR_E_BUSY, "this connection has " + std::to_string(c.sends) + " region-data messages not yet taken; a READ of " +
                                 std::to_string(messages) + " more would pass " + std::to_string(kMaxPending) +
                                 ": receive them first, or read in smaller pieces");
  for (const Segment& s : segments)
    for (uint64_t off = 0; off < s.length; off += kReadChunk) {
      if (g) catalogue_.hold(g);
      else catalogue_.pin(handle);
      send_chunk(c, new DataIo{this, handle, c.id, proto::encode(proto::DataHeader{handle, at + s.at + off}), g, nullptr},
                 s.offset + off, std::min(kReadChunk, s.length - off), memh);
    }
}

// (A send that fails is told to the client by its connection's failure.)
void Server::send_chunk(Connection& c, DataIo* io, uint64_t offset, uint64_t n, ucp_mem_h memh) {
  c.sends++;
  io->where = &ref_of(c);
  data_out_ += n;
  run_on(ref_of(c), [io, ep = c.ep, src = pool_.base() + offset, n, memh] {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_AM_SEND_FLAG_RNDV;
    p.cb.send = &Server::on_data_sent;
    p.user_data = io;
    if (memh) {
      p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      p.memh = memh;
    }
    void* req = ucp_am_send_nbx(ep, proto::kAmData, io->header.data(), io->header.size(), src, n, &p);
    if (req == nullptr) sent(io, UCS_OK);
    else if (UCS_PTR_IS_ERR(req)) sent(io, UCS_PTR_STATUS(req));
  });
  PMCR_FAULT_POINT("server.read.chunk");  // tests: a server stalled or killed mid-read
}

void Server::on_data_sent(void* request, ucs_status_t status, void* user_data) {
  sent(static_cast<DataIo*>(user_data), status);
  ucp_request_free(request);
}

void Server::sent(DataIo* io, ucs_status_t status) {
  if (status != UCS_OK && status != UCS_ERR_CANCELED) spdlog::debug("sending region data failed: {}", ucs_status_string(status));
  io->server->post(*io->where, [io] {
    if (Connection* c = io->server->connection(io->conn)) c->sends--;
    try {
      if (io->generation) io->server->catalogue_.release(io->generation);
      else io->server->catalogue_.unpin(io->handle);
    } catch (const Error& e) {
      spdlog::error("releasing a region after a transfer: {}", e.what());
    }
    delete io;
  });
}

// One registration per region extent, for the am data path's receives
// (remote keys are per grant: grants.cpp).
const Server::Registration& Server::registration(uint64_t offset, uint64_t capacity) {
  auto it = registrations_.find(offset);
  if (it == registrations_.end()) {
    Registration reg;
    ucp_mem_map_params_t mp{};
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    mp.address = pool_.base() + offset;
    mp.length = capacity;
    const ucs_status_t st = ucp_mem_map(context_.get(), &mp, &reg.memh);
    if (st != UCS_OK) ucx::throw_status("registering region memory", st);
    it = registrations_.emplace(offset, std::move(reg)).first;
  }
  return it->second;
}

void Server::unregister(uint64_t offset) {
  if (rma_offered_)  // only then may a grant hold a remote key
    for (auto& [ep, c] : connections_)
      if (c->rma) c->grants->revoke_extent(offset);
  auto it = registrations_.find(offset);
  if (it == registrations_.end()) return;
  const ucs_status_t st = ucp_mem_unmap(context_.get(), it->second.memh);
  if (st != UCS_OK) spdlog::warn("unregistering region memory: {}", ucs_status_string(st));
  registrations_.erase(it);
}

}  // namespace pmcr::server
