// Writes seed corpora:
//   pmcr_fuzz_make_corpus DIR           one well-formed message of every type
//   pmcr_fuzz_make_corpus --pools DIR   the heads of real pools (fuzz_pool.hpp)
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "fuzz_pool.hpp"
#include "fuzz_protocol.hpp"

namespace {

void write(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  const bool pools = argc == 3 && std::strcmp(argv[1], "--pools") == 0;
  if (argc != 2 && !pools) {
    std::fprintf(stderr, "usage: %s [--pools] DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[argc - 1];
  if (pools) {
    for (const auto& [name, bytes] : pmcr::fuzz::sample_pools()) write(dir + "/pool-" + name, bytes);
    return 0;
  }
  int i = 0;
  for (const auto& m : pmcr::fuzz::sample_messages()) {
    char name[32];
    std::snprintf(name, sizeof name, "/seed-%02d", i++);
    write(dir + name, m);
  }
  return 0;
}
