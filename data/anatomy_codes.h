// Coded concepts for the structures Vitruvian segments: each label name of the phantoms and the
// example configurations with its DICOM Segmented Property Category and Type (SNOMED CT, scheme
// "SCT"), as DICOM SEG segments and SR measurement groups carry them.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vitruvian::data {

/// One code: value, coding scheme designator ("SCT", "DCM", "UCUM") and meaning.
struct CodedConcept {
  std::string value, scheme, meaning;
};

/// What a segment is: its category (anatomical structure, morphologically altered structure)
/// and its type, with a laterality modifier (Left, Right) where the type has none. `checked` is
/// true where the code was confirmed in a DICOM context group (PS3.16) or a published SEG
/// mapping, false where it is our best reading (docs/INFERENCE.md lists them).
struct AnatomyCode {
  CodedConcept category, type;
  bool checked = true;
  std::optional<CodedConcept> modifier;
};

/// The code of a structure name ("liver", "heart_left_ventricle"); names the table lacks get the
/// generic category Anatomical Structure and type Anatomical structure (SCT 91723000) and
/// `known` false.
AnatomyCode anatomy_code(const std::string& name, bool* known = nullptr);

/// Every name the table holds with its code, in table order (for documentation and tests).
const std::vector<std::pair<std::string, AnatomyCode>>& anatomy_codes();

}  // namespace vitruvian::data
