// Session: one rank's pmcr state between pmcr_init and pmcr_finalize: the
// configuration, the connection to the pmserver, the protected buffers and
// the rank API's collective algorithms (checkpoint, restart, retention).
//
// Every collective method either returns on every rank or throws on every
// rank an Error with the same code (Comm::agree); local methods throw
// Error. The C layer (c_api.cpp) turns both into codes.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "capture.hpp"
#include "client.hpp"
#include "comm.hpp"
#include "config.hpp"
#include "dirty.hpp"
#include "encryption.hpp"
#include "lease.hpp"
#include "survey.hpp"

namespace pmcr {

using client::server_lost;

class Session {
 public:
  Session(MPI_Comm comm, const char* config_path);  // collective
  ~Session();

  void protect(int id, void* ptr, size_t size);
  void unprotect(int id);
  void checkpoint(int version);  // collective
  // Collective: returns when VERSION is sealed (an asynchronous checkpoint's
  // drain finished); throws its error if it failed, NOT_FOUND if this job
  // did not checkpoint it.
  void wait(int version);
  // Collective; -1 if none. Every candidate is verified by the server
  // first: a damaged one is skipped (and quarantined), and *NOTICE then says
  // so on every rank. In a standby (PMCR_ROLE=standby) it first follows the
  // primary's checkpoints into the protected buffers and returns only when
  // the standby has taken the job over (README, "Hot standby").
  int restart_test(std::string* notice);
  size_t recover_size(int version, int id);
  void restart(int version);  // collective
  void finalize();            // collective

  const Config& config() const { return config_; }

 private:
  struct Buffer {
    void* ptr;
    size_t size;
  };

  // ---- several servers (spread.cpp; README, "Several servers") ----
  struct Server {
    std::string address;
    std::unique_ptr<client::Client> client;  // this rank's connection, made on first use
    uint64_t attempt = 0;  // the job's attempt there, as rank 0 began it; 0: lost to the job
    uint64_t joined = 0;   // the attempt this rank's connection writes under
  };
  // The connection to server I (made and joined to the job's attempt on
  // first use). Throws what connecting throws.
  client::Client& connect(size_t i);
  // The only server of a standby and its primary (the role needs one).
  client::Client& home() { return connect(0); }
  // Forgets this rank's connection to server I after it failed.
  void drop(size_t i) noexcept;
  // Rank 0 begins the job's attempt on every server; every rank connects to
  // its own servers. With several servers, those that do not answer are
  // lost to the job (if others answer) until a checkpoint finds them back.
  void begin_attempts();  // collective
  // Rank 0 tries the lost servers again (every PMCR_SERVER_RETRY).
  void retry_lost();  // collective
  std::string retry_text() const;  // "10 s"
  // Writes FROM (this rank's buffers, or their staged copies) to each of
  // its servers (in parallel), each server told its part of the version
  // (REGIONS: every rank's count). Local: no MPI (an asynchronous
  // checkpoint runs it in a thread).
  struct Outcome {
    int code = 0;
    std::string message;
  };
  std::vector<Outcome> run_copies(uint64_t version, const std::vector<uint64_t>& regions,
                                  const std::map<int, Buffer>& from);
  // Collective: agrees on the outcomes; throws unless the version is
  // complete (every rank's regions in at least one sealed part). A server
  // that failed is lost to the job.
  void conclude_copies(uint64_t version, const std::vector<uint64_t>& regions, const std::vector<Outcome>& out);
  // ... and then what a sealed checkpoint leaves: the next one's base, retention.
  void conclude(uint64_t version, const std::vector<uint64_t>& regions, const std::vector<Outcome>& out);

  // ---- the capacity tier (drained.cpp; README, "A capacity tier") ----
  // Rank 0: the versions newer than AFTER whose drained parts in PMCR_DRAIN
  // hold every rank's regions, newest first; whether VERSION's do.
  std::vector<int64_t> drained_since(int64_t after) const;
  bool drained_whole(uint64_t version) const;
  // Why this rank's drained regions of VERSION are damaged ("": intact).
  // Reads and checks every byte.
  std::string drained_damage(uint64_t version) const;
  // This rank's buffer ID of VERSION from PMCR_DRAIN, checked.
  void read_drained(uint64_t version, uint32_t id, const Buffer& b);
  uint64_t drained_version_ = UINT64_MAX;  // restart_test chose it from PMCR_DRAIN (every rank)

