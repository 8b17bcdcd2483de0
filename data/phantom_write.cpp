// A phantom study into an HDF5 dataset (apart from data/phantom.cpp, which writes no files, so
// that the phantoms build without HDF5: vitruvian::volumes).
#include "data/phantom_write.h"

namespace vitruvian::data {

void write_phantom_study(VolumeWriter& writer, const PhantomStudy& study) {
  for (const auto& [name, volume] : study.series) writer.add_series(study.id, name, volume, study.id);
  writer.add_label(study.id, study.label_map, study.series.front().first, study.labels, study.id);
  writer.set_study_metadata(study.id, study.metadata_json);
}

}  // namespace vitruvian::data
