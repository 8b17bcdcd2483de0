// The options of Vitruvian's own that a Google Benchmark program takes before Google
// Benchmark's: `--name VALUE` pairs handed to their setters, everything else passed on.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace vitruvian::bench {

/// argv without the `--name VALUE` pairs named in `setters` (each value handed to its setter),
/// for benchmark::Initialize; argv[0] stays first.
inline std::vector<char*> take_bench_options(int argc, char** argv,
                                             const std::map<std::string, std::function<void(const std::string&)>>& setters) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const auto setter = setters.find(argv[i]);
    if (i > 0 && setter != setters.end() && i + 1 < argc) {
      setter->second(argv[++i]);
    } else {
      rest.push_back(argv[i]);
    }
  }
  return rest;
}

}  // namespace vitruvian::bench
