// Requests: decoding, the dispatcher, and one handler per request family.
#include <spdlog/spdlog.h>

#include <cstring>

#include "access.hpp"
#include "auth.hpp"
#include "error.hpp"
#include "server.hpp"

namespace pmcr::server {
namespace {

// One more of something a connection leaves pending on the server, or a
// clear refusal past kMaxPending.
void take(uint32_t& count, const char* what) {
  if (count >= kMaxPending)
    throw Error(PMCR_E_BUSY, std::string("this connection already has ") + std::to_string(count) + " " + what +
                                 " pending on pmserver; wait for their replies first");
  count++;
}

proto::RegionReply region_reply(const NamedInfo& i) {
  return proto::RegionReply{i.handle, i.generation, i.size, i.block_size, i.keep};
}

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace

ucs_status_t Server::on_am(void* arg, const void*, size_t, void* data, size_t length, const ucp_am_recv_param_t* param) {
  const auto* where = static_cast<const WorkerRef*>(arg);
  Server* self = where->server;
  if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) || param->reply_ep == nullptr) {
    spdlog::warn("dropping a request sent without a reply endpoint");
    return UCS_OK;
  }
  const ucp_ep_h ep = param->reply_ep;
  if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
    if (length > proto::kMaxRequest) {
      // Dropped unread; the client is told through an empty (malformed) message.
      self->post_for(*where, ep, [self, ep] { self->incoming_.push_back(Incoming{ep, {}}); });
      return UCS_OK;
    }
    self->post_for(
        *where, ep, [self, ep, where, data, length] { self->rndv_.push_back(PendingRndv{ep, where, data, length}); },
        [where, data] { release_data(where, data); });
    return UCS_INPROGRESS;
  }
  const auto* p = static_cast<const uint8_t*>(data);
  self->post_for(*where, ep, [self, ep, bytes = std::vector<uint8_t>(p, p + length)]() mutable {
    self->incoming_.push_back(Incoming{ep, std::move(bytes)});
  });
  return UCS_OK;
}

void Server::on_rndv_done(void* request, ucs_status_t status, size_t, void* user_data) {
  auto* r = static_cast<RndvRecv*>(user_data);
  if (status == UCS_OK) {
    Server* self = r->server;
    self->post_for(*r->where, r->ep, [self, ep = r->ep, bytes = std::move(r->bytes)]() mutable {
      self->incoming_.push_back(Incoming{ep, std::move(bytes)});
    });
  } else {
    spdlog::debug("receiving a large request failed: {}", ucs_status_string(status));
  }
  delete r;
  ucp_request_free(request);
}

void Server::fetch(const PendingRndv& p) {
  auto* r = new RndvRecv{this, p.ep, std::vector<uint8_t>(p.length), p.where};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &Server::on_rndv_done;
  rp.user_data = r;
  void* req = ucp_am_recv_data_nbx(p.where->worker, p.desc, r->bytes.data(), p.length, &rp);
  if (req == nullptr) {
    incoming_.push_back(Incoming{r->ep, std::move(r->bytes)});
    delete r;
  } else if (UCS_PTR_IS_ERR(req)) {
    spdlog::warn("receiving a large request failed: {}", ucs_status_string(UCS_PTR_STATUS(req)));
    delete r;
  }
}

