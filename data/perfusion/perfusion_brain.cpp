// The brain mask of the perfusion analysis: soft tissue inside the skull on the pre-contrast
// image. The skull encloses the brain slice by slice, so "inside" is what cannot reach the air
// at a slice's border without crossing bone; the largest connected piece of soft tissue there is
// the brain.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "core/components.h"
#include "data/perfusion/perfusion_smoothing.h"
#include "data/perfusion/perfusion_steps.h"

namespace vitruvian::data::perfusion {

namespace {

/// Below this a pixel is air (−1 000 HU; fat is about −100).
constexpr float kAirHu = -500.f;

/// 1 where a pixel of the slice is neither bone nor 4-connected, through pixels that are not bone,
/// to air at the slice's border (`is_air(i)`: whether pixel i is air; asked of border pixels
/// alone). A field of view that cuts through the skull leaves brain at the border between the
/// skull's cut ends; it is not reached from the air, so it stays inside. A slice with no air at
/// its border (a field of view inside the head) starts from every pixel of its border.
template <typename IsAir>
void enclosed_by_bone(const std::uint8_t* bone, IsAir is_air, std::int64_t ny, std::int64_t nx, std::uint8_t* inside,
                      std::vector<std::int64_t>& stack) {
  const std::int64_t n = ny * nx;
  // The skull widened by one pixel (8-neighbourhood) closes the one-pixel gaps thin or oblique
  // bone leaves at its threshold; the widened rim itself still counts as inside.
  std::vector<std::uint8_t> wall(static_cast<std::size_t>(n), 0);
  for (std::int64_t y = 0; y < ny; ++y) {
    for (std::int64_t x = 0; x < nx; ++x) {
      if (bone[y * nx + x] == 0) continue;
      for (std::int64_t yy = std::max<std::int64_t>(0, y - 1); yy <= std::min(ny - 1, y + 1); ++yy) {
        for (std::int64_t xx = std::max<std::int64_t>(0, x - 1); xx <= std::min(nx - 1, x + 1); ++xx)
          wall[yy * nx + xx] = 1;
      }
    }
  }
  std::vector<std::uint8_t> outside(static_cast<std::size_t>(n), 0);
  stack.clear();
  const auto push = [&](std::int64_t i) {
    if (wall[i] == 0 && outside[i] == 0) {
      outside[i] = 1;
      stack.push_back(i);
    }
  };
  const auto each_border_pixel = [&](const auto& f) {
    for (std::int64_t x = 0; x < nx; ++x) f(x), f((ny - 1) * nx + x);
    for (std::int64_t y = 0; y < ny; ++y) f(y * nx), f(y * nx + nx - 1);
  };
  each_border_pixel([&](std::int64_t i) {
    if (is_air(i)) push(i);
  });
  if (stack.empty()) each_border_pixel(push);  // no air at the border (outside the skull's wall)
  while (!stack.empty()) {
    const std::int64_t i = stack.back();
    stack.pop_back();
    const std::int64_t y = i / nx, x = i % nx;
    if (x > 0) push(i - 1);
    if (x + 1 < nx) push(i + 1);
    if (y > 0) push(i - nx);
    if (y + 1 < ny) push(i + nx);
  }
  for (std::int64_t i = 0; i < n; ++i) inside[i] = static_cast<std::uint8_t>(bone[i] == 0 && outside[i] == 0);
}

/// Pieces of bone (8-connected in plane) this small are not bone: the skull is thick and
/// continuous, but on thin slices a brain voxel's own noise (72 HU a frame at 0.47 mm) crosses
/// bone_hu now and then (1.1 % of them in one frame), and taken for bone it left the mask and took
/// its high value with it: the rest of the brain sat 2.2 HU low. Whole pieces, not pixels by their
/// neighbours, so that the ends of a thin line of bone stay and the skull's gaps do not widen.
constexpr std::int64_t kMinBonePixels = 4;

/// The buffers of one thread's slices.
struct SliceBuffers {
  std::vector<std::uint8_t> bone, inside;
  std::vector<float> value, weight, scratch;
  std::vector<std::int64_t> stack;
};

/// `o` (the slice's candidate pixels, all zero on entry): inside the skull and within [low, high]
/// on the slice smoothed over what is not bone. Only the box of the inside is tested, smoothed over
/// that box and the taps' reach around it. The reach keeps every value the whole slice's: a box
/// edge short of the slice's is never reached, and at the slice's own edge the rows and columns
/// are replicated alike.
template <typename T>
void window_inside(const T* slice, std::int64_t ny, std::int64_t nx, const std::vector<float>& kx,
                   const std::vector<float>& ky, float low, float high, SliceBuffers& b, std::uint8_t* o) {
  const MaskBox box = mask_box(b.inside.data(), 1, ny, nx);  // [y0, y1) × [x0, x1)
  if (box.empty()) return;
  const std::int64_t y0 = box.lo[1], y1 = box.hi[1], x0 = box.lo[2], x1 = box.hi[2];
  const auto rx = static_cast<std::int64_t>(kx.size() / 2), ry = static_cast<std::int64_t>(ky.size() / 2);
  const std::int64_t sy0 = std::max<std::int64_t>(0, y0 - ry), sy1 = std::min(ny, y1 + ry),
                     sx0 = std::max<std::int64_t>(0, x0 - rx), sx1 = std::min(nx, x1 + rx);
  const std::int64_t sny = sy1 - sy0, snx = sx1 - sx0;
  b.value.resize(static_cast<std::size_t>(sny * snx));
  b.weight.resize(b.value.size());
  for (std::int64_t y = 0; y < sny; ++y) {
    for (std::int64_t x = 0; x < snx; ++x) {
      const std::int64_t i = (sy0 + y) * nx + sx0 + x, j = y * snx + x;
      const bool is_bone = b.bone[i] != 0;
      b.weight[j] = is_bone ? 0.f : 1.f;
      b.value[j] = is_bone ? 0.f : static_cast<float>(slice[i]);
    }
  }
  if (kx.size() > 1 || ky.size() > 1) {
    smooth_plane(b.value.data(), sny, snx, kx, ky, b.scratch);
    smooth_plane(b.weight.data(), sny, snx, kx, ky, b.scratch);
  }
  for (std::int64_t y = y0; y < y1; ++y) {
    for (std::int64_t x = x0; x < x1; ++x) {
      const std::int64_t i = y * nx + x, j = (y - sy0) * snx + x - sx0;
      const float level = b.value[j] / std::max(b.weight[j], 1e-6f);
      o[i] = static_cast<std::uint8_t>(b.inside[i] != 0 && level >= low && level <= high);
    }
  }
}

}  // namespace

at::Tensor brain_mask(const at::Tensor& image, const Geometry& geometry, const PerfusionOptions& options) {
  const at::Tensor data = image.contiguous();  // any voxel type: each slice is read into float buffers
  const std::int64_t nz = data.size(0), ny = data.size(1), nx = data.size(2), n = ny * nx;
  const std::vector<float> kx = gaussian_taps(options.smoothing_mm / geometry.spacing[0]),
                           ky = gaussian_taps(options.smoothing_mm / geometry.spacing[1]);
  const auto bone_hu = static_cast<float>(options.bone_hu), low = static_cast<float>(options.brain_hu[0]),
             high = static_cast<float>(options.brain_hu[1]);
  at::Tensor candidate = at::empty({nz, ny, nx}, at::kByte);
  std::uint8_t* out = candidate.data_ptr<std::uint8_t>();
  // Slice by slice: bone, what it encloses, and the window. The window is tested on the image
  // smoothed over what is not bone alone (the image with bone set to 0, smoothed, divided by the
  // smoothed not-bone mask): a plain smoothing carries the skull's 1 000 HU into the cortex
  // beside it, which then leaves the window, and with it any core or penumbra that reaches the
  // brain's surface.
  for_voxel_type(data, [&](const auto* v) {
    at::parallel_for(0, nz, 1, [&](std::int64_t begin, std::int64_t end) {
      SliceBuffers b;
      b.bone.resize(static_cast<std::size_t>(n));
      b.inside.resize(static_cast<std::size_t>(n));
      for (std::int64_t z = begin; z < end; ++z) {
        const auto* slice = v + z * n;
        for (std::int64_t i = 0; i < n; ++i)
          b.bone[i] = static_cast<std::uint8_t>(static_cast<float>(slice[i]) > bone_hu);
        at::Tensor bone_slice =
            at::from_blob(b.bone.data(), {1, ny, nx}, at::kByte);  // 26-connected on one slice: 8 in plane
        remove_small_components(bone_slice, kMinBonePixels);
        const auto is_air = [slice](std::int64_t i) { return static_cast<float>(slice[i]) < kAirHu; };
        enclosed_by_bone(b.bone.data(), is_air, ny, nx, b.inside.data(), b.stack);
        std::uint8_t* o = out + z * n;
        std::fill(o, o + n, std::uint8_t{0});
        window_inside(slice, ny, nx, kx, ky, low, high, b, o);
      }
    });
  });
  return largest_component(candidate);
}

}  // namespace vitruvian::data::perfusion

