// The capacity tier's directory (pmserver --drain DIR; README, "A capacity
// tier"), as readers see it: DIR/<job>/<version>/<rank>/<id> and one
// manifest per drained part, pmcr-manifest[.part-HASH].json.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pmcr::client {

// JOB's versions in DIR whose drained parts hold every rank's regions:
// version -> its rank count.
std::map<uint64_t, uint32_t> drained_versions(const std::string& dir, const std::string& job);

struct DrainedRegion {
  uint32_t id = 0;
  std::string path;
  uint64_t size = 0, checksum = 0, block_size = 0;
};
// Where region (RANK, ID) of VERSION is in DIR, with what its manifest says.
std::optional<DrainedRegion> drained_region(const std::string& dir, const std::string& job, uint64_t version,
                                            uint32_t rank, uint32_t id);
// Every region of RANK in VERSION's manifests.
std::vector<DrainedRegion> drained_regions(const std::string& dir, const std::string& job, uint64_t version,
                                           uint32_t rank);
// The region's stored bytes, read and checked against its manifest's size
// and checksum; throws PMCR_E_CORRUPT or PMCR_E_CHECKSUM, naming the file,
// when the drained copy is damaged.
std::vector<uint8_t> read_drained(const DrainedRegion& g);

}  // namespace pmcr::client