void Server::handle(Incoming& in) {
  auto it = connections_.find(in.ep);
  if (it == connections_.end() || it->second->dead) return;
  Connection& c = *it->second;
  proto::Request req;
  const proto::DecodeStatus ds = proto::decode(in.bytes.data(), in.bytes.size(), &req);
  if (ds != proto::DecodeStatus::Ok) {
    proto::Header h;
    proto::Type type = proto::Type::Hello;
    if (proto::decode_header(in.bytes.data(), in.bytes.size(), &h) == proto::DecodeStatus::Ok && h.type >= 1 &&
        h.type <= proto::kLastType)
      type = static_cast<proto::Type>(h.type);
    const std::string message = std::string("malformed request (") + proto::decode_status_text(ds) + ", " +
                                std::to_string(in.bytes.size()) + " bytes); this server speaks pmcr protocol version " +
                                std::to_string(proto::kVersion);
    spdlog::warn("connection {} ({}): {}", c.id, c.peer, message);
    const bool too_many = ++c.bad_messages >= options_.max_bad_messages;
    reply_error(c, type, h.tag, PMCR_E_PROTOCOL, message);
    if (too_many) disconnect(c, "too many malformed messages");
    return;
  }
  // With metrics: when each request arrived (a deferred COMMIT that comes
  // back here keeps its first arrival). Bounded: what a connection can
  // leave unanswered is (kMaxPending of each kind), and past that it is
  // not timed.
  if (options_.metrics && c.started.size() < 8 * kMaxPending)
    c.started.try_emplace(req.tag, proto::type_of(req.body), Clock::now());
  // A COMMIT (or a named region's COMMIT or CLEAR) waits until the
  // region's data has all arrived. (Only an authenticated connection's
  // request for a region it is writing waits: anything else is answered,
  // and refused, at once.)
  const auto waits_for = [&]() -> std::optional<uint64_t> {
    if (!c.principal) return std::nullopt;
    if (const auto* m = std::get_if<proto::Commit>(&req.body); m && c.grants->holds(m->handle, Grants::Right::Write))
      return m->handle;
    if (const auto* m = std::get_if<proto::RegionCommit>(&req.body)) return m->handle;
    if (const auto* m = std::get_if<proto::RegionClear>(&req.body)) return m->handle;
    return std::nullopt;
  };
  if (const auto handle = waits_for(); handle && data_inflight_.count(*handle)) {
    if (c.deferred_commits >= kMaxPending) {
      reply_error(c, proto::type_of(req.body), req.tag, PMCR_E_BUSY,
                  "this connection already has " + std::to_string(c.deferred_commits) +
                      " COMMITs waiting for their data on pmserver; wait for their replies first");
      return;
    }
    c.deferred_commits++;
    deferred_.push_back(DeferredCommit{*handle, std::move(in), c.id});
    return;
  }
  proto::Reply rep;
  rep.type = proto::type_of(req.body);
  rep.tag = req.tag;
  try {
    auto body = dispatch(c, req.tag, req.body);
    if (!body) return;  // answered later
    rep.body = std::move(*body);
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
  if (c.refused) disconnect(c, "over the connection limit", true);
  else if (c.refused_auth) disconnect(c, "authentication failed", true);
}

void Server::after_commit(Connection& c, uint64_t handle) {
  c.grants->revoke(handle);  // committed: written no more
  // The version's last region: the server seals it now, before this
  // COMMIT's reply (a seal that fails fails this COMMIT).
  if (auto it = c.sealing.find(handle); it != c.sealing.end()) {
    const auto [job, version] = it->second;
    c.sealing.erase(it);
    seal_if_complete(job, version);
  }
}

void Server::committed() {
  for (const Committer::Result& res : committer_.take()) {
    auto it = committing_.find(res.id);
    if (it == committing_.end()) continue;
    const Committing w = it->second;
    committing_.erase(it);
    committing_handles_.erase(w.handle);
    Connection* c = connection(w.conn);
    proto::Reply rep;
    rep.type = proto::Type::Commit;
    rep.tag = w.tag;
    rep.body = proto::Empty{};
    if (c) {
      c->commits--;
      try {
        try {
          if (w.blocks) catalogue_.commit_blocks_hashed(w.handle, w.size, w.checksum, c->id, res.hashes);
          else catalogue_.commit_persisted(w.handle, w.size, w.checksum, res.checksum, c->id);
        } catch (const Error& e) {
          if (e.code() != PMCR_E_NOT_FOUND) throw;
          c->grants->revoke(w.handle);
          throw_unknown_handle(*c, w.handle);
        }
        after_commit(*c, w.handle);
      } catch (const Error& e) {
        rep.status = e.code();
        rep.message = e.what();
        spdlog::debug("connection {}: COMMIT failed: {}", c->id, e.what());
      } catch (const std::exception& e) {
        rep.status = PMCR_E_INTERNAL;
        rep.message = std::string("pmserver internal error: ") + e.what();
        spdlog::error("connection {}: COMMIT: {}", c->id, e.what());
      }
    }
    // (A connection gone meanwhile: its unsealed regions were released; the
    // pin kept the extent, and the landing count the blocks, until now.)
    if (w.work) catalogue_.release_write(w.work, true);
    catalogue_.close_region(w.handle);
    if (c) send(*c, rep);
  }
}

void Server::expect(const proto::Create& m) {
  constexpr size_t kMaxExpected = 1u << 16;
  const uint32_t held = m.expect_part_ranks ? m.expect_part_ranks : m.expect_nranks;
  if (m.expect_nranks == 0 || held > m.expect_nranks || m.expect_nregions < held || m.rank >= m.expect_nranks)
    throw Error(PMCR_E_INVAL, "CREATE of rank " + std::to_string(m.rank) + " expects its version to hold " +
                                  std::to_string(m.expect_nregions) + " regions of " + std::to_string(held) + " of " +
                                  std::to_string(m.expect_nranks) +
                                  " ranks here: it needs at least one rank, one region per rank held, and a rank below "
                                  "the count");
  const auto key = std::make_pair(m.job, m.version);
  auto it = expected_.find(key);
  if (it != expected_.end() && it->second.attempt == m.attempt) {
    if (it->second.nranks != m.expect_nranks || it->second.nregions != m.expect_nregions ||
        it->second.part_ranks != m.expect_part_ranks)
      throw Error(PMCR_E_INVAL, "version " + std::to_string(m.version) + " of job '" + m.job + "': this CREATE expects " +
                                    std::to_string(m.expect_nregions) + " regions of " + std::to_string(m.expect_nranks) +
                                    " ranks, an earlier one " + std::to_string(it->second.nregions) + " of " +
                                    std::to_string(it->second.nranks) + ": the ranks disagree on the checkpoint");
    return;
  }
  if (it == expected_.end() && expected_.size() >= kMaxExpected)
    throw Error(PMCR_E_BUSY, "pmserver waits for " + std::to_string(expected_.size()) +
                                 " versions to complete already; seal some (or let their jobs end) first");
  expected_[key] = Expected{m.expect_nranks, m.expect_nregions, m.expect_part_ranks, m.attempt};
}

void Server::seal_if_complete(const std::string& job, uint64_t version) {
  auto it = expected_.find({job, version});
  if (it == expected_.end() || catalogue_.region_count(job, version) < it->second.nregions) return;
  const Expected e = it->second;
  check_alive(job, e.attempt);  // an attempt declared failed seals nothing
  try {
    catalogue_.seal(job, version, e.nranks, e.nregions, e.attempt, e.part_ranks);
  } catch (const Error& err) {
    if (err.code() == PMCR_E_INCOMPLETE) return;  // regions created but not all committed yet
    throw;
  }
  expected_.erase(it);
  if (e.part_ranks && e.part_ranks != e.nranks)
    spdlog::info("sealed its part of version {} of job '{}' at its last commit ({} regions of {} of its {} ranks)",
                 version, job, e.nregions, e.part_ranks, e.nranks);
  else
    spdlog::info("sealed version {} of job '{}' at its last commit ({} ranks, {} regions)", version, job, e.nranks,
                 e.nregions);
  sealed(job, version, e.nranks);
}

// A handle this connection names but the catalogue does not know: its
// region was replaced, reclaimed, or dropped because a later attempt of
// its job superseded this writer. Say which.
void Server::throw_unknown_handle(const Connection& c, uint64_t) const {
  for (const auto& [job, attempt] : c.attempts) {
    if (catalogue_.current_attempt(job) != attempt) catalogue_.check_attempt(job, attempt);  // FENCED, SUPERSEDED
    check_alive(job, attempt);
  }
  throw Error(PMCR_E_NOT_FOUND, "unknown region handle (the region was replaced, deleted or reclaimed)");
}

std::optional<proto::ReplyBody> Server::dispatch(Connection& c, uint64_t tag, proto::RequestBody& body) {
  if (!c.hello && !std::holds_alternative<proto::Hello>(body))
    throw Error(PMCR_E_PROTOCOL, "the first request on a connection must be HELLO");
  // Who may do what: one table (access.hpp), before any handler runs.
  authorize(c.principal ? &*c.principal : nullptr, body, catalogue_);
  // Pool addresses and keys go only to connections that may use RMA.
  const auto addr = [&](uint64_t offset) { return c.rma ? reinterpret_cast<uint64_t>(pool_.base() + offset) : 0; };
  return std::visit(
      Overloaded{
          [&](proto::Hello& m) -> std::optional<proto::ReplyBody> { return hello(c, m); },
          [&](proto::Auth& m) -> std::optional<proto::ReplyBody> { return authenticate(c, m); },
          [&](proto::Stat&) -> std::optional<proto::ReplyBody> { return stat(); },
          [&](proto::Begin& m) -> std::optional<proto::ReplyBody> {
            take(c.begins, "BEGINs");  // a job begins once per run: never many on one connection
            uint32_t dropped = 0;
            const uint64_t attempt = catalogue_.begin_attempt(m.job, &dropped, m.takeover);
            spdlog::info("job '{}': attempt {} begun by connection {} ({}){}{}", m.job, attempt, c.id, c.client,
                         m.takeover ? ", a standby taking over: earlier attempts are fenced" : "",
                         dropped ? "; " + std::to_string(dropped) + " unsealed regions of earlier attempts dropped" : "");
            began(m.job, attempt, m.instance, m.takeover);
            // What earlier attempts expected of their versions is void.
            for (auto it = expected_.lower_bound({m.job, 0}); it != expected_.end() && it->first.first == m.job;)
              it = expected_.erase(it);
            return proto::BeginReply{attempt};
          },
          [&](proto::Create& m) -> std::optional<proto::ReplyBody> {
            // (A region larger than the whole pool is the catalogue's NOSPACE.)
            check_alive(m.job, m.attempt);
            if (m.expect_nregions || m.expect_nranks) {
              catalogue_.check_attempt(m.job, m.attempt);  // a stale writer sets no expectation
              expect(m);
            }
            if (m.size <= catalogue_.data_size()) check_create(options_.quotas, catalogue_.usage(c.id), m.size);
            bool based = false;
            const RegionView v = catalogue_.create_region({m.job, m.version, m.rank, m.id}, m.size, c.id, m.attempt,
                                                          m.block_size,
                                                          m.has_base ? std::optional<uint64_t>(m.base_version) : std::nullopt,
                                                          &based);
            c.attempts[m.job] = m.attempt;
            if (m.expect_nregions) c.sealing[v.handle] = {m.job, m.version};
            if (v.capacity) registration(v.offset, v.capacity);
            proto::CreateReply r;
            r.handle = v.handle;
            r.remote_addr = v.capacity ? addr(v.offset) : 0;
            r.rkey = c.grants->allow_write(v).rkey;
            r.based = based;
            return r;
          },
          [&](proto::Commit& m) -> std::optional<proto::ReplyBody> {
            if (!c.grants->holds(m.handle, Grants::Right::Write)) throw_unknown_handle(c, m.handle);
            if (committing_handles_.count(m.handle))
              throw Error(PMCR_E_STATE, "a COMMIT of this region is in progress; wait for its reply");
            try {
              // Every byte already persisted and checksummed as it landed:
              // nothing left to do but the record.
              if (auto it = arrival_sums_.find(m.handle); it != arrival_sums_.end()) {
                const auto landed = it->second->value(m.size);
                arrival_sums_.erase(it);
                if (landed) {
                  spdlog::debug("connection {}: region {:#x} was persisted and checksummed as it arrived", c.id,
                                m.handle);
                  catalogue_.commit_persisted(m.handle, m.size, m.checksum, *landed, c.id);
                  after_commit(c, m.handle);
                  return proto::Empty{};
                }
              }
              // Large regions are persisted and checksummed by a Committer
              // thread: the reply follows when it is done (committed()).
              constexpr uint64_t kOffload = 256u << 10;
              if (committer_.threads() && m.size >= kOffload) {
                const auto offload = [&](Committer::Job job, bool blocks, WorkingRef work) {
                  job.id = ++next_commit_;
                  catalogue_.pin(m.handle);
                  committing_[job.id] = Committing{c.id, tag, m.handle, m.size, m.checksum, blocks, std::move(work)};
                  committing_handles_.insert(m.handle);
                  committer_.submit(job);
                };
                take(c.commits, "COMMITs");
                try {
                  if (auto data = catalogue_.commit_data(m.handle, m.size, m.checksum, c.id)) {
                    offload(Committer::Job{0, data->first, data->second, {}}, false, nullptr);
                    return std::nullopt;
                  }
                  WorkingRef work;
                  if (auto blocks = catalogue_.commit_blocks_data(m.handle, m.size, m.checksum, c.id, &work)) {
                    offload(Committer::Job{0, nullptr, 0, std::move(*blocks)}, true, std::move(work));
                    return std::nullopt;
                  }
                } catch (...) {
                  c.commits--;
                  throw;
                }
                c.commits--;
              }
              catalogue_.commit_region(m.handle, m.size, m.checksum, c.id);
            } catch (const Error& e) {
              if (e.code() == PMCR_E_NOT_FOUND) {
                c.grants->revoke(m.handle);  // the region is gone: so is the grant
                throw_unknown_handle(c, m.handle);
              }
              throw;
            }
            after_commit(c, m.handle);
            return proto::Empty{};
          },
          [&](proto::Seal& m) -> std::optional<proto::ReplyBody> {
            catalogue_.check_attempt(m.job, m.attempt);  // even for a version already sealed
            check_alive(m.job, m.attempt);
            if (catalogue_.seal(m.job, m.version, m.nranks, m.nregions, m.attempt)) {  // (not a retried SEAL)
              spdlog::info("sealed version {} of job '{}' ({} ranks, {} regions)", m.version, m.job, m.nranks,
                           m.nregions);
              sealed(m.job, m.version, m.nranks);
            }
            expected_.erase({m.job, m.version});
            return proto::Empty{};
          },
          [&](proto::Abort& m) -> std::optional<proto::ReplyBody> {
            const uint32_t n = catalogue_.release_owner(c.id, m.job, m.version);
            if (n) spdlog::info("connection {}: aborted version {} of job '{}': {} unsealed regions freed", c.id,
                                m.version, m.job, n);
            return proto::AbortReply{n};
          },
          [&](proto::ListVersions& m) -> std::optional<proto::ReplyBody> {
            proto::ListVersionsReply r;
            for (const auto& v : catalogue_.list_versions(m.job))
              if (visible(*c.principal, catalogue_.job_owner(v.job)))
                r.versions.push_back({v.job, v.version, v.sealed, v.nranks, v.nregions, v.bytes,
                                      !v.quarantine.empty(), v.quarantine, v.part_ranks});
            return r;
          },
          [&](proto::ListRegions& m) -> std::optional<proto::ReplyBody> {
            auto [sealed, regions] = catalogue_.list_regions(m.job, m.version);
            proto::ListRegionsReply r;
            r.sealed = sealed;
            for (const auto& g : regions)
              r.regions.push_back({g.rank, g.id, g.size, g.checksum,
                                   g.committed ? proto::RegionState::Committed : proto::RegionState::Created});
            return r;
          },
          [&](proto::Open& m) -> std::optional<proto::ReplyBody> {
            check_open(options_.quotas, c.grants->reads());
            take(c.checks, "verifications (OPEN, VERIFY)");
            RegionView v;
            try {
              v = catalogue_.open_region({m.job, m.version, m.rank, m.id});
              try {
                if (v.capacity) registration(v.offset, v.capacity);
              } catch (...) {
                catalogue_.close_region(v.handle);
                throw;
              }
            } catch (...) {
              c.checks--;
              throw;
            }
            Task t{TaskKind::Open, c.id, tag, m.job, m.version, catalogue_.version_id(m.job, m.version)};
            t.open.handle = v.handle;
            t.open.remote_addr = v.capacity ? addr(v.offset) : 0;
            t.open.block_size = v.block_size;
            if (v.blocks && v.blocks->blocks.size() <= proto::kMaxEntries)
              for (const Block& b : v.blocks->blocks) t.open.hashes.push_back(b.hash);
            t.open.size = v.size;
            t.open.checksum = v.checksum;
            t.opened = v;
            // Answered once the region's bytes verified against their
            // checksum: damaged data is never served as good.
            start_task(std::move(t), {v});
            return std::nullopt;
          },
          [&](proto::Verify& m) -> std::optional<proto::ReplyBody> {
            auto regions = catalogue_.version_regions(m.job, m.version);
            take(c.checks, "verifications (OPEN, VERIFY)");
            start_task(Task{TaskKind::Verify, c.id, tag, m.job, m.version, catalogue_.version_id(m.job, m.version)},
                       std::move(regions));
            return std::nullopt;
          },
          [&](proto::Close& m) -> std::optional<proto::ReplyBody> {
            if (is_named_handle(m.handle)) {
              catalogue_.region_close(m.handle, c.id);
              return proto::Empty{};
            }
            if (!c.grants->end_read(m.handle))
              throw Error(PMCR_E_NOT_FOUND, "this connection has no open region with that handle");
            catalogue_.close_region(m.handle);
            return proto::Empty{};
          },
          [&](proto::Read& m) -> std::optional<proto::ReplyBody> {
            send_data(c, m);
            return proto::Empty{};
          },
          [&](proto::RegionCreate& m) -> std::optional<proto::ReplyBody> {
            check_open(options_.quotas, c.grants->reads() + catalogue_.named_handles(c.id));
            return region_reply(catalogue_.region_create(m.job, m.name, m.block_size, m.keep, c.id));
          },
          [&](proto::RegionOpen& m) -> std::optional<proto::ReplyBody> {
            check_open(options_.quotas, c.grants->reads() + catalogue_.named_handles(c.id));
            return region_reply(catalogue_.region_open(m.job, m.name, c.id));
          },
          [&](proto::RegionClear& m) -> std::optional<proto::ReplyBody> {
            catalogue_.region_clear(m.handle, c.id);
            return proto::Empty{};
          },
          [&](proto::RegionCommit& m) -> std::optional<proto::ReplyBody> {
            return region_reply(catalogue_.region_commit(m.handle, c.id, m.size));
          },
          [&](proto::RegionStat& m) -> std::optional<proto::ReplyBody> {
            return region_reply(catalogue_.region_stat(m.handle, c.id));
          },
          [&](proto::RegionRead& m) -> std::optional<proto::ReplyBody> {
            send_generation(c, m);
            return proto::Empty{};
          },
          [&](proto::RegionChanged& m) -> std::optional<proto::ReplyBody> {
            proto::RangesReply r;
            for (const auto& [offset, length] : catalogue_.region_changed(m.handle, c.id, m.since, m.generation))
              r.ranges.push_back({offset, length});
            return r;
          },
          [&](proto::RegionRemove& m) -> std::optional<proto::ReplyBody> {
            catalogue_.region_remove(m.job, m.name);
            return proto::Empty{};
          },
          [&](proto::Delete& m) -> std::optional<proto::ReplyBody> {
            if (m.attempt) {  // a job's own retention: only while it is the job's live attempt
              catalogue_.check_attempt(m.job, m.attempt);
              check_alive(m.job, m.attempt);
            }
            auto [versions, regions] =
                catalogue_.delete_versions(m.job, m.all_versions ? std::nullopt : std::optional<uint64_t>(m.version));
            return proto::DeleteReply{versions, regions};
          },
          [&](proto::Join& m) -> std::optional<proto::ReplyBody> {
            join(c, m);
            return proto::Empty{};
          },
          [&](proto::Renew& m) -> std::optional<proto::ReplyBody> {
            renew(c, m);
            return proto::Empty{};
          },
          [&](proto::Leave& m) -> std::optional<proto::ReplyBody> {
            leave(c, m);
            return proto::Empty{};
          },
          [&](proto::Watch& m) -> std::optional<proto::ReplyBody> { return watch(c, m); },
          [&](proto::Fail& m) -> std::optional<proto::ReplyBody> { return fail(m); },
      },
      body);
}

proto::HelloReply Server::hello(Connection& c, const proto::Hello& m) {
  if (c.hello) throw Error(PMCR_E_PROTOCOL, "HELLO was already said on this connection");
  if (c.refused && stopping_) throw Error(PMCR_E_BUSY, "pmserver is shutting down; try again once it is back");
  if (c.refused)
    throw Error(PMCR_E_BUSY, "pmserver serves " + std::to_string(served_) + " connections, its limit " +
                                 "(pmserver --max-connections " + std::to_string(options_.max_connections) +
                                 "); try again later, or spread the jobs over more servers");
  c.hello = true;
  c.client = m.client + " pid " + std::to_string(m.pid);
  c.client_nonce = m.nonce;
  c.server_nonce = auth::make_nonce();
  proto::HelloReply r;
  c.transport = r.transport = ucx::ep_transports(c.ep);
  c.rma = rma_offered_ && rkeys_enforced(r.transport);
  c.grants->set_rma(c.rma);
  r.rma = c.rma;
  r.auth = credentials_.method();
  r.nonce = c.server_nonce;
  spdlog::debug("connection {} ({}): hello from {} over {}{}", c.id, c.peer, c.client, r.transport,
                c.rma ? " (put/get allowed)" : "");
  std::memcpy(r.pool_uuid.data(), pool_.header()->uuid, 16);
  r.pool_size = pool_.size();
  r.server_version = PMCR_VERSION;
  return r;
}

// A failed AUTH ends the connection (after its reply): one guess per
// connection, each with fresh nonces.
proto::AuthReply Server::authenticate(Connection& c, const proto::Auth& m) {
  if (c.principal) throw Error(PMCR_E_PROTOCOL, "AUTH was already done on this connection");
  std::array<uint8_t, 16> uuid{};
  std::memcpy(uuid.data(), pool_.header()->uuid, 16);
  proto::AuthReply r;
  try {
    const Principal p = credentials_.verify(m, c.server_nonce, c.client_nonce, uuid, &r.proof);
    c.principal = p;
  } catch (const Error& e) {
    spdlog::warn("connection {} ({}, {}): authentication failed: {}", c.id, c.peer, c.client, e.what());
    c.refused_auth = true;
    if (options_.metrics) options_.metrics->authentication_failed();
    throw;
  }
  r.uid = c.principal->uid;
  r.gid = c.principal->gid;
  r.admin = c.principal->admin;
  r.principal = c.principal->name;
  spdlog::info("connection {} ({}): {} over {}, authenticated ({}) as {}{}", c.id, c.peer, c.client, c.transport,
               proto::auth_method_name(m.method), c.principal->name,
               c.principal->admin ? " (admin)" : "");
  return r;
}

void Server::reply_error(Connection& c, proto::Type type, uint64_t tag, int status, const std::string& message) {
  proto::Reply rep;
  rep.type = type;
  rep.tag = tag;
  rep.status = status;
  rep.message = message;
  send(c, rep);
}

void Server::on_reply_sent(void* request, ucs_status_t status, void* user_data) {
  auto* s = static_cast<SentReply*>(user_data);
  if (status != UCS_OK && status != UCS_ERR_CANCELED) spdlog::debug("sending a reply failed: {}", ucs_status_string(status));
  Server* self = s->server;
  self->post(*s->where, [self, conn = s->conn] {
    if (Connection* c = self->connection(conn)) c->unanswered--;
  });
  delete s;
  ucp_request_free(request);
}

// Replies a client does not take pile up in UCX's send queue, in this
// process's memory: a connection with too many is closed (a client of
// libpmcr has one request outstanding at a time).
void Server::send(Connection& c, const proto::Reply& reply) {
  if (options_.metrics) {
    if (auto it = c.started.find(reply.tag); it != c.started.end()) {
      if (it->second.first == reply.type)
        options_.metrics->replied(reply.type, std::chrono::duration<double>(Clock::now() - it->second.second).count(),
                                  reply.status == 0);
      c.started.erase(it);
    }
  }
  send_message(c, proto::kAmReply, proto::encode(reply));
}

void Server::send_message(Connection& c, unsigned am_id, std::vector<uint8_t> bytes) {
  auto* s = new SentReply{this, c.id, std::move(bytes), &ref_of(c)};
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &Server::on_reply_sent;
  p.user_data = s;
  void* req = ucp_am_send_nbx(c.ep, am_id, nullptr, 0, s->bytes.data(), s->bytes.size(), &p);
  if (req == nullptr) {
    delete s;
  } else if (UCS_PTR_IS_ERR(req)) {
    spdlog::debug("connection {}: reply not sent: {}", c.id, ucs_status_string(UCS_PTR_STATUS(req)));
    delete s;
  } else if (++c.unanswered > options_.max_unanswered && !c.dead) {
    spdlog::warn("connection {} ({}, {}): {} replies not taken; closing it", c.id, c.peer, c.client, c.unanswered);
    c.dead = true;
    failed_.push_back(&c);
  }
}

}  // namespace pmcr::server
