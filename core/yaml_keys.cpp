#include "core/yaml_keys.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include "core/errors.h"

namespace vitruvian {

std::string yaml_where(const std::filesystem::path& file, const YAML::Node& node) {
  return fmt::format("{}:{}", file.string(), node.Mark().line + 1);
}

void check_yaml_keys(const std::filesystem::path& file, const YAML::Node& map, const std::set<std::string>& known,
                     const char* what) {
  if (!map.IsMap()) throw ConfigError(yaml_where(file, map), fmt::format("{} must be a mapping", what));
  for (const auto& entry : map) {
    const auto key = entry.first.as<std::string>();
    if (known.count(key) == 0) {
      throw ConfigError(yaml_where(file, entry.first),
                        fmt::format("unknown key '{}' in {}; expected one of: {}", key, what, fmt::join(known, ", ")));
    }
  }
}

}  // namespace vitruvian
