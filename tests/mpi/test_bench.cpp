// pmcr-bench itself, with the smallest sizes: the figures in the README
// come from it, so a run that breaks on a legitimate set-up is a defect.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "jobs.hpp"

namespace pmcr::test {
namespace {

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

// A directory of the test's own for the bench's pools and files, removed
// with whatever is left in it.
class Dir {
 public:
  Dir() : path_("pools") { EXPECT_EQ(::mkdir(path_.str().c_str(), 0700), 0); }
  ~Dir() { std::filesystem::remove_all(path_.str()); }
  const std::string& str() const { return path_.str(); }

 private:
  TempPath path_;
};

tools::RunResult bench(const Dir& dir, std::vector<std::string> args, const std::string& mpiexec = PMCR_MPIEXEC) {
  args.insert(args.begin(), {PMCR_BENCH, "ckpt", "--reps", "1", "--pool-dirs", dir.str(), "--posix-dir", dir.str(),
                             "--mpiexec", mpiexec, "--mpiexec-flags=" + std::string(PMCR_MPIEXEC_PREFLAGS), "--json"});
  return tools::run(args, {}, std::chrono::seconds(240), false);
}

// 2 ranks on 3 servers with one copy: the placement gives one server no
// rank, so it holds nothing of the job. The bench used to fail there when
// it removed the job's versions from every server between measurements
// ("job ... has no versions in this pool"). Every row is measured, and the
// pools go.
TEST(Bench, ServersWithFewerRanksThanServersMeasuresEveryRowAndRemovesThePools) {
  const Dir dir;
  const tools::RunResult r = bench(dir, {"--jobs", "2x1", "--servers", "2,3", "--replicas", "1", "--async", "0"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(r.out);
  std::set<int> servers;
  for (const auto& row : j.at("rows")) {
    EXPECT_EQ(row.at("ranks").get<int>(), 2);
    EXPECT_GT(row.at("ckpt_ms").get<double>(), 0);
    EXPECT_GT(row.at("restart_ms").get<double>(), 0);
    servers.insert(row.at("servers").get<int>());
  }
  EXPECT_EQ(servers, (std::set<int>{2, 3})) << r.out;
  EXPECT_TRUE(entries(dir.str()).empty()) << "left behind: " << entries(dir.str()).front();
}

// A run that fails once its servers are up (here: the launcher cannot
// start the ranks) says so, and leaves no pool behind: they are GiBs of
// /dev/shm in a real run.
TEST(Bench, AFailedRunLeavesNoPoolBehind) {
  const Dir dir;
  for (const std::vector<std::string>& mode :
       {std::vector<std::string>{"--jobs", "1x1", "--servers", "1", "--replicas", "1", "--async", "0"},
        std::vector<std::string>{"--jobs", "1x1"}}) {
    const tools::RunResult r = bench(dir, mode, "/bin/false");
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_NE(r.err.find("benchmark job failed"), std::string::npos) << r.err;
    EXPECT_TRUE(entries(dir.str()).empty()) << "left behind: " << entries(dir.str()).front();
  }
}

}  // namespace
}  // namespace pmcr::test
