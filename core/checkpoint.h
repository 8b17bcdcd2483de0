// Checkpoint folders written atomically: files go to a temporary folder with a manifest of
// their sizes and checksums and a completion mark, then the folder is renamed into place.
// Readers take the newest folder that verifies and say why they skip the others.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vitruvian {

/// FNV-1a 64 of a file's bytes, as 16 hex digits. InputError naming the file if unreadable.
std::string file_checksum(const std::filesystem::path& path);
/// The same checksum of `text`.
std::string text_checksum(std::string_view text);

/// Writes ROOT/<name> through write_atomically (core/atomic_file.h): `fill` writes the files into
/// the temporary folder it is given; then manifest.json (every file's size and checksum,
/// complete: true) is added, and the folder is synced and put in place (an existing ROOT/<name>
/// is replaced). Afterwards keeps only the newest `keep` folders whose names start with `prefix`
/// (0 keeps all). On any error the temporary folder is removed. Fault points (core/fault_injection.h):
/// "checkpoint.write" once `fill` returned, before the manifest; "checkpoint.commit" before the rename.
void write_checkpoint(const std::filesystem::path& root, const std::string& name,
                      const std::function<void(const std::filesystem::path&)>& fill, const std::string& prefix = "",
                      int keep = 0);

/// Why `dir` is not a complete checkpoint ("" when it is): manifest missing or unreadable,
/// not marked complete, a file missing, of another size, or with another checksum.
std::string verify_checkpoint(const std::filesystem::path& dir);

/// The newest (by name, descending) folder under `root` named `prefix`… that verifies;
/// `skipped` is called with each newer folder passed over and the reason. Temporaries of the
/// atomic-write scheme (is_temporary_name) are never considered.
std::optional<std::filesystem::path> latest_checkpoint(
    const std::filesystem::path& root, const std::string& prefix,
    const std::function<void(const std::filesystem::path&, const std::string&)>& skipped = {});

}  // namespace vitruvian
