// Rank-tagged stderr logging.
#include "core/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <algorithm>

#include "core/errors.h"

namespace vitruvian {

spdlog::level::level_enum parse_log_level(const std::string& name) {
  static const char* kNames[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  for (int i = 0; i < 7; ++i) {
    if (name == kNames[i]) return static_cast<spdlog::level::level_enum>(i);
  }
  if (name == "warning") return spdlog::level::warn;
  throw InputError("log level", "'" + name + "' is not a level; expected trace, debug, info, warn, error, critical or off");
}

void init_logging(const LoggingOptions& options, int rank, int world_size, const std::string& host) {
  const spdlog::level::level_enum wanted = parse_log_level(options.level);
  auto logger = std::make_shared<spdlog::logger>("vitruvian", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] [r" + std::to_string(rank) + "/" + std::to_string(world_size) +
                      " " + host + "] %v");
  const bool quiet_rank = rank != 0 && !options.all_ranks;
  logger->set_level(quiet_rank ? std::max(wanted, spdlog::level::warn) : wanted);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace vitruvian
