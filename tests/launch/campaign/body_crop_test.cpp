// The body crop's rule (the route's keys, else the model card's), its box in mm (per-axis
// margins on anisotropic grids), its widening to a window, and labels pasted back onto the grid.
#include "launch/campaign/body_crop.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "core/errors.h"

namespace vitruvian::campaign {
namespace {

using Zyx = std::array<std::int64_t, 3>;

/// A CT of air (-1000 HU) with a block of soft tissue at [z0, z1) x [y0, y1) x [x0, x1).
data::Volume ct_with_block(const Zyx& shape, const Zyx& lo, const Zyx& hi, const std::array<double, 3>& spacing_xyz) {
  data::Volume v;
  v.voxels = at::full({shape[0], shape[1], shape[2]}, -1000, at::kShort);
  v.voxels.slice(0, lo[0], hi[0]).slice(1, lo[1], hi[1]).slice(2, lo[2], hi[2]).fill_(40);
  v.type = data::VoxelType::kInt16;
  v.geometry.spacing = spacing_xyz;
  v.modality = "CT";
  return v;
}

TEST(BodyCrop, MarginInMillimetresPerAxis) {
  // x 1 mm, y 2 mm, z 5 mm: a 6 mm margin is 6, 3 and 2 voxels (rounded up).
  const data::Volume v = ct_with_block({20, 30, 40}, {5, 10, 12}, {15, 20, 30}, {1.0, 2.0, 5.0});
  const BodyCrop c = body_crop(v, 6.0, {1, 1, 1});
  EXPECT_EQ(c.box.start_zyx, (Zyx{3, 7, 6}));
  EXPECT_EQ(c.box.size_zyx, (Zyx{14, 16, 30}));
  EXPECT_NEAR(c.fraction, 14.0 * 16 * 30 / (20.0 * 30 * 40), 1e-12);
  EXPECT_FALSE(c.whole(v));
  EXPECT_EQ(c.to_json()["size_zyx"], nlohmann::json({14, 16, 30}));
  // Clamped to the grid; no margin: the block itself.
  EXPECT_EQ(body_crop(v, 100.0, {1, 1, 1}).box.size_zyx, (Zyx{20, 30, 40}));
  EXPECT_TRUE(body_crop(v, 100.0, {1, 1, 1}).whole(v));
  EXPECT_EQ(body_crop(v, 0.0, {1, 1, 1}).box.start_zyx, (Zyx{5, 10, 12}));
  EXPECT_THROW(body_crop(v, -1.0, {1, 1, 1}), InputError);
}

TEST(BodyCrop, WidenedToTheWindowAboutItsCentreAndClamped) {
  const data::Volume v = ct_with_block({20, 30, 40}, {1, 10, 30}, {3, 20, 38}, {1.0, 1.0, 1.0});
  const BodyCrop c = body_crop(v, 0.0, {8, 16, 12});
  EXPECT_EQ(c.box.size_zyx, (Zyx{8, 16, 12}));
  // z: [1, 3) widened to 8 would start at -2: clamped to 0. y: [10, 20) to 16 about its centre:
  // [7, 23). x: [30, 38) to 12 would end at 40: [28, 40).
  EXPECT_EQ(c.box.start_zyx, (Zyx{0, 7, 28}));
  // A window larger than the grid: the whole axis.
  EXPECT_EQ(body_crop(v, 0.0, {64, 1, 1}).box.size_zyx[0], 20);
}

TEST(BodyCrop, NoBodyIsTheWholeGrid) {
  const data::Volume v = ct_with_block({6, 7, 8}, {0, 0, 0}, {0, 0, 0}, {1.0, 1.0, 1.0});
  EXPECT_TRUE(body_crop(v, 10.0, {1, 1, 1}).whole(v));
}

TEST(BodyCrop, RouteKeysElseTheCardsRuleElseBody) {
  const CropRule body{"body", 4.5}, none{"none", 0}, unknown{};
  RouteConfig unset;  // neither crop nor crop_margin_mm given
  CropChoice c = resolve_crop(unset, body);
  EXPECT_TRUE(c.body);
  EXPECT_EQ(c.margin_mm, 4.5);
  EXPECT_EQ(c.from, "model card");
  EXPECT_EQ(c.margin_from, "model card");
  c = resolve_crop(unset, none);
  EXPECT_FALSE(c.body);
  EXPECT_EQ(c.from, "model card");
  c = resolve_crop(unset, unknown);
  EXPECT_TRUE(c.body);
  EXPECT_EQ(c.margin_mm, kDefaultCropMarginMm);
  EXPECT_EQ(c.from, "default");
  EXPECT_EQ(c.margin_from, "default");

  RouteConfig margin_only;  // the route's margin with the card's rule
  margin_only.crop_margin_mm = 0;
  c = resolve_crop(margin_only, body);
  EXPECT_TRUE(c.body);
  EXPECT_EQ(c.margin_mm, 0);
  EXPECT_EQ(c.from, "model card");
  EXPECT_EQ(c.margin_from, "route");

  RouteConfig whole;  // the route's rule wins over the card's
  whole.crop = "none";
  c = resolve_crop(whole, body);
  EXPECT_FALSE(c.body);
  EXPECT_EQ(c.from, "route");
  RouteConfig cut;
  cut.crop = "body";
  c = resolve_crop(cut, none);
  EXPECT_TRUE(c.body);
  EXPECT_EQ(c.margin_mm, kDefaultCropMarginMm);  // an uncropped card has no margin to give
  EXPECT_EQ(c.from, "route");
  EXPECT_EQ(c.margin_from, "default");
  c = resolve_crop(cut, body);
  EXPECT_EQ(c.margin_mm, 4.5);
  EXPECT_EQ(c.margin_from, "model card");
}

TEST(BodyCrop, LabelsPastedIntoBackground) {
  const data::Volume v = ct_with_block({10, 12, 14}, {2, 3, 4}, {8, 9, 10}, {0.7, 0.8, 2.5});
  const BodyCrop c = body_crop(v, 0.0, {1, 1, 1});
  data::Volume labels;
  labels.voxels = at::randint(1, 4, {6, 6, 6}, at::kByte);
  labels.type = data::VoxelType::kUInt8;
  const data::Volume whole = data::uncrop(labels, v, c.box);
  EXPECT_EQ(whole.voxels.sizes(), v.voxels.sizes());
  EXPECT_EQ(whole.voxels.scalar_type(), at::kByte);
  EXPECT_EQ(whole.geometry.spacing, v.geometry.spacing);
  EXPECT_TRUE(at::equal(whole.voxels.slice(0, 2, 8).slice(1, 3, 9).slice(2, 4, 10), labels.voxels));
  EXPECT_EQ(whole.voxels.sum().item<std::int64_t>(), labels.voxels.sum().item<std::int64_t>());  // zero outside
  labels.voxels = at::ones({5, 6, 6}, at::kByte);
  EXPECT_THROW(data::uncrop(labels, v, c.box), InternalError);
}

}  // namespace
}  // namespace vitruvian::campaign
