// `vitruvian perfusion STUDY`: the CT perfusion analysis on one study (or the studies of one
// input), as a campaign with one perfusion route; its thresholds are the `perfusion.*` keys.
#pragma once

#include <memory>

#include "launch/jobs/verb.h"

namespace vitruvian::jobs {

/// The `perfusion` verb.
std::unique_ptr<Verb> make_perfusion_verb();

}  // namespace vitruvian::jobs
