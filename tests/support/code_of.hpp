// What a call throws, for tests: its PMCR_E_* code (0 if it throws
// nothing), or its message.
#pragma once

#include <functional>
#include <string>

#include "error.hpp"

namespace pmcr::test {

inline int code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return 0;
}

inline std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace pmcr::test
