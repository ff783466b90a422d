// Writes the seed corpus: one well-formed message of every type.
//   pmcr_fuzz_make_corpus tests/fuzz/corpus
#include <cstdio>
#include <fstream>
#include <string>

#include "fuzz_protocol.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  int i = 0;
  for (const auto& m : pmcr::fuzz::sample_messages()) {
    char name[32];
    std::snprintf(name, sizeof name, "/seed-%02d", i++);
    std::ofstream(std::string(argv[1]) + name, std::ios::binary)
        .write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.size()));
  }
  return 0;
}
