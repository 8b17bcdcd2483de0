// The perfusion grid: its layout, each block's curve by indicator dilution, the 4D series with
// counter-based noise, the truth maps and the ground-truth record.
#include "data/phantom_grid.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "data/phantom_perfusion.h"
#include "data/phantom_scene.h"
#include "data/random.h"

namespace vitruvian::data::phantom {
namespace {

// Levels (Kudo et al., Radiology 2013;267:201): CBF = 60 · CBV / MTT spans 2.5–87.5 mL/100 g/min.
constexpr std::array<double, 5> kCbv{1, 2, 3, 4, 5};               // mL/100 g, along y
constexpr std::array<double, 7> kMtt{3.43, 4, 4.8, 6, 8, 12, 24};  // s, along x
constexpr std::array<double, 4> kDelay{0, 1, 2, 3};                // s, along z (slabs); --delays sets others
constexpr int kCbvLevels = 5, kMttLevels = 7, kDelayLevels = 4, kBlocks = kCbvLevels * kMttLevels * kDelayLevels;

// Layout in voxels: air, the bone frame, background margin, then the vessel row and the blocks.
constexpr int kBlock = 8, kGap = 4, kVessel = 4, kSlicesPerDelay = 2;
constexpr int kAir = 2, kBone = 2, kMargin = 4, kInner = kAir + kBone + kMargin;
constexpr int kX = 2 * kInner + kMttLevels * kBlock + (kMttLevels - 1) * kGap;
constexpr int kBlocksY = kInner + kVessel + kGap;
constexpr int kY = kBlocksY + kCbvLevels * kBlock + (kCbvLevels - 1) * kGap + kInner;
constexpr int kZ = kDelayLevels * kSlicesPerDelay;
constexpr double kSpacingXy = 2.0, kSpacingZ = 5.0;

constexpr double kAirHu = -1000, kBoneHu = 1000, kBackgroundHu = 35, kBloodHu = 40;
constexpr double kNoiseSigma = 15;  // HU at --noise 1 for a 1 x 1 x 5 mm voxel, as the head-neck perfusion series
constexpr double kFrameInterval = 1.5;
constexpr double kVenousDelay = 5, kVenousDispersion = 2.5;
constexpr std::uint64_t kGridStream = 0x70657266677269ull;  // "perfgri"

GammaBolus grid_aif() {
  GammaBolus aif;
  aif.t0_s = 5, aif.alpha = 3, aif.beta_s = 1.5, aif.peak_hu = 300;
  return aif;
}

/// What a voxel holds: its curve is levels[class].
enum VoxelClass : int { kAirVoxel, kBoneVoxel, kBackground, kArtery, kVein, kFirstBlock };

struct Block {
  int index, cbv, mtt, delay;  // levels
  std::array<int, 3> origin;   // first voxel, z, y, x
  Flow flow(const std::array<double, 4>& delays) const {
    return {60.0 * kCbv[cbv] / kMtt[mtt], kMtt[mtt], delays[static_cast<std::size_t>(delay)]};
  }
};

/// Block n: MTT fastest (x), then CBV (y), then delay (z).
Block block(int n) {
  const int mtt = n % kMttLevels, cbv = (n / kMttLevels) % kCbvLevels, delay = n / (kMttLevels * kCbvLevels);
  return {
      n, cbv, mtt, delay, {delay * kSlicesPerDelay, kBlocksY + cbv * (kBlock + kGap), kInner + mtt * (kBlock + kGap)}};
}
constexpr std::array<int, 3> kBlockSize{kSlicesPerDelay, kBlock, kBlock};
constexpr std::array<int, 3> kArteryOrigin{0, kInner, kInner}, kVeinOrigin{0, kInner, kX - kInner - kVessel};
constexpr std::array<int, 3> kVesselSize{kZ, kVessel, kVessel};

bool inside(int z, int y, int x, const std::array<int, 3>& origin, const std::array<int, 3>& size) {
  return z >= origin[0] && z < origin[0] + size[0] && y >= origin[1] && y < origin[1] + size[1] && x >= origin[2] &&
         x < origin[2] + size[2];
}

/// The class of every voxel, [z, y, x] flattened.
std::vector<int> voxel_classes() {
  std::vector<int> classes(static_cast<std::size_t>(kZ) * kY * kX, kBackground);
  for (int z = 0; z < kZ; ++z) {
    for (int y = 0; y < kY; ++y) {
      for (int x = 0; x < kX; ++x) {
        const int edge = std::min({x, y, kX - 1 - x, kY - 1 - y});  // voxels from the image border
        int c = edge < kAir ? kAirVoxel : edge < kAir + kBone ? kBoneVoxel : kBackground;
        if (inside(z, y, x, kArteryOrigin, kVesselSize)) c = kArtery;
        if (inside(z, y, x, kVeinOrigin, kVesselSize)) c = kVein;
        classes[(static_cast<std::size_t>(z) * kY + y) * kX + x] = c;
      }
    }
  }
  for (int n = 0; n < kBlocks; ++n) {
    const Block b = block(n);
    for (int z = 0; z < kBlockSize[0]; ++z)
      for (int y = 0; y < kBlockSize[1]; ++y)
        for (int x = 0; x < kBlockSize[2]; ++x) {
          classes[(static_cast<std::size_t>(b.origin[0] + z) * kY + b.origin[1] + y) * kX + b.origin[2] + x] =
              kFirstBlock + n;
        }
  }
  return classes;
}

Volume volume_of(at::Tensor voxels, VoxelType type, std::string modality) {
  Volume v;
  v.voxels = std::move(voxels);
  v.type = type;
  v.modality = std::move(modality);
  const auto spacing = perfusion_grid_spacing();
  const auto shape = perfusion_grid_shape();
  v.geometry.spacing = spacing;
  for (int axis = 0; axis < 3; ++axis) {
    v.geometry.origin[axis] = -0.5 * static_cast<double>(shape[2 - axis] - 1) * spacing[axis];
  }
  return v;
}

/// The 4D series: each voxel its class's level in each frame plus Gaussian noise keyed by (seed,
/// frame, voxel) as in the rendered kinds, so any thread count gives the same bytes.
at::Tensor perfusion_series(const std::vector<int>& classes, const std::vector<std::vector<float>>& levels,
                            std::size_t frames, double sigma, std::uint64_t noise_seed, int threads) {
  const std::int64_t volume = static_cast<std::int64_t>(classes.size());
  at::Tensor series = at::empty({static_cast<std::int64_t>(frames), kZ, kY, kX}, at::kShort);
  std::int16_t* data = series.data_ptr<std::int16_t>();
  const float s = static_cast<float>(sigma);
#pragma omp parallel for num_threads(std::max(1, threads)) schedule(static)
  for (std::int64_t f = 0; f < static_cast<std::int64_t>(frames); ++f) {
    const std::uint64_t key = mix64(noise_seed ^ mix64(static_cast<std::uint64_t>(f)));
    std::int16_t* out = data + f * volume;
    float n1 = 0, n2 = 0;
    for (std::int64_t v = 0; v < volume; ++v) {
      if ((v & 1) == 0) normal_pair(key, static_cast<std::uint64_t>(v >> 1), n1, n2);
      const float value = levels[static_cast<std::size_t>(classes[v])][f] + s * ((v & 1) == 0 ? n1 : n2);
      out[v] = static_cast<std::int16_t>(std::clamp(std::nearbyint(value), -32768.f, 32767.f));
    }
  }
  return series;
}

nlohmann::json box_truth(const std::array<int, 3>& origin, const std::array<int, 3>& size) {
  return {{"origin_zyx", origin}, {"size_zyx", size}};
}

/// The truth record's fixed part: layout, levels, arterial input and venous output.
nlohmann::json grid_truth(const GammaBolus& aif, std::size_t frames, int residue_order,
                          const std::array<double, 4>& delays) {
  nlohmann::json artery = box_truth(kArteryOrigin, kVesselSize), vein = box_truth(kVeinOrigin, kVesselSize);
  artery["baseline_hu"] = kBloodHu, vein["baseline_hu"] = kBloodHu;
  vein["delay_s"] = kVenousDelay, vein["dispersion_mean_s"] = kVenousDispersion;
  vein["dispersion"] = "unit-area exponential, convolved with the delayed arterial input";
  vein["area_ratio_to_arterial"] = 1.0;
  return {{"layout",
           {{"shape_zyx", perfusion_grid_shape()},
            {"spacing_xyz_mm", perfusion_grid_spacing()},
            {"block_size_zyx", kBlockSize},
            {"block_gap_voxels", kGap},
            {"block_order",
             "index = (delay level * 5 + CBV level) * 7 + MTT level; label = index + 1; MTT along x, CBV "
             "along y, delay along z"},
            {"frame", {{"air_voxels", kAir}, {"bone_voxels", kBone}, {"bone_hu", kBoneHu}}},
            {"background_hu", kBackgroundHu},
            {"outside_blocks", "truth maps hold 0"}}},
          {"levels", {{"cbv_ml_100g", kCbv}, {"mtt_s", kMtt}, {"delay_s", delays}}},
          {"perfusion",
           {{"frames", frames},
            {"frame_interval_s", kFrameInterval},
            {"constants", perfusion_constants(residue_order)},
            {"arterial_input", aif.truth()},
            {"artery", artery},
            {"venous_output", vein}}}};
}

}  // namespace

std::array<double, 3> perfusion_grid_spacing() { return {kSpacingXy, kSpacingXy, kSpacingZ}; }
std::array<std::int64_t, 3> perfusion_grid_shape() { return {kZ, kY, kX}; }

PhantomStudy make_perfusion_grid(const PhantomOptions& options, std::int64_t index, nlohmann::json& truth) {
  const std::size_t frames = static_cast<std::size_t>(phantom_frames(options, PhantomKind::kPerfusionGrid));
  std::vector<double> times(frames);
  for (std::size_t t = 0; t < frames; ++t) times[t] = kFrameInterval * static_cast<double>(t);
  const GammaBolus aif = grid_aif();

  // Each class's level per frame: baseline plus its curve.
  std::vector<std::vector<float>> levels(kFirstBlock + kBlocks, std::vector<float>(frames));
  std::vector<double> arterial(frames);
  for (std::size_t t = 0; t < frames; ++t) arterial[t] = aif.at(times[t]);
  const auto venous = venous_curve(aif, kVenousDelay, kVenousDispersion, times);
  truth = grid_truth(aif, frames, options.residue_order, options.grid_delays_s);
  nlohmann::json blocks = nlohmann::json::array();
  at::Tensor cbf = at::zeros({kZ, kY, kX}, at::kFloat), cbv = at::zeros_like(cbf), mtt = at::zeros_like(cbf);
  at::Tensor delay = at::zeros_like(cbf), labels = at::zeros({kZ, kY, kX}, at::kByte);
  for (std::size_t t = 0; t < frames; ++t) {
    levels[kAirVoxel][t] = static_cast<float>(kAirHu), levels[kBoneVoxel][t] = static_cast<float>(kBoneHu);
    levels[kBackground][t] = static_cast<float>(kBackgroundHu);
    levels[kArtery][t] = static_cast<float>(kBloodHu + arterial[t]);
    levels[kVein][t] = static_cast<float>(kBloodHu + venous[t]);
  }
  for (int n = 0; n < kBlocks; ++n) {
    const Block b = block(n);
    Flow flow = b.flow(options.grid_delays_s);
    flow.residue_order = options.residue_order;
    const auto curve = tissue_curve(aif, flow, times);
    for (std::size_t t = 0; t < frames; ++t) levels[kFirstBlock + n][t] = static_cast<float>(kBackgroundHu + curve[t]);
    using at::indexing::Slice;
    const std::vector<at::indexing::TensorIndex> where{Slice(b.origin[0], b.origin[0] + kBlockSize[0]),
                                                       Slice(b.origin[1], b.origin[1] + kBlockSize[1]),
                                                       Slice(b.origin[2], b.origin[2] + kBlockSize[2])};
    cbf.index_put_(where, flow.cbf_ml_100g_min), cbv.index_put_(where, kCbv[b.cbv]);
    mtt.index_put_(where, flow.mtt_s), delay.index_put_(where, flow.delay_s), labels.index_put_(where, n + 1);
    nlohmann::json record = flow_truth(flow);
    record["label"] = n + 1;
    record["cbv_ml_100g"] = kCbv[b.cbv];  // the level itself, not CBF · MTT / 60 rounded
    record["cbv_sampled_ml_100g"] = sampled_cbv(curve, arterial);
    record["peak_enhancement_hu"] = *std::max_element(curve.begin(), curve.end());
    record.update(box_truth(b.origin, kBlockSize));
    blocks.push_back(std::move(record));
  }
  truth["blocks"] = std::move(blocks);

  const std::uint64_t noise_seed = seeded_rng({options.seed, static_cast<std::uint64_t>(index), kGridStream})();
  PhantomStudy study;
  Volume series = volume_of(
      perfusion_series(voxel_classes(), levels, frames, perfusion_noise_sigma(kNoiseSigma * options.noise, perfusion_grid_spacing()), noise_seed, options.threads),
      VoxelType::kInt16, "CT");
  series.frame_times_s = times;
  study.series.emplace_back("perfusion", std::move(series));
  study.series.emplace_back("truth_cbf", volume_of(cbf, VoxelType::kFloat32, ""));
  study.series.emplace_back("truth_cbv", volume_of(cbv, VoxelType::kFloat32, ""));
  study.series.emplace_back("truth_mtt", volume_of(mtt, VoxelType::kFloat32, ""));
  study.series.emplace_back("truth_delay", volume_of(delay, VoxelType::kFloat32, ""));
  study.labels = volume_of(labels, VoxelType::kUInt8, "");
  study.label_map = "blocks";
  truth["noise"] = {{"perfusion", {{"model", "gaussian"}, {"sigma", perfusion_noise_sigma(kNoiseSigma * options.noise, perfusion_grid_spacing())},
                                    {"sigma_reference_voxel", kNoiseSigma * options.noise}, {"reference_voxel_mm3", kNoiseReferenceVoxelMm3}}}};
  return study;
}

LabelTable perfusion_grid_labels() {
  LabelTable table;
  for (int n = 0; n < kBlocks; ++n) table[n + 1] = fmt::format("block_{:03d}", n + 1);
  return table;
}

namespace {

std::string joined(const std::vector<double>& values) {
  std::string out;
  for (const double v : values) out += (out.empty() ? "" : ", ") + fmt::format("{:g}", v);
  return out;
}

/// --describe's layout and levels: the CBF of every CBV × MTT pair.
std::string grid_notes() {
  std::string notes = fmt::format(
      "Blocks of {} × {} voxels ({:g} × {:g} mm) and {} slices ({:g} mm), {} background voxels apart: MTT along x, "
      "CBV along y, the arterial delay along z (one slab of {} slices per delay). Block index = (delay level × {} + "
      "CBV level) × {} + MTT level; its label in `blocks` is index + 1.\n\n",
      kBlock, kBlock, kBlock * kSpacingXy, kBlock * kSpacingXy, kSlicesPerDelay, kSlicesPerDelay * kSpacingZ, kGap,
      kSlicesPerDelay, kCbvLevels, kMttLevels);
  notes += "| level | values |\n|---|---|\n";
  notes += "| CBV (mL/100 g) | " + joined({kCbv.begin(), kCbv.end()}) + " |\n";
  notes += "| MTT (s) | " + joined({kMtt.begin(), kMtt.end()}) + " |\n";
  notes += "| arterial delay (s) | " + joined({kDelay.begin(), kDelay.end()}) +
           " (`--delays A,B,C,D` sets four others; a negative delay: the tissue's bolus arrives before the arterial "
           "input's) |\n\n";
  notes += "CBF = 60 · CBV / MTT (mL/100 g/min):\n\n| CBV \\ MTT |";
  for (const double m : kMtt) notes += fmt::format(" {:g} s |", m);
  notes += "\n|---|";
  for (int j = 0; j < kMttLevels; ++j) notes += "---|";
  notes += "\n";
  for (const double v : kCbv) {
    notes += fmt::format("| {:g} |", v);
    for (const double m : kMtt) notes += fmt::format(" {:.1f} |", 60 * v / m);
    notes += "\n";
  }
  const GammaBolus aif = grid_aif();
  notes += fmt::format(
      "\nArterial input: gamma variate, t0 {:g} s, α {:g}, β {:g} s, peak {:g} HU at {:g} s, in a {} × {}-voxel artery "
      "through every slice ({:g} HU before contrast); venous output: the same curve delayed {:g} s and dispersed by a "
      "unit-area exponential of mean {:g} s, in a {} × {}-voxel vein. Background {:g} HU inside a {}-voxel bone frame "
      "({:g} HU). {} frames {:g} s apart by default (`--frames` sets the count); the blocks' residue is the "
      "exponential, or with `--residue-order k` that of k compartments in series (Erlang order k, the same MTT); "
      "`--shape`, `--spacing` and `--deformation` do not apply.\n\n",
      aif.t0_s, aif.alpha, aif.beta_s, aif.peak_hu, aif.time_to_peak_s(), kVessel, kVessel, kBloodHu, kVenousDelay,
      kVenousDispersion, kVessel, kVessel, kBackgroundHu, kBone, kBoneHu, kPerfusionGridFrames, kFrameInterval);
  return notes;
}

}  // namespace

PhantomKindDescription describe_perfusion_grid() {
  PhantomKindDescription d;
  d.kind = PhantomKind::kPerfusionGrid;
  d.fixed_shape_zyx = perfusion_grid_shape();
  d.field_of_view_mm = {kX * kSpacingXy, kY * kSpacingXy, kZ * kSpacingZ};
  d.series.push_back({"perfusion", "CT", "int16", kNoiseSigma, "gaussian", true, 0});
  for (const char* truth : {"truth_cbf", "truth_cbv", "truth_mtt", "truth_delay"}) {
    d.series.push_back({truth, "", "float32", 0, "none", false, 0});
  }
  using Range = std::pair<double, double>;
  const Range zero{0, 0};
  auto constant = [&](double hu) { return std::vector<Range>{{hu, hu}, zero, zero, zero, zero}; };
  d.tissues = {{"air", "", 0, constant(kAirHu), ""},
               {"bone_frame", "", 0, constant(kBoneHu), ""},
               {"background", "", 0, constant(kBackgroundHu), ""},
               {"artery", "", 0, constant(kBloodHu), "arterial"},
               {"vein", "", 0, constant(kBloodHu), "venous"},
               {"tissue_block",
                fmt::format("block_001 … block_{:03d} (1 … {})", kBlocks, kBlocks),
                0,
                {{kBackgroundHu, kBackgroundHu},
                 {60 * kCbv.front() / kMtt.back(), 60 * kCbv.back() / kMtt.front()},
                 {kCbv.front(), kCbv.back()},
                 {kMtt.front(), kMtt.back()},
                 {kDelay.front(), kDelay.back()}},
                "tissue"}};
  for (const auto& [id, name] : perfusion_grid_labels()) d.labels.push_back(name);
  d.notes = grid_notes();
  return d;
}

}  // namespace vitruvian::data::phantom
