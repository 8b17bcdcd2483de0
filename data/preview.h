// Slice pictures of volumes with coloured label overlays: phantom previews, campaign
// thumbnails, anything a person would rather look at than read.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/png.h"
#include "data/volume.h"

namespace vitruvian::data {

/// Grey values: `low` shows black, `high` white.
struct Window {
  double low = 0;
  double high = 1;
};

enum class SliceAxis { kAxial, kCoronal, kSagittal };

/// The overlay colour of label `id` (a fixed palette of distinguishable colours; id 0 is never drawn).
std::array<std::uint8_t, 3> label_colour(int id);

/// A display window for `image` ([z,y,x]): CT a soft-tissue-and-bone window (−250..450 HU);
/// anything else the 1st to 99.5th percentile of its non-zero voxels.
Window display_window(const at::Tensor& image, const std::string& modality);

/// The slice of `image` ([z,y,x], any dtype) through `index` along `axis`, in `window`, on
/// square pixels (at least `min_size` pixels on the short side), with `labels` (same shape, or
/// undefined) blended at `alpha` and their boundaries drawn opaque. Orientation as radiologists
/// read it: axial with the patient's right on the picture's left and anterior up; coronal and
/// sagittal with superior up.
RgbImage slice_picture(const at::Tensor& image, const at::Tensor& labels, const std::array<double, 3>& spacing_xyz,
                       SliceAxis axis, std::int64_t index, Window window, double alpha = 0.45, int min_size = 192);

/// Pictures in rows (each row left to right), `gap` pixels apart on a dark background.
RgbImage tile(const std::vector<std::vector<RgbImage>>& rows, int gap = 4);

/// The voxel [z, y, x] at the centre of mass of the voxels of `labels` with one of `ids` (any
/// non-zero id when `ids` is empty); the volume centre when there are none.
std::array<std::int64_t, 3> label_centre(const at::Tensor& labels, const std::vector<int>& ids = {});

/// One picture of a study: a row per series (4D series: the frame of highest mean signal), each
/// row its axial slice bare, then axial, coronal and sagittal slices with `labels` overlaid, all
/// through the voxel `centre` [z, y, x].
RgbImage study_picture(const std::vector<std::pair<std::string, Volume>>& series, const at::Tensor& labels,
                       const std::array<std::int64_t, 3>& centre);

}  // namespace vitruvian::data
