// How HDF5 ends with the process: for the executable's entry point, before any other HDF5 call.
#pragma once

namespace vitruvian::data {

/// Keeps HDF5 from closing what is still open when the process exits (H5dont_atexit). A file
/// whose close failed — its last writes refused by a full disk or a file size limit — stays
/// registered half-destroyed in HDF5 1.10, and the library's clean-up at exit crashes on it
/// after the error was reported. Nothing is lost by skipping it: writers close their files
/// before renaming them into place, and a file left open at exit is a temporary or read-only.
/// Call first thing in main(); later it has no effect.
void skip_hdf5_cleanup_at_exit();

}  // namespace vitruvian::data
