// Pictures of a perfusion result, as stroke readers know them: axial slices of the CBF map with
// the hypoperfused tissue (Tmax above threshold) in green and the core in magenta, and colour
// maps of CBF, CBV, MTT and Tmax with their colour bars.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "core/png.h"
#include "data/volume.h"

namespace vitruvian::data {

/// How a map is shown: its values from `low` (the colour bar's bottom) to `high` (its top).
struct MapStyle {
  std::string key;    ///< "cbf", "cbv", "mtt", "tmax"
  std::string title;  ///< "CBF"
  std::string unit;   ///< "mL/100 g/min"
  double low = 0, high = 1;
};

/// CBF 0–80 mL/100 g/min, CBV 0–8 mL/100 g, MTT 0–16 s, Tmax 0–14 s.
const std::vector<MapStyle>& perfusion_map_styles();

/// The colour of `fraction` (0 … 1, clamped) on the maps' rainbow (dark blue, blue, cyan,
/// green, yellow, red).
std::array<std::uint8_t, 3> map_colour(double fraction);

/// The overlay colours: core magenta, hypoperfused (not core) green.
inline constexpr std::array<std::uint8_t, 3> kCoreColour{230, 40, 200};
inline constexpr std::array<std::uint8_t, 3> kHypoperfusedColour{40, 220, 60};

/// `count` axial slices evenly through the z extent of the non-zero voxels of `map` ([z, y, x]).
std::vector<std::int64_t> perfusion_slices(const at::Tensor& map, int count);

/// One row: each slice of `cbf` in grey (0 … 80 mL/100 g/min) with `tissue` (1 core, 2
/// hypoperfused not core) overlaid.
RgbImage perfusion_summary_picture(const Volume& cbf, const Volume& tissue, const std::vector<std::int64_t>& slices);

/// A row per map (in perfusion_map_styles() order), each slice in colour (black where the map is
/// 0: outside the brain) and the colour bar at the row's end.
RgbImage perfusion_maps_picture(const std::vector<const Volume*>& maps, const std::vector<std::int64_t>& slices);

/// A vertical colour bar, `high` at the top.
RgbImage colour_bar(int width, int height);

}  // namespace vitruvian::data
