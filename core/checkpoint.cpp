// Manifest format: {"complete": true, "files": {"model.pt": {"bytes": N, "fnv1a64": "..."}}}.
#include "core/checkpoint.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "core/fault_injection.h"

namespace vitruvian {
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> folders(const fs::path& root, const std::string& prefix) {
  std::vector<fs::path> out;
  std::error_code error;
  if (!fs::is_directory(root, error)) return out;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind(prefix, 0) == 0 && !is_temporary_name(name)) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) { return a.filename() > b.filename(); });
  return out;
}

}  // namespace

namespace {
constexpr std::uint64_t kFnvOffset = 0xcbf29ce484222325ull;

std::uint64_t fnv1a_update(std::uint64_t h, const char* data, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(data[i])) * 0x100000001b3ull;
  return h;
}
}  // namespace

std::string file_checksum(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string(), "cannot be read");
  std::uint64_t h = kFnvOffset;
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    h = fnv1a_update(h, buffer.data(), static_cast<std::size_t>(in.gcount()));
  }
  return fmt::format("{:016x}", h);
}

std::string text_checksum(std::string_view text) {
  return fmt::format("{:016x}", fnv1a_update(kFnvOffset, text.data(), text.size()));
}

void write_checkpoint(const fs::path& root, const std::string& name, const std::function<void(const fs::path&)>& fill,
                      const std::string& prefix, int keep) {
  std::error_code error;
  fs::create_directories(root, error);
  if (error) throw InputError(root.string(), "cannot create the checkpoint folder: " + error.message());
  const fs::path target = root / name;
  write_atomically(target, [&](const fs::path& temporary) {
    if (!fs::create_directory(temporary, error) || error) {
      throw InputError(target.string(), "cannot create the temporary folder '" + temporary.string() + "': " + error.message());
    }
    fill(temporary);
    fault_point("checkpoint.write");  // the files are written, the manifest is not
    nlohmann::json files = nlohmann::json::object();
    for (const auto& entry : fs::directory_iterator(temporary)) {
      if (!entry.is_regular_file()) continue;
      files[entry.path().filename().string()] = {{"bytes", entry.file_size()}, {"fnv1a64", file_checksum(entry.path())}};
    }
    write_file_atomic(temporary / "manifest.json", nlohmann::json{{"complete", true}, {"files", files}}.dump(2));
    fault_point("checkpoint.commit");  // complete, still under its temporary name
  });
  if (keep > 0) {
    const auto all = folders(root, prefix);
    for (std::size_t i = static_cast<std::size_t>(keep); i < all.size(); ++i) fs::remove_all(all[i], error);
  }
}

std::string verify_checkpoint(const fs::path& dir) {
  std::ifstream in(dir / "manifest.json");
  if (!in) return "no manifest.json (the write did not finish)";
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(text.str());
  } catch (const std::exception&) {
    return "manifest.json is not valid JSON";
  }
  try {
    if (!manifest.value("complete", false)) return "manifest.json is not marked complete";
    for (const auto& [file, facts] : manifest.at("files").items()) {
      const fs::path path = dir / file;
      std::error_code error;
      const auto bytes = fs::file_size(path, error);
      if (error) return file + " is missing";
      if (bytes != facts.at("bytes").get<std::uintmax_t>()) {
        return fmt::format("{} has {} bytes; the manifest says {}", file, bytes, facts.at("bytes").get<std::uintmax_t>());
      }
      if (file_checksum(path) != facts.at("fnv1a64").get<std::string>()) return file + " does not match its checksum";
    }
  } catch (const nlohmann::json::exception& e) {
    return std::string("manifest.json is malformed: ") + e.what();
  } catch (const Error& e) {
    return e.what();  // a listed file that cannot be read
  }
  return "";
}

std::optional<fs::path> latest_checkpoint(const fs::path& root, const std::string& prefix,
                                          const std::function<void(const fs::path&, const std::string&)>& skipped) {
  for (const auto& dir : folders(root, prefix)) {
    const std::string problem = verify_checkpoint(dir);
    if (problem.empty()) return dir;
    if (skipped) skipped(dir, problem);
  }
  return std::nullopt;
}

}  // namespace vitruvian
