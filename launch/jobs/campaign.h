// The inference campaign's configuration (`vitruvian infer --campaign campaign.yaml`): inputs,
// outputs, sliding-window settings, and routes that say which model runs on which series of a
// study, with each route's postprocessing and the structures reported as lesions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace vitruvian::jobs {

/// One model (or an existing label map) applied to the studies it matches.
struct Route {
  std::string name;   ///< the label map written for it ("organs", "heart")
  std::filesystem::path model;  ///< an exported model folder (model.pt + model.json)
  std::string labels;           ///< instead of a model: measure this existing label map of the study
  /// The series fed to the model, in channel order; empty: the model card's channel names.
  std::vector<std::string> series;
  /// Instead of names: the study's first 3D series of this modality (single-channel models).
  std::string modality;
  /// Only studies whose metadata names this task or phantom kind ("" for all).
  std::string task;
  std::vector<std::string> largest_component;  ///< classes kept to their largest component ("all": every class)
  std::vector<std::string> fill_holes;         ///< classes whose enclosed background is filled ("all")
  std::vector<std::string> lesions;            ///< classes reported as lesions (components with sizes)
  /// Label map with the truth, for Dice ("" : the model card's label map when the study has it;
  /// "none": no Dice).
  std::string truth;
  std::string origin;  ///< "campaign.yaml:12", for messages
};

/// Coronary calcium scoring from a non-contrast CT (Agatston, per artery).
struct CalciumConfig {
  std::string series;                   ///< the non-contrast CT series; "" turns scoring off
  std::vector<std::string> arteries;    ///< structures (from any route) that are coronary arteries
  std::string region = "heart";         ///< without segmented arteries: score around this structure
  double artery_margin_mm = 3;          ///< calcium counted within this distance of an artery
  double region_margin_mm = 5;          ///< or of the region structure
};

struct CampaignConfig {
  /// HDF5 datasets or shard indexes, NIfTI files, folders of NIfTI files, DICOM study folders.
  std::vector<std::filesystem::path> inputs;
  std::filesystem::path output;
  std::vector<std::string> studies;     ///< only these study ids (empty: all)
  std::string series_name = "image";    ///< series name of plain NIfTI inputs
  std::string modality;                 ///< modality of plain NIfTI inputs ("CT", "MR")
  double overlap = 0.5;
  std::int64_t batch = 2;               ///< windows per forward call
  std::string mirror_axes;              ///< test-time mirroring: any of "zyx" (up to 8 flips)
  std::string accumulation = "fp32";    ///< fp32 | fp16
  std::string precision = "fp32";       ///< forward passes: fp32 | bf16 | fp16 (CUDA: autocast; CPU: bf16 = whole-bf16 network, fp16 = fp32)
  bool channels_last = false;           ///< channels-last 3D weights and windows
  /// CPU forward passes: "auto" runs plain U-Nets in fp32 on oneDNN's primitives directly
  /// (models/onednn_unet.h) and everything else on LibTorch's ops; "libtorch" always LibTorch's.
  std::string engine = "auto";
  std::string memory_limit = "3G";      ///< per rank: a study whose estimate exceeds it fails with the figures
  bool write_nifti = false;             ///< also <study>/<route>.nii.gz
  bool thumbnails = true;
  std::vector<Route> routes;
  CalciumConfig calcium;
};

/// Reads a campaign file. Relative paths are taken from the file's folder. ConfigError naming
/// the file and line of the first unknown key, bad value or missing field.
CampaignConfig read_campaign(const std::filesystem::path& path);

/// Throws ConfigError for values out of range (overlap, batch, mirror axes, accumulation,
/// memory limit) or a route without a model or label map, naming `source`.
void validate_campaign(const CampaignConfig& config, const std::string& source);

/// The campaign as YAML (written to the output folder as campaign.yaml).
std::string campaign_yaml(const CampaignConfig& config);

}  // namespace vitruvian::jobs
