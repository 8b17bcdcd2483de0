// HDF5 version and error-stack capture.
#include "data/hdf5.h"

#include <hdf5.h>

#include "core/errors.h"

namespace vitruvian::data {

std::string hdf5_version() {
  unsigned major = 0, minor = 0, release = 0;
  if (H5get_libversion(&major, &minor, &release) < 0) return "unknown";
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

void silence_hdf5_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {
herr_t collect(unsigned depth, const H5E_error2_t* error, void* out) {
  auto* text = static_cast<std::string*>(out);
  if (!text->empty()) *text += "; ";
  *text += "#" + std::to_string(depth) + " " + (error->func_name ? error->func_name : "?") + ": " +
           (error->desc ? error->desc : "?");
  return 0;
}
}  // namespace

void check_hdf5(long long status, const std::string& call, const std::string& subject) {
  if (status >= 0) return;
  std::string stack;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &stack);
  H5Eclear2(H5E_DEFAULT);
  throw Hdf5Error(call + " on '" + subject + "'", stack.empty() ? "failed (HDF5 left no error stack)" : stack);
}

}  // namespace vitruvian::data
