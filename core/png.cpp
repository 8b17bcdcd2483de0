// libpng through its simplified API (png_image), which reports errors without longjmp.
#include "core/png.h"

#include <png.h>

#include <cstring>
#include <string>

#include "core/atomic_file.h"
#include "core/errors.h"

namespace vitruvian {

void write_png(const std::filesystem::path& path, const RgbImage& image) {
  if (image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) * 3) {
    throw InputError(path.string(), "cannot write an empty or inconsistent picture");
  }
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_RGB;
  // One encoding into a buffer of libpng's bound on its size (asking libpng for the exact size
  // first would compress the picture twice).
  png_alloc_size_t bytes = PNG_IMAGE_PNG_SIZE_MAX(png);
  std::string encoded(bytes, '\0');
  if (!png_image_write_to_memory(&png, encoded.data(), &bytes, 0, image.pixels.data(), 0, nullptr)) {
    throw InputError(path.string(), std::string("libpng cannot encode the picture: ") + png.message);
  }
  encoded.resize(bytes);
  write_file_atomic(path, encoded);
}

RgbImage read_png(const std::filesystem::path& path) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) {
    throw InputError(path.string(), std::string("not a readable PNG: ") + png.message);
  }
  png.format = PNG_FORMAT_RGB;
  RgbImage image(static_cast<int>(png.width), static_cast<int>(png.height));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    png_image_free(&png);
    throw InputError(path.string(), std::string("cannot decode the PNG: ") + png.message);
  }
  return image;
}

}  // namespace vitruvian
