// What UCX itself reaches on this machine's transport, measured the way the
// socket baseline is (pmcr_bench.cpp, socket_limit_ms): the floor under
// pmcr's checkpoint and restart once the transport is UCX.
#pragma once

#include <cstdint>

#include "cpu_time.hpp"

namespace pmcr::bench {

// RANKS processes, each with BYTES in memory touched beforehand, move them
// with UCX active messages (rendezvous, CHUNK bytes each, all in flight at
// once; endpoints with peer error handling, as pmcr's, so UCX picks the
// transport it picks for pmcr) to (TO_SERVER) or from one process holding
// RANKS x BYTES touched beforehand, one worker and thread per stream there.
// Milliseconds from "go" to the last byte landed, median of REPS, with the
// CPU time both ends spent from then on. No checksum, no persistence, no
// protocol. As the socket baseline: to the server (a checkpoint) in steady
// state, the same processes and connections after kWarmRounds untimed
// rounds; from it (a restart) new processes each time. Every round's bytes
// are checked, untimed. Throws pmcr::Error.
Limit ucx_limit(int ranks, uint64_t bytes, bool to_server, int reps, uint64_t chunk);

}  // namespace pmcr::bench
