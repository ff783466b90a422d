// The one place where an exception thrown inside libpmcr becomes a PMCR_E_*
// code and its message: used by the C layer (c_api.cpp) and by the
// collective calls, which must agree on an outcome before they return.
#pragma once

#include <exception>
#include <new>
#include <string>

#include "error.hpp"

namespace pmcr {

// Runs F; returns 0, or the code of what it threw with its message in *MESSAGE.
template <class F>
int capture(F&& f, std::string* message) noexcept {
  try {
    f();
    return PMCR_OK;
  } catch (const Error& e) {
    *message = e.what();
    return e.code();
  } catch (const std::bad_alloc&) {
    *message = "out of memory";
    return PMCR_E_NOMEM;
  } catch (const std::exception& e) {
    *message = std::string("internal error: ") + e.what();
    return PMCR_E_INTERNAL;
  } catch (...) {
    *message = "internal error: unknown exception";
    return PMCR_E_INTERNAL;
  }
}

}  // namespace pmcr
