// Data-parallel gradient averaging in buckets launched from autograd hooks while backward is
// still running (PyTorch DDP's scheme): a small first bucket, then larger ones, in reverse
// parameter order, launched strictly in bucket order so every rank issues the same collectives.
// The first layers' gradients, computed last, get a small bucket of their own: what is left to
// send when backward ends is that bucket, not a large one that had to wait for its last member.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/comm/communicator.h"

namespace vitruvian {

struct GradientReducerOptions {
  std::int64_t first_bucket_bytes = 1 << 20;  ///< the first bucket fills fast and starts early
  std::int64_t bucket_bytes = 25 << 20;
  /// The parameters registered first, up to this size, form the last bucket (0: no such bucket;
  /// nor when they would be every parameter).
  std::int64_t last_bucket_bytes = 1 << 20;
};

/// Communication of one step: `total_s` is the collectives' own running time (summed),
/// `exposed_s` the part of it the training thread waited for after backward ended.
struct CommStats {
  double total_s = 0;
  double exposed_s = 0;
  int buckets = 0;
};

class GradientReducer {
 public:
  /// Hooks every parameter that requires a gradient. Parameters must stay alive (and keep
  /// their storage) as long as the reducer; `comm` must outlive it. Buckets are fixed here.
  GradientReducer(std::vector<at::Tensor> parameters, Communicator& comm, GradientReducerOptions options = {});
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Before each backward pass: `sync` false accumulates gradients locally (inner steps of
  /// gradient accumulation); true averages them across ranks as buckets fill.
  void prepare(bool sync);
  /// After a synchronising backward pass: launches buckets whose parameters got no gradient
  /// (as zeros), waits for every bucket and writes the averages into each parameter's grad.
  CommStats finish();

  /// Parameter indices (into the constructor's list) of each bucket, in launch order.
  const std::vector<std::vector<std::size_t>>& buckets() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vitruvian
