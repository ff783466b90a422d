// Asynchronous checkpoints (PMCR_ASYNC=1; README, "Asynchronous
// checkpoints"). pmcr_checkpoint hashes the buffers as a synchronous one
// does, copies the blocks that changed into each buffer's staging copy
// (which then holds exactly what the buffer holds: the blocks it did not
// copy are equal by their hashes) and returns; a thread of the rank sends
// the staging copies to the servers, as a synchronous checkpoint sends the
// buffers, with no MPI: each server seals its part at its last commit.
// pmcr_wait, or the next pmcr_checkpoint, joins the thread and concludes
// the version with every rank (one reduction says which parts sealed).
//
// Staging memory is PMCR_STAGING bytes per rank at most. When a rank's
// buffers do not fit, the checkpoint is synchronous on every rank (they
// agree; that rank says so once): the job never blocks on memory it does
// not have.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"
#include "log.hpp"
#include "session.hpp"
#include "text.hpp"

namespace pmcr {

Session::Staged::~Staged() {
  if (ptr) ::munmap(ptr, size);
}

bool Session::fits_staging() const {
  uint64_t bytes = 0;
  for (const auto& [id, b] : buffers_) bytes += b.size;
  if (bytes <= config_.staging) return true;
  static bool said = false;
  if (!said) {
    said = true;
    log()->warn("PMCR_ASYNC=1: this rank's buffers ({}) do not fit in PMCR_STAGING ({}): its checkpoints are "
                "synchronous until they do", format_size(bytes), format_size(config_.staging));
  }
  return false;
}

void Session::stage() {
  const uint64_t bs = block_size();
  for (auto it = staged_.begin(); it != staged_.end();)
    it = buffers_.count(it->first) ? std::next(it) : staged_.erase(it);  // unprotected since
  for (const auto& [id, b] : buffers_) {
    auto& s = staged_[id];
    if (!s || s->size != b.size) {
      s = std::make_unique<Staged>();
      if (b.size) {
        void* p = ::mmap(nullptr, b.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
          throw Error(PMCR_E_NOMEM, "PMCR_ASYNC=1: no memory for the staging copy of buffer id " + std::to_string(id) +
                                        " (" + format_size(b.size) + ")");
        s->ptr = p;
        s->size = b.size;
      }
    }
    if (!b.size) continue;
    auto* to = static_cast<uint8_t*>(s->ptr);
    const auto* from = static_cast<const uint8_t*>(b.ptr);
    const auto now = next_hashes_.find(id);
    if (now == next_hashes_.end() || now->second.block_size != bs) {
      // Not incremental: every byte.
      std::memcpy(to, from, b.size);
      s->hashes.clear();
      continue;
    }
    const auto& h = now->second.blocks;
    const bool known = s->hashes.size() == h.size();
    for (uint64_t i = 0; i < h.size(); ++i)
      if (!known || s->hashes[i] != h[i]) std::memcpy(to + i * bs, from + i * bs, std::min(bs, b.size - i * bs));
    s->hashes = h;
  }
  PMCR_FAULT_POINT("ckpt.staged");
}

void Session::start_drain(uint64_t version, const std::vector<uint64_t>& regions) {
  drain_ = std::make_unique<Drain>();
  drain_->version = version;
  drain_->regions = regions;
  for (const auto& [id, b] : buffers_) drain_->from[id] = Buffer{staged_.at(id)->ptr, b.size};
  Drain* d = drain_.get();
  d->thread = std::thread([this, d] {
    if (PMCR_FAULT_POINT("drain.begin")) {
      d->out.assign(mine_.size(), Outcome{PMCR_E_IO, "fault injected at drain.begin"});
      return;
    }
    d->out = run_copies(d->version, d->regions, d->from);
  });
}

void Session::join_drain() noexcept {
  if (!drain_ || drain_->joined) return;
  drain_->thread.join();
  drain_->joined = true;
}

void Session::finish_drain() {
  if (!drain_) return;
  join_drain();
  const std::unique_ptr<Drain> d = std::move(drain_);
  try {
    conclude(d->version, d->regions, d->out);
  } catch (const Error& e) {
    abandon(static_cast<int>(d->version));
    tracking_ = false;
    // What a staging copy holds after a failure is not known: whole next time.
    for (auto& [id, s] : staged_) s->hashes.clear();
    failed_ = Failed{static_cast<int64_t>(d->version), e.code(), e.what()};
    throw Error(e.code(), "asynchronous checkpoint of version " + std::to_string(d->version) + " failed: " + e.what());
  }
}

void Session::wait(int version) {
  collectively([&] { check_version(version, "pmcr_wait"); });
  if (drain_ && drain_->version == static_cast<uint64_t>(version)) return finish_drain();
  if (failed_.version == version)
    throw Error(failed_.code, "asynchronous checkpoint of version " + std::to_string(version) + " failed: " + failed_.message);
  if (sealed_here_.count(static_cast<uint64_t>(version))) return;
  throw Error(PMCR_E_NOT_FOUND, "pmcr_wait: version " + std::to_string(version) +
                                    " is not one this job checkpointed (or it is older than the last 64)");
}

}  // namespace pmcr
