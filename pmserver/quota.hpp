// Quotas: what one connection may hold on the server at a time, so that no
// client can fill the catalogue, the data area or the server's memory and
// leave the others nothing. Each limit is configurable; a request beyond one
// fails with PMCR_E_QUOTA and a message naming the limit, the use and the
// pmserver option that raises it.
#pragma once

#include <cstdint>
#include <string>

namespace pmcr::server {

struct OwnerUsage;

struct Quotas {
  uint32_t regions = 0;  // unsealed regions per connection
  uint64_t bytes = 0;    // unsealed region bytes (extent sizes) per connection
  uint32_t open = 0;     // regions open for reading per connection
};

// "N" (a count), "N%" (of TOTAL) for counts; sizes with K/M/G suffixes or
// "N%" for bytes. Throws Error(PMCR_E_INVAL) naming OPTION.
uint64_t parse_quota(const std::string& text, uint64_t total, bool size, const std::string& option);

// Throw Error(PMCR_E_QUOTA) if a new region of SIZE bytes, or another open
// region, would exceed the connection's quota.
void check_create(const Quotas& q, const OwnerUsage& now, uint64_t size);
void check_open(const Quotas& q, uint64_t open_now);

}  // namespace pmcr::server
