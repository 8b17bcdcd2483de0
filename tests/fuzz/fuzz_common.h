// What every harness shares: quiet libraries, a scratch folder for readers that take a path, and
// the rule each input is held to: it reads, or fails with one of Vitruvian's typed errors whose
// message is one line. Anything else (another exception, a crash, a sanitizer report) is a
// finding, and libFuzzer stops with the input that caused it.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "core/errors.h"

namespace vitruvian::fuzz {

/// A folder of this process's own under TMPDIR (the run script points TMPDIR into the build
/// tree), created on first use; emptied of one input's files by the harness that uses it.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const auto path = std::filesystem::temp_directory_path() / ("vitruvian-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_dir(), ignored);
    });
    return path;
  }();
  return dir;
}

/// Writes `size` bytes at `data` to `path`, replacing it.
inline void write_input(const std::filesystem::path& path, const std::uint8_t* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

/// Stops the run (libFuzzer keeps the input) with `what`.
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz finding: %s\n", what.c_str());
  std::abort();
}

/// A message a user sees must be one line.
inline void check_one_line(const std::string& message) {
  if (message.find('\n') != std::string::npos) finding("a message of more than one line: " + message);
}

/// Runs `body`: returning is fine, so is one of Vitruvian's typed errors (Error and what derives
/// from it: InputError, ConfigError, Hdf5Error, PacsError) with a one-line message. Any other
/// exception is a finding.
template <class Body>
void expect_typed_errors(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    check_one_line(e.what());
  } catch (const std::exception& e) {
    finding(std::string("an exception other than Vitruvian's errors (") + typeid(e).name() + "): " + e.what());
  }
}

}  // namespace vitruvian::fuzz
