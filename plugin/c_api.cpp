// The extern "C" layer of libpmcr: the only place where C++ exceptions turn
// into PMCR_E_* codes and the thread-local last-error message.
#include <pmcr/pmcr.h>

#include <exception>
#include <new>
#include <string>

#include "error.hpp"
#include "log.hpp"

namespace {

thread_local std::string t_last_error;

// Runs F; returns 0, or the code of what it threw, recording the message.
template <class F>
int guard(const char* fn, F&& f) noexcept {
  try {
    f();
    return PMCR_OK;
  } catch (const pmcr::Error& e) {
    t_last_error = std::string(fn) + ": " + e.what();
    return e.code();
  } catch (const std::bad_alloc&) {
    t_last_error = std::string(fn) + ": out of memory";
    return PMCR_E_NOMEM;
  } catch (const std::exception& e) {
    t_last_error = std::string(fn) + ": internal error: " + e.what();
    return PMCR_E_INTERNAL;
  } catch (...) {
    t_last_error = std::string(fn) + ": internal error: unknown exception";
    return PMCR_E_INTERNAL;
  }
}

}  // namespace

extern "C" {

PMCR_EXPORT const char* pmcr_strerror(int err) { return pmcr::error_name(err); }

PMCR_EXPORT const char* pmcr_last_error(void) { return t_last_error.c_str(); }

PMCR_EXPORT const char* pmcr_version(void) { return PMCR_VERSION; }

}  // extern "C"
