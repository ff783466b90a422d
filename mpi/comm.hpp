// The collective operations libpmcr needs, on its own duplicate of the
// user's communicator. The only file of libpmcr that calls MPI.
//
// MPI errors on the duplicate return instead of aborting the job
// (MPI_ERRORS_RETURN) and become Error(PMCR_E_MPI).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pmcr {

class Comm {
 public:
  // Duplicates COMM (collective). Throws Error(PMCR_E_STATE) if MPI is not
  // initialised or already finalised.
  explicit Comm(MPI_Comm comm);
  ~Comm();
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Every rank passes its outcome (0 or a PMCR_E_* code, with a message).
  // If any rank failed, throws on every rank the Error of the lowest-ranked
  // rank among those with the most negative code, its message prefixed
  // with its rank on the others. Returns normally only if all succeeded.
  void agree(int code, const std::string& message);
  // True if every rank passed the same VALUE.
  bool same(int64_t value);
  uint64_t sum(uint64_t value);
  // Every rank's VALUE, by rank.
  std::vector<uint64_t> gather(uint64_t value);
  // The element-wise minimum of every rank's VALUES (all the same length).
  std::vector<int64_t> min(const std::vector<int64_t>& values);
  // Rank 0's VALUES on every rank (the same length everywhere).
  void broadcast(std::vector<int64_t>& values);
  // Rank 0's VALUE on every rank.
  int64_t broadcast(int64_t value);
  // ROOT's TEXT on every rank.
  std::string broadcast(const std::string& text, int root = 0);
  void barrier();

 private:
  void check(int rc, const char* what);
  // Checks RC of the nonblocking collective R was started by, then waits
  // for it without spinning long.
  void run(int rc, MPI_Request& r, const char* what);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 0;
};

}  // namespace pmcr
