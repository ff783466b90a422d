#include "config.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/common.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "error.hpp"
#include "text.hpp"

namespace pmcr {
namespace {

// One setting: its environment variable and its key in the file.
struct Key {
  const char* env;
  const char* file;
};
constexpr Key kServers{"PMCR_SERVERS", "servers"};
constexpr Key kJob{"PMCR_JOB", "job"};
constexpr Key kKeep{"PMCR_KEEP", "keep"};
constexpr Key kLogLevel{"PMCR_LOG_LEVEL", "log_level"};
constexpr Key kTimeout{"PMCR_TIMEOUT", "timeout"};
constexpr Key kConnectTimeout{"PMCR_CONNECT_TIMEOUT", "connect_timeout"};
constexpr Key kDataPath{"PMCR_DATA_PATH", "data_path"};
constexpr Key kAuth{"PMCR_AUTH", "auth"};
constexpr Key kKeyFile{"PMCR_KEY_FILE", "key_file"};
constexpr Key kMungeSocket{"PMCR_MUNGE_SOCKET", "munge_socket"};
constexpr Key kEncrypt{"PMCR_ENCRYPT", "encrypt"};
constexpr Key kDataKeyFile{"PMCR_DATA_KEY_FILE", "data_key_file"};
constexpr Key kBlockSize{"PMCR_BLOCK_SIZE", "block_size"};
constexpr Key kGenerations{"PMCR_GENERATIONS", "generations"};
constexpr Key kIncremental{"PMCR_INCREMENTAL", "incremental"};
constexpr Key kTrackWrites{"PMCR_TRACK_WRITES", "track_writes"};
constexpr Key kRole{"PMCR_ROLE", "role"};
constexpr Key kLease{"PMCR_LEASE", "lease"};
constexpr Key kInstance{"PMCR_INSTANCE", "instance"};
constexpr Key kPrimaryInstance{"PMCR_PRIMARY_INSTANCE", "primary_instance"};
constexpr Key kReplicas{"PMCR_REPLICAS", "replicas"};
constexpr Key kServerRetry{"PMCR_SERVER_RETRY", "server_retry"};
constexpr Key kAsync{"PMCR_ASYNC", "async"};
constexpr Key kStaging{"PMCR_STAGING", "staging"};
constexpr Key kDrain{"PMCR_DRAIN", "drain"};
constexpr Key kKeys[] = {kServers,     kJob,         kKeep,        kLogLevel,  kTimeout, kConnectTimeout,
                         kDataPath,    kAuth,        kKeyFile,     kMungeSocket, kEncrypt, kDataKeyFile,
                         kBlockSize,   kGenerations, kIncremental, kTrackWrites, kRole,    kLease,
                         kInstance,    kPrimaryInstance, kReplicas, kServerRetry, kAsync, kStaging, kDrain};

// The raw values, as text, with where each came from (for messages).
struct Raw {
  std::map<std::string, std::pair<std::string, std::string>> values;  // file key -> (value, origin)
  void set(const Key& k, std::string value, std::string origin) {
    values[k.file] = {std::move(value), std::move(origin)};
  }
  const std::pair<std::string, std::string>* get(const Key& k) const {
    auto it = values.find(k.file);
    return it == values.end() ? nullptr : &it->second;
  }
};

[[noreturn]] void bad(const std::string& origin, const std::string& value, const std::string& expected) {
  throw Error(PMCR_E_CONFIG, origin + " = \"" + value + "\" is invalid: " + expected);
}

void read_env(Raw& raw) {
  for (const Key& k : kKeys)
    if (const char* v = std::getenv(k.env); v && *v) raw.set(k, v, std::string("environment variable ") + k.env);
}

std::string origin_in(const std::string& path, const char* key) { return "key \"" + std::string(key) + "\" in " + path; }

// The setting KEY of the file PATH names; throws naming the known keys.
const Key& file_key(const std::string& path, const std::string& key) {
  for (const Key& k : kKeys)
    if (key == k.file) return k;
  std::string known;
  for (const Key& k : kKeys) known += std::string(known.empty() ? "" : ", ") + k.file;
  throw Error(PMCR_E_CONFIG, "unknown key \"" + key + "\" in " + path + " (known keys: " + known + ")");
}

// Numbers and strings become text; a list of strings (servers) is joined by commas.
void read_toml(const std::string& path, Raw& raw) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    throw Error(PMCR_E_CONFIG, "cannot parse " + path + " as TOML (" + where.str() + "): " + std::string(e.description()));
  }
  for (const auto& [name, node] : table) {
    const Key* k = &file_key(path, std::string(name.str()));
    std::string text;
    if (auto s = node.value<std::string>(); s && node.is_string()) {
      text = *s;
    } else if (node.is_integer() || node.is_floating_point()) {
      std::ostringstream os;
      if (node.is_integer()) os << *node.value<int64_t>(); else os << *node.value<double>();
      text = os.str();
    } else if (const toml::array* arr = node.as_array()) {
      for (const auto& el : *arr) {
        if (!el.is_string()) bad(origin_in(path, k->file), "[...]", "a list may hold only strings");
        text += (text.empty() ? "" : ",") + *el.value<std::string>();
      }
    } else {
      bad(origin_in(path, k->file), "...", "expected a string or a number");
    }
    raw.set(*k, text, origin_in(path, k->file));
  }
}

