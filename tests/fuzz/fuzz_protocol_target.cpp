// libFuzzer target for the wire protocol (built when clang is the compiler):
//   ./pmcr_fuzz_protocol -max_total_time=60 tests/fuzz/corpus
#include <cstdio>
#include <cstdlib>

#include "fuzz_protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string violation = pmcr::fuzz::check_protocol(data, size);
  if (!violation.empty()) {
    std::fprintf(stderr, "%s\n", violation.c_str());
    std::abort();
  }
  return 0;
}
