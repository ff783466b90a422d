// Repair (pmcr repair, and pmserver --peers in the background): brings
// every sealed version of a job back to R copies on a
// list of servers (README, "Several servers"), after a server was lost and
// came back empty, or with its old pool, or was replaced.
//
// For each version that is still complete (every rank's regions in a
// sealed part on some server that answers), each server that placement
// (placement.hpp) gives a part of it but that does not hold that part
// sealed gets the whole part: every region of its ranks, read from a
// server that holds it (verified against its checksum on the way), written
// with the part's size so that the server seals the part itself at its
// last commit. Versions are repaired oldest first, and a region whose
// previous version the server holds already is written as an incremental
// one: only the blocks that differ travel, the rest is shared, as the job's
// own checkpoints share them. A version with a rank that has no copy left
// cannot be repaired and is named.
//
// The writes join the job's current attempt on each server (a running job
// is not disturbed); a server that has none gets one begun. A version with
// regions open on some server is being written: it is left to the job (and
// named). SKIP_NEWEST(v), if given, may leave the newest sealed version v
// too (pmserver's background repair: until it has been the newest for a
// whole interval, the job may still be writing parts of it).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "survey.hpp"

namespace pmcr::client {

struct RepairReport {
  struct Part {
    uint64_t version = 0;
    std::string server;
    uint32_t ranks = 0, regions = 0;
    uint64_t bytes = 0;  // of its regions
    uint64_t sent = 0;   // of them sent (the rest shared with the previous version)
  };
  std::vector<Part> parts;           // written and sealed
  std::vector<std::string> problems;  // versions or servers that could not be repaired, and why
  std::vector<std::string> skipped;   // versions left to their job for now, and why
  uint32_t versions = 0;              // versions looked at
  uint32_t healthy = 0;               // ... that had every copy already
};

// SAY: a line of progress, for a terminal.
RepairReport repair(Fleet& fleet, const std::string& job, unsigned replicas,
                    const std::function<void(const std::string&)>& say,
                    const std::function<bool(uint64_t)>& skip_newest = {});

}  // namespace pmcr::client
