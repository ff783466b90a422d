#include "log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>

namespace pmcr {

spdlog::logger* log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("pmcr", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l pmcr[%P] %v");
    spdlog::level::level_enum level = spdlog::level::warn;
    if (const char* env = std::getenv("PMCR_LOG_LEVEL")) {
      const auto parsed = spdlog::level::from_str(env);
      if (parsed != spdlog::level::off || std::string(env) == "off") level = parsed;
    }
    l->set_level(level);
    return l;
  }();
  return logger.get();
}

void set_log_level(const std::string& level) { log()->set_level(spdlog::level::from_str(level)); }

}  // namespace pmcr
