// pmserver --peers LIST --replicas R: the server repairs on its own. A
// thread of its own, every --repair-interval, lists the jobs the servers
// of LIST hold and brings every kept version of each back to R copies
// (client/repair.hpp, what `pmcr repair` does), as a client of those
// servers with the server's own credential. A server that comes back empty
// thus gets its parts again without anyone running a command.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "credential.hpp"

namespace pmcr::server {

class PeerRepair {
 public:
  PeerRepair(std::vector<std::string> peers, unsigned replicas, std::chrono::milliseconds interval,
             client::Credential credential);
  ~PeerRepair();
  PeerRepair(const PeerRepair&) = delete;
  PeerRepair& operator=(const PeerRepair&) = delete;

 private:
  void loop();
  void pass();

  std::vector<std::string> peers_;
  unsigned replicas_;
  std::chrono::milliseconds interval_;
  client::Credential credential_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, uint64_t> newest_;  // each job's newest sealed version at the last pass
  std::thread thread_;
};

}  // namespace pmcr::server
