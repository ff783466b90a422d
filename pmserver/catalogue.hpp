// Catalogue: the crash-consistent index of regions and sealed versions,
// stored as an array of Records in the pool, mirrored by DRAM indexes that
// are rebuilt from it at start-up.
//
// A region (job, version, rank, id) is created by a writer, filled with
// data, then committed (data persisted and checksum verified). A version
// becomes visible only when it is sealed: one record whose state store makes
// all of its regions visible at once. Unsealed regions never survive a
// restart, and die with the connection that created them.
//
// Who may write (README, "Who may write a region"):
//  - A job is written by attempts. begin_attempt() starts one and supersedes
//    every earlier attempt of that job: their unsealed regions are dropped at
//    once, and they may create and seal nothing more (PMCR_E_SUPERSEDED).
//  - Within the current attempt, an unsealed region belongs to the
//    connection (Owner) that created it until the seal: only that owner
//    writes, commits or re-creates it; another owner's CREATE of the same key
//    is refused (PMCR_E_BUSY). When the owner goes, its regions are freed.
//
// Whose a job is (README, "Security"): the first principal to begin or
// create in a free job name claims it. The claim is durable (an owner
// record, written before the job's first region) while the job holds
// anything in the pool, and lives on in memory while the server runs, so
// nobody else takes the name between two checkpoints. Deleting every
// version of a job frees its name. A job whose owner record is missing or
// damaged is left to the admins (kUnknownOwner): a damaged record never
// makes a job anyone's.
//
// Memory is never reused while I/O may still touch it: every receive into a
// region and every send from it holds a pin (as a reader does), and a region
// freed while pinned keeps its extent until the last pin is released.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "allocator.hpp"
#include "blocks.hpp"
#include "pool.hpp"

namespace pmcr::server {

// The uid of a job whose owner record is missing or damaged: only admins
// may see or touch it.
constexpr uint32_t kUnknownOwner = 0xffffffff;
// Job names one owner may hold at once (a user cannot take every name).
constexpr uint32_t kMaxJobsPerOwner = 1u << 16;

struct RegionKey {
  std::string job;
  uint64_t version = 0;
  uint32_t rank = 0;
  uint32_t id = 0;
};

struct RegionView {
  uint64_t handle = 0;
  uint64_t offset = 0;    // from the pool start (one extent)
  uint64_t size = 0;      // bytes
  uint64_t capacity = 0;  // extent bytes (page multiple; 0 for an empty region or one in blocks)
  uint64_t checksum = 0;
  uint32_t rank = 0;
  uint32_t id = 0;
  uint64_t block_size = 0;  // kept in blocks (an incremental checkpoint's region); 0: one extent
  GenerationRef blocks;     // ... its blocks, once committed
};

struct VersionSummary {
  std::string job;
  uint64_t version = 0;
  bool sealed = false;  // sealed and not quarantined
  uint32_t nranks = 0;
  uint32_t nregions = 0;
  uint32_t part_ranks = 0;  // the ranks whose regions it holds (nranks: all; fewer: a part)
  uint64_t bytes = 0;
  std::string quarantine;  // why it is quarantined; empty if it is not
};

struct RegionSummary {
  uint32_t rank = 0;
  uint32_t id = 0;
  uint64_t size = 0;
  uint64_t checksum = 0;
  bool committed = false;
};

// Named regions (region.h): a region (job, name) is a series of committed
// generations, each a block map over copy-on-write blocks (layout.hpp).
// One writer at a time builds the next generation from the latest: a block
// it writes is copied first (a shadow block) unless the write covers it,
// so what it did not change costs nothing, and COMMIT publishes the
// generation with one persisted state word. A region keeps its newest
// `keep` generations; a reader's handle also holds the last two
// generations it was told of (open, stat), so a follower can read what
// changed between them even if the writer has moved on. Handles of named
// regions have the top bit set.
constexpr uint64_t kNamedHandleBit = 1ull << 63;
inline bool is_named_handle(uint64_t handle) { return handle & kNamedHandleBit; }

struct NamedInfo {
  uint64_t handle = 0;
  uint64_t generation = 0;  // latest committed; 0: none yet
  uint64_t size = 0;        // of that generation
  uint64_t block_size = 0;
  uint32_t keep = 0;
};

// Bytes of a generation in pool memory: [offset, offset + length) holds the
// region's bytes from `at` on.
struct Segment {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t at = 0;
};

struct NamedSummary {
  std::string job, name;
  uint64_t generation = 0, size = 0, block_size = 0;
  uint32_t keep = 0, generations = 0;
  bool writing = false;
  std::string damaged;
};

struct CatalogueStats {
  uint64_t data_size = 0;
  uint64_t used_bytes = 0;
  uint64_t free_bytes = 0;
  uint32_t regions = 0;
  uint32_t sealed_versions = 0;
  uint32_t quarantined_versions = 0;
  uint64_t kept_bytes = 0;  // extents of damaged region records, kept with their version
  uint32_t jobs = 0;
  uint32_t slots = 0;
  uint32_t slots_used = 0;
  uint32_t named_regions = 0;
};

// What one owner holds now: its unsealed regions and their extent bytes.
struct OwnerUsage {
  uint32_t regions = 0;
  uint64_t bytes = 0;
};

struct RecoveryReport {
  uint32_t sealed_versions = 0;
  uint32_t regions = 0;
  uint32_t reclaimed_regions = 0;   // created or committed but never sealed
  uint32_t finished_deletions = 0;  // versions whose deletion a crash interrupted
  uint32_t damaged = 0;             // records that failed verification
  uint32_t quarantined = 0;         // versions kept but never served
};

class Catalogue {
 public:
  // Recovers the catalogue of POOL: finishes interrupted deletions, reclaims
  // unsealed regions (or quarantines them, when a damaged record may have
  // been their seal), verifies sealed versions' metadata and rebuilds the
  // allocator.
  explicit Catalogue(Pool& pool);

