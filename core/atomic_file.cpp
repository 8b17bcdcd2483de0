// The temporary-name scheme, fsync of files and folder trees, rename (or swap) into place, and
// the clean-up of leftovers; AtomicFileWriter and write_file_atomic on top.
#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>  // renameat2, RENAME_EXCHANGE (glibc 2.28+)
#include <cstring>
#include <system_error>

#include "core/errors.h"

namespace vitruvian {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kMarker = ".tmp.";

/// ".json", ".h5": a '.' then 1 to 8 letters or digits, the first a letter.
bool plain_extension(std::string_view ext) {
  if (ext.size() < 2 || ext.size() > 9 || ext[0] != '.' || std::isalpha(static_cast<unsigned char>(ext[1])) == 0) return false;
  return std::all_of(ext.begin() + 1, ext.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; });
}

/// The extension a temporary of `name` repeats at its end ("" when none): see temporary_path_for.
std::string kept_extension(const std::string& name) {
  const std::size_t last = name.rfind('.');
  if (last == std::string::npos || last == 0 || !plain_extension(std::string_view(name).substr(last))) return "";
  const std::string ext = name.substr(last);
  const bool compression = ext == ".gz" || ext == ".bz2" || ext == ".xz" || ext == ".zst";
  const std::size_t before = compression ? name.rfind('.', last - 1) : std::string::npos;
  if (before != std::string::npos && before > 0 && plain_extension(std::string_view(name).substr(before, last - before))) {
    return name.substr(before);
  }
  return ext;
}

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// "out/model/" → "out/model": the name being written is the last component.
fs::path named(const fs::path& target) {
  const fs::path path = !target.has_filename() && target.has_parent_path() ? target.parent_path() : target;
  const std::string name = path.filename().string();
  if (name.empty() || name == "." || name == "..") {
    throw InputError(target.string(), "expected the path of a file or folder to write");
  }
  return path;
}

fs::path parent_folder(const fs::path& path) { return path.has_parent_path() ? path.parent_path() : fs::path("."); }

std::string errno_text(int error) { return std::strerror(error); }

