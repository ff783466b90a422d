// The pmcr command-line tool against a real pmserver, --json output parsed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <sstream>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "checksum.hpp"
#include "process.hpp"
#include "server_process.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using pmcr::test::pattern;
using pmcr::test::run_cli;

namespace {

void write_file(const fs::path& p, const std::vector<uint8_t>& data) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class CliTest : public ::testing::Test {
 protected:
  CliTest() : pool_("pool"), server_({pool_.str(), "256M"}) {
    dir_ = fs::path("/tmp") / ("pmcr-cli-test-" + std::to_string(getpid()) + "-" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  ~CliTest() override { fs::remove_all(dir_); }
  void SetUp() override {
    ASSERT_TRUE(server_.start()) << server_.log();
    // rank 0: ids 0 and 1; rank 1: id 0 (empty) and id 7
    files_ = {{"0/0", pattern(1 << 20, 1)}, {"0/1", pattern(4095, 2)}, {"1/0", {}}, {"1/7", pattern(3 << 20, 3)}};
    for (const auto& [name, data] : files_) write_file(dir_ / "in" / name, data);
  }
  json cli_json(std::vector<std::string> args) {
    args.push_back("--server");
    args.push_back(server_.address());
    args.push_back("--json");
    std::string out, err;
    const int rc = run_cli(args, &out, &err);
    EXPECT_EQ(rc, 0) << err;
    try {
      return json::parse(out);
    } catch (const json::exception& e) {
      ADD_FAILURE() << "not JSON: " << out << " (" << e.what() << ")";
      return json();
    }
  }
  pmcr::test::TempPath pool_;
  pmcr::test::ServerProcess server_;
  fs::path dir_;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files_;
};

}  // namespace

TEST_F(CliTest, ImportLsStatExportRm) {
  json imp = cli_json({"import", "--job", "cli", "--version", "3", (dir_ / "in").string()});
  EXPECT_EQ(imp["sealed"], true);
  EXPECT_EQ(imp["regions"], 4);
  EXPECT_EQ(imp["ranks"], 2);
  cli_json({"import", "--job", "cli", "--version", "5", (dir_ / "in").string()});

  json ls = cli_json({"ls", "--job", "cli"});
  ASSERT_EQ(ls["versions"].size(), 2u);
  EXPECT_EQ(ls["versions"][0]["version"], 3);
  EXPECT_EQ(ls["versions"][0]["sealed"], true);
  EXPECT_EQ(ls["versions"][0]["ranks"], 2);
  EXPECT_EQ(ls["versions"][0]["regions"], 4);
  EXPECT_EQ(ls["versions"][0]["bytes"], (1 << 20) + 4095 + (3 << 20));

  json st = cli_json({"stat"});
  EXPECT_EQ(st["regions"], 8);
  EXPECT_EQ(st["versions"], 2);
  EXPECT_EQ(st["jobs"], 1);
  EXPECT_GE(st["connections"].get<int>(), 1);
  EXPECT_EQ(st["pool_size"], 256u << 20);
  EXPECT_EQ(st["used"].get<uint64_t>() + st["free"].get<uint64_t>(), st["data_size"].get<uint64_t>());

  // export picks the latest sealed version by default
  json exp = cli_json({"export", "--job", "cli", (dir_ / "out").string()});
  EXPECT_EQ(exp["version"], 5);
  for (const auto& [name, data] : files_) EXPECT_EQ(read_file(dir_ / "out" / name), data) << name;
  json manifest = json::parse(std::ifstream(dir_ / "out" / "pmcr-manifest.json"));
  EXPECT_EQ(manifest["job"], "cli");
  EXPECT_EQ(manifest["version"], 5);
  ASSERT_EQ(manifest["regions"].size(), 4u);
  for (const auto& r : manifest["regions"]) {
    const auto data = read_file(dir_ / "out" / std::to_string(r["rank"].get<int>()) / std::to_string(r["id"].get<int>()));
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(pmcr::checksum(data.data(), data.size())));
    EXPECT_EQ(r["xxh3_64"], hex);
    EXPECT_EQ(r["size"], data.size());
  }
  // an export re-imports (manifest checksums verified) as another version
  json again = cli_json({"import", "--job", "cli", "--version", "6", (dir_ / "out").string()});
  EXPECT_EQ(again["regions"], 4);
  json old = cli_json({"export", "--job", "cli", "--version", "3", (dir_ / "old").string()});
  EXPECT_EQ(old["version"], 3);

  json rm = cli_json({"rm", "--job", "cli", "--version", "3"});
  EXPECT_EQ(rm["versions"], 1);
  EXPECT_EQ(rm["regions"], 4);
  json rm_all = cli_json({"rm", "--job", "cli"});
  EXPECT_EQ(rm_all["versions"], 2);
  EXPECT_TRUE(cli_json({"ls"})["versions"].empty());
}

TEST_F(CliTest, TamperedImportIsRefusedAndNothingIsSealed) {
  cli_json({"import", "--job", "t", "--version", "1", (dir_ / "in").string()});
  cli_json({"export", "--job", "t", (dir_ / "out").string()});
  auto data = read_file(dir_ / "out" / "1" / "7");
  data[1000] ^= 0x40;  // flip one bit
  write_file(dir_ / "out" / "1" / "7", data);
  std::string out, err;
  EXPECT_EQ(run_cli({"import", "--server", server_.address(), "--job", "t", "--version", "2", (dir_ / "out").string()},
                    &out, &err), 1);
  EXPECT_NE(err.find("checksum"), std::string::npos) << err;
  json ls = cli_json({"ls", "--job", "t"});
  ASSERT_EQ(ls["versions"].size(), 1u) << "a refused import must leave no version";
  EXPECT_EQ(ls["versions"][0]["version"], 1);
}

TEST_F(CliTest, ErrorsAreClearAndNonZero) {
  std::string out, err;
  EXPECT_EQ(run_cli({"export", "--server", server_.address(), "--job", "nosuch", (dir_ / "x").string()}, &out, &err), 1);
  EXPECT_NE(err.find("no sealed version"), std::string::npos) << err;
  EXPECT_EQ(run_cli({"import", "--server", server_.address(), "--job", "j", "--version", "1", "/nonexistent"}, &out, &err), 1);
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(run_cli({"import", "--server", server_.address(), "--job", "bad/name", "--version", "1", (dir_ / "in").string()},
                    &out, &err), 1);
  EXPECT_NE(err.find("invalid job name"), std::string::npos) << err;
  EXPECT_EQ(run_cli({"stat", "--server", "127.0.0.1:notaport"}, &out, &err), 1);
  EXPECT_NE(err.find("invalid server address"), std::string::npos) << err;
  EXPECT_EQ(run_cli({"rm", "--server", server_.address(), "--job", "nosuch"}, &out, &err), 1);
  EXPECT_NE(err.find("no versions"), std::string::npos) << err;
  EXPECT_NE(run_cli({"frobnicate"}, &out, &err), 0);
  const std::string addr = server_.address();
  server_.stop();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run_cli({"stat", "--server", addr}, &out, &err), 1);
  EXPECT_NE(err.find("server unreachable"), std::string::npos) << err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(6));
}

