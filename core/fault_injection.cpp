// Fault injection: VITRUVIAN_FAULT, parsed once, checked at each named fault point.
#include "core/fault_injection.h"

#include <mpi.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>

#include "core/errors.h"
#include "core/mpi.h"

namespace vitruvian {
namespace detail {
std::atomic<int> fault_state{0};
}  // namespace detail

namespace {

struct ArmedFault {
  FaultSpec spec;
  std::atomic<std::int64_t> hits{0};
};

std::vector<std::unique_ptr<ArmedFault>>& armed_faults() {
  static std::vector<std::unique_ptr<ArmedFault>> faults;
  return faults;
}

FaultSpec::Action parse_action(const std::string& word, const std::string& entry) {
  if (word == "exit") return FaultSpec::Action::kExit;
  if (word == "leave") return FaultSpec::Action::kLeave;
  if (word == "stop") return FaultSpec::Action::kStop;
  if (word == "kill") return FaultSpec::Action::kKill;
  if (word == "throw") return FaultSpec::Action::kThrow;
  throw ConfigError("VITRUVIAN_FAULT",
                    "'" + entry + "': unknown action '" + word + "'; expected exit, leave, stop, kill or throw");
}

/// A non-negative decimal number, or -1 when `text` is not one.
std::int64_t parse_count(const std::string& text) {
  if (text.empty() || text.size() > 12 || text.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(text);
}

FaultSpec parse_entry(const std::string& entry) {
  const auto bad = [&](const std::string& why) {
    return ConfigError("VITRUVIAN_FAULT", "'" + entry + "': " + why + "; expected <point>@<rank>[#<N>]:<action>");
  };
  const auto at = entry.find('@');
  const auto colon = entry.find(':', at == std::string::npos ? 0 : at);
  if (at == std::string::npos || colon == std::string::npos) throw bad("no '@' or ':'");
  FaultSpec spec;
  spec.point = entry.substr(0, at);
  if (spec.point.empty()) throw bad("no point name");
  std::string rank = entry.substr(at + 1, colon - at - 1);
  const auto hash = rank.find('#');
  if (hash != std::string::npos) {
    spec.hit = parse_count(rank.substr(hash + 1));
    if (spec.hit < 1) throw bad("the hit count after '#' must be a number >= 1");
    rank.resize(hash);
  }
  if (rank == "*") {
    spec.rank = -1;
  } else {
    const std::int64_t value = parse_count(rank);
    if (value < 0 || value > 1'000'000'000) throw bad("the rank must be a number or *");
    spec.rank = static_cast<int>(value);
  }
  spec.action = parse_action(entry.substr(colon + 1), entry);
  return spec;
}

std::string describe_action(FaultSpec::Action action) {
  switch (action) {
    case FaultSpec::Action::kExit:
      return "exit without MPI_Finalize (code " + std::to_string(kInjectedExitCode) + ")";
    case FaultSpec::Action::kLeave:
      return "MPI_Finalize, then exit 0 (leaving the job)";
    case FaultSpec::Action::kStop:
      return "SIGSTOP";
    case FaultSpec::Action::kKill:
      return "SIGKILL";
    case FaultSpec::Action::kThrow:
      return "throw InternalError";
  }
  return "?";
}

void inject(const FaultSpec& spec, std::int64_t hit) {
  std::fprintf(stderr, "vitruvian: fault injection on %s: '%s' hit #%lld: %s\n", describe_process().c_str(),
               spec.point.c_str(), static_cast<long long>(hit), describe_action(spec.action).c_str());
  std::fflush(stderr);
  switch (spec.action) {
    case FaultSpec::Action::kExit:
      std::_Exit(kInjectedExitCode);
    case FaultSpec::Action::kLeave:
      if (mpi_is_active()) MPI_Finalize();
      std::_Exit(0);
    case FaultSpec::Action::kStop:
      std::raise(SIGSTOP);
      return;
    case FaultSpec::Action::kKill:
      std::raise(SIGKILL);
      return;
    case FaultSpec::Action::kThrow:
      throw InternalError("fault_point(" + spec.point + ")", "fault injected by VITRUVIAN_FAULT");
  }
}

}  // namespace

std::vector<FaultSpec> parse_fault_specs(const std::string& text) {
  std::vector<FaultSpec> specs;
  std::stringstream entries(text);
  for (std::string entry; std::getline(entries, entry, ',');) {
    if (!entry.empty()) specs.push_back(parse_entry(entry));
  }
  return specs;
}

namespace detail {
void fault_point_slow(const char* name) {
  static std::once_flag parsed;
  std::call_once(parsed, [] {
    const char* text = std::getenv("VITRUVIAN_FAULT");
    for (FaultSpec& spec : parse_fault_specs(text == nullptr ? "" : text)) {
      armed_faults().push_back(std::make_unique<ArmedFault>());
      armed_faults().back()->spec = std::move(spec);
    }
    fault_state.store(armed_faults().empty() ? 1 : 2, std::memory_order_relaxed);
  });
  if (fault_state.load(std::memory_order_relaxed) != 2) return;
  const int rank = process_identity().rank;
  for (const auto& fault : armed_faults()) {
    if (fault->spec.point != name || (fault->spec.rank >= 0 && fault->spec.rank != rank)) continue;
    const std::int64_t hit = ++fault->hits;
    if (hit == fault->spec.hit) inject(fault->spec, hit);
  }
}
}  // namespace detail

}  // namespace vitruvian
