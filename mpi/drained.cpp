// Restart from the capacity tier (README, "A capacity tier"): with
// PMCR_DRAIN=DIR (the servers' --drain directory), a version no server
// holds any more (retention, or every copy lost) is restarted from DIR,
// whose manifests (one per drained part) say which ranks' regions are
// there, with their sizes and checksums; every byte read is checked.
// pmcr_restart_test reads and checks each rank's files of a drained version
// before it offers it: a damaged one is skipped for the next older one
// (drained, or on the servers), as a damaged copy on a server is.
#include "drain_dir.hpp"
#include "error.hpp"
#include "session.hpp"

namespace pmcr {

std::vector<int64_t> Session::drained_since(int64_t after) const {
  std::vector<int64_t> out;
  if (config_.drain_dir.empty()) return out;
  const auto all = client::drained_versions(config_.drain_dir, config_.job);
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (it->second == static_cast<uint32_t>(comm_.size()) && it->first <= INT32_MAX &&
        static_cast<int64_t>(it->first) > after)
      out.push_back(static_cast<int64_t>(it->first));
  return out;
}

std::string Session::drained_damage(uint64_t version) const {
  try {
    for (const auto& g : client::drained_regions(config_.drain_dir, config_.job, version,
                                                 static_cast<uint32_t>(comm_.rank())))
      (void)client::read_drained(g);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool Session::drained_whole(uint64_t version) const {
  if (config_.drain_dir.empty()) return false;
  const auto all = client::drained_versions(config_.drain_dir, config_.job);
  const auto it = all.find(version);
  return it != all.end() && it->second == static_cast<uint32_t>(comm_.size());
}

void Session::read_drained(uint64_t version, uint32_t id, const Buffer& b) {
  const auto rank = static_cast<uint32_t>(comm_.rank());
  const auto g = client::drained_region(config_.drain_dir, config_.job, version, rank, id);
  if (!g)
    throw Error(PMCR_E_NOT_FOUND, "no drained part of version " + std::to_string(version) + " in " + config_.drain_dir +
                                      " holds buffer id " + std::to_string(id) + " of rank " + std::to_string(rank));
  if (stored_plain_size(g->size, version, id) != b.size)
    throw Error(PMCR_E_SIZE, "the buffer holds " + std::to_string(b.size) + " bytes, the drained one " +
                                 std::to_string(stored_plain_size(g->size, version, id)));
  const std::vector<uint8_t> bytes = client::read_drained(*g);
  if (key_) crypt::decrypt(*key_, {config_.job, version, rank, id}, bytes.data(), g->size, b.ptr);
  else std::copy(bytes.begin(), bytes.end(), static_cast<uint8_t*>(b.ptr));
}

}  // namespace pmcr
