// Whole numbers read from JSON files, checked: nlohmann's get<int>() casts a JSON float without a
// word, and one beyond the type's range (2.2e24, say: a too-long integer parses as a float) is
// undefined behaviour. Files we write hold every whole number as a JSON integer.
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/errors.h"

namespace vitruvian {

/// `v` (the value of `key` in file `source`) as T: a JSON integer in T's range, else InputError
/// naming the file and the key.
template <typename T>
T json_whole(const nlohmann::json& v, const std::string& source, const std::string& key) {
  static_assert(std::is_integral_v<T> && std::is_signed_v<T>, "a signed integer type: the range test compares as int64");
  const bool fits = v.is_number_unsigned()
                        ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())
                        : v.is_number_integer() && v.get<std::int64_t>() >= std::numeric_limits<T>::min() &&
                              v.get<std::int64_t>() <= std::numeric_limits<T>::max();
  if (!fits) {
    throw InputError(source, fmt::format("{} is {}; expected a whole number (a JSON integer from {} to {})", key,
                                         v.is_number() ? v.dump() : std::string(v.type_name()),
                                         std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
  }
  return static_cast<T>(v.get<std::int64_t>());
}

/// `v` as a list of whole numbers, each as json_whole() reads it.
inline std::vector<std::int64_t> json_wholes(const nlohmann::json& v, const std::string& source,
                                             const std::string& key) {
  if (!v.is_array())
    throw InputError(source, fmt::format("{} is a {}; expected a list of whole numbers", key, v.type_name()));
  std::vector<std::int64_t> out;
  for (const nlohmann::json& e : v) out.push_back(json_whole<std::int64_t>(e, source, key));
  return out;
}

}  // namespace vitruvian
