// pmcr-bench itself, with the smallest sizes: the figures in the README
// come from it, so a run that breaks on a legitimate set-up is a defect.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

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

// 2 ranks on 3 servers with one copy: the placement gives one server no
// rank, so it holds nothing of the job. The bench used to fail there when
// it removed the job's versions from every server between measurements
// ("job ... has no versions in this pool"). Every row is measured, and the
// pools go.
TEST(Bench, ServersWithFewerRanksThanServersMeasuresEveryRowAndRemovesThePools) {
  TempPath dir("pools");
  ASSERT_EQ(::mkdir(dir.str().c_str(), 0700), 0);
  const tools::RunResult r =
      tools::run({PMCR_BENCH, "ckpt", "--jobs", "2x1", "--servers", "2,3", "--replicas", "1", "--async", "0", "--reps", "1",
                  "--pool-dirs", dir.str(), "--posix-dir", dir.str(), "--mpiexec", PMCR_MPIEXEC,
                  "--mpiexec-flags=" + std::string(PMCR_MPIEXEC_PREFLAGS), "--json"},
                 {}, std::chrono::seconds(240), false);
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
  ::rmdir(dir.str().c_str());
}

}  // namespace
}  // namespace pmcr::test
