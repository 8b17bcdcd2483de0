// Portable random draws on std::mt19937_64: the same seed gives the same numbers with every
// standard library (std::uniform_*_distribution are implementation-defined).
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace vitruvian::data {

/// Uniform in [0, n), n >= 1, by rejection.
inline std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t n) {
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % n;
  std::uint64_t x = rng();
  while (x >= limit) x = rng();
  return x % n;
}

/// Uniform integer in [low, high], low <= high.
inline std::int64_t uniform_between(std::mt19937_64& rng, std::int64_t low, std::int64_t high) {
  return low + static_cast<std::int64_t>(uniform_below(rng, static_cast<std::uint64_t>(high - low) + 1));
}

/// Uniform in [0, 1) with 53 random bits.
inline double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

/// Standard normal draw (Box–Muller on two uniform01 draws; portable, unlike std::normal_distribution).
inline double normal01(std::mt19937_64& rng) {
  const double u1 = 1.0 - uniform01(rng), u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

/// FNV-1a of `text`: a portable string hash for seeding (std::hash differs between libraries).
inline std::uint64_t portable_hash(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

/// A generator seeded from several integers (seed, rank, step, ...): distinct streams per tuple.
inline std::mt19937_64 seeded_rng(std::initializer_list<std::uint64_t> parts) {
  std::vector<std::uint32_t> words;
  for (const std::uint64_t p : parts) {
    words.push_back(static_cast<std::uint32_t>(p));
    words.push_back(static_cast<std::uint32_t>(p >> 32));
  }
  std::seed_seq full(words.begin(), words.end());
  return std::mt19937_64(full);
}

}  // namespace vitruvian::data