// PMCR_SERVERS with several servers: stat covers each, saying which do not
// answer; --server picks one.
TEST_F(CliTest, ServersComeFromPmcrServersWhenNotGiven) {
  ::setenv("PMCR_SERVERS", (server_.address() + ",127.0.0.1:1").c_str(), 1);
  std::string out, err;
  EXPECT_EQ(run_cli({"stat", "--json"}, &out, &err), 0) << err;
  const json all = json::parse(out);
  EXPECT_EQ(all["answering"], 1);
  ASSERT_EQ(all["servers"].size(), 2u) << out;
  for (const auto& e : all["servers"]) {
    if (e["server"] == "127.0.0.1:1") EXPECT_TRUE(e.contains("lost")) << out;
    else EXPECT_EQ(e["server"], server_.address()) << out;
  }
  EXPECT_EQ(run_cli({"stat", "--json", "--server", server_.address()}, &out, &err), 0) << err;
  ::unsetenv("PMCR_SERVERS");
  EXPECT_EQ(json::parse(out)["server"], server_.address());
}

// `pmcr watch` shows where a job stands, then its events as they happen,
// and stops after --count of them.
TEST_F(CliTest, WatchShowsAttemptsAndSealsAsTheyHappen) {
  auto c = server_.connect();
  c.begin("watched", 0xabc);
  const auto bytes = pattern(5000, 1);
  c.write_region("watched", 1, 0, 0, bytes.data(), bytes.size());
  c.seal("watched", 1, 1, 1);
  pmcr::test::TempPath out("watch-out");
  const pid_t pid = pmcr::tools::spawn({PMCR_CLI_PATH, "watch", "--job", "watched", "--count", "2", "--timeout", "20",
                                        "--server", server_.address()},
                                       pmcr::tools::SpawnOptions{{}, out.str(), out.str()});
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (pmcr::tools::read_file(out.str()).find("newest sealed version 1") == std::string::npos &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  c.write_region("watched", 2, 0, 0, bytes.data(), bytes.size());
  c.seal("watched", 2, 1, 1);
  c.fail("watched", 0xabc, "mpirun exited with code 137");
  int status = 0;
  ASSERT_TRUE(pmcr::tools::wait_for(pid, std::chrono::seconds(30), &status, true));
  EXPECT_EQ(pmcr::tools::exit_code(status), 0);
  const std::string text = pmcr::tools::read_file(out.str());
  EXPECT_NE(text.find("job watched: attempt "), std::string::npos) << text;
  EXPECT_NE(text.find(" running, newest sealed version 1"), std::string::npos) << text;
  EXPECT_NE(text.find("sealed: version 2 (1 ranks)"), std::string::npos) << text;
  EXPECT_NE(text.find("failed: attempt "), std::string::npos) << text;
  EXPECT_NE(text.find("mpirun exited with code 137"), std::string::npos) << text;
}

// `pmcr stat --watch` while a job seals a version every 150 ms: one JSON
// line per refresh, the job's sealed bytes per second after the first; as
// text, blocks one after the other into a file, the screen redrawn in
// place on a terminal (a pty of script(1)'s).
TEST_F(CliTest, StatWatchShowsEachJobsThroughput) {
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    auto c = server_.connect();
    c.begin("busy");
    const auto bytes = pattern(1 << 20, 5);
    for (uint64_t v = 1; !stop && v < 400; ++v) {
      c.write_region("busy", v, 0, 0, bytes.data(), bytes.size());
      c.seal("busy", v, 1, 1);
      if (v > 2) c.remove("busy", v - 2);  // two kept, as PMCR_KEEP=2 would
      std::this_thread::sleep_for(std::chrono::milliseconds(150));
    }
  });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      t.join();
    }
  } join{stop, writer};
  std::string out, err;
  ASSERT_EQ(run_cli({"stat", "--watch", "--interval", "0.4", "--count", "4", "--json", "--server", server_.address()},
                    &out, &err),
            0)
      << err;
  std::vector<json> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.push_back(json::parse(l));
  ASSERT_EQ(lines.size(), 4u) << out;
  EXPECT_EQ(lines[0]["seconds"], 0.0);
  EXPECT_EQ(lines[0]["pool_size"], 256 << 20);
  double best = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_GE(lines[i]["seconds"].get<double>(), 0.39) << out;
    EXPECT_LT(lines[i]["seconds"].get<double>(), 10.0) << out;
    for (const auto& j : lines[i]["jobs"])
      if (j["job"] == "busy") {
        EXPECT_EQ(j["bytes_per_s"].get<double>(),
                  j["sealed_bytes_since_last"].get<double>() / lines[i]["seconds"].get<double>());
        best = std::max(best, j["bytes_per_s"].get<double>());
      }
  }
  // About 6 versions of 1 MiB a second; at least one sealed in some 0.4 s.
  EXPECT_GT(best, 1e6) << out;

  ASSERT_EQ(run_cli({"stat", "--watch", "--interval", "0.2", "--count", "2", "--server", server_.address()}, &out, &err),
            0)
      << err;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << "escape codes into a pipe: " << out;
  EXPECT_NE(out.find("traffic     -/s in"), std::string::npos) << out;
  EXPECT_NE(out.find("\n\npmserver " + server_.address()), std::string::npos) << "no second block: " << out;
  const auto tty = pmcr::tools::run({"script", "-qfec",
                                     std::string(PMCR_CLI_PATH) + " stat --watch --interval 0.2 --count 2 --server " +
                                         server_.address(),
                                     "/dev/null"},
                                    {}, std::chrono::seconds(60), true);
  EXPECT_EQ(tty.code, 0) << tty.out;
  EXPECT_EQ(tty.out.rfind("\x1b[H\x1b[2Jpmserver ", 0), 0u) << tty.out;
  EXPECT_NE(tty.out.find("\x1b[H\x1b[2Jpmserver ", 1), std::string::npos) << "not redrawn: " << tty.out;
  EXPECT_NE(tty.out.find("busy "), std::string::npos) << tty.out;
}

