// Command-line values shared by the jobs: number lists ("Z,Y,X" or one value for all axes),
// storage options and the refusal to overwrite an output without --force.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>

#include "data/volume_store.h"

namespace vitruvian::jobs {

/// "A,B,C" or "A" (for all three) as positive integers; InputError naming `option` otherwise.
std::array<std::int64_t, 3> parse_three_counts(const std::string& text, const std::string& option);
/// "A,B,C" or "A" as positive numbers; InputError naming `option` otherwise.
std::array<double, 3> parse_three_numbers(const std::string& text, const std::string& option);

/// Chunk shape ("Z,Y,X", one size, or "contiguous"), deflate level 0–9 or LZ4, and shuffle, checked.
data::StorageOptions storage_options(const std::string& chunk, int deflate, bool shuffle, bool lz4 = false);

/// InputError when `output` exists and `force` is not set.
void refuse_existing(const std::filesystem::path& output, bool force);

}  // namespace vitruvian::jobs