  // ---- asynchronous checkpoints (async.cpp; README, "Asynchronous checkpoints") ----
  // Whether this rank's buffers fit in PMCR_STAGING.
  bool fits_staging() const;
  // Copies what changed of each buffer into its staging copy (the copy then
  // holds what the buffer holds).
  void stage();
  // Sends the staging copies in a thread of its own.
  void start_drain(uint64_t version, const std::vector<uint64_t>& regions);
  // Waits for the drain's thread (local).
  void join_drain() noexcept;
  // Collective: waits for the drain in flight and concludes it (throws its
  // error). Nothing if none is in flight.
  void finish_drain();
  // With several copies of plain buffers, one checksum of each buffer (by
  // id), computed once for all of them while the copies are sent.
  using SharedSums = std::map<int, std::unique_ptr<SharedChecksummer>>;
  SharedSums shared_sums(const std::map<int, Buffer>& from) const;
  void write_to(client::Client& c, uint64_t version, const std::map<int, Buffer>& from, std::vector<uint8_t>& scratch,
                const SharedSums& sums);
  // Rank 0: every server's versions of the job (survey.hpp), and for each
  // rank the servers that hold its regions of VERSION in a sealed part.
  client::Survey list_all();
  void found_on_servers(int64_t* found, std::string* note, std::vector<std::vector<size_t>>* holders);
  std::vector<std::vector<size_t>> locate(uint64_t version, const client::Survey& listing);
  // Rank 0's holders of VERSION, on every rank.
  void share_holders(uint64_t version, std::vector<std::vector<size_t>>* holders);
  // Reads buffer ID from the server chosen for this rank, or another that holds it.
  void read_copy(uint64_t version, uint32_t id, const Buffer& b);
  std::vector<Server> servers_;  // in placement order
  std::vector<size_t> mine_;     // the servers of this rank's copies, the first copy first
  std::chrono::steady_clock::time_point next_retry_{};
  // The version restart_test located, and this rank's holders of it, the
  // one to read from first.
  uint64_t located_version_ = UINT64_MAX;
  std::vector<size_t> read_order_;
  std::set<uint64_t> complete_;  // versions this job checkpointed or restarted (rank 0): retention keeps them first
  std::set<uint64_t> sealed_here_;  // the newest versions this job checkpointed, every rank (pmcr_wait)
  // A staging copy of one buffer: page-aligned memory of its own, reused
  // from checkpoint to checkpoint, and the hashes of the blocks it holds.
  struct Staged {
    void* ptr = nullptr;
    size_t size = 0;
    std::vector<uint64_t> hashes;  // empty: nothing known, copied whole next time
    Staged() = default;
    Staged(const Staged&) = delete;
    Staged& operator=(const Staged&) = delete;
    ~Staged();
  };
  std::map<int, std::unique_ptr<Staged>> staged_;
  struct Drain {
    uint64_t version = 0;
    std::vector<uint64_t> regions;
    std::map<int, Buffer> from;  // the staging copies
    std::vector<Outcome> out;
    std::thread thread;
    bool joined = false;
  };
  std::unique_ptr<Drain> drain_;
  struct Failed {
    int64_t version = -1;
    int code = 0;
    std::string message;
  } failed_;  // the last asynchronous checkpoint that failed

