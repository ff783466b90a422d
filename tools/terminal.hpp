// What the tools show on a terminal, and only there: a progress bar for
// long transfers (pmcr export/import) and the width to draw in.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace pmcr::tools {

// True if FD is a terminal (isatty).
bool is_terminal(int fd);
// The width of the terminal on FD, in columns (80 if it cannot be told).
int terminal_width(int fd);

// One line on OUT, redrawn in place ('\r') at most 10 times a second while
// a transfer of TOTAL bytes runs: percent, a bar, bytes done of the total,
// the rate, and the time left at that rate. Nothing before 0.5 s: a short
// transfer draws nothing at all. finish() replaces a drawn bar with its
// last line (bytes, time taken, average rate). A disabled bar draws nothing.
class ProgressBar {
 public:
  using Clock = std::chrono::steady_clock;
  ProgressBar(std::string what, uint64_t total, FILE* out, bool enabled, int width = 80,
              std::function<Clock::time_point()> now = Clock::now);
  ~ProgressBar();  // an unfinished bar (the transfer failed) is wiped, not finished
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void set(uint64_t done);  // bytes done so far (never more than the total)
  void finish();
  // The line for DONE bytes after ELAPSED seconds (what set() draws).
  std::string line(uint64_t done, double elapsed) const;

 private:
  void draw(const std::string& text);
  std::string what_;
  uint64_t total_;
  FILE* out_;
  bool enabled_, finished_ = false;
  int width_;
  std::function<Clock::time_point()> now_;
  Clock::time_point start_, last_draw_{};
  uint64_t done_ = 0;
  size_t drawn_ = 0;  // characters of the line on screen
};

}  // namespace pmcr::tools
