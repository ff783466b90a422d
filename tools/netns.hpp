// NetNs: a network namespace of the caller's own with a veth pair to it, a
// second "host" on this machine: traffic to its address crosses a real
// link (its own network stack, a real device) that a test can slow down,
// make lossy or cut (tc, ip link), and nothing else is touched. Used by the
// tests and by pmcr-bench. Needs root and iproute2; removed at destruction.
#pragma once

#include <string>
#include <vector>

namespace pmcr::tools {

class NetNs {
 public:
  // Empty if namespaces can be made here; else why not.
  static std::string unavailable();
  NetNs();
  ~NetNs();
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;

  const std::string& host_if() const { return host_if_; }  // the veth end on this side
  const std::string& ns_if() const { return ns_if_; }      // the end inside the namespace
  const std::string& host_addr() const { return host_addr_; }
  const std::string& ns_addr() const { return ns_addr_; }
  const std::string& name() const { return name_; }
  // The argv prefix that runs a command inside the namespace.
  std::vector<std::string> exec() const { return {"ip", "netns", "exec", name_}; }
  // Sets a root qdisc (tc syntax after "root") on both ends, or removes it ("").
  void shape(const std::string& qdisc);
  // Packets the qdisc of this side's end dropped.
  long dropped() const;
  // Brings this side's end down or up: the link is cut or restored.
  void link(bool up);

 private:
  std::string name_, host_if_, ns_if_, host_addr_, ns_addr_;
};

}  // namespace pmcr::tools