void read_json(const std::string& path, Raw& raw) {
  std::ifstream in(path);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(PMCR_E_CONFIG, "cannot parse " + path + " as JSON: " + e.what());
  }
  if (!doc.is_object()) throw Error(PMCR_E_CONFIG, path + " must hold a JSON object of settings");
  for (const auto& [key, value] : doc.items()) {
    const Key* k = &file_key(path, key);
    std::string text;
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (value.is_number()) {
      text = value.dump();
    } else if (value.is_array()) {
      for (const auto& el : value) {
        if (!el.is_string()) bad(origin_in(path, k->file), value.dump(), "a list may hold only strings");
        text += (text.empty() ? "" : ",") + el.get<std::string>();
      }
    } else {
      bad(origin_in(path, k->file), value.dump(), "expected a string or a number");
    }
    raw.set(*k, text, origin_in(path, k->file));
  }
}

std::chrono::milliseconds seconds(const std::pair<std::string, std::string>& v) {
  char* end = nullptr;
  const double s = std::strtod(v.first.c_str(), &end);
  if (end == v.first.c_str() || *end != '\0' || !std::isfinite(s) || s <= 0 || s > 86400)
    bad(v.second, v.first, "expected a number of seconds, > 0 and <= 86400");
  return std::chrono::milliseconds(static_cast<long long>(std::ceil(s * 1000)));
}

// A launch token: 1 to 16 hex digits, not 0.
uint64_t instance_token(const std::pair<std::string, std::string>& v) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v.first.c_str(), &end, 16);
  if (v.first.empty() || v.first.size() > 16 || *end != '\0' || n == 0 || v.first[0] == '-' || v.first[0] == '+')
    bad(v.second, v.first, "expected a launch token of 1 to 16 hex digits, not 0 (pmcr-run sets it)");
  return n;
}

std::vector<std::string> split_servers(const std::pair<std::string, std::string>& v) {
  std::vector<std::string> out;
  std::stringstream ss(v.first);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto b = item.find_first_not_of(" \t");
    const auto e = item.find_last_not_of(" \t");
    if (b == std::string::npos) continue;
    item = item.substr(b, e - b + 1);
    try {
      out.push_back(to_string(parse_host_port(item, kDefaultPort)));
    } catch (const Error& e) {
      bad(v.second, v.first, e.what());
    }
    if (std::find(out.begin(), out.end() - 1, out.back()) != out.end() - 1)
      bad(v.second, v.first, "lists " + out.back() + " twice: name each server once");
  }
  if (out.empty()) bad(v.second, v.first, "expected HOST:PORT[,HOST:PORT...]");
  return out;
}

}  // namespace