  // Runs F on this rank, then agrees on the outcome with every rank.
  template <class F>
  void collectively(F&& f);
  void check_version(int version, const char* what);
  void apply_retention();
  client::Options client_options(size_t server = 0) const;
  // The standby: follows the primary (this rank alone, no MPI: it sleeps
  // between the server's events) until it fails, then takes the job over
  // with every rank. Returns the version the buffers hold, or -1.
  void follow();
  int take_over(std::string* notice);
  // Makes every protected buffer hold VERSION, fetching only the blocks
  // that differ from what it holds. STRICT: any failure throws; otherwise
  // a version that cannot be applied (deleted meanwhile, damaged) is
  // skipped, and the next one is applied instead.
  void apply(uint64_t version, bool strict);
  // Every rank holds a lease on the attempt, from a thread of its own: a
  // standby takes over when one lapses or its connection is lost.
  void start_lease();
  // True if buffer ID (B) holds VERSION already, as a standby fetched it;
  // then the base of the next incremental checkpoint is set from it.
  bool holds(int id, const Buffer& b, int version);
  // Rank 0 records the takeover for pmcr-run (collective).
  void report_takeover(int version);
  // Frees this rank's unsealed regions of VERSION after a failed checkpoint
  // (best effort), so a program that goes on does not keep losing space.
  void abandon(int version) noexcept;
  // Writes (encrypted, with PMCR_ENCRYPT; only its changed blocks, when
  // incremental) and reads back one buffer.
  // The hashes of every buffer's blocks for the checkpoint in progress
  // (next_hashes_), before any copy is written.
  void hash_buffers();
  void write_buffer(client::Client& c, uint64_t version, uint32_t id, const Buffer& b, std::vector<uint8_t>& scratch,
                    SharedChecksummer* shared);
  void write_blocks(client::Client& c, uint64_t version, uint32_t id, const Buffer& b);
  void track_writes() noexcept;
  void read_buffer(client::Client& c, uint64_t version, uint32_t id, const Buffer& b);
  // Incremental checkpoints: on unless PMCR_INCREMENTAL=0, encryption or the rma data path.
  bool incremental() const { return config_.incremental && !key_ && !config_.rma; }
  // Each buffer goes to every copy as it is (neither encrypted nor in blocks).
  bool sent_as_is() const { return !key_ && !incremental(); }
  uint64_t block_size() const { return config_.block_size ? config_.block_size : kDefaultBlockSize; }
  // The bytes buffer ID of VERSION holds for the program (its plaintext).
  uint64_t stored_plain_size(uint64_t stored, uint64_t version, uint32_t id) const;

  Comm comm_;
  Config config_;
  std::map<int, Buffer> buffers_;
  int64_t last_version_ = -1;  // last version checkpointed or restarted
  std::optional<crypt::DataKey> key_;  // PMCR_ENCRYPT=1
  std::vector<std::vector<uint8_t>> sealed_;  // encrypted bytes of one buffer per copy, reused from checkpoint to checkpoint
  std::mutex hashes_mutex_;  // next_hashes_, when copies are written in parallel
  // Incremental checkpoints: the block hashes of each buffer as the job's
  // last sealed version holds it (base_), from what this rank sent (and the
  // server verified) or restored; those of the checkpoint in progress.
  struct Hashes {
    uint64_t size = 0, block_size = 0;
    std::vector<uint64_t> blocks;
    const void* ptr = nullptr;  // the memory they were taken of (soft-dirty bits are the memory's)
  };
  std::map<int, Hashes> hashes_, next_hashes_;
  std::optional<uint64_t> base_;
  // The standby: what each protected buffer holds, as fetched and verified
  // (version -1: nothing known).
  struct Held {
    int64_t version = -1;
    const void* ptr = nullptr;
    size_t size = 0;
    uint64_t block_size = 0;
    std::vector<uint64_t> hashes;
  };
  std::map<int, Held> held_;
  bool standby_ = false;  // PMCR_ROLE=standby and not taken over yet
  uint64_t instance_ = 0;  // this launch's token
  uint64_t attempt_ = 0;   // the attempt this job writes under (0: none yet, a standby)
  std::unique_ptr<client::LeaseHolder> lease_;
  uint64_t bytes_read_ = 0;  // region bytes this rank fetched (the standby's accounting)
  // Set on rank 0 when the failure it takes over from reached it: the
  // takeover is reported at the end of the restart that follows.
  std::optional<std::chrono::steady_clock::time_point> failure_seen_;
  uint64_t bytes_at_failure_ = 0;
  // PMCR_TRACK_WRITES=1: the kernel's record of the pages written.
  std::unique_ptr<client::WriteTracker> tracker_;
  // Its interval started when hashes_ were last right (a sealed
  // checkpoint, a restart), so a block not written is unchanged since.
  // False after anything else (a failed checkpoint).
  bool tracking_ = false;
  std::set<int> untracked_;  // buffers whose memory the kernel cannot track
  // Blocks of each buffer written since the base (taken at the start of a
  // checkpoint).
  std::map<int, std::vector<bool>> dirty_;
};

template <class F>
void Session::collectively(F&& f) {
  std::string message;
  const int code = capture(f, &message);
  comm_.agree(code, message);
}

}  // namespace pmcr
