#include <gtest/gtest.h>

#include "error.hpp"
#include "text.hpp"

using pmcr::Error;

TEST(ParseSize, AcceptsSuffixes) {
  EXPECT_EQ(pmcr::parse_size("0"), 0u);
  EXPECT_EQ(pmcr::parse_size("4096"), 4096u);
  EXPECT_EQ(pmcr::parse_size("64K"), 64u << 10);
  EXPECT_EQ(pmcr::parse_size("64k"), 64u << 10);
  EXPECT_EQ(pmcr::parse_size("16M"), 16u << 20);
  EXPECT_EQ(pmcr::parse_size("1G"), 1ull << 30);
  EXPECT_EQ(pmcr::parse_size("1GiB"), 1ull << 30);
  EXPECT_EQ(pmcr::parse_size("2T"), 2ull << 40);
  EXPECT_EQ(pmcr::parse_size("100B"), 100u);
}

TEST(ParseSize, RejectsGarbageWithAClearMessage) {
  for (const char* bad : {"", "G", "-1", "12Q", "1.5G", "99999999999999999999", "20000000000T"}) {
    try {
      pmcr::parse_size(bad);
      FAIL() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), PMCR_E_INVAL);
      EXPECT_NE(std::string(e.what()).find("invalid size"), std::string::npos) << e.what();
    }
  }
}

TEST(ParseHostPort, Forms) {
  auto hp = pmcr::parse_host_port("127.0.0.1:1234", 9);
  EXPECT_EQ(hp.host, "127.0.0.1");
  EXPECT_EQ(hp.port, 1234);
  hp = pmcr::parse_host_port("localhost", 9);
  EXPECT_EQ(hp.host, "localhost");
  EXPECT_EQ(hp.port, 9);
  hp = pmcr::parse_host_port("[::1]:77", 9);
  EXPECT_EQ(hp.host, "::1");
  EXPECT_EQ(hp.port, 77);
  EXPECT_EQ(pmcr::to_string(hp), "[::1]:77");
  for (const char* bad : {"", ":80", "host:", "host:x", "host:70000", "::1:80", "[::1"})
    EXPECT_THROW(pmcr::parse_host_port(bad, 9), Error) << bad;
}

TEST(JobName, Rules) {
  EXPECT_NO_THROW(pmcr::check_job_name("heat2d.run-3_a:b+c=d@e"));
  EXPECT_NO_THROW(pmcr::check_job_name(std::string(64, 'j')));
  for (const std::string& bad : {std::string(), std::string(65, 'j'), std::string("a/b"), std::string("a b"),
                                std::string("\xc3\xa9t\xc3\xa9"), std::string("a\0b", 3)})
    EXPECT_THROW(pmcr::check_job_name(bad), Error);
}