Config load_config(const char* path, bool need_job) {
  Raw raw;
  read_env(raw);
  if (path && *path) {
    const std::string p(path);
    if (!std::ifstream(p).good())
      throw Error(PMCR_E_CONFIG, "cannot read the configuration file " + p + " given to pmcr_init: check the path");
    const bool json = p.size() >= 5 && p.compare(p.size() - 5, 5, ".json") == 0;
    if (json) read_json(p, raw); else read_toml(p, raw);
  }

  Config c;
  if (auto v = raw.get(kServers)) c.servers = split_servers(*v);
  else c.servers = {"127.0.0.1:" + std::to_string(kDefaultPort)};

  auto job = raw.get(kJob);
  if (!job && need_job)
    throw Error(PMCR_E_CONFIG,
                "no job name: set the environment variable PMCR_JOB (or \"job\" in the configuration file), "
                "or run the program under pmcr-run, which sets it");
  if (job) {
    try {
      check_job_name(job->first);
    } catch (const Error& e) {
      bad(job->second, job->first, e.what());
    }
    c.job = job->first;
  }
  if (auto v = raw.get(kBlockSize)) {
    uint64_t bs = 0;
    try {
      bs = parse_size(v->first);
    } catch (const Error& e) {
      bad(v->second, v->first, e.what());
    }
    if (bs < 4096 || bs > (64u << 20) || (bs & (bs - 1)))
      bad(v->second, v->first, "expected a power of two from 4K to 64M");
    c.block_size = bs;
  }
  if (auto v = raw.get(kIncremental)) {
    if (v->first != "0" && v->first != "1") bad(v->second, v->first, "expected 1 (send only changed blocks) or 0");
    c.incremental = v->first == "1";
  }
  if (auto v = raw.get(kTrackWrites)) {
    if (v->first != "0" && v->first != "1")
      bad(v->second, v->first, "expected 1 (hash only the blocks written since the last checkpoint: the CPU must be "
                               "the buffers' only writer, not an RDMA NIC) or 0");
    c.track_writes = v->first == "1";
  }
  if (auto v = raw.get(kGenerations)) {
    char* end = nullptr;
    const long n = std::strtol(v->first.c_str(), &end, 10);
    if (end == v->first.c_str() || *end != '\0' || n < 1 || n > 64)
      bad(v->second, v->first, "expected a whole number of generations from 1 to 64");
    c.generations = static_cast<uint32_t>(n);
  }

  if (auto v = raw.get(kKeep)) {
    char* end = nullptr;
    const long n = std::strtol(v->first.c_str(), &end, 10);
    if (end == v->first.c_str() || *end != '\0' || n < 1 || n > 1000000)
      bad(v->second, v->first, "expected a whole number of versions >= 1");
    c.keep = static_cast<unsigned>(n);
  }
  if (auto v = raw.get(kLogLevel)) {
    const auto level = spdlog::level::from_str(v->first);
    if (level == spdlog::level::off && v->first != "off")
      bad(v->second, v->first, "expected trace, debug, info, warn, error, critical or off");
    c.log_level = v->first;
  }
  if (auto v = raw.get(kRole)) {
    if (v->first == "none") c.role = Config::Role::None;
    else if (v->first == "primary") c.role = Config::Role::Primary;
    else if (v->first == "standby") c.role = Config::Role::Standby;
    else bad(v->second, v->first, "expected primary, standby or none (pmcr-run --standby sets it)");
  }
  if (auto v = raw.get(kLease)) {
    c.lease = seconds(*v);
    if (c.lease.count() < 100 || c.lease.count() > 3600 * 1000)
      bad(v->second, v->first, "expected a lease of 0.1 to 3600 seconds");
  }
  if (auto v = raw.get(kReplicas)) {
    char* end = nullptr;
    const long n = std::strtol(v->first.c_str(), &end, 10);
    if (end == v->first.c_str() || *end != '\0' || n < 1 || n > static_cast<long>(c.servers.size()))
      bad(v->second, v->first,
          "expected a number of copies from 1 to " + std::to_string(c.servers.size()) +
              ", the number of servers in PMCR_SERVERS (each copy of a rank's data is on a different server)");
    c.replicas = static_cast<unsigned>(n);
  }
  if (auto v = raw.get(kServerRetry)) c.server_retry = seconds(*v);
  if (auto v = raw.get(kDrain)) c.drain_dir = v->first;
  if (auto v = raw.get(kAsync)) {
    if (v->first != "0" && v->first != "1")
      bad(v->second, v->first, "expected 1 (pmcr_checkpoint stages what changed and returns; a thread sends it) or 0");
    c.async = v->first == "1";
  }
  if (auto v = raw.get(kStaging)) {
    try {
      c.staging = parse_size(v->first);
    } catch (const Error& e) {
      bad(v->second, v->first, e.what());
    }
  }
  if (c.servers.size() > 1 && c.role != Config::Role::None)
    throw Error(PMCR_E_CONFIG, "PMCR_ROLE=" + std::string(c.role == Config::Role::Primary ? "primary" : "standby") +
                                   " needs a single server in PMCR_SERVERS (it lists " +
                                   std::to_string(c.servers.size()) +
                                   "): a standby follows its primary through one pmserver in this version");
  if (auto v = raw.get(kInstance)) c.instance = instance_token(*v);
  if (auto v = raw.get(kPrimaryInstance)) c.primary_instance = instance_token(*v);
  if (auto v = raw.get(kTimeout)) c.timeout = seconds(*v);
  if (auto v = raw.get(kConnectTimeout)) c.connect_timeout = seconds(*v);
  if (auto v = raw.get(kDataPath)) {
    if (v->first != "am" && v->first != "rma") bad(v->second, v->first, "expected am or rma");
    c.rma = v->first == "rma";
  }
  const auto text = [&](const Key& k) { auto v = raw.get(k); return v ? v->first : std::string(); };
  if (auto v = raw.get(kEncrypt)) {
    if (v->first != "0" && v->first != "1") bad(v->second, v->first, "expected 1 (encrypt region data) or 0");
    c.encrypt = v->first == "1";
  }
  c.data_key_file = text(kDataKeyFile);
  if (c.encrypt && c.data_key_file.empty())
    throw Error(PMCR_E_CONFIG, "PMCR_ENCRYPT=1 needs PMCR_DATA_KEY_FILE: a key made with 'pmcr keygen FILE' that stays "
                               "with the job (pmcr-run makes one per job when none is given)");
  try {
    c.credential = client::Credential::from(text(kAuth), text(kKeyFile), text(kMungeSocket));
  } catch (const Error& e) {
    const auto* origin = raw.get(kAuth);
    throw Error(e.code(), std::string(e.what()) + (origin ? " (PMCR_AUTH from " + origin->second + ")" : ""));
  }
  return c;
}

}  // namespace pmcr
