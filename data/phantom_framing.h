// Scan framing of a phantom study: the field of view drawn per study, where the grid sits on the
// patient, and what lies around the body in a real scan (the table, the arms). Private to data/.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "data/phantom.h"
#include "data/phantom_kinds.h"
#include "data/phantom_scene.h"

namespace vitruvian::data::phantom {

/// One study's framing, drawn from (seed, index) alone.
struct Framing {
  bool scan = false;   ///< false: centred (the grid is --shape, nothing around the body)
  Vec3 fov;            ///< mm, x y z
  Vec3 centre;         ///< patient mm: the grid's centre
  bool arms = false;   ///< the arms lie at the sides (else raised above the head, out of view)
  std::uint64_t seed = 0;  ///< for the table's and arms' sizes and values
};

/// The framing of study `index` of `kind` (options.framing, options.fov_xyz, the kind's range).
Framing draw_framing(const PhantomOptions& options, std::int64_t index, PhantomKind kind);

/// The grid of a framed study: `spacing` (x y z, mm), shape = field of view / spacing (at least
/// 8), centred on framing.centre. Centred framing: options' shape, centred on the origin.
Grid framed_grid(const Framing& framing, const std::array<std::int64_t, 3>& centred_shape_zyx,
                 const std::array<double, 3>& spacing_xyz);

/// What scan framing adds around a kind's body, with the values they take in each series.
std::vector<TissueSpec> surrounding_tissues(const KindSpec& spec);

/// Adds the table (a foam pad, a carbon-fibre shell round a foam core) under the built body and,
/// when framing.arms, the arms at its sides; painted under the body, so they never cover it.
/// Records what was added in b.truth["framing"].
void add_surroundings(Builder& b, const Framing& framing);

}  // namespace vitruvian::data::phantom
