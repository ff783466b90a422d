#include "netns.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "process.hpp"

namespace pmcr::tools {
namespace {

std::string sh(const std::vector<std::string>& argv) {
  const auto r = run(argv, {}, std::chrono::seconds(20), true);
  if (r.code != 0) throw std::runtime_error("'" + argv[0] + " " + (argv.size() > 1 ? argv[1] : "") + "...' failed: " + r.out);
  return r.out;
}

}  // namespace

std::string NetNs::unavailable() {
  if (::geteuid() != 0) return "network namespaces need root";
  try {
    sh({"ip", "netns", "list"});
  } catch (const std::exception& e) {
    return std::string("iproute2 does not work here: ") + e.what();
  }
  return "";
}

NetNs::NetNs() {
  static std::atomic<int> counter{0};
  const int n = counter++;
  const int pid = static_cast<int>(::getpid());
  const std::string tag = std::to_string(pid % 100000) + "x" + std::to_string(n);
  name_ = "pmcr-ns-" + tag;
  host_if_ = "pmh" + tag;  // interface names: at most 15 bytes
  ns_if_ = "pmn" + tag;
  // A /30 of 10.200.0.0/16 from the pid and counter: tests of other
  // processes get other addresses.
  const int block = (pid * 7 + n * 131) % 16384;
  const std::string net = "10.200." + std::to_string(block / 64) + ".";
  host_addr_ = net + std::to_string((block % 64) * 4 + 1);
  ns_addr_ = net + std::to_string((block % 64) * 4 + 2);
  sh({"ip", "netns", "add", name_});
  try {
    sh({"ip", "link", "add", host_if_, "type", "veth", "peer", "name", ns_if_});
    sh({"ip", "link", "set", ns_if_, "netns", name_});
    sh({"ip", "addr", "add", host_addr_ + "/30", "dev", host_if_});
    sh({"ip", "link", "set", host_if_, "up"});
    sh({"ip", "netns", "exec", name_, "ip", "addr", "add", ns_addr_ + "/30", "dev", ns_if_});
    sh({"ip", "netns", "exec", name_, "ip", "link", "set", ns_if_, "up"});
    sh({"ip", "netns", "exec", name_, "ip", "link", "set", "lo", "up"});
  } catch (...) {
    run({"ip", "link", "del", host_if_}, {}, std::chrono::seconds(20), true);
    run({"ip", "netns", "del", name_}, {}, std::chrono::seconds(20), true);
    throw;
  }
}

NetNs::~NetNs() {
  run({"ip", "link", "del", host_if_}, {}, std::chrono::seconds(20), true);
  run({"ip", "netns", "del", name_}, {}, std::chrono::seconds(20), true);
}

void NetNs::shape(const std::string& qdisc) {
  for (const bool inside : {false, true}) {
    std::vector<std::string> argv;
    if (inside) argv = exec();
    const std::string dev = inside ? ns_if_ : host_if_;
    if (qdisc.empty()) {
      argv.insert(argv.end(), {"tc", "qdisc", "del", "dev", dev, "root"});
      run(argv, {}, std::chrono::seconds(20), true);
      continue;
    }
    argv.insert(argv.end(), {"tc", "qdisc", "replace", "dev", dev, "root"});
    std::istringstream words(qdisc);
    for (std::string w; words >> w;) argv.push_back(w);
    sh(argv);
  }
}

long NetNs::dropped() const {
  const std::string out = sh({"tc", "-s", "qdisc", "show", "dev", host_if_});
  const auto at = out.find("dropped ");
  return at == std::string::npos ? -1 : std::atol(out.c_str() + at + 8);
}

void NetNs::link(bool up) { sh({"ip", "link", "set", host_if_, up ? "up" : "down"}); }

}  // namespace pmcr::tools
