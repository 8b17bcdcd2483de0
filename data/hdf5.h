// HDF5 essentials for the volume store: the library's version, and checks that turn a failed
// HDF5 call into Hdf5Error carrying the walked HDF5 error stack (the library's own words).
#pragma once

#include <string>

namespace vitruvian::data {

/// "1.10.8" — the HDF5 library loaded at run time.
std::string hdf5_version();

/// Throws Hdf5Error naming `call` and `subject` ("file" or "file:/object") when `status` is
/// negative. Its detail is one line: the innermost error (what is wrong), then HDF5's walked
/// error stack.
void check_hdf5(long long status, const std::string& call, const std::string& subject);

/// For calls whose result cannot tell failure from a valid answer (H5Dget_storage_size gives 0,
/// H5Dget_offset HADDR_UNDEF for both): check_hdf5 when the call just made left an error on the
/// calling thread's HDF5 error stack (every HDF5 call clears it on entry).
void check_hdf5_stack(const std::string& call, const std::string& subject);

/// The calling thread's HDF5 error stack as check_hdf5 words it ("" when empty), then cleared.
std::string take_hdf5_error_stack();

/// Turns off HDF5's automatic error printing (errors are reported through Hdf5Error instead).
void silence_hdf5_errors();

}  // namespace vitruvian::data
