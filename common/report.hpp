// The failure report: how libpmcr tells the launcher that started the job
// (pmcr-run) why it failed, so that a relaunch happens only when it can
// help. The launcher names a file in PMCR_RUN_REPORT; every failure of a
// call that moves the job on (pmcr_init, pmcr_checkpoint,
// pmcr_restart_test, pmcr_restart) is appended to it as one line "CODE
// TEXT", and the next success of one after a failure as "0 ok": the last
// line is the job's last outcome (a failure it got past does not count).
#pragma once

#include <optional>
#include <string>

namespace pmcr::report {

constexpr const char* kVariable = "PMCR_RUN_REPORT";

// Appends the failure to $PMCR_RUN_REPORT, if set (at most a few dozen
// lines per process). Never throws, never prints.
void failure(int code, const std::string& text) noexcept;
void success() noexcept;

struct Reported {
  int code = 0;
  std::string text;
};
// The last outcome recorded in PATH if it is a failure.
std::optional<Reported> last(const std::string& path);

// A standby's takeover (README, "Hot standby"): rank 0 of the standby that
// became the primary records it as the line "1 takeover V MS BYTES" (lines
// with a positive code are news, not outcomes).
struct Takeover {
  long long version = 0;
  long long ms = 0;        // from the failure reaching the standby to the restart done
  unsigned long long bytes = 0;  // read from the server after the failure, by all ranks
};
void takeover(const Takeover& t) noexcept;
// The takeover recorded in PATH, if any.
std::optional<Takeover> takeover_of(const std::string& path);

// False for failures that a relaunch cannot cure, because nothing will
// change by itself: a full pool or quota, a bad configuration or program,
// a checkpoint of another size, a job taken over by another run. True for
// lost servers, time-outs, killed ranks and the like.
bool transient(int code) noexcept;

}  // namespace pmcr::report
