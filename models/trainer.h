// Data-parallel training steps: forward, Dice+CE with deep supervision, backward with bucketed
// gradient averaging overlapped, a step every rank takes or every rank skips (non-finite loss
// or gradient anywhere), clipping, SGD-Nesterov/poly or AdamW/cosine, and the trainer's state
// for exact resumption.
#pragma once

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/comm/communicator.h"
#include "core/comm/gradient_reducer.h"
#include "core/config.h"
#include "models/unet.h"

namespace vitruvian::models {

/// The `optimizer:` config section.
struct OptimizerConfig {
  std::string name = "sgd";  ///< sgd (Nesterov momentum) | adamw
  double lr = 0.01;
  double momentum = 0.99;  ///< sgd
  double weight_decay = 3e-5;
  std::string schedule = "poly";  ///< poly (1 − t/T)^0.9 | cosine | constant
  double clip_norm = 12.0;        ///< gradient norm clipping; <= 0: none

  void visit(ConfigVisitor& v);
  /// ConfigError naming the key for an unknown optimizer or schedule, or a non-positive lr.
  void validate() const;
};

struct TrainerOptions {
  OptimizerConfig optimizer;
  /// On CUDA: forward passes under bfloat16 autocast (weights, gradients and the optimiser stay
  /// float32). Ignored on CPU.
  bool bf16 = true;
  /// Channels-last 3D weights and inputs (cuDNN's faster layout for some 3D convolutions on
  /// tensor cores; measure before turning on).
  bool channels_last = false;
  /// On the CPU: convolutions on oneDNN directly, activations channels-last (UNetImpl::use_onednn),
  /// where this CPU allows it; LibTorch's ops otherwise or when false.
  bool onednn = true;
  std::int64_t steps = 1000;     ///< the schedule's length
  int max_bad_steps = 5;         ///< consecutive skipped steps that end the run
  GradientReducerOptions buckets;
};

struct StepResult {
  std::int64_t step = 0;  ///< 1-based number of the step just taken (or skipped)
  double loss = 0;        ///< mean over ranks (NaN when skipped for a non-finite loss)
  double lr = 0;
  bool skipped = false;
  double forward_s = 0, backward_s = 0, optimizer_s = 0;
  CommStats comm;  ///< summed over micro-steps
};

/// One sample of a micro-batch: image [B, C, D, H, W] float32, target [B, D, H, W] int64, on
/// the network's device.
using MicroBatch = std::pair<at::Tensor, at::Tensor>;

class Trainer {
 public:
  /// Broadcasts rank 0's weights so every rank starts equal. `comm` outlives the trainer.
  Trainer(UNet net, Communicator& comm, TrainerOptions options);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// One optimiser step over the micro-batches (gradient accumulation: only the last one
  /// synchronises). Collective: every rank calls it with the same number of micro-batches.
  /// When any rank sees a non-finite loss or gradient, every rank skips the step (weights and
  /// optimiser untouched) and `on_skip` runs on the ranks that saw it; more than
  /// max_bad_steps in a row throws InputError.
  StepResult step(const std::vector<MicroBatch>& micro_batches,
                  const std::function<void(const std::string&)>& on_skip = {});

  std::int64_t steps_done() const;
  double learning_rate(std::int64_t step) const;
  UNet& net();

  /// Writes optimizer.pt, model.pt, rng.pt (LibTorch's default CPU generator) and trainer.json
  /// (step, bad-step streak) into `dir`.
  void save(const std::filesystem::path& dir) const;
  /// Reads what save() wrote; InputError naming the file on a mismatch.
  void load(const std::filesystem::path& dir);
  /// The step a trainer saved into `dir` had taken (to place a loader before loading).
  static std::int64_t saved_step(const std::filesystem::path& dir);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vitruvian::models
