// pmcr::Error: the one exception type inside pmcr. It carries a PMCR_E_* code
// and the message written where the failure was detected.
#pragma once

#include <pmcr/errors.h>

#include <stdexcept>
#include <string>

namespace pmcr {

class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// Static text for a PMCR_E_* code ("unknown pmcr error" for others).
const char* error_name(int code) noexcept;

}  // namespace pmcr