// The progress bar of a large import: on a terminal (a pty of script(1)'s)
// it shows percent, bytes, rate and time left while the transfer runs (a
// 64 MiB region whose third chunk waits 1.2 s to go out), then its last
// line; into a pipe, nothing.
TEST_F(CliTest, ImportShowsAProgressBarOnlyOnATerminal) {
#ifndef PMCR_FAULT_INJECTION
  GTEST_SKIP() << "built without PMCR_FAULT_INJECTION: the transfer cannot be held up long enough to draw";
#endif
  write_file(dir_ / "big" / "0" / "0", pattern(64 << 20, 9));
  const std::string import = std::string(PMCR_CLI_PATH) + " import --job big --version 1 " + (dir_ / "big").string() +
                             " --server " + server_.address();
  const std::vector<std::string> pause = {"PMCR_FAULT=client.send.chunk:3:pause", "PMCR_FAULT_PAUSE_MS=1200"};
  const auto tty = pmcr::tools::run({"script", "-qfec", import, "/dev/null"}, pause, std::chrono::seconds(60), true);
  EXPECT_EQ(tty.code, 0) << tty.out;
  EXPECT_NE(tty.out.find("\rimport big "), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find(" of 64.0 MiB, "), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("/s, ETA "), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("\rimport big 64.0 MiB in "), std::string::npos) << "no last line: " << tty.out;
  EXPECT_NE(tty.out.find("imported and sealed version 1 of job big"), std::string::npos) << tty.out;

  const auto pipe = pmcr::tools::run({PMCR_CLI_PATH, "import", "--job", "big", "--version", "2", (dir_ / "big").string(),
                                      "--server", server_.address()},
                                     pause, std::chrono::seconds(60), false);
  EXPECT_EQ(pipe.code, 0) << pipe.err;
  EXPECT_EQ(pipe.err.find("ETA"), std::string::npos) << "a progress bar into a pipe: " << pipe.err;
  EXPECT_EQ(pipe.err.find('\r'), std::string::npos) << pipe.err;
  // An export into a pipe draws nothing either.
  const auto exp = pmcr::tools::run({PMCR_CLI_PATH, "export", "--job", "big", (dir_ / "out").string(), "--server",
                                     server_.address()},
                                    {}, std::chrono::seconds(60), false);
  EXPECT_EQ(exp.code, 0) << exp.err;
  EXPECT_EQ(exp.err, "") << exp.err;
}

