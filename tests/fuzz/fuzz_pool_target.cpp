// libFuzzer target for pool recovery (built when clang is the compiler):
//   ./pmcr_fuzz_pool -max_len=135168 DIR   (DIR: pmcr_fuzz_make_corpus --pools DIR)
#include <cstdio>
#include <cstdlib>

#include "fuzz_pool.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string violation = pmcr::fuzz::check_pool(data, size);
  if (!violation.empty()) {
    std::fprintf(stderr, "%s\n", violation.c_str());
    std::abort();
  }
  return 0;
}
