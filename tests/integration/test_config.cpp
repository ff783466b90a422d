// pmserver --config FILE (TOML) and --print-config, with the real pmserver:
// settings come from the file, the command line wins, every option is a
// key, and a bad file is refused by name before any pool is touched.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "process.hpp"
#include "server_process.hpp"

using pmcr::test::TempPath;
using pmcr::tools::RunResult;

namespace {

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

RunResult pmserver(const std::vector<std::string>& args) {
  std::vector<std::string> argv{PMSERVER_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return pmcr::tools::run(argv, {}, std::chrono::seconds(30), false);
}

bool exists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

// Starts pmserver with ARGS, waits for READY (written once it listens),
// stops it with SIGTERM by its pid. Returns its exit code.
int serve_once(const std::vector<std::string>& args, const std::string& ready, const std::string& err) {
  std::vector<std::string> argv{PMSERVER_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  pmcr::tools::SpawnOptions so;
  so.err = err;
  const pid_t pid = pmcr::tools::spawn(argv, so);
  for (int i = 0; i < 300 && pmcr::tools::read_file(ready).empty(); ++i) {
    int status = 0;
    if (pmcr::tools::wait_for(pid, std::chrono::milliseconds(0), &status, false)) {
      ADD_FAILURE() << "pmserver exited before it listened: " << pmcr::tools::read_file(err);
      return pmcr::tools::exit_code(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(pmcr::tools::read_file(ready).empty()) << "pmserver did not listen within 15 s";
  ::kill(pid, SIGTERM);
  int status = 0;
  EXPECT_TRUE(pmcr::tools::wait_for(pid, std::chrono::seconds(20), &status, true)) << "pmserver ignored SIGTERM";
  return pmcr::tools::exit_code(status);
}

}  // namespace

TEST(Config, SettingsComeFromTheFileAndTheCommandLineWins) {
  TempPath pool("pool"), config("toml"), ready("ready"), log("log"), err("err");
  write_text(config.str(), "# a site's settings\n"
                           "pool = \"" + pool.str() + "\"\n"
                           "size = \"32M\"\n"
                           "listen = \"127.0.0.1:0\"\n"
                           "ready_file = \"" + ready.str() + "\"   # '_' for '-'\n"
                           "log-file = \"" + log.str() + "\"\n"
                           "log-level = \"warn\"\n"
                           "max-connections = 5\n"
                           "scrub-rate = 0\n");
  // The command line's --log-level info wins over the file's warn.
  ASSERT_EQ(serve_once({"--config", config.str(), "--log-level", "info"}, ready.str(), err.str()), 0);
  struct stat st{};
  ASSERT_EQ(::stat(pool.str().c_str(), &st), 0) << "no pool at the file's path";
  EXPECT_EQ(st.st_size, 32 << 20) << "the pool was not made with the file's size";
  std::string text = pmcr::tools::read_file(log.str());
  EXPECT_NE(text.find("[info]"), std::string::npos) << "--log-level info on the command line lost: " << text;
  EXPECT_NE(text.find("pool " + pool.str()), std::string::npos) << text;
  EXPECT_NE(text.find("(at most 5 connections"), std::string::npos) << "the file's max-connections = 5 was not applied: "
                                                                     << text;

  // Without the flag, the file's warn holds: not one info line.
  ::unlink(log.str().c_str());
  ::unlink(ready.str().c_str());
  ASSERT_EQ(serve_once({"--config", config.str()}, ready.str(), err.str()), 0);
  text = pmcr::tools::read_file(log.str());
  EXPECT_EQ(text.find("[info]"), std::string::npos) << "the file's log-level = \"warn\" was not applied: " << text;
}

TEST(Config, PrintConfigHasEveryOptionAndReadsBack) {
  TempPath config("toml"), again("again");
  write_text(config.str(), "pool = \"/dev/dax0.0\"\nquota-open = 64\nno-rma = true\nthreads = 1\n");
  const RunResult first = pmserver({"--config", config.str(), "--print-config", "--threads", "3"});
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_NE(first.out.find("\npool=\"/dev/dax0.0\"\n"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("\nquota-open=64\n"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("\nno-rma=true\n"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("\nthreads=3\n"), std::string::npos) << "the command line's --threads 3 lost: " << first.out;
  EXPECT_NE(first.out.find("\nhello-timeout=\"5s\"\n"), std::string::npos) << "defaults are printed too: " << first.out;

  // Every option --help lists (but --help, --config and --print-config)
  // is a key of the printed settings: set, or commented out when unset.
  const RunResult help = pmserver({"--help"});
  ASSERT_EQ(help.code, 0) << help.err;
  const std::regex option("--([a-z][a-z-]+)");
  std::set<std::string> options;
  for (std::sregex_iterator it(help.out.begin(), help.out.end(), option), end; it != end; ++it) options.insert((*it)[1]);
  ASSERT_GT(options.size(), 20u) << help.out;
  for (const auto& name : options) {
    if (name == "help" || name == "config" || name == "print-config") continue;
    const bool set = first.out.find("\n" + name + "=") != std::string::npos;
    const bool unset = first.out.find("\n# " + name + "=\"\"") != std::string::npos;
    EXPECT_TRUE(set || unset) << "--" << name << " is not in --print-config's output";
  }
  EXPECT_EQ(first.out.find("print-config="), std::string::npos);

  // The printed settings are a configuration pmserver reads to the same.
  write_text(again.str(), first.out);
  const RunResult second = pmserver({"--config", again.str(), "--print-config"});
  ASSERT_EQ(second.code, 0) << second.err;
  EXPECT_EQ(second.out, first.out);
}

TEST(Config, BadFilesAreRefusedByNameAndNoPoolIsMade) {
  TempPath pool("pool"), config("toml");
  struct Case {
    std::string text, expect;
  };
  const std::vector<Case> cases = {
      {"poool = \"/x\"\n", ":1: 'poool' is no pmserver setting"},
      {"size = \"32M\"\n\nquota_opne = 3\n", ":3: 'quota_opne' is no pmserver setting"},
      {"pool = [1\n", ":1: not valid TOML"},
      {"listen = \"127.0.0.1:0\n", "not valid TOML"},
      {"[server]\npool = \"/x\"\n", "'server' is no pmserver setting"},
      {"size = { value = 4 }\n", "'size' must be a string, a number or a boolean"},
      {"size = 1979-05-27\n", "'size' must be a string, a number or a boolean"},
      {"config = \"/etc/other.toml\"\n", "'config' may only be given on the command line"},
      {"print-config = true\n", "'print-config' may only be given on the command line"},
      {"quota-open = \"many\"\n", "quota-open"},
      {"max-connections = 0\n", "max-connections"},
      {"threads = [1, { a = 2 }]\n", "'threads' lists something other than strings, numbers or booleans"},
  };
  for (const auto& c : cases) {
    write_text(config.str(), c.text);
    const RunResult r = pmserver({"--config", config.str(), "--pool", pool.str(), "--size", "32M",
                                  "--listen", "127.0.0.1:0", "--no-prefault"});
    EXPECT_NE(r.code, 0) << c.text;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << "for " << c.text << "stderr: " << r.err;
    EXPECT_FALSE(exists(pool.str())) << "a pool was made despite a bad configuration: " << c.text;
  }
  const RunResult missing = pmserver({"--config", config.str() + ".absent", "--pool", pool.str()});
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.err.find(config.str() + ".absent"), std::string::npos) << missing.err;
  EXPECT_FALSE(exists(pool.str()));
}
