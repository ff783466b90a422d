// Restart from the capacity tier (README, "A capacity tier"): with
// PMCR_DRAIN=DIR (the servers' --drain directory), a version no server
// holds any more (retention, or every copy lost) is restarted from DIR,
// whose manifests (one per drained part) say which ranks' regions are
// there, with their sizes and checksums; every byte read is checked.
#include <fstream>

#include "checksum.hpp"
#include "drain_dir.hpp"
#include "error.hpp"
#include "session.hpp"

namespace pmcr {

std::optional<uint64_t> Session::newest_drained() const {
  if (config_.drain_dir.empty()) return std::nullopt;
  const auto all = client::drained_versions(config_.drain_dir, config_.job);
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (it->second == static_cast<uint32_t>(comm_.size()) && it->first <= INT32_MAX) return it->first;
  return std::nullopt;
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
  std::vector<uint8_t> bytes(g->size);
  std::ifstream in(g->path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(g->size)) || in.peek() != EOF)
    throw Error(PMCR_E_CORRUPT, g->path + " does not hold the " + std::to_string(g->size) +
                                    " bytes its manifest says: the drained copy is damaged");
  uint64_t actual = 0;
  if (g->block_size) {
    const auto h = block_hashes(bytes.data(), g->size, g->block_size);
    actual = combine_hashes(h.data(), h.size());
  } else {
    actual = checksum(bytes.data(), g->size);
  }
  if (actual != g->checksum)
    throw Error(PMCR_E_CHECKSUM, g->path + " does not match its checksum: the drained copy is damaged");
  if (key_) crypt::decrypt(*key_, {config_.job, version, rank, id}, bytes.data(), g->size, b.ptr);
  else std::copy(bytes.begin(), bytes.end(), static_cast<uint8_t*>(b.ptr));
}

}  // namespace pmcr
