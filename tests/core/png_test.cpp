// core/png: a picture written is libpng's own encoding of it (one pass), reads back pixel for
// pixel, and a bad picture is refused naming the file, with nothing written.
#include "core/png.h"

#include <gtest/gtest.h>
#include <png.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/errors.h"
#include "tests/tools/scratch_dir.h"

namespace vitruvian {
namespace {

namespace fs = std::filesystem;

class PngTest : public ::testing::Test {
 protected:
  testing::ScratchDir scratch_;
  const fs::path& dir_ = scratch_.path();
};

/// Flat regions, gradients and a little pseudo-random texture: compressible, as our pictures are.
RgbImage test_picture(int width, int height) {
  RgbImage image(width, height);
  unsigned state = 12345;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      state = state * 1103515245u + 12345u;
      std::uint8_t* p = image.at(x, y);
      p[0] = static_cast<std::uint8_t>(x * 255 / width);
      p[1] = y < height / 2 ? 40 : static_cast<std::uint8_t>((state >> 16) & 0xff);
      p[2] = static_cast<std::uint8_t>((x / 16 + y / 16) % 2 ? 200 : 10);
    }
  }
  return image;
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST_F(PngTest, WritesLibpngsEncodingAndReadsBackPixelForPixel) {
  for (const auto& [width, height] : {std::pair{1, 1}, {37, 5}, {1464, 964}}) {
    const RgbImage image = test_picture(width, height);
    const fs::path path = dir_ / ("p" + std::to_string(width) + ".png");
    write_png(path, image);

    // The reference: libpng's simplified API asked for the size, then for the bytes.
    png_image png;
    std::memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = static_cast<png_uint_32>(width);
    png.height = static_cast<png_uint_32>(height);
    png.format = PNG_FORMAT_RGB;
    png_alloc_size_t bytes = 0;
    ASSERT_TRUE(png_image_write_to_memory(&png, nullptr, &bytes, 0, image.pixels.data(), 0, nullptr));
    std::string expected(bytes, '\0');
    ASSERT_TRUE(png_image_write_to_memory(&png, expected.data(), &bytes, 0, image.pixels.data(), 0, nullptr));
    expected.resize(bytes);
    EXPECT_EQ(file_bytes(path), expected) << width << " x " << height;

    const RgbImage back = read_png(path);
    EXPECT_EQ(back.width, width);
    EXPECT_EQ(back.height, height);
    EXPECT_EQ(back.pixels, image.pixels);
  }
}

TEST_F(PngTest, AnInconsistentPictureIsRefusedNamingTheFileAndNothingIsWritten) {
  RgbImage image = test_picture(8, 4);
  image.pixels.pop_back();
  const fs::path path = dir_ / "bad.png";
  try {
    write_png(path, image);
    FAIL() << "an inconsistent picture was written";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir_)) << "something was left in " << dir_;
  EXPECT_THROW(write_png(dir_ / "empty.png", RgbImage()), InputError);
  EXPECT_THROW(read_png(dir_ / "missing.png"), InputError);
}

}  // namespace
}  // namespace vitruvian
