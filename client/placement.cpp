#include "placement.hpp"

#include <algorithm>

#include "error.hpp"

namespace pmcr::placement {

std::vector<std::string> order(std::vector<std::string> servers) {
  std::sort(servers.begin(), servers.end());
  const auto twice = std::adjacent_find(servers.begin(), servers.end());
  if (twice != servers.end())
    throw Error(PMCR_E_CONFIG, "the server list names " + *twice + " twice: name each server once");
  return servers;
}

std::vector<size_t> replicas(uint32_t rank, size_t nservers, unsigned copies) {
  if (nservers == 0 || copies == 0 || copies > nservers)
    throw Error(PMCR_E_INVAL, std::to_string(copies) + " copies on " + std::to_string(nservers) +
                                  " servers: each copy needs a server of its own");
  std::vector<size_t> out;
  for (unsigned k = 0; k < copies; ++k) out.push_back((rank + k) % nservers);
  return out;
}

std::vector<Part> parts(const std::vector<uint32_t>& regions, size_t nservers, unsigned copies) {
  std::vector<Part> out(nservers);
  for (size_t r = 0; r < regions.size(); ++r)
    for (size_t s : replicas(static_cast<uint32_t>(r), nservers, copies)) {
      out[s].ranks++;
      out[s].regions += regions[r];
    }
  return out;
}

std::vector<int> readers(const std::vector<std::vector<size_t>>& holders, const std::vector<uint64_t>& bytes,
                         size_t nservers) {
  std::vector<uint64_t> load(nservers, 0);
  std::vector<int> out(holders.size(), -1);
  for (size_t r = 0; r < holders.size(); ++r) {
    for (size_t s : holders[r]) {
      if (s >= nservers) continue;
      if (out[r] < 0 || load[s] < load[static_cast<size_t>(out[r])]) out[r] = static_cast<int>(s);
    }
    if (out[r] >= 0) load[static_cast<size_t>(out[r])] += r < bytes.size() ? bytes[r] : 0;
  }
  return out;
}

}  // namespace pmcr::placement
