// pmserver --peers LIST --replicas R: the server repairs on its own. A
// thread of its own, every --repair-interval, lists the jobs the servers
// of LIST hold and brings every kept version of each back to R copies
// (client/repair.hpp, what `pmcr repair` does), as a client of those
// servers with the server's own credential. A server that comes back empty
// thus gets its parts again without anyone running a command.
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "credential.hpp"
#include "workers.hpp"

namespace pmcr::server {

class PeerRepair {
 public:
  PeerRepair(std::vector<std::string> peers, unsigned replicas, std::chrono::milliseconds interval,
             client::Credential credential);

 private:
  void tick();
  void pass();

  std::vector<std::string> peers_;
  unsigned replicas_;
  client::Credential credential_;
  std::map<std::string, uint64_t> newest_;  // each job's newest sealed version at the last pass
  std::set<std::string> reported_;          // the last pass's problems ("job\0problem"), logged
  Periodic ticker_;  // last: its thread uses the members above
};

}  // namespace pmcr::server