  const RecoveryReport& recovery() const { return recovery_; }

  // Called whenever a data extent returns to the allocator (after the last
  // pin was released), so the server can drop its UCX registration.
  std::function<void(uint64_t offset, uint64_t capacity)> on_extent_freed;

  // Starts a new attempt of JOB and returns its number (larger than every
  // earlier one, in this server's life and, with a sane clock, across
  // restarts). Earlier attempts' unsealed regions are freed; *DROPPED says
  // how many. TAKEOVER: a standby takes the job over, and writers of the
  // earlier attempts are told they were fenced (FENCED), not superseded.
  // Throws INVAL (name).
  uint64_t begin_attempt(const std::string& job, uint32_t* dropped = nullptr, bool takeover = false);
  // The job's current attempt, 0 if none began since the server started.
  uint64_t current_attempt(const std::string& job) const;
  // Throws unless ATTEMPT is JOB's current attempt: STATE (no such
  // attempt), FENCED (a standby took over since), SUPERSEDED (a later run).
  void check_attempt(const std::string& job, uint64_t attempt) const;

  // The uid JOB belongs to (kUnknownOwner: its owner record is missing or
  // damaged), or nothing if the name is free.
  std::optional<uint32_t> job_owner(const std::string& job) const;
  // Makes JOB UID's if the name is free (no-op if it is UID's already).
  // Throws PERM (another's), INVAL (name), QUOTA (too many jobs, or
  // kMaxJobsPerOwner of UID's).
  void claim_job(const std::string& job, uint32_t uid, uint32_t gid);

