// HDF5 essentials for the volume store: the library's version, and checks that turn a failed
// HDF5 call into Hdf5Error carrying the walked HDF5 error stack (the library's own words).
#pragma once

#include <string>

namespace vitruvian::data {

/// "1.10.8" — the HDF5 library loaded at run time.
std::string hdf5_version();

/// Throws Hdf5Error naming `call` and `subject` (usually the file) with HDF5's error stack when
/// `status` is negative. Silences HDF5's own stderr printing for the calling thread.
void check_hdf5(long long status, const std::string& call, const std::string& subject);

/// Turns off HDF5's automatic error printing (errors are reported through Hdf5Error instead).
void silence_hdf5_errors();

}  // namespace vitruvian::data
