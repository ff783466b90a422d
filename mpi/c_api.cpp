// The extern "C" layer of libpmcr: every entry point runs through guard(),
// which turns what it threw into a PMCR_E_* code (capture.hpp) and the
// last-error message, kept by libpmcr-region.so (pmcr_strerror,
// pmcr_last_error and pmcr_version are its).
#include <pmcr/pmcr.h>

#include <cstring>
#include <memory>
#include <string>

#include "capture.hpp"
#include "report.hpp"
#include "session.hpp"

// libpmcr-region.so's setter of the thread's last error (not in any
// public header).
extern "C" void pmcr_private_set_last_error(const char* text);

namespace {


// The calls whose success means the job moved on: a failure reported
// before them (PMCR_RUN_REPORT) was got past. Finalizing after a failed
// checkpoint is not.
bool moves_on(const char* fn) {
  for (const char* f : {"pmcr_init", "pmcr_checkpoint", "pmcr_restart_test", "pmcr_restart"})
    if (std::strcmp(fn, f) == 0) return true;
  return false;
}

// Runs F; returns 0, or the code of what it threw, recording the message.
template <class F>
int guard(const char* fn, F&& f) noexcept {
  std::string message;
  const int rc = pmcr::capture(f, &message);
  if (rc != PMCR_OK) {
    message = std::string(fn) + ": " + message;
    pmcr_private_set_last_error(message.c_str());
  }
  // For pmcr-run (relaunch or not): the outcome of the calls that move the
  // job on; a failure of another call is the program's to handle.
  if (moves_on(fn)) rc == PMCR_OK ? pmcr::report::success() : pmcr::report::failure(rc, message);
  return rc;
}

// The rank API's state: one session per process, from pmcr_init to
// pmcr_finalize.
std::unique_ptr<pmcr::Session> g_session;

pmcr::Session& session(const char* fn) {
  if (!g_session)
    throw pmcr::Error(PMCR_E_NOT_INIT, std::string("pmcr is not initialised: call pmcr_init before ") + fn);
  return *g_session;
}

}  // namespace

extern "C" {

PMCR_EXPORT int pmcr_init(MPI_Comm comm, const char* config_path) {
  return guard("pmcr_init", [&] {
    if (g_session) throw pmcr::Error(PMCR_E_STATE, "pmcr is already initialised: call pmcr_finalize first");
    g_session = std::make_unique<pmcr::Session>(comm, config_path);
  });
}

PMCR_EXPORT int pmcr_protect(int id, void* ptr, size_t size) {
  return guard("pmcr_protect", [&] { session("pmcr_protect").protect(id, ptr, size); });
}

PMCR_EXPORT int pmcr_unprotect(int id) {
  return guard("pmcr_unprotect", [&] { session("pmcr_unprotect").unprotect(id); });
}

PMCR_EXPORT int pmcr_checkpoint(int version) {
  return guard("pmcr_checkpoint", [&] { session("pmcr_checkpoint").checkpoint(version); });
}

PMCR_EXPORT int pmcr_wait(int version) {
  return guard("pmcr_wait", [&] { session("pmcr_wait").wait(version); });
}

PMCR_EXPORT int pmcr_restart_test(int* version) {
  return guard("pmcr_restart_test", [&] {
    std::string notice;
    const int found = session("pmcr_restart_test").restart_test(&notice);  // collective: every rank takes part
    if (!version) throw pmcr::Error(PMCR_E_INVAL, "version is NULL");
    *version = found;
    // A damaged version was skipped: pmcr_last_error says which and why.
    if (!notice.empty()) pmcr_private_set_last_error(("pmcr_restart_test: " + notice).c_str());
  });
}

PMCR_EXPORT int pmcr_recover_size(int version, int id, size_t* size) {
  return guard("pmcr_recover_size", [&] {
    pmcr::Session& s = session("pmcr_recover_size");
    if (!size) throw pmcr::Error(PMCR_E_INVAL, "size is NULL");
    *size = s.recover_size(version, id);
  });
}

PMCR_EXPORT int pmcr_restart(int version) {
  return guard("pmcr_restart", [&] { session("pmcr_restart").restart(version); });
}

PMCR_EXPORT int pmcr_finalize(void) {
  return guard("pmcr_finalize", [&] {
    session("pmcr_finalize");
    std::unique_ptr<pmcr::Session> s = std::move(g_session);
    s->finalize();
  });
}

}  // extern "C"
