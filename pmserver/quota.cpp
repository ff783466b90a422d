#include "quota.hpp"

#include "catalogue.hpp"
#include "error.hpp"
#include "text.hpp"

namespace pmcr::server {

uint64_t parse_quota(const std::string& text, uint64_t total, bool size, const std::string& option) {
  if (!text.empty() && text.back() == '%') {
    const std::string num = text.substr(0, text.size() - 1);
    if (num.empty() || num.size() > 3 || num.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(num) == 0 || std::stoul(num) > 100)
      throw Error(PMCR_E_INVAL, option + " '" + text + "': a percentage must be 1% to 100%");
    return total / 100 * std::stoul(num) + total % 100 * std::stoul(num) / 100;
  }
  if (size) return parse_size(text);
  if (text.empty() || text.size() > 10 || text.find_first_not_of("0123456789") != std::string::npos)
    throw Error(PMCR_E_INVAL, option + " '" + text + "' is not a count or a percentage (e.g. 4096 or 25%)");
  return std::stoull(text);
}

void check_create(const Quotas& q, const OwnerUsage& now, uint64_t size) {
  if (now.regions + 1 > q.regions)
    throw Error(PMCR_E_QUOTA, "this connection already holds " + std::to_string(now.regions) +
                                  " unsealed regions, its quota (pmserver --quota-regions " +
                                  std::to_string(q.regions) + "); seal or abort a version first");
  const uint64_t extent = extent_size(size);
  if (extent > q.bytes || now.bytes > q.bytes - extent)
    throw Error(PMCR_E_QUOTA, "a region of " + format_size(size) + " would take this connection's unsealed data to " +
                                  format_size(now.bytes + extent) + ", beyond its quota of " + format_size(q.bytes) +
                                  " (pmserver --quota-bytes); seal or abort a version first, or split the data "
                                  "over more ranks");
}

void check_open(const Quotas& q, uint64_t open_now) {
  if (open_now + 1 > q.open)
    throw Error(PMCR_E_QUOTA, "this connection already has " + std::to_string(open_now) +
                                  " regions open, its quota (pmserver --quota-open " + std::to_string(q.open) +
                                  "); close regions it has read");
}

}  // namespace pmcr::server
