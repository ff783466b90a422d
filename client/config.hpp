// The client's settings: the environment, overridden by an optional TOML or
// JSON file given to pmcr_init. The only file that reads PMCR_* variables
// for libpmcr and libpmcr-region.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "credential.hpp"

namespace pmcr {

// The block of incremental checkpoints unless PMCR_BLOCK_SIZE says
// otherwise (README, "Incremental checkpoints": chosen by measurement).
constexpr uint64_t kDefaultBlockSize = 1ull << 20;

struct Config {
  std::vector<std::string> servers;  // HOST:PORT, checked, each once (placement: README, "Several servers")
  unsigned replicas = 1;             // PMCR_REPLICAS: copies of each rank's data, on as many servers
  // PMCR_SERVER_RETRY: how often a checkpoint tries a server it lost again.
  std::chrono::milliseconds server_retry{10000};
  // PMCR_ASYNC: pmcr_checkpoint copies what changed into staging memory of
  // PMCR_STAGING bytes per rank at most and returns; a thread sends it.
  bool async = false;
  uint64_t staging = 1ull << 30;
  // PMCR_DRAIN: the servers' --drain directory, where a restart finds a
  // version no server holds any more.
  std::string drain_dir;
  std::string job;                   // checked job name
  unsigned keep = 2;                 // sealed versions kept per job, >= 1
  std::string log_level;             // "" = leave as PMCR_LOG_LEVEL set it
  std::chrono::milliseconds timeout{60000};
  std::chrono::milliseconds connect_timeout{5000};
  bool rma = false;  // data path: ucp_put/get_nbx instead of rendezvous active messages
  client::Credential credential;  // auth, key_file, munge_socket
  bool encrypt = false;           // PMCR_ENCRYPT: region data encrypted on the client
  std::string data_key_file;      // PMCR_DATA_KEY_FILE: its key
  uint64_t block_size = 0;        // PMCR_BLOCK_SIZE: copy-on-write block (0: the default, kDefaultBlockSize for checkpoints)
  bool incremental = true;        // PMCR_INCREMENTAL: checkpoints send only the blocks that changed
  bool track_writes = false;      // PMCR_TRACK_WRITES: hash only the blocks written since the last checkpoint (dirty.hpp)
  uint32_t generations = 0;       // PMCR_GENERATIONS: generations new named regions keep; 0: the server's
  // The standby (README, "Hot standby"). PMCR_ROLE: none (a job on its
  // own), primary (its ranks hold leases a standby can follow) or standby
  // (pmcr_restart_test follows the primary's checkpoints and returns only
  // when it takes over).
  enum class Role { None, Primary, Standby };
  Role role = Role::None;
  std::chrono::milliseconds lease{3000};  // PMCR_LEASE: a silent primary rank is failed after this long
  uint64_t instance = 0;          // PMCR_INSTANCE: this launch's token (pmcr-run's; 0: one is made)
  uint64_t primary_instance = 0;  // PMCR_PRIMARY_INSTANCE: the launch a standby follows (0: the job's current)
};

// Reads the environment, then PATH (may be null or empty: environment only).
// Throws Error(PMCR_E_CONFIG) naming the variable or key, the bad value and
// what is expected. Without NEED_JOB (the region API), PMCR_JOB may be unset.
Config load_config(const char* path, bool need_job = true);

}  // namespace pmcr
