// The libFuzzer entry point of every target (built when clang is the
// compiler), compiled once per target with its check:
//   PMCR_FUZZ_HEADER  "fuzz_protocol.hpp", "fuzz_pool.hpp" or "fuzz_auth.hpp"
//   PMCR_FUZZ_CHECK   pmcr::fuzz::check_protocol, check_pool or check_auth
//
//   ./pmcr_fuzz_protocol -max_total_time=60 tests/fuzz/corpus
//   ./pmcr_fuzz_auth -max_total_time=60 tests/fuzz/corpus
//   ./pmcr_fuzz_pool -max_len=135168 DIR   (DIR: pmcr_fuzz_make_corpus --pools DIR)
#include <cstdio>
#include <cstdlib>

#include PMCR_FUZZ_HEADER

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string violation = PMCR_FUZZ_CHECK(data, size);
  if (!violation.empty()) {
    std::fprintf(stderr, "%s\n", violation.c_str());
    std::abort();
  }
  return 0;
}
