// Digital human body phantoms: synthetic multi-sequence CT and MR studies with exact labels,
// one kind per body region (docs/PHANTOMS.md). A study is a pure function of (options, index),
// so any number of ranks and threads produce the same bytes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/volume.h"
#include "data/volume_store.h"

namespace vitruvian::data {

/// The four anatomical kinds, a mix of them, and the perfusion-grid validation phantom (blocks
/// of known CBV, MTT and delay; not an anatomical scene and never part of a mix).
enum class PhantomKind { kChestCardiac, kHeadNeck, kAbdomenMr, kMsk, kMixed, kPerfusionGrid };

/// How a study is framed. kScan: as a scanner frames it — the field of view drawn per study
/// from the kind's range (or fixed by PhantomOptions::fov_xyz), the patient off-centre, the
/// table under them and, for some kinds, the arms at their sides; the spacing is the kind's at
/// --shape, the grid's shape follows from the field of view. kCentred: the grid is exactly
/// shape_zyx, centred on the patient, nothing outside the body.
enum class PhantomFraming { kScan, kCentred };
/// "scan", "centred".
std::string phantom_framing_name(PhantomFraming framing);
/// Inverse of phantom_framing_name; InputError naming `source` otherwise.
PhantomFraming phantom_framing_from_name(const std::string& name, const std::string& source);

/// How large a head-neck study's ischaemic lesion is drawn. kTypical: a territory of 26–36 mm
/// radius, the core 0.35–0.6 of it (cores of about 3–30 mL with a wide mismatch: every study
/// eligible by DEFUSE-3). kWide: territories of 26–46 mm, cores 0.35–1.0 of them, so that studies
/// fall on both sides of each DEFUSE-3 criterion (cores past 70 mL, mismatch ratios below 1.8).
enum class PhantomIschemia { kTypical, kWide };
/// "typical", "wide".
std::string phantom_ischemia_name(PhantomIschemia ischemia);
/// Inverse of phantom_ischemia_name; InputError naming `source` otherwise.
PhantomIschemia phantom_ischemia_from_name(const std::string& name, const std::string& source);

/// "chest-cardiac", "head-neck", "abdomen-mr", "msk", "mixed", "perfusion-grid".
std::string phantom_kind_name(PhantomKind kind);
/// Inverse of phantom_kind_name; InputError naming `source` and the known kinds otherwise.
PhantomKind phantom_kind_from_name(const std::string& name, const std::string& source);
/// The four anatomical study kinds, those a mixed dataset draws from.
const std::vector<PhantomKind>& phantom_study_kinds();

struct PhantomOptions {
  PhantomKind kind = PhantomKind::kChestCardiac;
  /// The grid at the kind's default field of view (kCentred: the grid itself).
  std::array<std::int64_t, 3> shape_zyx{128, 128, 128};
  /// Voxel spacing x, y, z in mm; a zero entry takes the kind's default field of view / shape on
  /// that axis.
  std::array<double, 3> spacing_xyz{0, 0, 0};
  PhantomFraming framing = PhantomFraming::kScan;
  /// kScan: the field of view x, y, z in mm; a zero entry is drawn per study from the kind's range.
  std::array<double, 3> fov_xyz{0, 0, 0};
  std::uint64_t seed = 0;
  double noise = 1.0;        ///< multiplies each series' default noise level, 0–10 (0: noise-free)
  double deformation = 1.0;  ///< multiplies the smooth random deformation, 0–2 (0: none)
  int perfusion_frames = 0;  ///< time points of 4D series; 0: the kind's default (phantom_frames)
  int residue_order = 1;     ///< perfusion-grid: Erlang order of the blocks' transit times (1: exponential)
  /// perfusion-grid: the arterial delay (s) of each of its four slabs, increasing; negative: the
  /// tissue's bolus arrives before the arterial input's
  std::array<double, 4> grid_delays_s{0, 1, 2, 3};
  PhantomIschemia ischemia = PhantomIschemia::kTypical;  ///< head-neck: the lesion's size range
  int threads = 1;  ///< OpenMP threads for one study

