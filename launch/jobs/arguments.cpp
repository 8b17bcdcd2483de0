// Parsing and checks of the jobs' shared command-line values.
#include "launch/jobs/arguments.h"

#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "core/errors.h"

namespace vitruvian::jobs {
namespace {

/// Splits "a,b,c" into numbers; false when a piece is not a number.
bool split_numbers(const std::string& text, std::vector<double>& values) {
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto end = std::min(text.find(',', start), text.size());
    const std::string piece = text.substr(start, end - start);
    if (piece.find_first_not_of("0123456789.+-eE") != std::string::npos) return false;  // no hex, inf, nan
    std::size_t used = 0;
    try {
      values.push_back(std::stod(piece, &used));
    } catch (const std::exception&) {
      return false;
    }
    if (used == 0 || used != piece.size()) return false;
    start = end + 1;
  }
  return true;
}

std::array<double, 3> three_of(const std::vector<double>& values) {
  if (values.size() == 1) return {values[0], values[0], values[0]};
  return {values[0], values[1], values[2]};
}

}  // namespace

std::array<std::int64_t, 3> parse_three_counts(const std::string& text, const std::string& option) {
  std::vector<double> values;
  bool ok = split_numbers(text, values) && (values.size() == 1 || values.size() == 3);
  for (const double v : values) ok = ok && v >= 1 && v <= 1e15 && v == std::floor(v);
  if (!ok) throw InputError(option + " " + text, "expected three positive whole numbers A,B,C or one for all three");
  const auto three = three_of(values);
  return {static_cast<std::int64_t>(three[0]), static_cast<std::int64_t>(three[1]), static_cast<std::int64_t>(three[2])};
}

std::array<double, 3> parse_three_numbers(const std::string& text, const std::string& option) {
  std::vector<double> values;
  bool ok = split_numbers(text, values) && (values.size() == 1 || values.size() == 3);
  for (const double v : values) ok = ok && v > 0 && std::isfinite(v);
  if (!ok) throw InputError(option + " " + text, "expected three positive numbers A,B,C or one for all three");
  return three_of(values);
}

data::StorageOptions storage_options(const std::string& chunk, int deflate, bool shuffle, bool lz4) {
  data::StorageOptions storage;
  storage.chunk_zyx = chunk == "contiguous" ? std::array<std::int64_t, 3>{0, 0, 0} : parse_three_counts(chunk, "--chunk");
  if (deflate < 0 || deflate > 9) throw InputError(fmt::format("--deflate {}", deflate), "expected a level from 0 (off) to 9");
  if (deflate > 0 && storage.chunk_zyx[0] == 0) {
    throw InputError("--deflate with --chunk contiguous", "compression needs chunked storage; give --chunk Z,Y,X");
  }
  if (lz4 && deflate > 0) throw InputError("--lz4 with --deflate", "choose one compression");
  if (lz4 && storage.chunk_zyx[0] == 0) {
    throw InputError("--lz4 with --chunk contiguous", "compression needs chunked storage; give --chunk Z,Y,X");
  }
  storage.deflate_level = deflate;
  storage.lz4 = lz4;
  storage.shuffle = shuffle;
  return storage;
}

void refuse_existing(const std::filesystem::path& output, bool force) {
  std::error_code error;
  if (std::filesystem::exists(output, error) && !force) {
    throw InputError(output.string(), "exists already; pass --force to replace it");
  }
}

}  // namespace vitruvian::jobs
