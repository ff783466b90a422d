// What a list of servers holds of one job, as the ones that answer tell it
// (README, "Several servers"). Used by the rank API's restart, by pmcr-run
// to say where a relaunch resumes, and by the pmcr tool (ls, stat, repair).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client.hpp"

namespace pmcr::client {

// The connection to server I of the list (throws what connecting throws),
// and what to do with it after it failed.
using Connector = std::function<Client&(size_t)>;
// The errors that mean a server is gone (or cut off) rather than that it
// refused something: with several servers, the job goes on without it.
bool server_lost(int code);
using Dropper = std::function<void(size_t)>;

struct Survey {
  std::vector<std::map<uint64_t, proto::VersionEntry>> versions;  // each server's versions of the job
  std::vector<std::string> lost;  // each server: why it did not answer ("" if it did)
  // "ADDRESS (why); ..." of the servers that did not answer (ADDRESSES: the list).
  std::string lost_text() const;
  // The versions sealed on some server (of NRANKS ranks, if given), newest first.
  std::vector<uint64_t> sealed(std::optional<uint32_t> nranks = std::nullopt) const;
};

// Lists JOB's versions on each of N servers. A server that cannot be
// reached (or is lost on the way) is noted in Survey::lost, unless N is 1:
// then that error is thrown.
Survey survey(size_t n, const std::string& job, const Connector& connect, const Dropper& drop,
              const std::vector<std::string>& addresses);

// For each of the NRANKS ranks of VERSION, the servers that hold its
// regions in a sealed part, its first copy (placement::replicas) first.
std::vector<std::vector<size_t>> holders(const Survey& s, const std::string& job, uint64_t version, uint32_t nranks,
                                         const Connector& connect);

// Sorts SERVERS (indices into a list of N) the way rank RANK's copies are
// placed: its first copy first.
void in_replica_order(std::vector<size_t>& servers, uint32_t rank, size_t n);

// A tool's connections to a list of servers (placement order), each made on
// first use.
class Fleet {
 public:
  // SERVERS in any order; OPTIONS for every connection (its server set here).
  Fleet(const std::vector<std::string>& servers, Options options);
  size_t size() const { return addresses_.size(); }
  const std::vector<std::string>& addresses() const { return addresses_; }
  Client& operator()(size_t i);
  void drop(size_t i) { clients_.at(i).reset(); }
  Survey survey(const std::string& job);
  std::vector<std::vector<size_t>> holders(const Survey& s, const std::string& job, uint64_t version, uint32_t nranks);
  // The newest version of S whose every rank's regions are in a sealed part
  // on a server that answered (what a restart would resume from, before
  // each server verifies its part).
  std::optional<uint64_t> newest_complete(const Survey& s, const std::string& job);

 private:
  std::vector<std::string> addresses_;
  Options options_;
  std::vector<std::unique_ptr<Client>> clients_;
};

}  // namespace pmcr::client
