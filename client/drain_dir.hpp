// The capacity tier's directory (pmserver --drain DIR; README, "A capacity
// tier"), as readers see it: DIR/<job>/<version>/<rank>/<id> and one
// manifest per drained part, pmcr-manifest[.part-HASH].json.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace pmcr::client {

// JOB's versions in DIR whose drained parts hold every rank's regions:
// version -> its rank count.
std::map<uint64_t, uint32_t> drained_versions(const std::string& dir, const std::string& job);

struct DrainedRegion {
  std::string path;
  uint64_t size = 0, checksum = 0, block_size = 0;
};
// Where region (RANK, ID) of VERSION is in DIR, with what its manifest says.
std::optional<DrainedRegion> drained_region(const std::string& dir, const std::string& job, uint64_t version,
                                            uint32_t rank, uint32_t id);

}  // namespace pmcr::client
