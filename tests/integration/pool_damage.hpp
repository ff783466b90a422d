// Media damage, done to a stopped server's pool file the way failing
// persistent memory would: bytes flipped in a region's data, in a region's
// record, in a version's seal record. Uses the pool layout (pmserver's
// layout.hpp), nothing else of the server.
#pragma once

#include <cstdint>
#include <string>

namespace pmcr::test {

// Flips COUNT bytes spread over the data of the committed region
// (job, version, rank, id), in one extent or in blocks. Throws
// std::runtime_error if there is none.
void damage_region_data(const std::string& pool, const std::string& job, uint64_t version, uint32_t rank, uint32_t id,
                        int count = 3);
// Flips one bit in the body of the seal record of (job, version).
void damage_seal_record(const std::string& pool, const std::string& job, uint64_t version);

}  // namespace pmcr::test
