// The progress bar of pmcr export/import, on a clock of the test's: when it
// draws, what a line says (percent, bytes, rate, time left), and that a
// disabled bar or a short transfer draws nothing.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "terminal.hpp"

using pmcr::tools::ProgressBar;
using namespace std::chrono_literals;

namespace {

struct Screen {
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  ~Screen() {
    std::fclose(f);
    std::free(text);
  }
  std::string str() {
    std::fflush(f);
    return std::string(text, size);
  }
};

}  // namespace

TEST(ProgressBar, DrawsRateAndTimeLeftAfterHalfASecond) {
  Screen screen;
  ProgressBar::Clock::time_point now{};
  {
    ProgressBar bar("export job", 400u << 20, screen.f, true, 100, [&] { return now; });
    now += 200ms;
    bar.set(10u << 20);
    EXPECT_EQ(screen.str(), "") << "nothing in the first half second";
    now += 800ms;  // 1 s: 100 MiB of 400 MiB
    bar.set(100u << 20);
    std::string s = screen.str();
    EXPECT_NE(s.find("\rexport job  25% ["), std::string::npos) << s;
    EXPECT_NE(s.find("] 100.0 MiB of 400.0 MiB, 100.0 MiB/s, ETA 3.0 s"), std::string::npos) << s;
    now += 50ms;
    bar.set(110u << 20);
    EXPECT_EQ(screen.str(), s) << "redrawn at most 10 times a second";
    now += 60ms;
    bar.set(400u << 20);
    s = screen.str();
    EXPECT_NE(s.find("100% ["), std::string::npos) << s;
    EXPECT_EQ(s.rfind("ETA"), s.find("ETA")) << "no time left once done: " << s;
    now += 890ms;  // 2 s in all
    bar.finish();
  }
  const std::string s = screen.str();
  EXPECT_NE(s.find("\rexport job 400.0 MiB in 2.0 s, 200.0 MiB/s"), std::string::npos) << s;
  EXPECT_EQ(s.back(), '\n');
}

// A transfer that failed: its bar is wiped, no "done" line.
TEST(ProgressBar, UnfinishedBarIsWiped) {
  Screen screen;
  ProgressBar::Clock::time_point now{};
  {
    ProgressBar bar("import x", 100u << 20, screen.f, true, 80, [&] { return now; });
    now += 1s;
    bar.set(10u << 20);
  }
  const std::string s = screen.str();
  EXPECT_NE(s.find("ETA"), std::string::npos) << s;
  EXPECT_EQ(s.find(" in "), std::string::npos) << s;
  EXPECT_EQ(s.back(), '\r') << s;
}

TEST(ProgressBar, DisabledOrShortDrawsNothing) {
  Screen screen;
  ProgressBar::Clock::time_point now{};
  {
    ProgressBar off("import", 1u << 30, screen.f, false, 80, [&] { return now; });
    now += 5s;
    off.set(1u << 29);
    ProgressBar quick("import", 1u << 20, screen.f, true, 80, [&] { return now; });
    now += 100ms;
    quick.set(1u << 20);
  }
  EXPECT_EQ(screen.str(), "");
}

TEST(ProgressBar, LongTimesAndNarrowTerminals) {
  Screen screen;
  ProgressBar::Clock::time_point now{};
  ProgressBar bar("export", uint64_t{10000} << 20, screen.f, true, 40, [&] { return now; });
  // 1 MiB/s with 9999 MiB left: hours, and no room for the bar itself.
  EXPECT_EQ(bar.line(1u << 20, 1.0), "export   0% 1.0 MiB of 9.8 GiB, 1.0 MiB/s, ETA 2 h 46 min");
  EXPECT_EQ(bar.line(0, 0.0), "export   0% 0 B of 9.8 GiB, ETA ?");
}
