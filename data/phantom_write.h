// A phantom study into an HDF5 dataset: vitruvian::data's, where the phantoms themselves
// (data/phantom.h) are vitruvian::volumes' and write no files.
#pragma once

#include "data/phantom.h"
#include "data/volume_store.h"

namespace vitruvian::data {

/// Adds `study` to `writer`: its series, the label map (study.label_map) bound to the first
/// series, and its ground truth as the study's metadata.
void write_phantom_study(VolumeWriter& writer, const PhantomStudy& study);

}  // namespace vitruvian::data
