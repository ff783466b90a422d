// LeaseHolder: keeps one rank's lease on a job's attempt alive, from a
// thread of its own over a connection of its own, so that a rank deep in
// computation (or blocked in MPI) still counts as alive and a stopped one
// (SIGSTOP, a hung node) does not: the thread stops with the process. A
// standby takes the job over when a lease lapses or its connection is lost
// (pmserver, liveness.cpp).
//
// The thread sleeps between renewals (a quarter of the lease). If the
// server refuses a renewal (the attempt was fenced or superseded) or is
// lost, the holder stops renewing and says why in error(): the rank's next
// call to the server fails with the same cause.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "client.hpp"

namespace pmcr::client {

class LeaseHolder {
 public:
  // Connects with OPTIONS, for leases of length LEASE (a standby connects
  // while it follows, so that taking the job over costs one round trip).
  // Throws like Client.
  LeaseHolder(Options options, std::chrono::milliseconds lease);
  // Takes the lease of RANK (of NRANKS) on ATTEMPT of JOB and starts
  // renewing it. Throws like Client (FENCED if the attempt was fenced).
  void hold(const std::string& job, uint64_t attempt, uint32_t rank, uint32_t nranks);
  // Stops renewing. Without leave(), the server sees the lease's connection
  // close and fails the attempt: a rank that ends without pmcr_finalize
  // failed.
  ~LeaseHolder();
  LeaseHolder(const LeaseHolder&) = delete;
  LeaseHolder& operator=(const LeaseHolder&) = delete;

  // Gives the lease up: this rank finished (pmcr_finalize). Never throws;
  // false if the server did not take it (the attempt is over anyway).
  bool leave() noexcept;
  // Why renewing stopped ("" while it goes on).
  std::string error() const;

 private:
  void run();

  std::unique_ptr<Client> client_;
  std::string job_;
  std::chrono::milliseconds lease_, period_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::string error_;
  std::thread thread_;
};

}  // namespace pmcr::client