// `pmcr repair` onto an empty second server: versions oldest first, each
// region of a version whose previous one the server holds already written
// as an incremental one (only the blocks that differ sent, the rest shared
// in the pool), every byte read back identical; `pmcr ls` over both
// servers shows each version with its copies.
TEST_F(CliTest, RepairSendsOnlyTheBlocksThatDifferFromThePreviousVersion) {
  pmcr::test::TempPath pool2("pool2");
  pmcr::test::ServerProcess empty({pool2.str(), "256M"});
  ASSERT_TRUE(empty.start()) << empty.log();
  constexpr uint64_t kBlock = 64 << 10, kSize = 8 * kBlock;
  auto v1 = pattern(kSize, 1), v2 = v1;
  std::fill(v2.begin() + 3 * kBlock, v2.begin() + 4 * kBlock, 0x5a);  // one block of eight changed
  {
    auto c = server_.connect();
    c.begin("rep");
    for (uint64_t v : {1u, 2u}) {
      const auto& data = v == 1 ? v1 : v2;
      const auto hashes = pmcr::block_hashes(data.data(), data.size(), kBlock);
      auto t = c.create("rep", v, 0, 0, kSize, kBlock, v == 2 ? std::optional<uint64_t>(1) : std::nullopt);
      if (t.based) c.put_blocks(t, data.data(), {3});
      else c.put(t, data.data());
      c.commit(t, pmcr::combine_hashes(hashes.data(), hashes.size()));
      c.seal("rep", v, 1, 1);
    }
  }
  const std::string both = server_.address() + "," + empty.address();
  std::string out, err;
  ASSERT_EQ(run_cli({"ls", "--servers", both, "--job", "rep", "--replicas", "2", "--json"}, &out, &err), 0) << err;
  const json before = json::parse(out);  // (a range-for over a temporary's member would dangle)
  ASSERT_EQ(before["versions"].size(), 2u) << out;
  for (const auto& v : before["versions"]) {
    EXPECT_EQ(v["state"], "degraded") << out;
    EXPECT_EQ(v["copies"], 1) << out;
  }
  ASSERT_EQ(run_cli({"repair", "--servers", both, "--job", "rep", "--replicas", "2", "--json"}, &out, &err), 0) << err;
  const json r = json::parse(out);
  ASSERT_EQ(r["parts"].size(), 2u) << out;
  EXPECT_EQ(r["bytes"], 2 * kSize) << out;
  EXPECT_EQ(r["sent"], kSize + kBlock) << out;
  EXPECT_EQ(r["regions"], 2) << out;
  auto c = empty.connect();
  EXPECT_LT(c.stat().used_bytes, 2 * kSize) << "version 2 shares its unchanged blocks with version 1";
  for (uint64_t v : {1u, 2u}) {
    std::vector<uint8_t> back(kSize);
    c.read_region("rep", v, 0, 0, back.data(), back.size());
    EXPECT_EQ(back, v == 1 ? v1 : v2) << "version " << v;
  }
  ASSERT_EQ(run_cli({"ls", "--servers", both, "--job", "rep", "--replicas", "2", "--json"}, &out, &err), 0) << err;
  const json after = json::parse(out);
  ASSERT_EQ(after["versions"].size(), 2u) << out;
  for (const auto& v : after["versions"]) {
    EXPECT_EQ(v["state"], "complete") << out;
    EXPECT_EQ(v["copies"], 2) << out;
  }
  // Text output: a line per version with its parts.
  ASSERT_EQ(run_cli({"ls", "--servers", both, "--job", "rep", "--replicas", "2"}, &out, &err), 0) << err;
  EXPECT_NE(out.find("complete"), std::string::npos) << out;
  EXPECT_NE(out.find(empty.address() + ": 0"), std::string::npos) << out;
  // Without --replicas (nor PMCR_REPLICAS), repair asks for it.
  EXPECT_NE(run_cli({"repair", "--servers", both, "--job", "rep"}, &out, &err), 0);
  EXPECT_NE(err.find("--replicas"), std::string::npos) << err;
}

// tools::read_file (pmcr-run's and the tests' reader of logs and /proc)
// never throws: a read error after a good open (a directory here, EISDIR;
// in CI a /proc/PID/stat of a rank that had just exited, ESRCH) ends the
// content instead of escaping from libstdc++'s filebuf as an exception.
TEST(ToolsReadFile, AReadErrorAfterTheOpenGivesWhatWasReadInsteadOfThrowing) {
  std::string got = "x";
  EXPECT_NO_THROW(got = pmcr::tools::read_file("/tmp"));
  EXPECT_EQ(got, "");
  EXPECT_EQ(pmcr::tools::read_file("/nonexistent/pmcr-read-file-test"), "");
  pmcr::test::TempPath file("read-file");
  write_file(file.str(), {'a', 'b', '\0', 'c'});
  EXPECT_EQ(pmcr::tools::read_file(file.str()), std::string("ab\0c", 4));
}
