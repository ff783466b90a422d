// A writer of a named region through the public C API (region.h), for the
// tests that SIGKILL it or its server: it continues the region from its
// latest committed generation, making each next one as region_model.hpp
// says, and prints each generation number once its commit returned.
//   pmcr_region_writer SERVER JOB NAME BLOCK_SIZE GENERATIONS
#include <pmcr/region.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "region_model.hpp"

namespace {

pmcr_client* g_client = nullptr;
pmcr_region* g_region = nullptr;

// Reports the failure, and lets go of the region and the connection (a
// program that exits on an error cleans up too).
int fail(const char* what, int rc) {
  std::fprintf(stderr, "region_writer: %s: %s: %s\n", what, pmcr_strerror(rc), pmcr_last_error());
  pmcr_region_close(g_region);
  pmcr_disconnect(g_client);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s SERVER JOB NAME BLOCK_SIZE GENERATIONS\n", argv[0]);
    return 2;
  }
  const uint64_t block = std::strtoull(argv[4], nullptr, 10), count = std::strtoull(argv[5], nullptr, 10);
  pmcr_client*& c = g_client;
  pmcr_region*& r = g_region;
  if (int rc = pmcr_connect(argv[1], &c)) return fail("connect", rc);
  // A writer killed just before still holds the region until its server
  // notices the connection is gone.
  for (int tries = 0;; ++tries) {
    const int rc = pmcr_region_create(c, argv[2], argv[3], &r);
    if (rc == 0) break;
    if (rc != PMCR_E_BUSY || tries == 100) return fail("create", rc);
    usleep(100 * 1000);
  }
  uint64_t g = 0, size = 0;
  if (int rc = pmcr_region_stat(r, &g, &size)) return fail("stat", rc);
  for (uint64_t k = 0; k < count; ++k) {
    for (const auto& op : pmcr::test::generation_ops(g + 1, size, block)) {
      int rc = 0;
      if (op.kind == pmcr::test::RegionOp::Clear) rc = pmcr_region_clear(r), size = 0;
      else if (op.kind == pmcr::test::RegionOp::Append) rc = pmcr_region_append(r, op.bytes.data(), op.bytes.size());
      else rc = pmcr_region_write(r, op.offset, op.bytes.data(), op.bytes.size());
      if (rc) return fail("write", rc);
      if (op.kind != pmcr::test::RegionOp::Clear)
        size = std::max<uint64_t>(op.kind == pmcr::test::RegionOp::Append ? size + op.bytes.size()
                                                                         : op.offset + op.bytes.size(),
                                  size);
    }
    uint64_t committed = 0;
    if (int rc = pmcr_region_commit(r, &committed)) return fail("commit", rc);
    if (committed != g + 1) {
      std::fprintf(stderr, "region_writer: committed generation %llu, expected %llu\n",
                   static_cast<unsigned long long>(committed), static_cast<unsigned long long>(g + 1));
      return fail("commit", PMCR_E_STATE);
    }
    g = committed;
    const std::string line = std::to_string(g) + "\n";
    if (write(STDOUT_FILENO, line.data(), line.size()) < 0) return fail("write to stdout", PMCR_E_IO);
  }
  pmcr_region_close(r);
  pmcr_disconnect(c);
  return 0;
}
