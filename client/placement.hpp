// Placement: which servers hold which rank's data when PMCR_SERVERS lists
// several (README, "Several servers"). Pure functions of the server list,
// the job's size and the number of copies, so every rank, a relaunch and
// the pmcr tool compute the same answer without asking anyone.
//
// The servers are taken in the order of their addresses as text, whatever
// order the list gives them in. Rank r's R copies go to the R servers that
// follow it round the circle: order[(r + k) % N] for k = 0 .. R-1. Every
// server then holds the data of R/N of the ranks (within one rank), and a
// server's loss takes one copy of R/N of the ranks' data, never two copies
// of one rank's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pmcr::placement {

// The servers in placement order (sorted). Throws Error(PMCR_E_CONFIG) if
// one is listed twice.
std::vector<std::string> order(std::vector<std::string> servers);

// The servers (indices into the order) that hold rank RANK's COPIES copies,
// the first one first. COPIES must be 1 .. NSERVERS.
std::vector<size_t> replicas(uint32_t rank, size_t nservers, unsigned copies);

// What one server holds of a version: the regions of some of the ranks.
struct Part {
  uint32_t ranks = 0;
  uint32_t regions = 0;
};
// Each server's part of a version whose rank r writes REGIONS[r] regions.
std::vector<Part> parts(const std::vector<uint32_t>& regions, size_t nservers, unsigned copies);

// Where each rank reads from in a restart: HOLDERS[r] lists the servers
// that hold a good copy of rank r's data (in the rank's replica order, its
// first copy first), BYTES[r] how much it is. Each rank is given the holder
// with the fewest bytes to send so far (ties: the earlier copy), ranks taken
// in order, so a lost server's readers spread over the others. -1 for a
// rank no server holds.
std::vector<int> readers(const std::vector<std::vector<size_t>>& holders, const std::vector<uint64_t>& bytes,
                         size_t nservers);

}  // namespace pmcr::placement
