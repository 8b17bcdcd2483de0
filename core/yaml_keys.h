// For YAML files read node by node (import manifests, campaigns): where a node is, as
// "file:line", and the refusal of keys a mapping may not have.
#pragma once

#include <filesystem>
#include <set>
#include <string>

namespace YAML {
class Node;
}

namespace vitruvian {

/// "file:line" of `node` (1-based line).
std::string yaml_where(const std::filesystem::path& file, const YAML::Node& node);

/// ConfigError naming file:line unless `map` is a mapping whose keys are all in `known`
/// ("unknown key 'k' in <what>; expected one of: ...").
void check_yaml_keys(const std::filesystem::path& file, const YAML::Node& map, const std::set<std::string>& known,
                     const char* what);

}  // namespace vitruvian
