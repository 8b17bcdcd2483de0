// Deterministic DICOM UIDs: two 64-bit hashes of the length-prefixed parts, read as one 128-bit
// number written in decimal after the root.
#include "data/dicom_uid.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "core/errors.h"

namespace vitruvian::data {
namespace {

/// 64-bit FNV-1a over `bytes`, continued from `hash`.
std::uint64_t fnv1a(std::uint64_t hash, std::string_view bytes) {
  for (const unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

/// SplitMix64's finaliser: spreads every input bit over the whole word.
std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// The parts as one byte string in which part boundaries cannot be confused ("ab","c" vs "a","bc").
std::string framed(const std::vector<std::string>& parts) {
  std::string bytes;
  for (const std::string& part : parts) bytes += fmt::format("{}:{};", part.size(), part);
  return bytes;
}

/// The 128-bit number high:low in decimal.
std::string decimal(std::uint64_t high, std::uint64_t low) {
  std::string digits;
  while (high != 0 || low != 0) {
    // Divide high:low by 10 with 32-bit limbs.
    std::uint64_t remainder = 0;
    std::uint32_t limbs[4] = {static_cast<std::uint32_t>(high >> 32), static_cast<std::uint32_t>(high),
                              static_cast<std::uint32_t>(low >> 32), static_cast<std::uint32_t>(low)};
    for (std::uint32_t& limb : limbs) {
      const std::uint64_t value = (remainder << 32) | limb;
      limb = static_cast<std::uint32_t>(value / 10);
      remainder = value % 10;
    }
    high = (std::uint64_t{limbs[0]} << 32) | limbs[1];
    low = (std::uint64_t{limbs[2]} << 32) | limbs[3];
    digits.push_back(static_cast<char>('0' + remainder));
  }
  std::reverse(digits.begin(), digits.end());
  return digits.empty() ? "0" : digits;
}

}  // namespace

bool is_valid_uid(std::string_view uid) {
  if (uid.empty() || uid.size() > kMaxUidLength) return false;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = uid.find('.', start);
    const std::string_view component = uid.substr(start, dot == std::string_view::npos ? uid.npos : dot - start);
    if (component.empty()) return false;
    if (!std::all_of(component.begin(), component.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
    if (component.size() > 1 && component.front() == '0') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

void check_uid_root(const std::string& root, const std::string& source) {
  if (!is_valid_uid(root)) {
    throw InputError(source,
                     "is not a valid UID root; expected numbers separated by dots, no leading zeros "
                     "(e.g. 1.2.826.0.1.3680043.10.1147)");
  }
  if (root.size() + 1 + kMinUidHashDigits > kMaxUidLength) {
    throw InputError(source, fmt::format("is {} characters long; expected at most {} so that the UIDs made from it "
                                         "fit in 64 characters",
                                         root.size(), kMaxUidLength - 1 - kMinUidHashDigits));
  }
}

std::string uid_from(const std::string& root, const std::vector<std::string>& parts) {
  check_uid_root(root, "UID root " + root);
  const std::string bytes = framed(parts);
  const std::uint64_t high = mix(fnv1a(0xcbf29ce484222325ULL, bytes));
  const std::uint64_t low = mix(fnv1a(0x84222325cbf29ce4ULL ^ high, bytes));
  std::string component = decimal(high, low);
  const std::size_t room = kMaxUidLength - root.size() - 1;
  if (component.size() > room) component.resize(room);
  if (component.front() == '0') component.front() = '1';
  return root + "." + component;
}

}  // namespace vitruvian::data
