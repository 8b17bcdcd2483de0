// HDF5 version, error-stack capture, and the clean-up at exit.
#include "data/hdf5.h"

#include <hdf5.h>

#include "core/errors.h"
#include "data/hdf5_exit.h"

namespace vitruvian::data {

std::string hdf5_version() {
  unsigned major = 0, minor = 0, release = 0;
  if (H5get_libversion(&major, &minor, &release) < 0) return "unknown";
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release);
}

void silence_hdf5_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

void skip_hdf5_cleanup_at_exit() { H5dont_atexit(); }

namespace {
struct Stack {
  std::string walked, innermost;
};

/// HDF5's text on one line (some descriptions, e.g. of a failed open, hold line breaks).
std::string one_line(const char* text) {
  std::string out;
  for (const char* c = text; *c != '\0'; ++c) {
    if (*c != '\n') out += *c;
    else if (c[1] != ',' && c[1] != '\0') out += ' ';
  }
  return out;
}

herr_t collect(unsigned depth, const H5E_error2_t* error, void* out) {
  auto* stack = static_cast<Stack*>(out);
  if (!stack->walked.empty()) stack->walked += "; ";
  const std::string desc = one_line(error->desc != nullptr ? error->desc : "?");
  stack->walked += "#" + std::to_string(depth) + " " + one_line(error->func_name != nullptr ? error->func_name : "?") + ": " + desc;
  stack->innermost = desc;  // walked downward: the last one is where it went wrong
  return 0;
}
}  // namespace

std::string take_hdf5_error_stack() {
  Stack stack;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &stack);
  H5Eclear2(H5E_DEFAULT);
  if (stack.walked.empty()) return "";
  return stack.innermost + " (HDF5 error stack: " + stack.walked + ")";
}

void check_hdf5(long long status, const std::string& call, const std::string& subject) {
  if (status >= 0) return;
  const std::string stack = take_hdf5_error_stack();
  throw Hdf5Error(call + " on '" + subject + "'", stack.empty() ? "failed (HDF5 left no error stack)" : stack);
}

void check_hdf5_stack(const std::string& call, const std::string& subject) {
  if (H5Eget_num(H5E_DEFAULT) > 0) check_hdf5(-1, call, subject);
}

}  // namespace vitruvian::data
