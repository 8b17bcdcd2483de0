// The campaign: set-up agreed by all ranks (options, inputs, output folder, models), then a
// dynamic queue of pending studies (largest first) through the per-study pipeline, then rank 0's
// summary. A study's folder under OUT/studies is written through write_checkpoint, so it exists
// only complete, with a manifest of checksums that a rerun verifies before skipping it.
#include "launch/jobs/infer.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "core/atomic_file.h"
#include "core/checkpoint.h"
#include "core/comm/work_queue.h"
#include "core/errors.h"
#include "core/progress.h"
#include "data/loader.h"
#include "data/nifti_io.h"
#include "data/preprocess.h"
#include "data/preview.h"
#include "data/study_import.h"
#include "data/volume_store.h"
#include "launch/jobs/arguments.h"
#include "models/measures.h"
#include "models/metrics.h"
#include "models/onednn_unet.h"
#include "models/postprocess.h"
#include "models/precision.h"
#include "models/registry.h"
#include "models/stitcher.h"

namespace vitruvian::jobs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

/// Lesions listed per structure in a report (largest first); `count` gives them all.
constexpr std::size_t kLesionsListed = 100;

/// Studies with at least this many windows show a progress bar of their own on rank 0.
constexpr std::int64_t kWindowBarFrom = 500;

/// Escapes text for HTML.
std::string html_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

