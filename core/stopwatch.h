// Wall-clock intervals for timings and deadlines, on the steady clock.
#pragma once

#include <chrono>

namespace vitruvian {

using SteadyClock = std::chrono::steady_clock;

/// Seconds from `start` to now.
inline double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

/// Seconds from `from` to `to`.
inline double seconds_between(SteadyClock::time_point from, SteadyClock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace vitruvian