  // Creates (or, for its own owner, replaces) an unsealed region. Throws
  // INVAL (name), SUPERSEDED (not the job's current attempt), EXISTS
  // (version sealed), BUSY (another owner's region), NOSPACE (pool or
  // catalogue full).
  // With BLOCK_SIZE, the region is kept in blocks of that size; with
  // BASE_VERSION too, it starts as that sealed version's region of the same
  // rank and id (if that one has the same size and block size: *BASED), so
  // its writer sends only the blocks that changed.
  RegionView create_region(const RegionKey& key, uint64_t size, Owner owner, uint64_t attempt,
                           uint64_t block_size = 0, std::optional<uint64_t> base_version = std::nullopt,
                           bool* based = nullptr);
  // Persists the region's data, verifies CHECKSUM over it and commits it
  // durably. Throws NOT_FOUND, STATE (another owner), SIZE, CHECKSUM.
  void commit_region(uint64_t handle, uint64_t size, uint64_t checksum, Owner owner);
  // The same in two halves, for a region kept in one extent: where its data
  // is, to persist and checksum off the event loop (nothing: a retried
  // commit, or a region kept in blocks: commit it with commit_region); then
  // the commit of the data, persisted and found to have checksum ACTUAL.
  // The region must stay pinned in between.
  std::optional<std::pair<uint8_t*, uint64_t>> commit_data(uint64_t handle, uint64_t size, uint64_t checksum,
                                                           Owner owner);
  void commit_persisted(uint64_t handle, uint64_t size, uint64_t checksum, uint64_t actual, Owner owner);
  // The same for a region kept in blocks (a checkpoint's): its new blocks
  // (pool ranges, in order) to persist and hash off the event loop, once
  // the checks that need no pass over the data passed (nothing: a retried
  // commit, or a region in one extent); writes into it are refused until
  // the second half, which takes their hashes in the same order. *WORK
  // holds the writer's blocks as a landing write does (they stay even if
  // the region is dropped meanwhile): give it back with release_write once
  // the worker is done. Throws as commit_region.
  std::optional<std::vector<std::pair<uint8_t*, uint64_t>>> commit_blocks_data(uint64_t handle, uint64_t size,
                                                                              uint64_t checksum, Owner owner,
                                                                              WorkingRef* work);
  void commit_blocks_hashed(uint64_t handle, uint64_t size, uint64_t checksum, Owner owner,
                            const std::vector<uint64_t>& hashes);
  // Where OWNER may write the data of its uncommitted region HANDLE.
  // Throws NOT_FOUND, STATE (another owner, or already committed).
  RegionView writable_region(uint64_t handle, Owner owner) const;
  // Seals a version atomically if exactly NREGIONS regions of NRANKS ranks
  // (each rank at least one) are committed. With PART_RANKS, this pool
  // holds a part of the version (it is spread over several servers): the
  // regions of PART_RANKS of its NRANKS ranks. Idempotent for the same
  // counts. Throws NOT_FOUND, INVAL, INCOMPLETE, EXISTS (sealed with other
  // counts), SUPERSEDED. False for a retried seal (it was sealed already).
  bool seal(const std::string& job, uint64_t version, uint32_t nranks, uint32_t nregions, uint64_t attempt,
            uint32_t part_ranks = 0);

  // Opens a committed region of a sealed version for reading and pins its
  // extent until close_region. Throws NOT_FOUND, CORRUPT (quarantined).
  RegionView open_region(const RegionKey& key);
  void close_region(uint64_t handle) { unpin(handle); }
  // Pins a region (created or committed, or freed but still pinned) against
  // reuse of its extent, for I/O in flight. Throws NOT_FOUND.
  void pin(uint64_t handle);
  // Releases one pin of a region, or of a freed region's extent (then
  // returned to the allocator with its last pin). Throws NOT_FOUND.
  void unpin(uint64_t handle);
  // Every region of a sealed version. Throws NOT_FOUND, CORRUPT (quarantined).
  std::vector<RegionView> version_regions(const std::string& job, uint64_t version) const;

  // Identifies the sealed version (job, version) as it is now: a new
  // version sealed under the same name after a delete has another id. 0 if
  // it is not sealed.
  uint64_t version_id(const std::string& job, uint64_t version) const;
  // How many regions (created or committed) the unsealed or sealed version
  // has: 0 if none.
  size_t region_count(const std::string& job, uint64_t version) const;
  // Marks sealed version ID damaged, durably: it is never served again,
  // and stays (listed, with REASON) until deleted, or until the job's
  // current attempt writes a new checkpoint of that version number. No-op
  // if (job, version) is no longer that sealed version.
  void quarantine(const std::string& job, uint64_t version, uint64_t id, const std::string& reason);

  // Deletes one version (sealed, quarantined or not), or every version of
  // the job. Returns (versions, regions) deleted. Throws NOT_FOUND.
  std::pair<uint32_t, uint32_t> delete_versions(const std::string& job, std::optional<uint64_t> version);
  // Frees every unsealed region OWNER created (its connection is gone), or
  // only those of one version (a failed checkpoint). Returns how many.
  uint32_t release_owner(Owner owner);
  uint32_t release_owner(Owner owner, const std::string& job, uint64_t version);
  OwnerUsage usage(Owner owner) const;