/// fsync of one file (errors are errors) or folder (best effort: not every file system lets a
/// folder be opened or synced).
void sync_one(const fs::path& path, bool folder, const fs::path& target) {
  const int fd = ::open(path.c_str(), (folder ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    if (folder) return;
    throw InputError(target.string(), "cannot open '" + path.string() + "' to flush it to disk: " + errno_text(errno));
  }
  const int status = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (status != 0 && !folder && error != EINVAL && error != EROFS) {  // EINVAL: this kind of file has no sync
    throw InputError(target.string(), "flushing '" + path.string() + "' to disk failed: " + errno_text(error));
  }
}

/// fsync of a file, or of every file and folder in a folder and the folder itself.
void sync_tree(const fs::path& path, bool folder, const fs::path& target) {
  if (folder) {
    std::error_code error;
    for (fs::recursive_directory_iterator it(path, error), end; !error && it != end; it.increment(error)) {
      const auto status = it->symlink_status(error);
      if (error) break;
      if (fs::is_directory(status) || fs::is_regular_file(status)) sync_one(it->path(), fs::is_directory(status), target);
    }
    if (error) throw InputError(target.string(), "cannot list '" + path.string() + "' to flush it: " + error.message());
  }
  sync_one(path, folder, target);
}

/// Puts the folder `temporary` in place of the existing folder `target`; the old one is removed.
void replace_folder(const fs::path& temporary, const fs::path& target) {
  std::error_code ignored;
  if (::renameat2(AT_FDCWD, temporary.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    sync_one(parent_folder(target), true, target);
    fs::remove_all(temporary, ignored);  // now the old folder; a leftover of the scheme if this fails
    return;
  }
  const int error = errno;
  if (error != EINVAL && error != ENOSYS && error != ENOTSUP) {
    throw InputError(target.string(), "cannot swap the finished temporary folder into place: " + errno_text(error));
  }
  // No atomic exchange on this file system: move the old folder aside (under a temporary name,
  // so that a crash here leaves a recognisable leftover), then the new one in.
  const fs::path aside = temporary_path_for(target);
  std::error_code failed;
  fs::rename(target, aside, failed);
  if (!failed) fs::rename(temporary, target, failed);
  if (failed) {
    fs::rename(aside, target, ignored);
    throw InputError(target.string(), "cannot rename the finished temporary folder into place: " + failed.message());
  }
  sync_one(parent_folder(target), true, target);
  fs::remove_all(aside, ignored);
}

}  // namespace

fs::path temporary_path_for(const fs::path& target, std::uint64_t owner, std::uint64_t n) {
  const fs::path path = named(target);
  const std::string name = path.filename().string();
  return path.parent_path() / ("." + name + std::string(kMarker) + std::to_string(owner) + "." + std::to_string(n) +
                               kept_extension(name));
}

fs::path temporary_path_for(const fs::path& target) {
  static std::atomic<unsigned long> counter{0};
  const fs::path path = named(target);
  const std::string name = path.filename().string();
  const std::string prefix = "." + name + std::string(kMarker) + std::to_string(::getpid()) + ".";
  const std::string extension = kept_extension(name);
  while (true) {
    fs::path candidate = path.parent_path() / (prefix + std::to_string(counter++) + extension);
    std::error_code error;
    if (!fs::exists(fs::symlink_status(candidate, error))) return candidate;
  }
}

bool is_temporary_name(const std::string& filename) {
  if (filename.size() < 2 || filename[0] != '.') return false;
  for (std::size_t at = filename.find(kMarker, 2); at != std::string::npos; at = filename.find(kMarker, at + 1)) {
    const std::string name = filename.substr(1, at - 1);
    const std::string extension = kept_extension(name);
    const std::string_view rest = std::string_view(filename).substr(at + kMarker.size());
    if (rest.size() <= extension.size() || rest.substr(rest.size() - extension.size()) != extension) continue;
    const std::string_view numbers = rest.substr(0, rest.size() - extension.size());
    const std::size_t dot = numbers.find('.');
    if (dot != std::string_view::npos && all_digits(numbers.substr(0, dot)) && all_digits(numbers.substr(dot + 1))) return true;
  }
  return false;
}

void commit_atomically(const fs::path& temporary, const fs::path& target_path) {
  const fs::path target = named(target_path);
  std::error_code error;
  const auto status = fs::symlink_status(temporary, error);
  if (!fs::exists(status)) {
    throw InputError(target.string(), "the temporary '" + temporary.string() + "' to put in place does not exist");
  }
  const bool folder = fs::is_directory(status);
  sync_tree(temporary, folder, target);
  if (folder && fs::is_directory(fs::symlink_status(target, error))) {
    replace_folder(temporary, target);
    return;
  }
  fs::rename(temporary, target, error);
  if (error) {
    throw InputError(target.string(), std::string("cannot rename the finished temporary ") + (folder ? "folder" : "file") +
                                          " into place: " + error.message());
  }
  sync_one(parent_folder(target), true, target);
}

void write_atomically(const fs::path& target, const std::function<void(const fs::path& temporary)>& fill) {
  const fs::path temporary = temporary_path_for(target);
  try {
    fill(temporary);
    commit_atomically(temporary, target);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(temporary, ignored);
    throw;
  }
}

std::vector<fs::path> remove_leftover_temporaries(const fs::path& folder) {
  std::vector<fs::path> found;
  std::error_code error;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    if (is_temporary_name(it->path().filename().string())) found.push_back(it->path());
  }
  std::sort(found.begin(), found.end());
  for (const auto& path : found) {
    fs::remove_all(path, error);
    if (error) throw InputError(path.string(), "cannot remove this leftover temporary: " + error.message());
  }
  return found;
}

AtomicFileWriter::AtomicFileWriter(fs::path path) : target_(std::move(path)), temporary_(temporary_path_for(target_)) {
  out_.open(temporary_, std::ios::binary | std::ios::trunc);
  if (!out_) {
    throw InputError(target_.string(), std::string("cannot create a file in this folder: ") + std::strerror(errno) +
                                           " (expected an existing, writable folder)");
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) {
    out_.close();
    std::error_code ignored;
    fs::remove(temporary_, ignored);
  }
}

void AtomicFileWriter::commit() {
  out_.flush();
  bool written = static_cast<bool>(out_);
  int error = written ? 0 : errno;  // the failed write's reason (EFBIG, ENOSPC, ...)
  out_.close();
  if (written && out_.fail()) {
    written = false;
    error = errno;
  }
  if (!written) {
    throw InputError(target_.string(), std::string("cannot be written: ") +
                                           (error != 0 ? std::strerror(error) : "the stream failed (disk full?)") +
                                           " (temporary file '" + temporary_.string() + "')");
  }
  commit_atomically(temporary_, target_);
  committed_ = true;
}

void write_file_atomic(const fs::path& path, std::string_view contents) {
  AtomicFileWriter writer(path);
  writer.stream().write(contents.data(), static_cast<std::streamsize>(contents.size()));
  writer.commit();
}

}  // namespace vitruvian
