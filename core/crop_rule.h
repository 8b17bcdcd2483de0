// How a dataset's studies were cropped before training: the rule `preprocess` records with each
// study, the model card carries and inference campaigns follow when a route names none.
#pragma once

#include <string>

namespace vitruvian {

struct CropRule {
  /// "body": each study cut to its body's box (data::body_box); "none": whole grids; "": not
  /// known (no record, or studies that disagree).
  std::string rule;
  /// "body": the margin around the body's box, mm (the largest over axes and studies).
  double margin_mm = 0;

  bool known() const { return !rule.empty(); }
  bool operator==(const CropRule& other) const { return rule == other.rule && margin_mm == other.margin_mm; }
};

}  // namespace vitruvian
