// Pool recovery under damage, for libFuzzer and for the unit tests: an
// input is laid over the head of a real pool (its header and catalogue);
// the pool is opened and recovered as pmserver would, and the result must
// be a clear error or a consistent catalogue: exact space accounting, every
// version that is offered verifies, everything can be deleted, and the
// pool takes new checkpoints. Never a crash or a hang.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pmcr::fuzz {

// Bytes of a pool's head that inputs cover (header + catalogue of the
// smallest pool).
size_t pool_head_size();
// What is wrong with recovering a pool whose head is DATA, or "".
std::string check_pool(const uint8_t* data, size_t size);
// Heads of real pools (written through the catalogue): empty, with sealed
// versions, after a crash mid-checkpoint and mid-delete, with a
// quarantined version. NAME -> bytes.
std::vector<std::pair<std::string, std::vector<uint8_t>>> sample_pools();

}  // namespace pmcr::fuzz
