// pmserver --metrics: a real pmserver's Prometheus metrics, scraped over
// HTTP after real work, their values checked, and the whole text checked
// by Prometheus's own `promtool check metrics`.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <thread>

#include "error.hpp"
#include "process.hpp"
#include "server_process.hpp"

using namespace std::chrono_literals;
using pmcr::test::LogOnFailure;
using pmcr::test::pattern;
using pmcr::test::ServerConfig;
using pmcr::test::ServerProcess;
using pmcr::test::TempPath;

namespace {

// GET http://127.0.0.1:PORT/metrics: the body, or "" (with the reason in
// *ERROR) if it could not be had within 5 s.
std::string scrape(uint16_t port, std::string* error) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return *error = "socket", "";
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buf[65536];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) response.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || response.find(" 200 ") > 12 || body == std::string::npos) {
    *error = "no 200 response: " + response.substr(0, 200);
    return "";
  }
  return response.substr(body + 4);
}

// The value of the series NAME (with its labels, as exposed), or -1.
double value(const std::string& text, const std::string& name) {
  const std::string line = "\n" + name + " ";
  const size_t at = text.find(line);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + line.size()));
}

// Scrapes until CHECK accepts the text (the gauges are refreshed once a
// second), for at most 10 s; the last text.
std::string scrape_until(uint16_t port, const std::function<bool(const std::string&)>& check) {
  std::string text, error;
  for (int i = 0; i < 50; ++i) {
    text = scrape(port, &error);
    if (!text.empty() && check("\n" + text)) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_FALSE(text.empty()) << error;
  return "\n" + text;
}

}  // namespace

TEST(Metrics, ScrapedAfterRealWorkAndCheckedByPromtool) {
  TempPath pool("pool"), out("promtool");
  const uint16_t port = pmcr::tools::free_port();
  ServerProcess server(ServerConfig(pool.str(), "128M", 0, {},
                                    {"--metrics", "127.0.0.1:" + std::to_string(port), "--metrics-jobs", "2"}));
  ASSERT_TRUE(server.start()) << server.log();
  LogOnFailure log(server);
  auto c = server.connect();
  // Three jobs, one sealed version each (two regions of 1 MiB and 3 bytes);
  // only the first two get series of their own.
  const auto big = pattern(1u << 20, 1), small = pattern(3, 2);
  for (const char* job : {"alpha", "beta", "gamma"}) {
    c.begin(job);
    c.write_region(job, 1, 0, 0, big.data(), big.size());
    c.write_region(job, 1, 0, 1, small.data(), small.size());
    c.seal(job, 1, 1, 2);
  }
  std::vector<uint8_t> back(big.size());
  c.read_region("alpha", 1, 0, 0, back.data(), back.size());
  ASSERT_EQ(back, big);
  EXPECT_THROW(c.read_region("alpha", 7, 0, 0, back.data(), back.size()), pmcr::Error);  // no such version

  const std::string text = scrape_until(port, [](const std::string& t) { return value(t, "pmcr_sealed_versions") == 3; });
  EXPECT_EQ(value(text, "pmcr_regions_written_total"), 6) << text;
  EXPECT_EQ(value(text, "pmcr_versions_sealed_total"), 3) << text;
  EXPECT_EQ(value(text, "pmcr_regions_read_total"), 1) << text;
  EXPECT_GE(value(text, "pmcr_requests_failed_total"), 1) << text;
  EXPECT_EQ(value(text, "pmcr_received_bytes_total"), 3 * ((1 << 20) + 3)) << text;
  EXPECT_GE(value(text, "pmcr_sent_bytes_total"), 1 << 20) << text;
  EXPECT_EQ(value(text, "pmcr_connections"), 1) << text;
  EXPECT_EQ(value(text, "pmcr_connections_accepted_total"), 1) << text;
  EXPECT_EQ(value(text, "pmcr_jobs"), 3) << text;
  EXPECT_EQ(value(text, "pmcr_regions"), 6) << text;
  EXPECT_EQ(value(text, "pmcr_quarantined_versions"), 0) << text;
  EXPECT_EQ(value(text, "pmcr_pool_size_bytes"), 128 << 20) << text;
  EXPECT_GE(value(text, "pmcr_pool_used_bytes"), 3 << 20) << text;
  EXPECT_GT(value(text, "pmcr_pool_free_bytes"), 0) << text;
  EXPECT_LE(value(text, "pmcr_pool_used_bytes") + value(text, "pmcr_pool_free_bytes"), 128 << 20) << text;
  // Per job, bounded: alpha and beta by name, gamma with the others.
  EXPECT_EQ(value(text, "pmcr_job_versions_sealed_total{job=\"alpha\"}"), 1) << text;
  EXPECT_EQ(value(text, "pmcr_job_versions_sealed_total{job=\"beta\"}"), 1) << text;
  EXPECT_EQ(value(text, "pmcr_job_versions_sealed_total{job=\"(other)\"}"), 1) << text;
  EXPECT_EQ(text.find("job=\"gamma\""), std::string::npos) << text;
  EXPECT_EQ(value(text, "pmcr_job_sealed_bytes_total{job=\"alpha\"}"), (1 << 20) + 3) << text;
  // Latencies: every request answered is in its histogram, every COMMIT in
  // the commit histogram.
  EXPECT_EQ(value(text, "pmcr_request_duration_seconds_count{request=\"commit\"}"), 6) << text;
  EXPECT_EQ(value(text, "pmcr_request_duration_seconds_count{request=\"create\"}"), 6) << text;
  EXPECT_EQ(value(text, "pmcr_request_duration_seconds_count{request=\"seal\"}"), 3) << text;
  EXPECT_EQ(value(text, "pmcr_commit_duration_seconds_count"), 6) << text;
  EXPECT_EQ(value(text, "pmcr_commit_duration_seconds_bucket{le=\"+Inf\"}"), 6) << text;
  EXPECT_GT(value(text, "pmcr_commit_duration_seconds_sum"), 0) << text;

  // Prometheus's own check of the exposition: parses, and no lint finding
  // (it exits 0 only then; 3 for a lint problem, 1 for a parse error).
  std::ofstream(out.str()) << text.substr(1);
  const auto r = pmcr::tools::run({"sh", "-c", "promtool check metrics < " + out.str()}, {}, 60s, true);
  EXPECT_EQ(r.code, 0) << "promtool check metrics: " << r.out;
  EXPECT_EQ(r.out, "") << r.out;
}

// A metrics port that is taken fails the start, before the pool is made,
// with a message naming the address.
TEST(Metrics, TakenPortFailsTheStartBeforeThePool) {
  TempPath pool_a("a"), pool_b("b");
  const uint16_t port = pmcr::tools::free_port();
  const std::string at = "127.0.0.1:" + std::to_string(port);
  ServerProcess first(ServerConfig(pool_a.str(), "32M", 0, {}, {"--metrics", at}));
  ASSERT_TRUE(first.start()) << first.log();
  const auto r = pmcr::tools::run({PMSERVER_PATH, "--pool", pool_b.str(), "--size", "32M", "--listen", "127.0.0.1:0",
                                   "--metrics", at},
                                  {}, 30s, true);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("cannot serve metrics at " + at), std::string::npos) << r.out;
  EXPECT_NE(::access(pool_b.str().c_str(), F_OK), 0) << "the pool was made before the metrics port was checked";
}
