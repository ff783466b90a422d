// Fault points for crash and failure tests (pattern of librpma's src/debug.h).
//
// PMCR_FAULT_POINT("name") marks a place where a test may make pmcr fail. It
// compiles to `false` unless the build option PMCR_FAULT_INJECTION is on.
// When on, the environment variable PMCR_FAULT="name:N[:action]" arms one
// point: its Nth hit (1-based) either kills the process with SIGKILL
// (action "kill", the default: a crash at exactly that place), stops it
// with SIGSTOP (action "stop": a stall at exactly that place, until a test
// sends SIGCONT), sleeps 2 s (action "pause": a slow process at exactly
// that place), or makes the macro return true (action "fail": the caller
// fails the operation there). A stop or pause is written to the trace
// (below) as "stopped PID NAME" or "paused PID NAME", so a test can find
// the process.
// PMCR_FAULT_TRACE=PATH appends every hit's name to PATH, one per line, so a
// test driver can learn the points a workload passes and sweep all of them.
// PMCR_FAULT_ONCE=PATH makes the point fire only in the process that
// creates PATH first: one rank of a job, once across relaunches.
#pragma once

namespace pmcr::fault {
bool hit(const char* name) noexcept;
// Arms NAME's NTH hit from now on, as PMCR_FAULT would (unit tests);
// an empty name disarms.
void arm(const char* name, long nth, bool kill) noexcept;
// Arms SPEC ("name:N[:action]", as PMCR_FAULT) instead, without
// PMCR_FAULT_ONCE: a standby's own fault (PMCR_STANDBY_FAULT).
void arm_spec(const char* spec) noexcept;
}

#ifdef PMCR_FAULT_INJECTION
#define PMCR_FAULT_POINT(name) (::pmcr::fault::hit(name))
#else
#define PMCR_FAULT_POINT(name) (false)
#endif