  std::vector<VersionSummary> list_versions(const std::string& job) const;
  // (job, version) of every sealed, not quarantined version.
  std::vector<std::pair<std::string, uint64_t>> sealed_versions() const;
  // Throws NOT_FOUND.
  std::pair<bool, std::vector<RegionSummary>> list_regions(const std::string& job, uint64_t version) const;
  CatalogueStats stats() const;
  uint64_t data_size() const { return alloc_.capacity(); }

  // ---- named regions (named.cpp) ----
  // Defaults for a new region's block size and kept generations.
  void set_region_defaults(uint64_t block_size, uint32_t keep);
  // Opens JOB/NAME for writing by OWNER, creating it (with BLOCK_SIZE and
  // KEEP, 0: the defaults) if it does not exist. Throws INVAL (name, block
  // size, keep), BUSY (another writer has it), CORRUPT (damaged).
  NamedInfo region_create(const std::string& job, const std::string& name, uint64_t block_size, uint32_t keep,
                          Owner owner);
  // Opens JOB/NAME for reading. Throws NOT_FOUND, CORRUPT.
  NamedInfo region_open(const std::string& job, const std::string& name, Owner owner);
  // The writer's next generation starts empty. Throws NOT_FOUND, PERM.
  void region_clear(uint64_t handle, Owner owner);
  // Publishes the writer's next generation (of SIZE bytes, as the writer
  // counts them). Throws NOT_FOUND, PERM, SIZE, RANGE (a hole), IO (a
  // write that failed to arrive), NOSPACE.
  NamedInfo region_commit(uint64_t handle, Owner owner, uint64_t size);
  // The latest committed generation; a reader's handle now holds it.
  NamedInfo region_stat(uint64_t handle, Owner owner);
  // Where LENGTH bytes at OFFSET of GENERATION are (a kept generation, or
  // one this handle holds), and that generation (hold it while sending).
  // A block is checked against its hash before its first read after
  // start-up (one written since was hashed from pool memory). Throws
  // NOT_FOUND, RANGE (beyond its size), CORRUPT (a block failed: the region
  // is never served again).
  std::vector<Segment> region_read(uint64_t handle, Owner owner, uint64_t generation, uint64_t offset,
                                   uint64_t length, GenerationRef* generation_ref);
  // The byte ranges of GENERATION that differ from SINCE (0: all of it),
  // block by block, adjacent ones merged.
  std::vector<std::pair<uint64_t, uint64_t>> region_changed(uint64_t handle, Owner owner, uint64_t since,
                                                            uint64_t generation);
  // Where the writer's LENGTH bytes at OFFSET land (within one block),
  // after the block was copied if this generation had not written it yet.
  // Pins the writer's state (*PIN) until release_write. Throws NOT_FOUND,
  // PERM (a reader's handle), RANGE (past the end), INVAL (straddles
  // blocks), QUOTA (more than BYTE_QUOTA of new blocks), NOSPACE, STATE.
  uint8_t* region_write(uint64_t handle, Owner owner, uint64_t offset, uint64_t length, uint64_t byte_quota,
                        WorkingRef* pin);
  void release_write(const WorkingRef& pin, bool arrived);
  // Pins of a generation for bytes being sent from it.
  void hold(const GenerationRef& g);
  void release(const GenerationRef& g);
  // Ends a handle (a writer's uncommitted changes are dropped). Throws NOT_FOUND.
  void region_close(uint64_t handle, Owner owner);
  // Removes JOB/NAME and all its generations; readers keep what they
  // hold until they close. Throws NOT_FOUND.
  void region_remove(const std::string& job, const std::string& name);
  // Closes every named-region handle OWNER holds (its connection is gone).
  uint32_t release_named(Owner owner);
  uint32_t named_handles(Owner owner) const;
  std::vector<NamedSummary> list_named(const std::string& job) const;

  // Where OWNER's LENGTH bytes at OFFSET land in its region HANDLE kept in
  // blocks (an incremental checkpoint's: the blocks it did not send stay
  // those of its base version). Pins the writer (*PIN) until release_write.
  // Throws NOT_FOUND, STATE, RANGE, INVAL (straddles blocks), NOSPACE.
  uint8_t* write_blocks(uint64_t handle, Owner owner, uint64_t offset, uint64_t length, WorkingRef* pin);
  // The pool ranges that hold [OFFSET, OFFSET + LENGTH) of region V.
  std::vector<Segment> segments(const RegionView& v, uint64_t offset, uint64_t length) const;

