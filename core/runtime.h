// Per-process runtime settings every job shares (config section "runtime"): device, logging,
// collective timeout and explicit thread counts. apply_runtime() puts them into effect.
#pragma once

#include <c10/core/Device.h>

#include <string>

#include "core/config.h"
#include "core/logging.h"

namespace vitruvian {

class MpiEnvironment;

struct RuntimeConfig {
  std::string device = "auto";        ///< auto | cpu | cuda
  LoggingOptions logging;             ///< log_level, log_all_ranks
  double collective_timeout_s = 600;  ///< a collective running longer ends the job; <= 0: never
  int intra_op_threads = 1;           ///< LibTorch intra-op threads per rank (set explicitly)
  int inter_op_threads = 1;           ///< LibTorch inter-op threads per rank
  bool cudnn_benchmark = true;        ///< on CUDA: cuDNN times its algorithms per shape and keeps the fastest

  void visit(ConfigVisitor& v);
  /// Throws ConfigError naming the first bad value and what was expected.
  void validate() const;
};

/// Starts logging, sets LibTorch's thread counts, picks this rank's device and, on CUDA, turns
/// cuDNN's autotuning on or off.
c10::Device apply_runtime(const RuntimeConfig& config, const MpiEnvironment& env);

}  // namespace vitruvian
