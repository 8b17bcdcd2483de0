// Atomic file output: write to a temporary name in the target's folder, flush to disk, rename.
// Readers see the old file or the complete new one, never a half-written one.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace vitruvian {

/// Writes through a temporary file that replaces `path` on commit(). If commit() is never
/// called (an exception, an early return) the temporary is removed and `path` is untouched.
class AtomicFileWriter {
 public:
  /// Opens "<path>.tmp.<pid>.<n>" next to `path`; throws InputError if the folder is missing
  /// or not writable.
  explicit AtomicFileWriter(std::filesystem::path path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  std::ostream& stream() { return out_; }
  const std::filesystem::path& temporary_path() const noexcept { return temporary_; }
  /// Flushes, fsyncs and renames over the target. Throws InputError on any failure.
  void commit();

 private:
  std::filesystem::path target_, temporary_;
  std::ofstream out_;
  bool committed_ = false;
};

/// Writes `contents` to `path` atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

}  // namespace vitruvian
