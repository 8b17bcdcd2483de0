// The inference campaign's configuration (`vitruvian infer --campaign campaign.yaml`, every key
// in launch/configs/campaign_example.yaml): inputs, outputs, sliding-window settings, and routes
// that say which model runs on which series of a study. Declared once through visit(), like the
// training and runtime sections: YAML, `--set` overrides, flags and the resolved campaign.yaml
// all come from the same declaration.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/perfusion/perfusion.h"
#include "launch/pacs/pacs_config.h"

namespace vitruvian::campaign {

/// crop_margin_mm of a route that sets none, and the margin it then gets without a card's.
inline constexpr double kCropMarginFromCard = -1;
inline constexpr double kDefaultCropMarginMm = 10;

/// One model (or an existing label map) applied to the studies it matches.
struct RouteConfig {
  std::string name;             ///< the label map written for it ("organs", "heart")
  std::filesystem::path model;  ///< an exported model folder (model.pt + model.json)
  std::string labels;           ///< instead of a model: measure this existing label map of the study
  /// Instead of a model: an analysis that runs no network ("perfusion": CT perfusion maps, core
  /// and penumbra from the study's 4D series; its keys in `perfusion`).
  std::string analysis;
  data::PerfusionOptions perfusion;  ///< the perfusion analysis's thresholds (analysis: perfusion)
  /// The series fed to the model, in channel order; empty: the model card's channel names.
  std::vector<std::string> series;
  /// Instead of names: the study's first 3D series of this modality (single-channel models).
  std::string modality;
  /// Only studies whose metadata names this task or phantom kind (empty: all).
  std::string task;
  std::vector<std::string> largest_component;  ///< classes kept to their largest component ("all": every class)
  std::vector<std::string> fill_holes;         ///< classes whose enclosed background is filled ("all")
  std::vector<std::string> lesions;            ///< classes reported as lesions (components with sizes)
  /// Model routes: "body" runs the network on the body's bounding box (data::body_box on the
  /// first series, grown by crop_margin_mm) and fills the rest with background; "none" on the
  /// whole grid; "" (not set): the model card's crop rule, "body" when the card has none
  /// (resolve_crop, body_crop.h).
  std::string crop;
  /// The body's box grown by this much (mm) on every side; kCropMarginFromCard (not set): the
  /// card's margin when it records a body crop, else kDefaultCropMarginMm.
  double crop_margin_mm = kCropMarginFromCard;
  /// Label map with the truth, for Dice (empty: the model card's label map when the study has
  /// it; "none": no Dice).
  std::string truth;
  /// Where the route was declared ("campaign.yaml:12", "--model DIR"), for messages; not a key.
  std::string origin;

  void visit(ConfigVisitor& v);
  /// `origin` when known, else "route <name>".
  std::string where() const;
};

/// Coronary calcium scoring from a non-contrast CT (Agatston, per artery).
struct CalciumConfig {
  std::string series;                 ///< the non-contrast CT series; empty turns scoring off
  std::vector<std::string> arteries;  ///< structures (from any route) that are coronary arteries
  std::string region = "heart";       ///< without segmented arteries: score around this structure
  double artery_margin_mm = 3;        ///< calcium counted within this distance of an artery
  double region_margin_mm = 5;        ///< or of the region structure

  void visit(ConfigVisitor& v);
};

/// Studies from somewhere other than `input`: a PACS queried at set-up.
struct SourceConfig {
  pacs::PacsSourceConfig pacs;  ///< `source.pacs`: endpoint and query (protocol empty: none)

  void visit(ConfigVisitor& v);
};

/// Outputs a campaign can write per study besides report.json (each one Sink, campaign/sink.h).
const std::vector<std::string>& output_names();

struct CampaignConfig {
  /// HDF5 datasets or shard indexes, NIfTI files, folders of NIfTI files, DICOM folders.
  std::vector<std::filesystem::path> inputs;
  std::filesystem::path output;
  std::vector<std::string> studies;   ///< only these study ids (empty: all)
  std::string series_name = "image";  ///< series name of plain NIfTI inputs
  std::string modality;               ///< modality of plain NIfTI inputs ("CT", "MR")
  double overlap = 0.5;
  std::int64_t batch = 2;             ///< windows per forward call
  std::string mirror_axes;            ///< test-time mirroring: any of "zyx" (up to 8 flips)
  std::string accumulation = "fp32";  ///< fp32 | fp16
  /// Forward passes: fp32 | bf16 | fp16 (CUDA: autocast; CPU: bf16 = whole-bf16 network, fp16 = fp32).
  std::string precision = "fp32";
  bool channels_last = false;  ///< channels-last 3D weights and windows
  /// CPU forward passes: "auto" runs plain U-Nets in fp32 on oneDNN's primitives directly
  /// (models/onednn_unet.h) and everything else on LibTorch's ops; "libtorch" always LibTorch's.
  std::string engine = "auto";
  std::string memory_limit = "3G";  ///< per rank: a study whose estimate exceeds it fails with the figures
  /// Per study besides report.json, from output_names(): "hdf5" (labels.h5), "nifti"
  /// (<route>.nii.gz), "thumbnail" (thumbnail.png), "dicom_seg" (<route>.seg.dcm), "dicom_pmap"
  /// (<map>.pm.dcm, a route's maps), "dicom_sr" (report.sr.dcm); the DICOM ones need DICOM input.
  std::vector<std::string> outputs{"hdf5", "thumbnail"};
  std::vector<RouteConfig> routes;
  CalciumConfig calcium;
  SourceConfig source;          ///< studies from a PACS (besides or instead of `input`)
  pacs::PacsEndpoint store_to;  ///< a PACS that receives every DICOM file a study's outputs hold
  /// Several jobs on one output folder: a study claim whose heartbeat (every timeout/5) is older
  /// than this many seconds is taken over by another job (launch/campaign/study_claims.h).
  double claim_timeout_s = 300;

  void visit(ConfigVisitor& v);
  /// ConfigError naming the key (and the route's origin) of the first bad value: overlap,
  /// batch, mirror axes, accumulation, precision, engine, memory limit, outputs, routes without
  /// a model or label map, repeated or unusable route names, calcium margins, no inputs (nor a
  /// PACS source) or output, a PACS source or store_to without its host/port/AE titles or url.
  void validate() const;
  /// What a study's outputs depend on besides its input and the models' files: every key but
  /// input, output, studies, source, store_to and claim_timeout_s, as YAML (part of the campaign's fingerprint).
  std::string settings_yaml() const;
  /// The whole campaign as YAML (saved as OUT/campaign.yaml).
  std::string yaml() const;
};

/// Fills `config` from `sources` (the campaign's keys at the top level) and records each
/// route's origin. Does not validate.
void read_campaign(ConfigSources& sources, CampaignConfig& config);

}  // namespace vitruvian::campaign
