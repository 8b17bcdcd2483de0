// PNG output of RGB pictures (previews, overlays, plots) through libpng, written atomically.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace vitruvian {

/// An 8-bit RGB picture, rows top to bottom, 3 bytes per pixel.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;  ///< width * height * 3

  RgbImage() = default;
  RgbImage(int w, int h, std::uint8_t fill = 0) : width(w), height(h), pixels(static_cast<std::size_t>(w) * h * 3, fill) {}
  std::uint8_t* at(int x, int y) { return pixels.data() + (static_cast<std::size_t>(y) * width + x) * 3; }
  const std::uint8_t* at(int x, int y) const { return pixels.data() + (static_cast<std::size_t>(y) * width + x) * 3; }
};

/// Writes `image` as a PNG to `path` (temporary name, then rename). Throws InputError naming
/// the file when it cannot be written.
void write_png(const std::filesystem::path& path, const RgbImage& image);

/// Reads an 8-bit RGB or RGBA PNG (alpha dropped); InputError naming the file otherwise.
RgbImage read_png(const std::filesystem::path& path);

}  // namespace vitruvian
