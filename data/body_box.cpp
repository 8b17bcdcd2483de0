// data::body_box: the body's box as the extent of the largest 6-connected part above a threshold,
// found on runs of voxels along x rather than on a label volume: one pass over the image makes
// each row's runs, a union-find joins runs that overlap in the row before (y - 1) or the slice
// before (z - 1), and each part keeps its voxel count and extent. Memory follows the number of
// runs (a few per row through a body), not the number of voxels.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <vector>

#include "core/errors.h"
#include "core/union_find.h"
#include "data/preprocess.h"
#include "data/tensor_helpers.h"

namespace vitruvian::data {
namespace {

struct Run {
  std::int32_t x0, x1;  ///< [x0, x1)
};

/// Runs along x of every row (z, y) of the voxels above the threshold in any channel.
class RowRuns {
 public:
  RowRuns(std::int64_t rows, std::int64_t width) : width_(width), row_start_(static_cast<std::size_t>(rows) + 1, 0), above_(width) {}

  /// Adds row `row` (rows come in order) from `channels` pointers to its first voxel.
  template <typename T>
  void add_row(std::int64_t row, const std::vector<const T*>& channels, double threshold) {
    std::fill(above_.begin(), above_.end(), 0);
    for (const T* c : channels) {
      for (std::int64_t x = 0; x < width_; ++x) above_[x] |= static_cast<std::uint8_t>(static_cast<double>(c[x]) > threshold);
    }
    for (std::int64_t x = 0; x < width_;) {
      if (!above_[x]) {
        ++x;
        continue;
      }
      const std::int64_t start = x;
      while (x < width_ && above_[x]) ++x;
      runs_.push_back(Run{static_cast<std::int32_t>(start), static_cast<std::int32_t>(x)});
    }
    row_start_[static_cast<std::size_t>(row) + 1] = runs_.size();
  }

  const std::vector<Run>& runs() const { return runs_; }
  std::size_t begin(std::int64_t row) const { return row_start_[static_cast<std::size_t>(row)]; }
  std::size_t end(std::int64_t row) const { return row_start_[static_cast<std::size_t>(row) + 1]; }

