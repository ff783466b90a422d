// Checksums of region data: XXH3-64 (runs at memory speed), seed 0.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pmcr {

uint64_t checksum(const void* data, size_t size) noexcept;

}  // namespace pmcr
