// The pmcr tool's commands over a list of servers (README, "Several
// servers"): stat and ls of every server and of each version's placement
// and copies, and repair.
#pragma once

#include <string>
#include <vector>

namespace pmcr::tools {

void cmd_stat_servers(const std::vector<std::string>& servers, bool as_json);
// REPLICAS: the copies each version should have (0: as many as it has at best).
// DRAIN: the servers' --drain directory ("" : none): versions drained there are shown too.
void cmd_ls_servers(const std::vector<std::string>& servers, const std::string& job, unsigned replicas,
                    const std::string& drain, bool as_json);
// Returns the exit code: 0 when every version has its copies (or got them).
int cmd_repair(const std::vector<std::string>& servers, const std::string& job, unsigned replicas, bool as_json);

}  // namespace pmcr::tools