 private:
  std::int64_t width_;
  std::vector<std::size_t> row_start_;
  std::vector<Run> runs_;
  std::vector<std::uint8_t> above_;
};

/// Joins the runs of `row` with those of `other` (an earlier row) that share an x.
void join_overlapping(const RowRuns& r, std::int64_t row, std::int64_t other, std::vector<std::size_t>& parts) {
  const auto& runs = r.runs();
  std::size_t a = r.begin(row), b = r.begin(other);
  const std::size_t a_end = r.end(row), b_end = r.end(other);
  while (a < a_end && b < b_end) {
    if (runs[a].x0 < runs[b].x1 && runs[b].x0 < runs[a].x1) join_sets(parts, a, b);
    (runs[a].x1 < runs[b].x1) ? ++a : ++b;
  }
}

/// The rows' runs above `threshold` of `channels` contiguous [Z, Y, X] volumes from `data`.
template <typename T>
RowRuns runs_above(const T* data, std::int64_t channels, double threshold, std::int64_t Z, std::int64_t Y, std::int64_t X) {
  const std::int64_t volume = Z * Y * X;
  RowRuns runs(Z * Y, X);
  std::vector<const T*> row(static_cast<std::size_t>(channels));
  for (std::int64_t r = 0; r < Z * Y; ++r) {
    for (std::int64_t c = 0; c < channels; ++c) row[static_cast<std::size_t>(c)] = data + c * volume + r * X;
    runs.add_row(r, row, threshold);
  }
  return runs;
}

}  // namespace

Box body_box(const at::Tensor& image, double threshold, std::int64_t margin) {
  if (margin < 0) throw InputError("body_box", fmt::format("margin {} must be >= 0 voxels", margin));
  return body_box(image, threshold, std::array<std::int64_t, 3>{margin, margin, margin});
}

Box body_box(const at::Tensor& image_in, double threshold, const std::array<std::int64_t, 3>& margin_zyx) {
  constexpr const char* kWhere = "body_box";
  detail::check_cpu_tensor(image_in, kWhere, "the image");
  if (image_in.dim() != 3 && image_in.dim() != 4) {
    throw InputError(kWhere, fmt::format("expected a [z,y,x] or [C,z,y,x] image, got shape {}", detail::shape_text(image_in)));
  }
  if (image_in.numel() == 0) throw InputError(kWhere, fmt::format("image of shape {} is empty", detail::shape_text(image_in)));
  if (std::isnan(threshold)) throw InputError(kWhere, "the threshold is NaN");
  for (const auto margin : margin_zyx) {
    if (margin < 0) throw InputError(kWhere, fmt::format("margin {} must be >= 0 voxels", margin));
  }
  const at::Tensor image = image_in.contiguous();
  const std::int64_t first = image.dim() - 3;
  const std::int64_t sizes[3] = {image.size(first), image.size(first + 1), image.size(first + 2)};
  const std::int64_t Z = sizes[0], Y = sizes[1], X = sizes[2];
  const std::int64_t channels = image.dim() == 4 ? image.size(0) : 1;
  std::optional<RowRuns> found;
  detail::for_voxel_type(image, [&](const auto* data) { found.emplace(runs_above(data, channels, threshold, Z, Y, X)); });
  const RowRuns& rows = *found;
  const auto& runs = rows.runs();
  if (runs.empty()) return Box{{0, 0, 0}, {Z, Y, X}};

  // Parts: runs joined with the overlapping runs of the row above and the slice before.
  std::vector<std::size_t> parts(runs.size());  // union-find parents: a part's root is its first run
  std::iota(parts.begin(), parts.end(), std::size_t{0});
  for (std::int64_t z = 0; z < Z; ++z) {
    for (std::int64_t y = 0; y < Y; ++y) {
      const std::int64_t row = z * Y + y;
      if (y > 0) join_overlapping(rows, row, row - 1, parts);
      if (z > 0) join_overlapping(rows, row, row - Y, parts);
    }
  }
  // Each part's voxels and extent, kept at its root (its first run in scan order).
  struct Part {
    std::int64_t voxels = 0;
    std::array<std::int64_t, 3> low{}, high{};
  };
  std::vector<Part> part(runs.size());
  for (std::int64_t row = 0; row < Z * Y; ++row) {
    const std::array<std::int64_t, 2> zy{row / Y, row % Y};
    for (std::size_t i = rows.begin(row); i < rows.end(row); ++i) {
      Part& p = part[find_root(parts, i)];
      const std::array<std::int64_t, 3> lo{zy[0], zy[1], runs[i].x0}, hi{zy[0], zy[1], runs[i].x1 - 1};
      if (p.voxels == 0) p.low = lo, p.high = hi;
      for (int d = 0; d < 3; ++d) p.low[d] = std::min(p.low[d], lo[d]), p.high[d] = std::max(p.high[d], hi[d]);
      p.voxels += runs[i].x1 - runs[i].x0;
    }
  }
  // The largest part; on a tie, the one reached first in scan order.
  std::size_t biggest = 0;
  for (std::size_t i = 1; i < part.size(); ++i) {
    if (part[i].voxels > part[biggest].voxels) biggest = i;
  }
  Box box;
  for (int d = 0; d < 3; ++d) {
    const std::int64_t start = std::max<std::int64_t>(0, part[biggest].low[d] - margin_zyx[d]);
    const std::int64_t end = std::min<std::int64_t>(sizes[d], part[biggest].high[d] + 1 + margin_zyx[d]);
    box.start_zyx[d] = start;
    box.size_zyx[d] = end - start;
  }
  return box;
}

}  // namespace vitruvian::data
