#include "checksum.hpp"

#include <xxhash.h>

namespace pmcr {

uint64_t checksum(const void* data, size_t size) noexcept {
  return XXH3_64bits(size == 0 ? "" : data, size);
}

}  // namespace pmcr
