// Atomic output, one scheme for every writer: write a file or a folder under a temporary name in
// the target's folder, flush it to disk, rename it into place. Readers see the old version or the
// complete new one, never a half-written one; leftovers of killed writers are recognisable.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace vitruvian {

/// The temporary for `target` = FOLDER/NAME: FOLDER/.NAME.tmp.PID.N followed by NAME's extension
/// when it has one, so that a library choosing its format by extension sees the target's:
///   report.json → .report.json.tmp.4711.0.json    labels.nii.gz → .labels.nii.gz.tmp.4711.1.nii.gz
///   step_00000100 → .step_00000100.tmp.4711.2    (files and folders alike)
/// The extension is NAME's last one ('.' then 1 to 8 letters or digits, the first a letter), plus
/// the one before it when the last is a compression suffix (.gz, .bz2, .xz, .zst). PID is this
/// process's id and N a per-process counter, advanced past names already in use (a killed
/// process's leftovers when process ids repeat). A trailing '/' on `target` is ignored.
std::filesystem::path temporary_path_for(const std::filesystem::path& target);
/// The same scheme for temporaries that the processes of one job share, named before they are
/// written: FOLDER/.NAME.tmp.OWNER.N + extension, with OWNER the process id of the job's rank 0
/// (sent to every rank) and N chosen by the caller (a rank, a shard), so every rank knows every
/// name. No check that the name is free.
std::filesystem::path temporary_path_for(const std::filesystem::path& target, std::uint64_t owner, std::uint64_t n);

/// True when `filename` (a name, not a path) is a temporary of that scheme, and only then.
bool is_temporary_name(const std::string& filename);

/// Makes `temporary` (a file, or a folder with its whole contents) durable and moves it to
/// `target`: fsyncs the file (every file and folder of a folder), renames it over `target` (an
/// existing folder is swapped out atomically where the file system can, else moved aside first,
/// and then removed), fsyncs the parent folder. Throws InputError naming `target` on failure.
void commit_atomically(const std::filesystem::path& temporary, const std::filesystem::path& target);

/// Writes `target` atomically: `fill` writes a file or creates a folder at the temporary path it
/// is given (with any library), then it is committed with commit_atomically. When `fill` (or the
/// commit) throws, the temporary is removed, `target` is untouched and the exception propagates.
void write_atomically(const std::filesystem::path& target,
                      const std::function<void(const std::filesystem::path& temporary)>& fill);

/// Removes the temporaries of this scheme directly in `folder` (files and folders, not looking
/// into subfolders) and returns them, sorted. For a job's start, when nothing else writes there:
/// a live writer's temporary would go too. Nothing else is touched; a missing folder removes
/// nothing. InputError naming the entry when one cannot be removed.
std::vector<std::filesystem::path> remove_leftover_temporaries(const std::filesystem::path& folder);

/// Writes through a temporary file (temporary_path_for) that replaces `path` on commit(). If
/// commit() is never called (an exception, an early return) the temporary is removed and `path`
/// is untouched.
class AtomicFileWriter {
 public:
  /// Opens the temporary next to `path`; throws InputError if the folder is missing or not
  /// writable.
  explicit AtomicFileWriter(std::filesystem::path path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  std::ostream& stream() { return out_; }
  const std::filesystem::path& temporary_path() const noexcept { return temporary_; }
  /// Flushes, then commit_atomically(). Throws InputError on any failure.
  void commit();

 private:
  std::filesystem::path target_, temporary_;
  std::ofstream out_;
  bool committed_ = false;
};

/// Writes `contents` to `path` atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

}  // namespace vitruvian
