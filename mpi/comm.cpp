#include "comm.hpp"

#include <time.h>

#include <algorithm>
#include <vector>

#include "error.hpp"
#include "log.hpp"

namespace pmcr {

Comm::Comm(MPI_Comm comm) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized)
    throw Error(PMCR_E_STATE, "MPI is not initialised: call MPI_Init before pmcr_init and MPI_Finalize after pmcr_finalize");
  if (comm == MPI_COMM_NULL) throw Error(PMCR_E_INVAL, "the communicator is MPI_COMM_NULL");
  check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

Comm::~Comm() {
  if (comm_ == MPI_COMM_NULL) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && MPI_Comm_free(&comm_) != MPI_SUCCESS) log()->warn("MPI_Comm_free failed");
}

void Comm::check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(PMCR_E_MPI, std::string(what) + " failed: " + std::string(text, static_cast<size_t>(len)));
}

// A collective started, waited for. Most complete within the first tests
// (every rank arrives together); a rank that waits longer for the others
// sleeps between tests, from 10 us up to 500 us, instead of spinning: on a
// node it shares with other ranks (or with a pmserver, or with the drain of
// an asynchronous checkpoint), the cores go to those still working.
void Comm::run(int rc, MPI_Request& r, const char* what) {
  check(rc, what);
  int done = 0;
  for (int i = 0; i < 64 && !done; ++i) check(MPI_Test(&r, &done, MPI_STATUS_IGNORE), what);
  for (long nap = 10; !done; nap = std::min(2 * nap, 500L)) {
    const timespec ts{0, nap * 1000};
    ::nanosleep(&ts, nullptr);
    check(MPI_Test(&r, &done, MPI_STATUS_IGNORE), what);
  }
}

void Comm::agree(int code, const std::string& message) {
  MPI_Request r = MPI_REQUEST_NULL;
  struct {
    int code;
    int rank;
  } mine{code, rank_}, worst{0, 0};
  run(MPI_Iallreduce(&mine, &worst, 1, MPI_2INT, MPI_MINLOC, comm_, &r), r, "MPI_Allreduce");
  if (worst.code == 0) return;
  // The failing rank tells the others what happened.
  const std::string text = broadcast(message, worst.rank);
  if (worst.rank == rank_) throw Error(code, message);
  throw Error(worst.code, "rank " + std::to_string(worst.rank) + ": " + text);
}

std::string Comm::broadcast(const std::string& text, int root) {
  MPI_Request r = MPI_REQUEST_NULL;
  int len = rank_ == root ? static_cast<int>(text.size()) : 0;
  run(MPI_Ibcast(&len, 1, MPI_INT, root, comm_, &r), r, "MPI_Bcast");
  std::vector<char> bytes(static_cast<size_t>(len));
  if (rank_ == root) bytes.assign(text.begin(), text.end());
  run(MPI_Ibcast(bytes.data(), len, MPI_CHAR, root, comm_, &r), r, "MPI_Bcast");
  return std::string(bytes.begin(), bytes.end());
}

bool Comm::same(int64_t value) {
  MPI_Request r = MPI_REQUEST_NULL;
  int64_t in[2] = {value, -value}, out[2] = {0, 0};
  run(MPI_Iallreduce(in, out, 2, MPI_INT64_T, MPI_MIN, comm_, &r), r, "MPI_Allreduce");
  return out[0] == value && -out[1] == value;
}

uint64_t Comm::sum(uint64_t value) {
  MPI_Request r = MPI_REQUEST_NULL;
  uint64_t out = 0;
  run(MPI_Iallreduce(&value, &out, 1, MPI_UINT64_T, MPI_SUM, comm_, &r), r, "MPI_Allreduce");
  return out;
}

std::vector<uint64_t> Comm::gather(uint64_t value) {
  MPI_Request r = MPI_REQUEST_NULL;
  std::vector<uint64_t> out(static_cast<size_t>(size_));
  run(MPI_Iallgather(&value, 1, MPI_UINT64_T, out.data(), 1, MPI_UINT64_T, comm_, &r), r, "MPI_Allgather");
  return out;
}

std::vector<int64_t> Comm::min(const std::vector<int64_t>& values) {
  MPI_Request r = MPI_REQUEST_NULL;
  std::vector<int64_t> out(values.size());
  run(MPI_Iallreduce(values.data(), out.data(), static_cast<int>(values.size()), MPI_INT64_T, MPI_MIN, comm_, &r),
      r, "MPI_Allreduce");
  return out;
}

void Comm::broadcast(std::vector<int64_t>& values) {
  MPI_Request r = MPI_REQUEST_NULL;
  run(MPI_Ibcast(values.data(), static_cast<int>(values.size()), MPI_INT64_T, 0, comm_, &r), r, "MPI_Bcast");
}

int64_t Comm::broadcast(int64_t value) {
  MPI_Request r = MPI_REQUEST_NULL;
  run(MPI_Ibcast(&value, 1, MPI_INT64_T, 0, comm_, &r), r, "MPI_Bcast");
  return value;
}

void Comm::barrier() {
  MPI_Request r = MPI_REQUEST_NULL;
  run(MPI_Ibarrier(comm_, &r), r, "MPI_Barrier");
}

}  // namespace pmcr
