// How an input channel's intensities are normalised before a network: the rule the training
// loader applies and a model card records, so inference applies the same.
#pragma once

#include <string>

namespace vitruvian {

enum class Normalization {
  kCt,      ///< clip to the training foreground's 0.5–99.5 percentiles, z-score with its mean/std
  kZscore,  ///< per-volume z-score (MR)
  kNone,
};

/// "ct", "zscore", "none"; throws InputError naming `source` for anything else.
Normalization normalization_from_name(const std::string& name, const std::string& source);
/// "ct", "zscore", "none".
std::string normalization_name(Normalization normalization);

}  // namespace vitruvian
