// RuntimeConfig fields, checks and application.
#include "core/runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include "core/device.h"
#include "core/errors.h"
#include "core/mpi_env.h"

namespace vitruvian {

void RuntimeConfig::visit(ConfigVisitor& v) {
  v.field("device", device, "auto | cpu | cuda; a CUDA rank uses device local_rank mod visible devices");
  v.field("log_level", logging.level, "trace | debug | info | warn | error | critical | off");
  v.field("log_all_ranks", logging.all_ranks, "info lines from every rank, not only rank 0");
  v.field("collective_timeout_s", collective_timeout_s, "seconds before a stuck collective ends the job (<= 0: never)");
  v.field("intra_op_threads", intra_op_threads, "LibTorch intra-op threads per rank");
  v.field("inter_op_threads", inter_op_threads, "LibTorch inter-op threads per rank");
  v.field("cudnn_benchmark", cudnn_benchmark,
          "on CUDA: cuDNN autotuning (times the algorithms for each new shape, keeps the fastest)");
}

void RuntimeConfig::validate() const {
  // Each parser's InputError carries the reason; the key is named here.
  auto check = [](const char* key, auto&& parse) {
    try {
      parse();
    } catch (const InputError& e) {
      throw ConfigError(key, e.detail());
    }
  };
  check("runtime.device", [&] { parse_device_choice(device); });
  check("runtime.log_level", [&] { parse_log_level(logging.level); });
  if (intra_op_threads < 1) {
    throw ConfigError("runtime.intra_op_threads", std::to_string(intra_op_threads) + " is not a thread count; expected >= 1");
  }
  if (inter_op_threads < 1) {
    throw ConfigError("runtime.inter_op_threads", std::to_string(inter_op_threads) + " is not a thread count; expected >= 1");
  }
}

c10::Device apply_runtime(const RuntimeConfig& config, const MpiEnvironment& env) {
  init_logging(config.logging, env.rank(), env.size(), env.host());
  at::set_num_threads(config.intra_op_threads);
  static bool interop_set = false;  // LibTorch allows setting this once per process
  if (!interop_set) {
    at::set_num_interop_threads(config.inter_op_threads);
    interop_set = true;
  }
  const c10::Device device = select_device(parse_device_choice(config.device), env.local_rank());
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(config.cudnn_benchmark);
  return device;
}

}  // namespace vitruvian
