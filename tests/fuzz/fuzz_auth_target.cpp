// libFuzzer target for authentication and access (built when clang is the
// compiler):   ./pmcr_fuzz_auth -max_total_time=60 tests/fuzz/corpus
#include <cstdio>
#include <cstdlib>

#include "fuzz_auth.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string violation = pmcr::fuzz::check_auth(data, size);
  if (!violation.empty()) {
    std::fprintf(stderr, "%s\n", violation.c_str());
    std::abort();
  }
  return 0;
}
