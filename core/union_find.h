// Union-find over dense indices (path halving), joining towards the smaller index so that a
// set's root is its first member in the order indices were given: the components kernel's
// provisional labels, the body box's runs.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace vitruvian {

/// The root of `x`'s set; shortens the path on the way.
template <typename Index>
Index find_root(std::vector<Index>& parent, Index x) {
  while (parent[static_cast<std::size_t>(x)] != x) {
    parent[static_cast<std::size_t>(x)] = parent[static_cast<std::size_t>(parent[static_cast<std::size_t>(x)])];
    x = parent[static_cast<std::size_t>(x)];
  }
  return x;
}

/// Joins the sets of `a` and `b` under the smaller of their roots.
template <typename Index>
void join_sets(std::vector<Index>& parent, Index a, Index b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a == b) return;
  if (a > b) std::swap(a, b);
  parent[static_cast<std::size_t>(b)] = a;
}

}  // namespace vitruvian
