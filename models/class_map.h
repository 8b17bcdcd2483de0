// The classes of a network and the dataset label ids each one stands for, with the lookup from
// label id to class index: one mapping for training (from data.classes and the dataset's label
// table) and inference (the model card holds it).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vitruvian::models {

/// A dataset's label table: label id (0–65535) → name (the same type as data::LabelTable).
using LabelNames = std::map<int, std::string>;

/// Class k of a network stands for the dataset label ids `label_ids[k]`; class 0 is background
/// ({0}), and every id that no class names counts as background too.
struct ClassMap {
  /// Label ids a lookup covers: every id a uint8 or uint16 label map can hold.
  static constexpr std::int64_t kLabelIds = 65536;

  std::vector<std::string> names;                    ///< [0] is "background"
  std::vector<std::vector<std::int64_t>> label_ids;  ///< per class, ids in 0..kLabelIds-1

  /// The classes a config learns: one per `classes` entry, "name" for that label or
  /// "name=a+b+c" for labels a, b and c as one class (every label of `table` when `classes` is
  /// empty). ConfigError naming `key` for an unknown label (listing the labels of `dataset`), a
  /// label named twice, or a table with nothing to learn.
  static ClassMap from_labels(const std::vector<std::string>& classes, const LabelNames& table,
                              const std::string& dataset, const std::string& key = "data.classes");
  /// Classes as a model card lists them (class_names, class_label_ids). InputError naming
  /// `source` when there are fewer than two, the lists differ in length or an id is out of range.
  static ClassMap from_lists(std::vector<std::string> names, std::vector<std::vector<std::int64_t>> label_ids,
                             const std::string& source);

  std::int64_t size() const noexcept { return static_cast<std::int64_t>(names.size()); }
  /// Label id → class index, kLabelIds entries.
  std::vector<std::int64_t> lookup_ids() const;
  /// lookup_ids() as an int64 CPU tensor [kLabelIds], for indexing a label map.
  at::Tensor lookup() const;
};

}  // namespace vitruvian::models
