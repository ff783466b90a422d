// libpmcr's one logger. It writes to stderr (never stdout), at the level set
// by PMCR_LOG_LEVEL (trace, debug, info, warn, error, off; default warn). It
// is not registered in spdlog's global registry, so it cannot clash with an
// application's own spdlog use.
#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <string>

namespace pmcr {

spdlog::logger* log();
// Sets the logger's level from a name (pmcr_init's log_level setting).
void set_log_level(const std::string& level);

}  // namespace pmcr