  // Data address of a region in this process (for the server's
  // registration and for tests).
  uint8_t* data(uint64_t offset) const { return pool_.base() + offset; }

 private:
  struct SlotInfo {
    uint32_t gen = 1;
    Owner owner = 0;
    uint32_t pins = 0;
    WorkingRef work;        // a region kept in blocks, being written
    GenerationRef blocks;   // ... committed
  };
  struct Version {
    bool sealed = false;
    std::string quarantine;  // non-empty: damaged, never served
    uint32_t seal_slot = UINT32_MAX;
    std::map<std::pair<uint32_t, uint32_t>, uint32_t> regions;  // (rank, id) -> slot
    // Records found damaged at start-up that name this version (a second
    // seal, a region record failing its checksum): kept, never trusted, and
    // freed with the version.
    std::vector<uint32_t> damaged_slots;
  };
  struct Zombie {  // extent (or blocks) of a freed region that I/O or a reader still pins
    uint64_t offset = 0;
    uint64_t capacity = 0;
    uint32_t pins = 0;
    GenerationRef blocks;
  };

  Record& rec(uint32_t slot) const { return pool_.records()[slot]; }
  uint64_t handle_of(uint32_t slot) const { return (static_cast<uint64_t>(slots_[slot].gen) << 32) | slot; }
  RegionView view_of(uint32_t slot) const;
  std::optional<uint32_t> slot_of(uint64_t handle) const;
  uint32_t take_slot();
  void commit_mapped(uint32_t slot, uint64_t size, uint64_t checksum);
  // A COMMIT's checks: the region's record (and its slot), or nullptr for a
  // retried commit of the same checksum.
  Record* commit_target(uint64_t handle, uint64_t size, uint64_t checksum, Owner owner, uint32_t* slot);
  // Its data persisted, with checksum ACTUAL: the record committed.
  void commit_checked(Record& r, uint64_t checksum, uint64_t actual);
  void write_body(uint32_t slot, const std::string& job, uint64_t version, uint32_t rank, uint32_t id, uint64_t offset,
                  uint64_t size, uint64_t checksum);
  bool body_ok(uint32_t slot) const;
  void set_owner(uint32_t slot, Owner owner);
  void free_record(uint32_t slot);     // persists state 0; the slot returns to the free list
  void free_region(uint32_t slot);     // free_record + extent (deferred while pinned)
  void release_extent(uint64_t offset, uint64_t capacity);
  Version* find_version(const std::string& job, uint64_t version);
  const Version* find_version(const std::string& job, uint64_t version) const;
  void prune(const std::string& job, uint64_t version);
  // Frees every unsealed region of JOB (its writers are superseded).
  uint32_t release_unsealed(const std::string& job);
  uint32_t release_owned(Owner owner, const std::string* job, uint64_t version);
  uint32_t delete_version(const std::string& job, uint64_t version, Version& v);
  // Writes JOB's owner record, if it has a claim without one (before the
  // job's first region).
  void persist_owner(const std::string& job);
  // JOB left jobs_: its owner record goes; so does its claim if FORGET.
  void release_job(const std::string& job, bool forget);
  uint64_t manifest_digest(const Version& v) const;
  void recover();
  bool job_empty(const std::string& job) const { return !jobs_.count(job) && !named_.count(job); }

  // ---- named regions (named.cpp) ----
  struct Named;
  struct NamedHandle {
    std::shared_ptr<Named> region;
    Owner owner = 0;
    bool writer = false;
    GenerationRef held[2];  // readers: the latest generation told, and the one before
  };
  NamedHandle& named_handle(uint64_t handle, Owner owner);
  std::shared_ptr<Named> find_named(const std::string& job, const std::string& name) const;  // NOT_FOUND
  NamedInfo info_of(const Named& n, uint64_t handle) const;
  GenerationRef readable(const NamedHandle& h, uint64_t generation) const;
  void unhold(GenerationRef& g);
  void drop_generation(Named& n, uint64_t generation);
  void abandon(Named& n);
  void forget_if_unused(const std::shared_ptr<Named>& n);
  void recover_named(const std::vector<uint32_t>& slots, std::vector<bool>& used);