  /// InputError (naming the option) for shapes < 8 or > 2048, spacing < 0 or more anisotropic
  /// than 20:1, a field of view outside 50–2000 mm (or set with kCentred), frames other than 0 (default) or 2–200,
  /// noise outside 0–10, deformation outside 0–2, threads < 1, grid delays not increasing or outside −4 … 10 s (or set
  /// for another kind), an ischaemia range other than typical for a kind other than head-neck.
  void validate() const;
};

/// One generated study: its series share one grid (the reference series') and one label map.
struct PhantomStudy {
  std::string id;
  PhantomKind kind = PhantomKind::kChestCardiac;
  std::vector<std::pair<std::string, Volume>> series;  ///< in the kind's order; the first is the reference
  Volume labels;                                       ///< uint8, label ids of phantom_label_table()
  std::string label_map = "anatomy";                   ///< the label map's name (perfusion-grid: "blocks")
  std::string metadata_json;  ///< what was drawn: subject, nodules, lesions, plaques, ischemia, volumes

  /// The series named `name` ("perfusion"); InputError naming the study when it has none.
  Volume& series_named(const std::string& name);
};

/// The kind of study `index` (a mixed dataset draws it from the seed).
PhantomKind phantom_study_kind(const PhantomOptions& options, std::int64_t index);
/// "<kind>_<index, 5 digits>", e.g. "chest_cardiac_00003".
std::string phantom_study_id(const PhantomOptions& options, std::int64_t index);
/// The grid spacing study `index` gets (options.spacing_xyz, zeros filled from its kind; the
/// perfusion grid's own, whatever the options).
std::array<double, 3> phantom_spacing(const PhantomOptions& options, std::int64_t index);
/// The grid shape [z, y, x] study `index` gets (kCentred: options.shape_zyx; kScan: its field of
/// view / spacing; the perfusion grid's own).
std::array<std::int64_t, 3> phantom_shape(const PhantomOptions& options, std::int64_t index);
/// Time points of a 4D series of `kind`: options.perfusion_frames, or when 0 the kind's default
/// (30; perfusion-grid 40).
int phantom_frames(const PhantomOptions& options, PhantomKind kind);
PhantomStudy make_phantom_study(const PhantomOptions& options, std::int64_t index);

/// Label ids and names of a kind (all anatomical kinds' for kMixed); ids are the same in every
/// anatomical kind. The perfusion grid's are its blocks: id = block index + 1, "block_001", ...
LabelTable phantom_label_table(PhantomKind kind);
/// The name of every anatomical study's label map ("anatomy").
inline constexpr const char* kPhantomLabelMap = "anatomy";

/// What a kind draws, for docs and tests.
struct PhantomTissue {
  std::string name;   ///< "lv_blood", "cortical_bone", ...
  std::string label;  ///< the label it belongs to ("" for air outside the body)
  int label_id = 0;
  std::vector<std::pair<double, double>> ranges;  ///< per series: noise-free value range (4D: before contrast)
  /// 4D series: "arterial", "tissue", "penumbra", "core", "venous" or "" (constant).
  std::string enhancement;
};
struct PhantomSeriesDescription {
  std::string name, modality, type;
  double noise_sigma = 0;  ///< at noise 1
  std::string noise_model;  ///< "gaussian" or "rician"
  bool four_d = false;
  /// MR: values are multiplied by a smooth bias field within [(1 − a)³, (1 + a)³].
  double bias_amplitude = 0;
};
struct PhantomKindDescription {
  PhantomKind kind = PhantomKind::kChestCardiac;
  std::array<double, 3> field_of_view_mm{};  ///< x, y, z: the default grid's extent
  /// Scan framing: the range each study's field of view is drawn from (x; y keeps the default's
  /// aspect), and its z coverage; {0, 0}: not framed (the perfusion grid).
  std::array<double, 2> fov_x_range_mm{}, fov_z_range_mm{};
  double arms_down_share = 0;  ///< scan framing: the share of studies with the arms at the sides
  std::vector<PhantomSeriesDescription> series;
  std::vector<PhantomTissue> tissues;
  std::vector<std::string> labels;           ///< every label a study of this kind can contain
  std::vector<std::string> optional_labels;  ///< of those, the ones drawn 0–n times (nodules, lesions, plaques)
  std::string focus_label;          ///< previews cut through this label's centre
  /// A grid of its own that --shape and --spacing do not change ({0, 0, 0}: they do).
  std::array<std::int64_t, 3> fixed_shape_zyx{};
  std::string notes;  ///< further Markdown for --describe (the perfusion grid's layout and levels)
};
PhantomKindDescription describe_phantom_kind(PhantomKind kind);

}  // namespace vitruvian::data
