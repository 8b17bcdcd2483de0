// Names of the normalisation rules.
#include "core/normalization.h"

#include "core/errors.h"

namespace vitruvian {

Normalization normalization_from_name(const std::string& name, const std::string& source) {
  if (name == "ct") return Normalization::kCt;
  if (name == "zscore") return Normalization::kZscore;
  if (name == "none") return Normalization::kNone;
  throw InputError(source, "normalization '" + name + "' is not known; expected ct, zscore or none");
}

std::string normalization_name(Normalization normalization) {
  switch (normalization) {
    case Normalization::kCt:
      return "ct";
    case Normalization::kZscore:
      return "zscore";
    case Normalization::kNone:
      break;
  }
  return "none";
}

}  // namespace vitruvian