/// A record under OUT/failed: "<id>.json", not a temporary of a killed write.
bool is_failure_record(const fs::path& path) {
  const std::string name = path.filename().string();
  return path.extension() == ".json" && name.find(".tmp.") == std::string::npos && name.front() != '.';
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

bool is_hdf5_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  return in.gcount() == 8 && std::string(magic, 8) == std::string("\x89HDF\r\n\x1a\n", 8);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A model route's network, loaded once per rank.
struct LoadedModel {
  models::UNet net{nullptr};
  models::ModelCard card;
  std::shared_ptr<models::OneDnnUNet> onednn;  ///< the CPU engine, where it applies
};

/// One study of the campaign: which input holds it and how big it is.
struct StudyRef {
  std::size_t index = 0;  ///< position in the campaign's list of studies
  std::size_t store = 0;
  std::string id;
  std::int64_t voxels = 0;
};

/// A route's result on one study.
struct RouteResult {
  std::string reference;       ///< series whose grid the label map is on
  data::Volume labels;         ///< uint8 (or uint16) on the reference grid
  std::vector<std::string> class_names;
  json report = json::object();
  json timing = json::object();
};

std::array<double, 3> lps_of(const data::Geometry& g, const std::array<double, 3>& zyx) {
  const auto m = g.index_to_lps();
  const double i = zyx[2], j = zyx[1], k = zyx[0];
  return {m[0] * i + m[1] * j + m[2] * k + m[3], m[4] * i + m[5] * j + m[6] * k + m[7], m[8] * i + m[9] * j + m[10] * k + m[11]};
}

std::array<double, 3> spacing_zyx(const data::Geometry& g) { return {g.spacing[2], g.spacing[1], g.spacing[0]}; }

bool same_grid(const data::Volume& a, const data::Volume& b) {
  return a.shape_zyx() == b.shape_zyx() && a.geometry.matches(b.geometry);
}

/// `v` to `decimals` places (divided by an exact power of ten, so it prints as written).
double rounded(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

int mirror_mask(const std::string& axes) {
  int mask = 0;
  if (axes.find('z') != std::string::npos) mask |= 1;
  if (axes.find('y') != std::string::npos) mask |= 2;
  if (axes.find('x') != std::string::npos) mask |= 4;
  return mask;
}

/// `labels` (class indices) with class c written as ids[c]: uint8 when every id fits, else uint16.
data::Volume relabel(const data::Volume& labels, const std::vector<int>& ids) {
  const bool narrow = *std::max_element(ids.begin(), ids.end()) <= 255;
  data::Volume out;
  out.geometry = labels.geometry;
  out.type = narrow ? data::VoxelType::kUInt8 : data::VoxelType::kUInt16;
  out.voxels = at::empty(labels.voxels.sizes(), narrow ? at::kByte : at::kInt);
  const at::Tensor in = labels.voxels.scalar_type() == at::kByte ? labels.voxels.contiguous() : labels.voxels.to(at::kInt).contiguous();
  const auto map = [&](const auto* from, auto* to) {
    for (std::int64_t i = 0; i < in.numel(); ++i) to[i] = static_cast<std::remove_pointer_t<decltype(to)>>(ids[static_cast<std::size_t>(from[i])]);
  };
  if (in.scalar_type() == at::kByte) {
    narrow ? map(in.data_ptr<std::uint8_t>(), out.voxels.data_ptr<std::uint8_t>()) : map(in.data_ptr<std::uint8_t>(), out.voxels.data_ptr<std::int32_t>());
  } else {
    narrow ? map(in.data_ptr<std::int32_t>(), out.voxels.data_ptr<std::uint8_t>()) : map(in.data_ptr<std::int32_t>(), out.voxels.data_ptr<std::int32_t>());
  }
  return out;
}

/// Classes of `names` selected by a route's list ("all" for every class but background).
std::set<std::int64_t> selected(const std::vector<std::string>& list, const std::vector<std::string>& names, const std::string& what,
                                const Route& route) {
  std::set<std::int64_t> out;
  for (const auto& item : list) {
    if (item == "all") {
      for (std::size_t c = 1; c < names.size(); ++c) out.insert(static_cast<std::int64_t>(c));
      continue;
    }
    const auto it = std::find(names.begin(), names.end(), item);
    if (it == names.end() || it == names.begin()) {
      throw ConfigError(route.origin.empty() ? "route " + route.name : route.origin,
                        fmt::format("{} names '{}', which the route's classes do not have ({})", what, item,
                                    fmt::join(names.begin() + 1, names.end(), ", ")));
    }
    out.insert(it - names.begin());
  }
  return out;
}

/// Everything a rank needs to process studies.
class Campaign {
 public:
  Campaign(const JobContext& context, CampaignConfig config) : context_(context), config_(std::move(config)) {
    window_.overlap = config_.overlap;
    window_.batch = config_.batch;
    window_.mirror_axes = mirror_mask(config_.mirror_axes);
    accumulation_ = models::accumulation_from_name(config_.accumulation, "accumulation");
    precision_ = models::precision_from_name(config_.precision, "precision");
    memory_limit_ = parse_size(config_.memory_limit, "memory_limit");
  }

  void open_inputs(const std::vector<fs::path>& stores) {
    data::ReadOptions read;
    read.chunk_cache_bytes = 0;  // each study is read once
    for (const auto& path : stores) stores_.push_back(std::make_unique<data::VolumeStore>(path, read));
  }

  /// What a finished study's outputs depend on besides its input: the routes, the window and
  /// calcium settings, each model's weights (checksum). A verified study with another
  /// fingerprint is redone.
  const std::string& fingerprint() const { return fingerprint_; }

  void load_models() {
    for (const auto& route : config_.routes) {
      if (route.model.empty()) continue;
      const std::string key = route.model.string();
      if (models_.count(key) != 0) continue;
      auto [net, card] = models::load_model(route.model);
      net->to(context_.device);
      if (models::whole_bfloat16(precision_, context_.device)) net->to(at::kBFloat16);
      if (precision_ == models::Precision::kBFloat16 && context_.device.is_cpu() && !models::cpu_bfloat16_convolutions() &&
          context_.env.rank() == 0) {
        spdlog::warn("model {}: this CPU has no bfloat16 convolutions (oneDNN needs AVX-512); running it in fp32", key);
      }
      if (config_.channels_last) models::to_channels_last_3d(*net);
      net->eval();
      std::shared_ptr<models::OneDnnUNet> onednn;
      if (context_.device.is_cpu() && config_.engine == "auto" && !config_.channels_last) {
        std::string why;
        onednn = models::OneDnnUNet::create(*net, &why);
        if (context_.env.rank() == 0) {
          if (onednn) {
            spdlog::info("model {}: CPU forward on oneDNN's primitives directly", key);
          } else {
            spdlog::info("model {}: CPU forward on LibTorch's ops ({})", key, why);
          }
        }
      }
      models_[key] = LoadedModel{net, card, onednn};
      model_sums_[key] = file_checksum(route.model / "model.pt") + file_checksum(route.model / "model.json");
    }
    CampaignConfig settings = config_;
    settings.inputs.clear();
    settings.output.clear();
    settings.studies.clear();
    std::string text = campaign_yaml(settings);
    for (const auto& [model, sum] : model_sums_) text += model + " " + sum + "\n";
    fingerprint_ = text_checksum(text);
    // Route options that name classes must name the model's.
    for (const auto& route : config_.routes) {
      if (route.model.empty()) continue;
      const auto& names = models_.at(route.model.string()).card.class_names;
      selected(route.largest_component, names, "largest_component", route);
      selected(route.fill_holes, names, "fill_holes", route);
      selected(route.lesions, names, "lesions", route);
    }
  }

  /// Studies of all inputs (filtered by config.studies), in input order. InputError for a
  /// repeated id or a listed study no input has.
  std::vector<StudyRef> studies(const std::set<std::string>& failed_import) const {
    std::vector<StudyRef> out;
    std::map<std::string, std::size_t> position;  // id -> index in out
    for (std::size_t s = 0; s < stores_.size(); ++s) {
      for (const auto& info : stores_[s]->studies()) {
        if (!position.emplace(info.id, out.size()).second) {
          throw InputError(stores_[s]->path().string(), "study '" + info.id + "' is also in an earlier input; study ids must be unique");
        }
        out.push_back({0, s, info.id, info.voxels});
      }
    }
    if (config_.studies.empty()) return numbered(out);
    std::vector<StudyRef> kept;
    std::set<std::string> listed;
    for (const auto& id : config_.studies) {
      if (!listed.insert(id).second || failed_import.count(id) != 0) continue;  // repeated, or recorded as failed
      const auto it = position.find(id);
      if (it == position.end()) throw InputError("studies", "study '" + id + "' is in none of the inputs");
      kept.push_back(out[it->second]);
    }
    return numbered(kept);
  }

  static std::vector<StudyRef> numbered(std::vector<StudyRef> refs) {
    for (std::size_t i = 0; i < refs.size(); ++i) refs[i].index = i;
    return refs;
  }

  /// Runs every route on the study and writes its folder (labels.h5, report.json, thumbnail.png,
  /// NIfTI copies) atomically. Throws on any failure, leaving nothing behind.
  json process(const StudyRef& ref) {
    const auto start = Clock::now();
    const data::VolumeStore& store = *stores_[ref.store];
    const data::StudyInfo& info = store.study(ref.id);
    std::map<std::string, data::Volume> series;
    double read_s = 0;
    const auto get = [&](const std::string& name) -> const data::Volume& {
      auto it = series.find(name);
      if (it == series.end()) {
        const auto t = Clock::now();
        it = series.emplace(name, store.read_series(ref.id, name)).first;
        read_s += seconds_since(t);
      }
      return it->second;
    };
    const std::string task = study_task(info);
    json report = {{"study", ref.id}, {"input", store.path().string()}, {"task", task}, {"campaign_fingerprint", fingerprint_}};
    json series_json = json::object();
    for (const auto& s : info.series) {
      series_json[s.name] = {{"modality", s.modality},
                             {"shape", s.shape},
                             {"spacing_mm", s.geometry.spacing},
                             {"type", data::voxel_type_name(s.type)}};
    }
    report["series"] = series_json;
    json notes = json::array();
    std::vector<std::pair<const Route*, RouteResult>> results;
    for (const auto& route : config_.routes) {
      if (!route.task.empty() && route.task != task) continue;
      std::optional<RouteResult> r = route.model.empty() ? measure_existing(route, store, info, notes)
                                                         : run_model(route, store, info, get, notes);
      if (r) results.emplace_back(&route, std::move(*r));
    }
    json routes = json::object();
    json timing = {{"read_s", 0.0}, {"routes", json::object()}};
    const auto measure_start = Clock::now();
    for (auto& [route, r] : results) {
      r.report["structures"] = structures(*route, r, info, get);
      routes[route->name] = r.report;
      timing["routes"][route->name] = r.timing;
    }
    report["routes"] = routes;
    timing["measure_s"] = seconds_since(measure_start);
    if (!config_.calcium.series.empty() && info.find_series(config_.calcium.series) != nullptr) {
      const auto calcium_start = Clock::now();
      report["calcium"] = calcium(results, get(config_.calcium.series), notes);
      timing["calcium_s"] = seconds_since(calcium_start);
    }
    if (results.empty()) notes.push_back("no route applies to this study (its series or task match none)");
    report["notes"] = notes;

    // Outputs, through a temporary folder renamed into place with its manifest.
    const auto write_start = Clock::now();
    write_checkpoint(config_.output / "studies", ref.id, [&](const fs::path& dir) {
      if (!results.empty()) {
        data::StorageOptions storage;
        storage.lz4 = true;  // several times faster to write than deflate; setup.sh installs the plugin
        data::VolumeWriter writer(dir / "labels.h5", storage);
        // One label table for the file: the dataset's, plus an id for every model class name it
        // lacks; model routes' class indices are written as those ids.
        data::LabelTable table = store.label_table();
        std::map<std::string, int> id_of;
        for (const auto& [id, name] : table) id_of.emplace(name, id);
        int next = table.empty() ? 1 : table.rbegin()->first + 1;
        for (const auto& [route, r] : results) {
          if (route->model.empty()) continue;
          for (std::size_t c = 1; c < r.class_names.size(); ++c) {
            if (id_of.emplace(r.class_names[c], next).second) table[next++] = r.class_names[c];
          }
        }
        writer.set_label_table(table);
        std::set<std::string> added;
        for (const auto& [route, r] : results) {
          if (added.insert(r.reference).second) writer.add_series(ref.id, r.reference, get(r.reference), store.path().string());
          data::Volume written = r.labels;
          if (!route->model.empty()) {
            std::vector<int> ids{0};
            for (std::size_t c = 1; c < r.class_names.size(); ++c) ids.push_back(id_of.at(r.class_names[c]));
            written = relabel(r.labels, ids);
          }
          writer.add_label(ref.id, route->name, r.reference, written, route->name);
          if (config_.write_nifti) data::write_nifti(dir / (route->name + ".nii.gz"), written);
        }
        writer.commit();
        if (config_.thumbnails) {
          const auto& [route, first] = results.front();
          const at::Tensor labels = first.labels.voxels;
          write_png(dir / "thumbnail.png",
                    data::study_picture({{first.reference, get(first.reference)}}, labels, data::label_centre(labels)));
        }
      }
      timing["read_s"] = read_s;
      timing["write_s"] = seconds_since(write_start);
      timing["total_s"] = seconds_since(start);
      timing["rank"] = context_.env.rank();
      report["timing"] = timing;
      write_file_atomic(dir / "report.json", report.dump(2));
    });
    return report;
  }

 private:
  /// The study's task: its metadata's "task", else the phantom kind ("" when neither).
  static std::string study_task(const data::StudyInfo& info) {
    if (info.metadata_json.empty()) return "";
    try {
      const json m = json::parse(info.metadata_json);
      if (m.contains("task") && m["task"].is_string()) return m["task"];
      const json& phantom = m.contains("phantom") ? m["phantom"] : m;  // phantoms: {"phantom": {"generator": {"kind"}}}
      if (phantom.contains("generator") && phantom["generator"].contains("kind")) return phantom["generator"]["kind"];
    } catch (const json::exception&) {
    }
    return "";
  }

  template <typename Get>
  std::optional<RouteResult> run_model(const Route& route, const data::VolumeStore& store, const data::StudyInfo& info, Get& get,
                                       json& notes) {
    LoadedModel& model = models_.at(route.model.string());
    const models::ModelCard& card = model.card;
    std::vector<std::string> channels = route.series.empty() ? card.channels : route.series;
    if (!route.modality.empty()) {
      channels.clear();
      for (const auto& s : info.series) {
        if (s.modality == route.modality && s.shape.size() == 3) {
          channels.push_back(s.name);
          break;
        }
      }
    }
    if (channels.size() != card.channels.size() || channels.empty()) {
      notes.push_back(fmt::format("route {}: needs {} series ({}), found none to match", route.name, card.channels.size(),
                                  route.modality.empty() ? fmt::format("{}", fmt::join(card.channels, ", ")) : route.modality));
      return std::nullopt;
    }
    for (const auto& c : channels) {
      if (info.find_series(c) == nullptr) {
        notes.push_back(fmt::format("route {}: the study has no series '{}'", route.name, c));
        return std::nullopt;
      }
    }
    const auto start = Clock::now();
    const data::Volume& reference = get(channels[0]);
    std::vector<at::Tensor> inputs;
    for (std::size_t ch = 0; ch < channels.size(); ++ch) {
      const data::Volume& v = get(channels[ch]);
      if (v.frames() != 1) {
        throw InputError(channels[ch], fmt::format("unsupported geometry: a {}-frame series as input of model {}; expected 3D",
                                                   v.frames(), route.model.string()));
      }
      const at::Tensor raw = same_grid(v, reference) ? v.voxels
                                                     : data::resample_onto(v, reference.geometry, reference.shape_zyx(),
                                                                           data::Interpolation::kLinear)
                                                           .voxels;
      const data::Normalization n = data::normalization_from_name(card.normalization[ch], "model card");
      const auto& s = card.ct_stats[ch];
      data::IntensityStats ct;
      ct.lower = s[0], ct.upper = s[1], ct.mean = s[2], ct.std = s[3];
      inputs.push_back(data::normalize_channel(raw, n, ct, n == data::Normalization::kZscore ? data::volume_stats(raw) : data::IntensityStats{}));
    }
    // To the model's spacing when the study's differs by more than 2 % on an axis.
    data::Volume image;
    image.voxels = inputs.size() == 1 ? inputs[0].unsqueeze(0) : at::stack(inputs);  // one channel: no copy
    inputs.clear();
    image.type = data::VoxelType::kFloat32;
    image.geometry = reference.geometry;
    image.frame_times_s.assign(inputs.size(), 0.0);
    bool resampled = false;
    for (int a = 0; a < 3; ++a) {
      if (card.spacing[a] > 0 && std::abs(reference.geometry.spacing[a] / card.spacing[a] - 1) > 0.02) resampled = true;
    }
    if (resampled) image = data::resample_to_spacing(image, card.spacing, data::Interpolation::kLinear);
    const auto classes = static_cast<std::int64_t>(card.class_names.size());
    models::SlidingWindowOptions window = window_;
    window.window = card.patch;
    const auto shape = image.shape_zyx();
    // The estimate: the band, the normalised input (and one padded copy), the labels, and the
    // network's activations for a batch of windows (about eight full-resolution feature maps
    // alive at once: an approximation, not a bound).
    const double window_voxels = static_cast<double>(window.window[0] * window.window[1] * window.window[2]);
    const double activations = static_cast<double>(window.batch) * window_voxels * static_cast<double>(card.model.base_features) * 4 * 8;
    const double needed = static_cast<double>(models::band_bytes(shape, classes, window.window, accumulation_)) +
                          2.0 * static_cast<double>(image.voxels.numel()) * 4 + static_cast<double>(reference.voxels.numel()) * 2 +
                          activations;
    if (needed > memory_limit_) {
      throw InputError(route.name, fmt::format("out of memory budget: {:.2f} GB needed for {}x{}x{} voxels and {} classes, "
                                               "memory_limit {:.2f} GB",
                                               needed / 1e9, shape[0], shape[1], shape[2], classes, memory_limit_ / 1e9));
    }
    const auto prepared = Clock::now();
    at::Tensor labels;
    std::int64_t windows = 0;
    std::unique_ptr<Progress> bar;
    bool on_onednn = false, on_libtorch = false;  // what ran the forward passes
    {
      torch::NoGradGuard no_grad;
      const c10::Device device = context_.device;
      const auto stitch = [&](const c10::Device& band_device) {
        return models::sliding_window_labels(
            image.voxels, classes,
            [&](const at::Tensor& x) {
              const models::Autocast autocast(precision_, device);
              const at::Tensor in = x.to(device, models::whole_bfloat16(precision_, device) ? at::kBFloat16 : x.scalar_type());
              if (model.onednn && model.onednn->accepts(in)) {
                on_onednn = true;
                return model.onednn->forward(in);
              }
              on_libtorch = true;
              return model.net->forward(config_.channels_last ? models::channels_last_3d(in) : in)[0];
            },
            window,
            accumulation_,
            [&](std::int64_t done, std::int64_t total) {
              windows = total;
              // A long study gets its own bar on rank 0 (the campaign's counts studies).
              if (total >= kWindowBarFrom && context_.env.rank() == 0) {
                if (!bar) bar = std::make_unique<Progress>("windows of " + info.id, total, true);
                bar->advance(done - bar->done());
              }
            },
            band_device);
      };
      const std::int64_t voxels = image.voxels.numel();
      const c10::Device band_device = band_placement_.choose(voxels);
      try {
        labels = stitch(band_device);
      } catch (const c10::OutOfMemoryError&) {
        if (band_device.is_cpu()) throw;
        // The GPU is short of memory for this band: this study and every one as large keep it
        // in host memory (the windows still run on the GPU).
        band_placement_.record_out_of_memory(voxels);
        spdlog::warn("study {}: the band of {} voxels did not fit on {}; stitching in host memory from now on for "
                     "studies this large",
                     info.id, voxels, band_device.str());
        bar.reset();
        labels = stitch(c10::Device(c10::kCPU));
      }
    }
    const double predict_s = seconds_since(prepared);
    json post = json::object();
    for (const auto c : selected(route.largest_component, card.class_names, "largest_component", route)) {
      post["largest_component_removed_voxels"][card.class_names[static_cast<std::size_t>(c)]] = models::keep_largest_component(labels, c);
    }
    for (const auto c : selected(route.fill_holes, card.class_names, "fill_holes", route)) {
      post["holes_filled_voxels"][card.class_names[static_cast<std::size_t>(c)]] = models::fill_holes(labels, c);
    }
    RouteResult r;
    r.reference = channels[0];
    r.class_names = card.class_names;
    r.labels.voxels = labels.scalar_type() == at::kByte ? labels : labels.to(at::kInt);
    r.labels.type = labels.scalar_type() == at::kByte ? data::VoxelType::kUInt8 : data::VoxelType::kUInt16;
    r.labels.geometry = image.geometry;
    if (resampled) {
      r.labels = data::resample_onto(r.labels, reference.geometry, reference.shape_zyx(), data::Interpolation::kNearest);
    }
    r.report = {{"model", route.model.string()},
                {"model_dataset", card.dataset},
                {"model_step", card.step},
                {"series", channels},
                {"classes", card.class_names},
                {"resampled_to_mm", resampled ? json(card.spacing) : json(nullptr)},
                {"postprocess", post}};
    // Dice against the study's truth, where it has one.
    const std::string truth_name = route.truth.empty() ? card.label_map : (route.truth == "none" ? "" : route.truth);
    if (!truth_name.empty() && info.find_label(truth_name) != nullptr) {
      data::Volume truth = store.read_label(info.id, truth_name);
      if (!same_grid(truth, reference)) {
        truth = data::resample_onto(truth, reference.geometry, reference.shape_zyx(), data::Interpolation::kNearest);
      }
      std::vector<std::int64_t> lookup(65536, 0);
      for (std::size_t c = 0; c < card.class_label_ids.size(); ++c) {
        for (const auto id : card.class_label_ids[c]) {
          if (id > 0 && id < 65536) lookup[static_cast<std::size_t>(id)] = static_cast<std::int64_t>(c);
        }
      }
      const auto dice = models::dice_from_counts(models::dice_counts(r.labels.voxels, truth.voxels, classes, &lookup));
      json d = json::object();
      for (std::int64_t c = 1; c < classes; ++c) {
        const double v = dice[static_cast<std::size_t>(c - 1)];
        d[card.class_names[static_cast<std::size_t>(c)]] = std::isnan(v) ? json(nullptr) : json(rounded(v, 6));
      }
      r.report["dice"] = d;
      r.report["truth"] = truth_name;
    }
    r.timing = {{"model", route.model.string()},
                {"prepare_s", std::chrono::duration<double>(prepared - start).count()},
                {"predict_s", predict_s},
                {"engine", on_onednn && on_libtorch ? "onednn+libtorch" : (on_onednn ? "onednn" : "libtorch")},
                {"seconds", seconds_since(start)},
                {"windows", windows},
                {"voxels", reference.voxels.numel()}};
    return r;
  }

  std::optional<RouteResult> measure_existing(const Route& route, const data::VolumeStore& store, const data::StudyInfo& info,
                                              json& notes) {
    const data::LabelInfo* label = info.find_label(route.labels);
    if (label == nullptr) {
      notes.push_back(fmt::format("route {}: the study has no label map '{}'", route.name, route.labels));
      return std::nullopt;
    }
    const auto start = Clock::now();
    RouteResult r;
    r.reference = label->reference_series;
    r.labels = store.read_label(info.id, route.labels);
    const std::int64_t top = std::max<std::int64_t>(r.labels.voxels.max().item<std::int64_t>(),
                                                    store.label_table().empty() ? 0 : store.label_table().rbegin()->first);
    r.class_names.assign(static_cast<std::size_t>(top) + 1, "");
    r.class_names[0] = "background";
    for (std::int64_t c = 1; c <= top; ++c) {
      const auto it = store.label_table().find(static_cast<int>(c));
      r.class_names[static_cast<std::size_t>(c)] = it != store.label_table().end() ? it->second : fmt::format("label_{}", c);
    }
    selected(route.lesions, r.class_names, "lesions", route);
    r.report = {{"labels", route.labels}, {"series", {r.reference}}};
    r.timing = {{"seconds", seconds_since(start)}, {"voxels", r.labels.voxels.numel()}};
    return r;
  }

  /// Per class: volume, box, centroid, intensities in every 3D series on the label grid; lesions.
  template <typename Get>
  json structures(const Route& route, const RouteResult& r, const data::StudyInfo& info, Get& get) {
    const auto classes = static_cast<std::int64_t>(r.class_names.size());
    const at::Tensor labels = r.labels.voxels;
    const auto extents = models::class_extents(labels, classes);
    const data::Geometry& g = r.labels.geometry;
    const double voxel_ml = g.spacing[0] * g.spacing[1] * g.spacing[2] / 1000.0;
    std::map<std::string, std::vector<models::IntensitySummary>> intensities;
    for (const auto& s : info.series) {
      const auto shape = r.labels.shape_zyx();
      if (s.shape != std::vector<std::int64_t>(shape.begin(), shape.end()) || !s.geometry.matches(r.labels.geometry)) continue;
      intensities[s.name] = models::class_intensities(labels, get(s.name).voxels, classes);
    }
    const auto lesion_classes = selected(route.lesions, r.class_names, "lesions", route);
    json out = json::object();
    for (std::int64_t c = 1; c < classes; ++c) {
      const auto& e = extents[static_cast<std::size_t>(c)];
      const std::string& name = r.class_names[static_cast<std::size_t>(c)];
      if (e.voxels == 0 && !route.labels.empty()) continue;  // label ids of the table the study does not use
      json s = {{"voxels", e.voxels}, {"volume_ml", rounded(static_cast<double>(e.voxels) * voxel_ml, 6)}};
      if (e.voxels > 0) {
        // The LPS box holds all eight corners of the voxel box (any direction cosines).
        std::array<double, 3> lo{1e300, 1e300, 1e300}, hi{-1e300, -1e300, -1e300};
        for (int corner = 0; corner < 8; ++corner) {
          std::array<double, 3> zyx{};
          for (int a = 0; a < 3; ++a) zyx[a] = static_cast<double>((corner >> a) & 1 ? e.box_max[a] : e.box_min[a]);
          const auto p = lps_of(g, zyx);
          for (int a = 0; a < 3; ++a) lo[a] = std::min(lo[a], rounded(p[a], 4)), hi[a] = std::max(hi[a], rounded(p[a], 4));
        }
        s["box_voxels_zyx"] = {{"min", e.box_min}, {"max", e.box_max}};
        s["box_lps_mm"] = {{"min", lo}, {"max", hi}};
        const auto centre = lps_of(g, e.centroid);
        s["centroid_lps_mm"] = {rounded(centre[0], 4), rounded(centre[1], 4), rounded(centre[2], 4)};
        json in = json::object();
        for (const auto& [series, stats] : intensities) {
          const auto& i = stats[static_cast<std::size_t>(c)];
          in[series] = {{"mean", rounded(i.mean, 4)}, {"std", rounded(i.std, 4)}, {"min", i.min}, {"max", i.max},
                        {"p05", rounded(i.p05, 4)},   {"p50", rounded(i.p50, 4)}, {"p95", rounded(i.p95, 4)}};
        }
        s["intensity"] = in;
      }
      if (lesion_classes.count(c) != 0) {
        json items = json::array();
        const auto found = models::lesions(labels == c, spacing_zyx(g));
        for (const auto& l : found) {
          if (items.size() >= kLesionsListed) break;  // the largest; the count covers them all
          const auto centre = lps_of(g, l.centroid);
          items.push_back({{"voxels", l.voxels},
                           {"volume_ml", rounded(l.volume_ml, 6)},
                           {"equivalent_diameter_mm", rounded(l.equivalent_diameter_mm, 4)},
                           {"axial_diameter_mm", rounded(l.axial_diameter_mm, 4)},
                           {"centroid_lps_mm", {rounded(centre[0], 4), rounded(centre[1], 4), rounded(centre[2], 4)}}});
        }
        s["lesions"] = {{"count", found.size()}, {"items", items}};
      }
      out[name] = s;
    }
    return out;
  }

  /// Agatston score per artery from the non-contrast CT, inside the segmented arteries (grown by
  /// a margin) or, without them, around the region structure.
  json calcium(const std::vector<std::pair<const Route*, RouteResult>>& results, const data::Volume& ct, json& notes) {
    const CalciumConfig& cc = config_.calcium;
    if (ct.frames() != 1) {
      notes.push_back("calcium: series '" + cc.series + "' is not 3D; no score");
      return nullptr;
    }
    // A structure's mask on the CT's grid, from the first route that has it.
    const auto mask_of = [&](const std::string& name) -> std::optional<at::Tensor> {
      for (const auto& [route, r] : results) {
        const auto it = std::find(r.class_names.begin() + 1, r.class_names.end(), name);
        if (it == r.class_names.end()) continue;
        const auto c = it - r.class_names.begin();
        data::Volume mask = r.labels;
        if (!same_grid(mask, ct)) mask = data::resample_onto(mask, ct.geometry, ct.shape_zyx(), data::Interpolation::kNearest);
        return mask.voxels == c;
      }
      return std::nullopt;
    };
    std::vector<std::pair<std::string, at::Tensor>> arteries;
    at::Tensor any = at::zeros(ct.voxels.sizes(), at::kBool);
    for (const auto& a : cc.arteries) {
      if (auto m = mask_of(a)) {
        arteries.emplace_back(a, *m);
        any |= *m;
      }
    }
    const auto sp = spacing_zyx(ct.geometry);
    at::Tensor region;
    std::string basis;
    if (any.any().item<bool>()) {
      region = models::dilate(any, cc.artery_margin_mm, sp);
      basis = fmt::format("within {} mm of the segmented arteries", cc.artery_margin_mm);
    } else if (auto m = mask_of(cc.region); m && m->any().item<bool>()) {
      region = models::dilate(*m, cc.region_margin_mm, sp);
      basis = fmt::format("within {} mm of {} (no artery segmented)", cc.region_margin_mm, cc.region);
    } else {
      notes.push_back("calcium: neither the arteries nor '" + cc.region + "' were segmented; no score");
      return nullptr;
    }
    models::CalciumOptions options;
    options.assign_mm = cc.artery_margin_mm;
    const auto result = models::agatston(ct.voxels, region, arteries, sp, options);
    const auto score = [](const models::CalciumScore& s) {
      return json{{"agatston", rounded(s.agatston, 4)}, {"volume_mm3", rounded(s.volume_mm3, 4)}, {"lesions", s.lesions}};
    };
    json per_artery = json::object();
    for (const auto& [name, s] : result.arteries) per_artery[name] = score(s);
    return {{"method", "Agatston (130 HU, 1 mm², peak weights 1-4, scaled by slice spacing / 3 mm)"},
            {"series", cc.series},
            {"region", basis},
            {"total", score(result.total)},
            {"arteries", per_artery},
            {"unassigned", score(result.unassigned)}};
  }

  const JobContext& context_;
  CampaignConfig config_;
  models::SlidingWindowOptions window_;
  models::Accumulation accumulation_ = models::Accumulation::kFloat32;
  models::Precision precision_ = models::Precision::kFloat32;
  models::BandPlacement band_placement_{context_.device};
  double memory_limit_ = 3e9;
  std::vector<std::unique_ptr<data::VolumeStore>> stores_;
  std::map<std::string, LoadedModel> models_;
  std::map<std::string, std::string> model_sums_;
  std::string fingerprint_;
};

/// Rank 0, before the others open the inputs: the output folders, leftovers of killed runs, and
/// NIfTI/DICOM inputs imported into OUT/inputs.h5 (rejected studies recorded as failed).
std::vector<fs::path> prepare_outputs(const CampaignConfig& config, bool force) {
  // Everything the campaign needs must exist before anything is created.
  for (const auto& input : config.inputs) {
    if (!fs::exists(input)) throw InputError(input.string(), "no such file or folder");
  }
  for (const auto& route : config.routes) {
    if (!route.model.empty() && !fs::is_regular_file(route.model / "model.json")) {
      throw InputError((route.model / "model.json").string(), "no exported model here (expected model.json and model.pt)");
    }
  }
  const fs::path& out = config.output;
  fs::create_directories(out / "studies");
  fs::create_directories(out / "failed");
  std::error_code ignored;
  // --force removes the selected studies' outputs (all studies' when none are selected).
  const std::set<std::string> selected_ids(config.studies.begin(), config.studies.end());
  const auto chosen = [&](const std::string& id) { return selected_ids.empty() || selected_ids.count(id) != 0; };
  for (const auto& entry : fs::directory_iterator(out / "studies")) {
    const std::string name = entry.path().filename().string();
    if ((force && chosen(name)) || (name.front() == '.' && name.find(".tmp.") != std::string::npos)) fs::remove_all(entry.path(), ignored);
  }
  for (const auto& entry : fs::directory_iterator(out / "failed")) {
    if (!is_failure_record(entry.path()) || (force && chosen(entry.path().stem().string()))) fs::remove_all(entry.path(), ignored);
  }
  if (force) {
    for (const char* f : {"campaign.json", "index.html"}) fs::remove(out / f, ignored);
  }
  write_file_atomic(out / "campaign.yaml", campaign_yaml(config));
  std::vector<fs::path> stores, others;
  for (const auto& input : config.inputs) {
    if (fs::is_regular_file(input) && is_hdf5_file(input)) {
      stores.push_back(input);
    } else if (fs::is_directory(input)) {
      // A folder of NIfTI files: each a study; otherwise a DICOM folder.
      std::vector<fs::path> nifti;
      for (const auto& e : fs::directory_iterator(input)) {
        if (e.is_regular_file() && data::is_nifti_path(e.path())) nifti.push_back(e.path());
      }
      std::sort(nifti.begin(), nifti.end());
      if (nifti.empty()) {
        others.push_back(input);
      } else {
        others.insert(others.end(), nifti.begin(), nifti.end());
      }
    } else {
      others.push_back(input);
    }
  }
  if (!others.empty()) {
    const fs::path imported = out / "inputs.h5";
    auto sources = data::studies_from_paths(others, config.series_name, config.modality);
    data::VolumeWriter writer(imported);
    data::ImportOptions options;
    const auto report = data::import_studies(sources, [&](const std::string&) -> data::VolumeWriter& { return writer; }, {}, options);
    writer.commit();
    for (const auto& rejected : report.rejected) {
      const std::string id = rejected.study.empty() ? fs::path(rejected.path).stem().string() : rejected.study;
      if (!config.studies.empty() && std::find(config.studies.begin(), config.studies.end(), id) == config.studies.end()) continue;
      write_file_atomic(out / "failed" / (id + ".json"),
                        json{{"study", id}, {"stage", "import"}, {"error", rejected.line()}}.dump(2));
      spdlog::warn("study {} not imported: {}", id, rejected.line());
    }
    stores.push_back(imported);
  }
  return stores;
}

/// Rank 0, at the end: campaign.json and index.html from the study folders and failure records.
/// `done[i]`: study all[i] has a complete folder (verified at the start, or written by this run).
int write_summary(const CampaignConfig& config, const std::vector<StudyRef>& all, const std::vector<std::uint8_t>& done_flags,
                  const std::set<std::string>& this_run, double wall_s, int ranks) {
  const fs::path& out = config.output;
  json done = json::array(), failed = json::array();
  std::map<std::string, double> model_s;
  double voxels = 0, study_s = 0;
  std::int64_t processed = 0;  // done by this run (throughput counts these alone)
  std::set<std::string> listed, complete;
  std::vector<json> reports;
  for (const auto& ref : all) {
    listed.insert(ref.id);
    if (done_flags[ref.index] != 0) complete.insert(ref.id);
  }
  for (const auto& entry : fs::directory_iterator(out / "failed")) {
    if (!is_failure_record(entry.path())) continue;
    const std::string id = entry.path().stem().string();
    if (!config.studies.empty() && std::find(config.studies.begin(), config.studies.end(), id) == config.studies.end()) continue;
    if (listed.count(id) == 0) listed.insert(id);
  }
  for (const auto& id : listed) {
    const fs::path dir = out / "studies" / id;
    if (complete.count(id) != 0) {
      json report = json::parse(read_text(dir / "report.json"));  // verified or just written: no second checksum pass
      if (this_run.count(id) != 0) {
        const json& timing = report["timing"];
        for (const auto& [route, t] : timing["routes"].items()) {
          if (t.contains("model")) model_s[t["model"]] += t["seconds"].get<double>();
          voxels += t.value("voxels", 0.0);
        }
        study_s += timing.value("total_s", 0.0);
        ++processed;
      }
      done.push_back(id);
      reports.push_back(std::move(report));
      continue;
    }
    std::string reason = "not processed";
    const fs::path record = out / "failed" / (id + ".json");
    if (fs::exists(record)) {
      try {
        reason = json::parse(read_text(record)).value("error", reason);
      } catch (const json::exception&) {
        reason = "failed (its record " + record.string() + " is unreadable)";
      }
    }
    failed.push_back({{"study", id}, {"error", reason}});
  }
  const auto skipped = static_cast<std::int64_t>(all.size() - this_run.size());
  json summary = {{"studies", listed.size()},
                  {"done", done.size()},
                  {"failed", failed},
                  {"done_by_this_run", processed},
                  {"skipped_as_already_done", skipped},
                  {"ranks", ranks},
                  {"wall_s", wall_s},
                  {"studies_per_hour", wall_s > 0 ? static_cast<double>(processed) * 3600 / wall_s : 0.0},
                  {"voxels_per_s", wall_s > 0 ? voxels / wall_s : 0.0},
                  {"study_seconds_total", study_s},
                  {"model_seconds", model_s},
                  {"done_studies", done}};
  write_file_atomic(out / "campaign.json", summary.dump(2));

  // The page: a table of studies, thumbnails linked relative to it.
  std::ostringstream html;
  html << "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Vitruvian campaign</title><style>"
          "body{font-family:sans-serif;margin:2em;background:#fafafa}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}th{background:#eee}"
          ".failed{color:#b00}img{max-width:420px}</style></head><body>\n";
  html << fmt::format("<h1>Campaign: {}</h1>\n<p>{} studies: {} done, {} failed ({} already done before this run). {} ranks, "
                      "{:.1f} s wall, {:.0f} studies/h, {:.3g} voxels/s.</p>\n",
                      out.filename().string(), listed.size(), done.size(), failed.size(), skipped, ranks, wall_s,
                      summary["studies_per_hour"].get<double>(), summary["voxels_per_s"].get<double>());
  html << "<table><tr><th>study</th><th>structures (mL)</th><th>Dice</th><th>calcium (Agatston)</th><th>s</th><th>picture</th></tr>\n";
  for (const auto& report : reports) {
    const std::string id = report["study"];
    std::string volumes, dice, calcium = "-";
    for (const auto& [route, r] : report["routes"].items()) {
      volumes += "<b>" + route + "</b><br>";
      for (const auto& [name, s] : r["structures"].items()) {
        volumes += fmt::format("{} {:.1f}", name, s["volume_ml"].get<double>());
        if (s.contains("lesions")) volumes += fmt::format(" ({} lesions)", s["lesions"]["count"].get<int>());
        volumes += "<br>";
      }
      if (r.contains("dice")) {
        for (const auto& [name, d] : r["dice"].items()) dice += fmt::format("{} {}<br>", name, d.is_null() ? "-" : fmt::format("{:.3f}", d.get<double>()));
      }
    }
    if (report.contains("calcium") && !report["calcium"].is_null()) {
      calcium = fmt::format("total {:.1f}", report["calcium"]["total"]["agatston"].get<double>());
      for (const auto& [a, s] : report["calcium"]["arteries"].items()) calcium += fmt::format("<br>{} {:.1f}", a, s["agatston"].get<double>());
    }
    const bool picture = fs::exists(out / "studies" / id / "thumbnail.png");
    html << fmt::format("<tr><td><a href=\"studies/{0}/report.json\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3}</td><td>{4:.1f}</td><td>{5}</td></tr>\n",
                        html_escape(id), volumes, dice, calcium, report["timing"].value("total_s", 0.0),
                        picture ? fmt::format("<img src=\"studies/{}/thumbnail.png\" alt=\"{}\">", id, id) : "");
  }
  for (const auto& f : failed) {
    html << fmt::format("<tr class=\"failed\"><td>{}</td><td colspan=\"5\">failed: {}</td></tr>\n",
                        html_escape(f["study"].get<std::string>()), html_escape(f["error"].get<std::string>()));
  }
  html << "</table></body></html>\n";
  write_file_atomic(out / "index.html", html.str());
  spdlog::info("campaign: {} studies done, {} failed, {:.1f} s; {}", done.size(), failed.size(), wall_s,
               (out / "index.html").string());
  return failed.empty() ? 0 : 1;
}

}  // namespace

CampaignConfig campaign_from_options(const InferOptions& o) {
  CampaignConfig c;
  if (!o.campaign.empty()) c = read_campaign(o.campaign);
  if (!o.inputs.empty()) {
    c.inputs.clear();
    for (const auto& i : o.inputs) c.inputs.emplace_back(i);
  }
  if (!o.output.empty()) c.output = o.output;
  if (!o.studies.empty()) c.studies = o.studies;
  if (!o.series_name.empty()) c.series_name = o.series_name;
  if (!o.modality.empty()) c.modality = o.modality;
  if (!o.mirror_axes.empty()) c.mirror_axes = o.mirror_axes == "none" ? "" : o.mirror_axes;
  if (!o.accumulation.empty()) c.accumulation = o.accumulation;
  if (!o.precision.empty()) c.precision = o.precision;
  if (o.channels_last) c.channels_last = true;
  if (!o.engine.empty()) c.engine = o.engine;
  if (!o.memory_limit.empty()) c.memory_limit = o.memory_limit;
  if (o.overlap >= 0) c.overlap = o.overlap;
  if (o.batch > 0) c.batch = o.batch;
  if (o.nifti) c.write_nifti = true;
  for (const auto& m : o.models) {
    Route r;
    const auto eq = m.find('=');
    r.name = eq == std::string::npos ? "organs" : m.substr(0, eq);
    r.model = eq == std::string::npos ? m : m.substr(eq + 1);
    r.origin = "--model " + m;
    c.routes.push_back(r);
  }
  if (c.inputs.empty()) throw ConfigError("infer", "no inputs: give --input (or 'input' in the campaign file)");
  if (c.output.empty()) throw ConfigError("infer", "no output folder: give --out (or 'output' in the campaign file)");
  validate_campaign(c, o.campaign.empty() ? "infer" : o.campaign);
  return c;
}

int run_infer(const JobContext& context, const InferOptions& options) {
  const auto start = Clock::now();
  const int rank = context.env.rank();
  CampaignConfig config;
  std::string problem;
  try {
    config = campaign_from_options(options);
  } catch (const std::exception& e) {
    problem = e.what();
  }
  if (!agree_all(context, problem.empty(), problem)) return 2;

  // Every rank loads the models first (a bad model or class name stops the job before anything
  // is written); then rank 0 prepares the outputs and imports non-HDF5 inputs, and everyone
  // opens the same stores.
  Campaign campaign(context, config);
  try {
    campaign.load_models();
  } catch (const std::exception& e) {
    problem = e.what();
  }
  if (!agree_all(context, problem.empty(), problem)) return 2;
  std::vector<std::string> store_paths;
  if (rank == 0) {
    try {
      for (const auto& p : prepare_outputs(config, options.force)) store_paths.push_back(p.string());
    } catch (const std::exception& e) {
      problem = e.what();
    }
  }
  if (!agree_all(context, problem.empty(), problem)) return 2;
  const auto broadcast_lines = [&](std::vector<std::string>& lines) {  // rank 0's list to every rank
    std::string joined = fmt::format("{}", fmt::join(lines, "\n"));
    auto length = static_cast<long long>(joined.size());
    check_mpi(MPI_Bcast(&length, 1, MPI_LONG_LONG, 0, context.env.world().get()), "MPI_Bcast");
    joined.resize(static_cast<std::size_t>(length));
    check_mpi(MPI_Bcast(joined.data(), static_cast<int>(length), MPI_CHAR, 0, context.env.world().get()), "MPI_Bcast");
    lines.clear();
    std::stringstream text(joined);
    for (std::string line; std::getline(text, line);) lines.push_back(line);
  };
  broadcast_lines(store_paths);
  std::vector<std::string> failed_import;
  if (rank == 0) {
    for (const auto& entry : fs::directory_iterator(config.output / "failed")) {
      if (is_failure_record(entry.path())) failed_import.push_back(entry.path().stem().string());
    }
  }
  broadcast_lines(failed_import);
  std::vector<StudyRef> all, pending;
  try {
    campaign.open_inputs(std::vector<fs::path>(store_paths.begin(), store_paths.end()));
    all = campaign.studies(std::set<std::string>(failed_import.begin(), failed_import.end()));
  } catch (const std::exception& e) {
    problem = e.what();
  }
  if (!agree_all(context, problem.empty(), problem)) return 2;
  // Which studies are done: each rank verifies a share of the folders (checksums of every file,
  // and the campaign's fingerprint), and one allreduce gives every rank the same answer.
  std::vector<std::uint8_t> done(all.size(), 0);
  for (std::size_t i = static_cast<std::size_t>(rank); i < all.size(); i += static_cast<std::size_t>(context.env.size())) {
    const fs::path dir = config.output / "studies" / all[i].id;
    if (!fs::exists(dir) || !verify_checkpoint(dir).empty()) continue;
    try {
      done[i] = json::parse(read_text(dir / "report.json")).value("campaign_fingerprint", "") == campaign.fingerprint() ? 1 : 0;
    } catch (const std::exception&) {
      done[i] = 0;
    }
  }
  if (!done.empty()) {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, done.data(), static_cast<int>(done.size()), MPI_UINT8_T, MPI_MAX, context.env.world().get()),
              "MPI_Allreduce");
  }
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (done[i] == 0) pending.push_back(all[i]);
  }
  const auto skipped = static_cast<std::int64_t>(all.size() - pending.size());
  // Largest first (then by id), so the long studies do not end the campaign on one rank.
  std::stable_sort(pending.begin(), pending.end(), [](const StudyRef& a, const StudyRef& b) {
    return a.voxels != b.voxels ? a.voxels > b.voxels : a.id < b.id;
  });
  if (rank == 0) {
    spdlog::info("campaign: {} studies, {} already done, {} to run on {} ranks; routes: {}", all.size(), skipped, pending.size(),
                 context.env.size(), [&] {
                   std::vector<std::string> names;
                   for (const auto& r : config.routes) names.push_back(r.name);
                   return fmt::format("{}", fmt::join(names, ", "));
                 }());
  }
  {
    WorkQueue queue(context.env.world(), static_cast<std::int64_t>(pending.size()), context.env.thread_multiple());
    Progress progress("studies started", static_cast<std::int64_t>(pending.size()), rank == 0);
    std::int64_t shown = 0;
    while (const auto item = queue.next()) {
      const StudyRef& ref = pending[static_cast<std::size_t>(*item)];
      const fs::path failed = config.output / "failed" / (ref.id + ".json");
      try {
        campaign.process(ref);
        done[ref.index] = 1;
        std::error_code ignored;
        fs::remove(failed, ignored);
      } catch (const std::exception& e) {
        // The study is recorded and the campaign goes on (bad input, unsupported geometry, out of memory).
        const std::string what = e.what();
        spdlog::warn("study {} failed on rank {}: {}", ref.id, rank, what);
        try {
          write_file_atomic(failed, json{{"study", ref.id}, {"stage", "process"}, {"rank", rank}, {"error", what}}.dump(2));
        } catch (const std::exception& inner) {
          spdlog::error("cannot record the failure of {}: {}", ref.id, inner.what());
        }
      }
      if (rank == 0) {
        const std::int64_t now = queue.handed_out();
        progress.advance(now - shown, ref.id);
        shown = now;
      }
    }
    queue.finish();
    if (rank == 0) progress.advance(queue.handed_out() - shown);
  }
  // Every rank's successes, for rank 0's summary (this also waits for the last study).
  if (!done.empty()) {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, done.data(), static_cast<int>(done.size()), MPI_UINT8_T, MPI_MAX, context.env.world().get()),
              "MPI_Allreduce");
  } else {
    check_mpi(MPI_Barrier(context.env.world().get()), "MPI_Barrier");
  }
  int code = 0;
  if (rank == 0) {
    std::set<std::string> this_run;
    for (const auto& s : pending) this_run.insert(s.id);
    code = write_summary(config, all, done, this_run, seconds_since(start), context.env.size());
  }
  check_mpi(MPI_Bcast(&code, 1, MPI_INT, 0, context.env.world().get()), "MPI_Bcast");
  return code;
}

