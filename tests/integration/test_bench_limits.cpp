// The limits pmcr-bench measures pmcr against move what they claim to: every
// byte, to the right place, both ways (each baseline checks that itself,
// untimed, and fails otherwise).
#include <gtest/gtest.h>

#include <cmath>

#include "error.hpp"
#include "ucx_limit.hpp"

TEST(BenchLimits, TheUcxBaselineMovesEveryByteBothWays) {
  // Three ranks; a size that is not a whole number of messages, so the
  // last one is short. To the server: one set of processes, 3 warm-up and
  // 2 timed rounds on the same connections, each round's bytes different
  // and checked; from it: two fresh sets of processes.
  constexpr uint64_t kBytes = (5u << 20) + 4099, kChunk = 1u << 20;
  for (bool to_server : {true, false}) {
    SCOPED_TRACE(to_server ? "to the server" : "from the server");
    pmcr::bench::Limit l;
    try {
      l = pmcr::bench::ucx_limit(3, kBytes, to_server, 2, kChunk);
    } catch (const pmcr::Error& e) {
      FAIL() << e.what();
    }
    EXPECT_GT(l.ms, 0.0);
    EXPECT_LT(l.ms, 60e3);
    // Moving the bytes takes CPU time on both ends (each end's own was measured).
    EXPECT_GT(l.cpu_ms, 0.0);
    EXPECT_LT(l.cpu_ms, 4 * 60e3);
  }
}
