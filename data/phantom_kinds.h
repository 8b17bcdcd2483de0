// The phantom kinds: each one's series, tissues (with documented value ranges) and the
// anatomy builder that places them on the template. Private to data/.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "data/phantom.h"
#include "data/phantom_scene.h"

namespace vitruvian::data::phantom {

struct SeriesSpec {
  std::string name, modality;
  VoxelType type = VoxelType::kInt16;
  double noise_sigma = 0;
  bool rician = false;
  double bias_amplitude = 0;
  int bias_field = 0;
  bool four_d = false;
};

struct TissueSpec {
  std::string name;
  std::string label;  ///< "" for air outside the body
  std::vector<std::pair<double, double>> ranges;  ///< per series
  Enhancement enhancement = Enhancement::kNone;
};

/// The drawn subject: overall size, girth and fat, and where the body lies on the table.
struct Subject {
  double scale = 1.0;   ///< skeleton and organs
  double girth = 1.0;   ///< body outline (fat) beyond the skeleton
  double fat_mm = 15;   ///< subcutaneous fat thickness (anterior)
  Vec3 offset;          ///< mm
  double yaw_rad = 0;
};

class Builder;

/// How scan framing frames a kind's studies (docs/PHANTOMS.md, "Framing").
struct FramingRange {
  double fov_x_low = 0, fov_x_high = 0;  ///< mm; y keeps the default field of view's aspect
  double fov_z_low = 0, fov_z_high = 0;  ///< mm of z coverage
  double arms_down = 0;  ///< share of studies with the arms at the sides (else raised, out of view)
};

struct KindSpec {
  PhantomKind kind = PhantomKind::kChestCardiac;
  Vec3 field_of_view;  ///< mm
  std::vector<SeriesSpec> series;
  std::vector<TissueSpec> tissues;  ///< the first is air outside the body
  std::vector<std::string> labels;    ///< every label a study can contain
  std::vector<std::string> optional;  ///< those drawn 0–n times (a study may have none)
  std::function<void(Builder&)> build;
  std::string focus;  ///< the label whose centre previews cut through
  FramingRange framing;
};

const KindSpec& kind_spec(PhantomKind kind);
/// Every label of every kind: id → name.
const std::vector<std::pair<int, std::string>>& all_labels();
int label_id(const std::string& name);

/// What a kind's build function works with: the scene being filled, the study's random
/// stream, the subject, the grid's limits on thin structures, and the truth record.
class Builder {
 public:
  Builder(const KindSpec& spec, std::mt19937_64& rng, const Subject& subject, const Placement& placement,
          const Grid& grid);

  const KindSpec& spec;
  Scene scene;
  std::vector<SeriesModel> models;
  std::mt19937_64& rng;
  Subject subject;
  const Placement& placement;
  const Grid& grid;
  /// Template-mm radius below which a tube could break into pieces on this grid, wherever it
  /// lies (with the deformation's largest possible compression).
  double min_tube_radius = 0;
  /// Template-mm radius below which a nodule or lesion would be under ~2.5 voxels across.
  double min_blob_radius = 0;
  /// Template-mm gap that keeps separate blobs in separate connected components.
  double blob_gap = 0;
  nlohmann::json truth = nlohmann::json::object();
  PhantomIschemia ischemia = PhantomIschemia::kTypical;  ///< the range a head's lesion is drawn from

  int tissue(const std::string& name) const;  ///< material index; InternalError when unknown
  double uniform(double low, double high);
  std::int64_t integer(std::int64_t low, std::int64_t high);
  double tube_radius(double r) const { return std::max(r, min_tube_radius); }
  /// `r`, or the least radius that keeps a tube through template point `t` in one 26-connected
  /// piece on this grid, with the deformation's compression at `t`: thin vessels keep their
  /// drawn size wherever the grid can show it.
  double tube_radius_at(const Vec3& t, double r) const;
  /// The template point of the voxel centre nearest `t` (in the patient) for which `accept`
  /// holds, among the voxels within two of the nearest; `t` itself when none does. A structure
  /// smaller than a voxel centred there still shows in the label map.
  template <typename Accept>
  Vec3 voxel_centre_near(const Vec3& t, Accept accept) const;
  /// Patient LPS (mm) of a template point, as a JSON array.
  nlohmann::json patient(const Vec3& t) const;
};

template <typename Accept>
Vec3 Builder::voxel_centre_near(const Vec3& t, Accept accept) const {
  const Vec3 p = placement.to_patient(t);
  const auto& h = grid.spacing_xyz;
  const auto& o = grid.origin_xyz;
  const double near[3] = {std::round((p.x - o[0]) / h[0]), std::round((p.y - o[1]) / h[1]), std::round((p.z - o[2]) / h[2])};
  Vec3 best = t;
  double best_distance = 1e30;
  for (int dz = -2; dz <= 2; ++dz) {
    for (int dy = -2; dy <= 2; ++dy) {
      for (int dx = -2; dx <= 2; ++dx) {
        const Vec3 c{o[0] + (near[0] + dx) * h[0], o[1] + (near[1] + dy) * h[1], o[2] + (near[2] + dz) * h[2]};
        const double distance = norm(c - p);
        if (distance >= best_distance) continue;
        const Vec3 candidate = placement.to_template(c);
        if (!accept(candidate)) continue;
        best = candidate;
        best_distance = distance;
      }
    }
  }
  return best;
}

}  // namespace vitruvian::data::phantom
