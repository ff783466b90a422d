#include "error.hpp"

namespace pmcr {

const char* error_name(int code) noexcept {
  switch (code) {
    case PMCR_OK: return "success";
    case PMCR_E_INVAL: return "invalid argument";
    case PMCR_E_NOT_INIT: return "pmcr is not initialised";
    case PMCR_E_EXISTS: return "already exists";
    case PMCR_E_NOT_FOUND: return "not found";
    case PMCR_E_SIZE: return "size mismatch";
    case PMCR_E_CONFIG: return "invalid configuration";
    case PMCR_E_STATE: return "not allowed in the current state";
    case PMCR_E_PERM: return "permission denied";
    case PMCR_E_AUTH: return "authentication failed";
    case PMCR_E_RANGE: return "out of range";
    case PMCR_E_NOSPACE: return "no space left in the pool";
    case PMCR_E_NOMEM: return "out of memory";
    case PMCR_E_TIMEDOUT: return "timed out";
    case PMCR_E_BUSY: return "busy";
    case PMCR_E_QUOTA: return "quota exceeded";
    case PMCR_E_UNREACHABLE: return "server unreachable";
    case PMCR_E_SERVER_LOST: return "connection to the server lost";
    case PMCR_E_PROTOCOL: return "protocol error";
    case PMCR_E_TRANSPORT: return "transport error";
    case PMCR_E_CHECKSUM: return "checksum mismatch";
    case PMCR_E_INCOMPLETE: return "checkpoint incomplete";
    case PMCR_E_CORRUPT: return "pool or checkpoint damaged";
    case PMCR_E_NRANKS: return "checkpoint written by another number of ranks";
    case PMCR_E_SUPERSEDED: return "superseded by a later run of the same job";
    case PMCR_E_FENCED: return "fenced off: a standby took the job over";
    case PMCR_E_IO: return "I/O error";
    case PMCR_E_PMEM: return "persistent memory error";
    case PMCR_E_MPI: return "MPI error";
    case PMCR_E_INTERNAL: return "internal error";
    default: return "unknown pmcr error";
  }
}

}  // namespace pmcr
