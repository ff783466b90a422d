// Parsing and formatting of the values users type: sizes with K/M/G
// suffixes and HOST:PORT addresses.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pmcr {

// "4096", "64K", "64M", "1G", "2T" (binary multiples; a trailing "iB" or "B"
// is accepted). Throws Error(PMCR_E_INVAL) naming the text otherwise.
uint64_t parse_size(const std::string& text);

// "1.5 GiB" style text for logs and tables.
std::string format_size(uint64_t bytes);

// ITEMS with SEPARATOR between them.
std::string join(const std::vector<std::string>& items, const std::string& separator = "; ");

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// "HOST:PORT", "[v6addr]:PORT" or "HOST" (then default_port). Throws
// Error(PMCR_E_INVAL) naming the text and what is expected.
HostPort parse_host_port(const std::string& text, uint16_t default_port);
// "HOST:PORT,HOST:PORT,...", each checked and written as to_string does
// (empty entries skipped). Throws INVAL if one is bad or none is there.
std::vector<std::string> parse_server_list(const std::string& text);

std::string to_string(const HostPort& hp);

// The port pmserver listens on when none is given.
constexpr uint16_t kDefaultPort = 13790;

}  // namespace pmcr

namespace pmcr {

// Job names: 1 to 64 bytes of [A-Za-z0-9._:+=@-]. Throws Error(PMCR_E_INVAL)
// naming the name and the rule.
void check_job_name(const std::string& job);
// Region names (region.h): 1 to 255 bytes of the same characters and '/'.
void check_region_name(const std::string& name);

}  // namespace pmcr