namespace vitruvian::data {

PerfusionRegion perfusion_region(const Volume& first, const PerfusionOptions& options) {
  const at::Tensor image = (first.voxels.dim() == 4 ? first.voxels[0] : first.voxels).contiguous();
  const std::int64_t nz = image.size(0), ny = image.size(1), nx = image.size(2);
  const Box whole{{0, 0, 0}, {nz, ny, nx}};
  const at::Tensor brain = perfusion::brain_mask(image, first.geometry, options);
  const MaskBox brain_box = mask_box(brain.data_ptr<std::uint8_t>(), nz, ny, nx);
  if (brain_box.empty()) return {whole, {}};
  std::array<std::int64_t, 3> lo = brain_box.lo, hi;  // inclusive from here on
  for (int d = 0; d < 3; ++d) hi[d] = brain_box.hi[d] - 1;
  const auto include = [&](std::int64_t z, std::int64_t y, std::int64_t x) {
    const std::array<std::int64_t, 3> at{z, y, x};
    for (int d = 0; d < 3; ++d) lo[d] = std::min(lo[d], at[d]), hi[d] = std::max(hi[d], at[d]);
  };
  // The skull across the brain's slices, two more on each side: the border of the part then lies
  // outside all bone, as the whole grid's border does.
  const std::int64_t z0 = std::max<std::int64_t>(0, lo[0] - 2), z1 = std::min(nz - 1, hi[0] + 2);
  const auto bone = static_cast<float>(options.bone_hu);
  detail::for_voxel_type(image, [&](const auto* v) {
    for (std::int64_t z = z0; z <= z1; ++z) {
      for (std::int64_t y = 0; y < ny; ++y) {
        for (std::int64_t x = 0; x < nx; ++x) {
          if (static_cast<float>(v[(z * ny + y) * nx + x]) > bone) include(z, y, x);
        }
      }
    }
  });
  lo[0] = std::min(lo[0], z0), hi[0] = std::max(hi[0], z1);
  // In plane, the in-plane smoothing's reach beyond that, so every voxel inside the skull is
  // smoothed over the same neighbours as in the whole grid, and three voxels more: slack for a
  // skull voxel that crosses bone_hu in the baseline's mean but not in the first frame.
  const auto reach = [&](double spacing) {
    return static_cast<std::int64_t>(perfusion::gaussian_taps(options.smoothing_mm / spacing).size() / 2) + 3;
  };
  const std::array<std::int64_t, 3> margin{0, reach(first.geometry.spacing[1]), reach(first.geometry.spacing[0])};
  for (const auto* lps : {&options.aif_lps_mm, &options.vof_lps_mm}) {
    if (lps->empty()) continue;
    const std::int64_t voxel = perfusion::nearest_voxel(first.geometry, first.shape_zyx(), *lps);
    if (voxel < 0) continue;  // outside the series: the analysis says so
    // The voxel and its neighbours, so that rounding on the part's grid still finds it inside.
    const std::int64_t z = voxel / (ny * nx), y = (voxel / nx) % ny, x = voxel % nx;
    include(z - 1, y - 1, x - 1), include(z + 1, y + 1, x + 1);
  }
  Box box;
  const std::array<std::int64_t, 3> shape{nz, ny, nx};
  for (int d = 0; d < 3; ++d) {
    box.start_zyx[d] = std::max<std::int64_t>(0, lo[d] - margin[d]);
    box.size_zyx[d] = std::min(shape[d] - 1, hi[d] + margin[d]) - box.start_zyx[d] + 1;
  }
  return {box, box_view(brain, box).contiguous()};
}

}  // namespace vitruvian::data