  // ---- blocks (blocks.cpp) ----
  // A writer holds the committed blocks it starts from.
  void hold_blocks(const Working& w);
  // One reference less to a committed block: freed with its last.
  void unref_block(uint64_t offset, uint64_t length);
  // A generation dropped with no pin left: its references and its map.
  void free_blocks(Generation& g);
  // A writer's new blocks freed, its holds released (it keeps nothing).
  void empty_working(Working& w);
  // The writer goes: emptied now, or when its last write has landed.
  void drop_working(const WorkingRef& w);
  // Where LENGTH bytes at OFFSET of W land (see region_write).
  uint8_t* write_into(Working& w, uint64_t offset, uint64_t length, uint64_t byte_quota);
  // Persists and hashes W's new blocks, after checking it has no hole.
  // Throws RANGE.
  void hash_blocks(Working& w, bool named);
  // The halves of hash_blocks: the blocks past W's end dropped and the
  // holes refused (RANGE), then the new blocks' pool ranges; then their
  // hashes, in the same order.
  std::vector<std::pair<uint8_t*, uint64_t>> fresh_blocks(Working& w);
  void hashed_blocks(Working& w, const std::vector<uint64_t>& hashes);
  // A checkpoint region's commit: the checks before any pass over the data
  // (broken, still landing, size), and what follows the hashing.
  Working& mapped_target(uint32_t slot, uint64_t size);
  void commit_hashed(uint32_t slot, uint64_t checksum);
  // W's block map in a new extent, persisted; (offset, length). Throws NOSPACE.
  std::pair<uint64_t, uint64_t> write_map(const Working& w, const std::string& job, const std::string& name,
                                          uint64_t number, uint32_t keep);
  // Once the record that names MAP is committed: W's blocks become the
  // generation's (W keeps them, no longer new).
  GenerationRef adopt(Working& w, uint32_t slot, uint64_t number, std::pair<uint64_t, uint64_t> map);
  // The block map of the record in SLOT, checked; null (and *WHY) if damaged.
  GenerationRef read_map(uint32_t slot, std::string* why, std::string* name) const;
  // Recovery: reserves G's map and blocks and counts its references;
  // false (nothing counted) if they overlap other data.
  bool count_blocks(const Generation& g);

  Pool& pool_;
  ExtentAllocator alloc_;
  std::vector<SlotInfo> slots_;
  std::vector<uint32_t> free_slots_;
  std::map<std::string, std::map<uint64_t, Version>> jobs_;
  std::map<uint64_t, Zombie> zombies_;  // by handle
  std::unordered_map<Owner, OwnerUsage> usage_;
  std::unordered_map<Owner, std::set<uint32_t>> owned_;  // unsealed slots by owner
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> kept_extents_;  // damaged region record -> its extent, reserved
  std::unordered_map<std::string, uint64_t> attempts_;  // job -> current attempt
  std::unordered_map<std::string, uint64_t> takeovers_;  // job -> its latest attempt begun by a standby's takeover
  struct JobOwner {
    uint32_t uid = kUnknownOwner;
    uint32_t gid = 0;
    uint32_t slot = UINT32_MAX;  // its record, while the job holds something
  };
  std::unordered_map<std::string, JobOwner> owners_;
  std::unordered_map<uint32_t, uint32_t> claims_;  // job names by owner
  std::map<std::string, std::map<std::string, std::shared_ptr<Named>>> named_;  // job -> name -> region
  std::unordered_map<uint64_t, NamedHandle> named_handles_;
  std::unordered_map<Owner, std::set<uint64_t>> named_by_owner_;
  std::unordered_map<uint64_t, uint32_t> block_refs_;  // committed generations' blocks by pool offset
  std::unordered_set<uint64_t> verified_blocks_;        // ... checked against their hash since start-up
  std::vector<WorkingRef> landing_;  // abandoned writers whose writes are still arriving
  std::unordered_map<uint64_t, uint64_t> recovered_lengths_;  // recovery: every block's extent bytes
  uint64_t next_named_handle_ = 1;
  uint64_t default_block_size_ = 1ull << 20;
  uint32_t default_keep_ = 2;
  uint64_t last_attempt_ = 0;
  uint64_t next_sequence_ = 1;
  uint32_t regions_ = 0;
  RecoveryReport recovery_;
};

}  // namespace pmcr::server
