// Rank-aware logging on spdlog: every line is tagged "[r<rank>/<size> <host>]"; info and below
// come from rank 0 only unless all ranks are asked for; warnings and errors come from every rank.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace vitruvian {

/// How the process logs; part of RuntimeConfig.
struct LoggingOptions {
  std::string level = "info";  ///< trace, debug, info, warn, error, critical, off
  bool all_ranks = false;      ///< info/debug from every rank, not only rank 0
};

/// Parses a level name; throws InputError naming the bad value and the accepted ones.
spdlog::level::level_enum parse_log_level(const std::string& name);

/// Installs the rank-tagged stderr logger as spdlog's default. Call after MpiEnvironment.
void init_logging(const LoggingOptions& options, int rank, int world_size, const std::string& host);

}  // namespace vitruvian
