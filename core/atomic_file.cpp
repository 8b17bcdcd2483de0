// AtomicFileWriter: temp file + fsync + rename.
#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "core/errors.h"

namespace vitruvian {
namespace {
std::filesystem::path make_temporary_name(const std::filesystem::path& target) {
  static std::atomic<unsigned> counter{0};
  std::filesystem::path name = target;
  name += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  return name;
}

void fsync_path(const std::filesystem::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // best effort: some file systems do not allow opening folders
  ::fsync(fd);
  ::close(fd);
}
}  // namespace

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path)
    : target_(std::move(path)), temporary_(make_temporary_name(target_)) {
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
    std::filesystem::remove(temporary_, ignored);
  }
}

void AtomicFileWriter::commit() {
  out_.flush();
  const bool written = static_cast<bool>(out_);
  out_.close();
  if (!written || out_.fail()) {
    throw InputError(target_.string(), "writing the temporary file '" + temporary_.string() + "' failed (disk full?)");
  }
  fsync_path(temporary_, false);
  std::error_code error;
  std::filesystem::rename(temporary_, target_, error);
  if (error) throw InputError(target_.string(), "cannot rename the finished temporary file into place: " + error.message());
  committed_ = true;
  fsync_path(target_.has_parent_path() ? target_.parent_path() : std::filesystem::path("."), true);
}

void write_file_atomic(const std::filesystem::path& path, std::string_view contents) {
  AtomicFileWriter writer(path);
  writer.stream().write(contents.data(), static_cast<std::streamsize>(contents.size()));
  writer.commit();
}

}  // namespace vitruvian
