// Argument checks shared by data/'s tensor functions (preprocess, body box): private to data/.
#pragma once

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>

#include "core/errors.h"

namespace vitruvian::data::detail {

/// InputError at `where` unless `t` is a defined, real CPU tensor (`name` says which argument).
inline void check_cpu_tensor(const at::Tensor& t, const char* where, const char* name) {
  if (!t.defined()) throw InputError(where, fmt::format("{} is an undefined tensor", name));
  if (!t.device().is_cpu())
    throw InputError(where, fmt::format("{} must be a CPU tensor, not on {}", name, t.device().str()));
  if (t.is_complex())
    throw InputError(where, fmt::format("{} must be real, not {}", name, c10::toString(t.scalar_type())));
}

/// "[a, b, c]": a tensor's shape for messages.
inline std::string shape_text(const at::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

}  // namespace vitruvian::data::detail