namespace {

CLI::App* add_infer_command(CLI::App& app, InferOptions& o) {
  CLI::App* infer = add_verb_command(
      app, "infer", "Run exported models over many studies as one campaign across the ranks: label maps, a report per study "
                    "(volumes, intensities, lesions, calcium score, Dice where truth exists) and an HTML summary; reruns skip "
                    "studies already done",
      "Threads per rank: --threads (runtime.intra_op_threads).");
  infer->add_option("--campaign", o.campaign, "Campaign YAML: inputs, output, routes (launch/configs/campaign_example.yaml)")
      ->check(CLI::ExistingFile);
  infer->add_option("-i,--input", o.inputs, "HDF5 dataset or index, NIfTI file or folder, DICOM folder (repeatable)");
  infer->add_option("-o,--out", o.output, "Output folder");
  infer->add_option("-m,--model", o.models, "Exported model folder, or NAME=DIR (repeatable; each is a route)");
  infer->add_option("--studies", o.studies, "Only these study ids")->delimiter(',');
  infer->add_option("--series-name", o.series_name, "Series name of plain NIfTI inputs (default image)");
  infer->add_option("--modality", o.modality, "Modality of plain NIfTI inputs: CT or MR");
  infer->add_option("--overlap", o.overlap, "Window overlap, 0 to <1 (default 0.5)");
  infer->add_option("--batch", o.batch, "Windows per forward call (default 2)");
  infer->add_option("--mirror", o.mirror_axes, "Test-time mirroring along any of zyx (up to 8 flips), or none");
  infer->add_option("--accumulation", o.accumulation, "fp32 or fp16 stitching accumulator");
  infer->add_option("--precision", o.precision, "Forward passes: fp32, bf16 or fp16 (CUDA: autocast; CPU: bf16 runs a whole-bf16 network, fp16 stays fp32)");
  infer->add_flag("--channels-last", o.channels_last, "Channels-last 3D weights and windows");
  infer->add_option("--engine", o.engine,
                    "CPU forward passes: auto (plain U-Nets in fp32 on oneDNN's primitives directly, the rest on LibTorch's "
                    "ops) or libtorch (always LibTorch's ops); default auto");
  infer->add_option("--memory-limit", o.memory_limit, "Per-rank memory budget for a study, e.g. 3G (default 3G)");
  infer->add_flag("--nifti", o.nifti, "Also write each label map as NIfTI");
  infer->add_flag("--force", o.force, "Redo every study: the outputs of earlier runs are removed");
  return infer;
}

/// run_infer with its exit status as an ExitCode.
ExitCode run_infer_job(const JobContext& context, const InferOptions& options) {
  return static_cast<ExitCode>(run_infer(context, options));
}

}  // namespace

std::unique_ptr<Verb> make_infer_verb() { return make_options_verb(add_infer_command, run_infer_job); }

}  // namespace vitruvian::jobs
