// Class maps from a config's class list or a model card, checked, and their lookups.
#include "models/class_map.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>

#include "core/errors.h"

namespace vitruvian::models {
namespace {

/// The id of label `wanted` in `table`; ConfigError naming `key` and listing the labels.
std::int64_t label_id(const std::string& wanted, const LabelNames& table, const std::string& dataset,
                      const std::string& key) {
  const auto it = std::find_if(table.begin(), table.end(), [&](const auto& entry) { return entry.second == wanted; });
  if (it == table.end()) {
    std::string known;
    for (const auto& [id, name] : table) known += (known.empty() ? "" : ", ") + name;
    throw ConfigError(key, fmt::format("'{}' is not a label of {}; its labels are: {}", wanted, dataset, known));
  }
  return static_cast<std::int64_t>(it->first);
}

/// Label ids of "a+b+c".
std::vector<std::int64_t> label_ids_of(const std::string& list, const LabelNames& table, const std::string& dataset,
                                       const std::string& key) {
  std::vector<std::int64_t> ids;
  for (std::size_t start = 0; start <= list.size();) {
    const auto plus = std::min(list.find('+', start), list.size());
    ids.push_back(label_id(list.substr(start, plus - start), table, dataset, key));
    start = plus + 1;
  }
  return ids;
}

}  // namespace

ClassMap ClassMap::from_labels(const std::vector<std::string>& classes, const LabelNames& table,
                               const std::string& dataset, const std::string& key) {
  ClassMap map{{"background"}, {{0}}};
  if (classes.empty()) {
    for (const auto& [id, name] : table) {
      if (id == 0) continue;
      map.names.push_back(name);
      map.label_ids.push_back({id});
    }
  }
  for (const auto& entry : classes) {
    const auto eq = entry.find('=');
    map.names.push_back(entry.substr(0, eq));
    map.label_ids.push_back(eq == std::string::npos ? std::vector<std::int64_t>{label_id(entry, table, dataset, key)}
                                                    : label_ids_of(entry.substr(eq + 1), table, dataset, key));
  }
  if (map.names.size() < 2) throw ConfigError(key, dataset + " has no label table to learn from");
  std::vector<bool> seen(kLabelIds, false);
  for (const auto& ids : map.label_ids) {
    for (const auto id : ids) {
      if (id != 0 && seen[static_cast<std::size_t>(id)]) {
        throw ConfigError(key, fmt::format("label id {} is named by two classes", id));
      }
      seen[static_cast<std::size_t>(id)] = true;
    }
  }
  return map;
}

ClassMap ClassMap::from_lists(std::vector<std::string> names, std::vector<std::vector<std::int64_t>> label_ids,
                              const std::string& source) {
  if (names.size() < 2 || names.size() != label_ids.size()) {
    throw InputError(source, fmt::format("{} class names but {} lists of label ids; expected at least two of each, as many",
                                         names.size(), label_ids.size()));
  }
  for (const auto& ids : label_ids) {
    for (const auto id : ids) {
      if (id < 0 || id >= kLabelIds)
        throw InputError(source, fmt::format("label id {} is outside 0..{}", id, kLabelIds - 1));
    }
  }
  return ClassMap{std::move(names), std::move(label_ids)};
}

std::vector<std::int64_t> ClassMap::lookup_ids() const {
  std::vector<std::int64_t> table(static_cast<std::size_t>(kLabelIds), 0);
  for (std::size_t k = 1; k < label_ids.size(); ++k) {
    for (const auto id : label_ids[k]) table[static_cast<std::size_t>(id)] = static_cast<std::int64_t>(k);
  }
  return table;
}

at::Tensor ClassMap::lookup() const {
  const std::vector<std::int64_t> ids = lookup_ids();
  return at::tensor(ids, at::kLong);
}

}  // namespace vitruvian::models
