#include "terminal.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "text.hpp"

namespace pmcr::tools {

bool is_terminal(int fd) { return ::isatty(fd) == 1; }

int terminal_width(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
  return 80;
}

namespace {

std::string duration_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 10) {
    char text[16];
    std::snprintf(text, sizeof text, "%.1f s", s);
    return text;
  }
  const auto t = static_cast<long long>(std::llround(s));
  if (t < 60) return std::to_string(t) + " s";
  if (t < 3600) return std::to_string(t / 60) + " min " + std::to_string(t % 60) + " s";
  return std::to_string(t / 3600) + " h " + std::to_string(t % 3600 / 60) + " min";
}

}  // namespace

ProgressBar::ProgressBar(std::string what, uint64_t total, FILE* out, bool enabled, int width,
                         std::function<Clock::time_point()> now)
    : what_(std::move(what)), total_(total), out_(out), enabled_(enabled), width_(std::max(width, 40)),
      now_(std::move(now)), start_(now_()) {}

ProgressBar::~ProgressBar() {
  if (finished_ || !enabled_ || drawn_ == 0) return;
  // Not finished: the transfer failed, and its error follows. Wipe the line.
  std::fprintf(out_, "\r%s\r", std::string(drawn_, ' ').c_str());
  std::fflush(out_);
}

std::string ProgressBar::line(uint64_t done, double elapsed) const {
  const double frac = total_ ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  std::string tail = " " + format_size(done) + " of " + format_size(total_);
  if (rate > 0) tail += ", " + format_size(static_cast<uint64_t>(rate)) + "/s";
  if (done < total_) tail += ", ETA " + (rate > 0 ? duration_text(static_cast<double>(total_ - done) / rate) : "?");
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(frac * 100));
  const std::string head = what_ + " " + pct;
  const int room = width_ - 1 - static_cast<int>(head.size() + tail.size()) - 3;
  std::string bar;
  if (room >= 10) {
    const int n = std::min(room, 40), fill = static_cast<int>(frac * n);
    bar = " [" + std::string(static_cast<size_t>(fill), '#') + std::string(static_cast<size_t>(n - fill), ' ') + "]";
  }
  return head + bar + tail;
}

void ProgressBar::draw(const std::string& text) {
  std::string padded = text;
  if (padded.size() < drawn_) padded.append(drawn_ - padded.size(), ' ');  // wipe a longer previous line
  std::fprintf(out_, "\r%s", padded.c_str());
  std::fflush(out_);
  drawn_ = text.size();
}

void ProgressBar::set(uint64_t done) {
  done_ = std::min(done, total_);
  if (!enabled_ || finished_) return;
  const auto now = now_();
  if (now - start_ < std::chrono::milliseconds(500) || now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(line(done_, std::chrono::duration<double>(now - start_).count()));
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_ || drawn_ == 0) return;  // (a transfer too short to draw: nothing to end)
  const double elapsed = std::chrono::duration<double>(now_() - start_).count();
  std::string text = what_ + " " + format_size(done_) + " in " + duration_text(elapsed);
  if (elapsed > 0 && done_) text += ", " + format_size(static_cast<uint64_t>(static_cast<double>(done_) / elapsed)) + "/s";
  draw(text);
  std::fputc('\n', out_);
  std::fflush(out_);
}

}  // namespace pmcr::tools
