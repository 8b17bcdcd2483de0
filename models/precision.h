// How a network runs in reduced precision: autocast for forward passes on CUDA (bfloat16 or
// float16), a whole-bfloat16 network for inference on the CPU (oneDNN's AMX / AVX512-BF16
// convolutions), and channels-last 3D weights and inputs. Shared by training, inference
// campaigns and the benchmarks.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>

namespace torch::nn {
class Module;
}

namespace vitruvian::models {

enum class Precision { kFloat32, kBFloat16, kFloat16 };

/// "fp32" / "bf16" / "fp16", and back (ConfigError naming `key` for anything else).
const char* precision_name(Precision p);
Precision precision_from_name(const std::string& name, const std::string& key);

/// While alive: LibTorch's CUDA autocast in `precision` when `device` is CUDA and precision is
/// not fp32; nothing otherwise. Restores the previous state.
class Autocast {
 public:
  Autocast(Precision precision, const c10::Device& device);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool on_ = false, previous_ = false;
  at::ScalarType previous_type_ = at::kHalf;
};

/// Whether LibTorch's CPU convolutions take bfloat16 here (oneDNN: natively with AMX or
/// AVX512-BF16, emulated on other AVX-512 CPUs, not at all below AVX-512). Probed once.
bool cpu_bfloat16_convolutions();

/// Whether inference in `precision` on `device` runs the whole network in bfloat16: bf16 on the
/// CPU where cpu_bfloat16_convolutions() holds (LibTorch has no fast CPU autocast path). fp16 on
/// the CPU, and bf16 on a CPU without bf16 convolutions, stay fp32.
bool whole_bfloat16(Precision precision, const c10::Device& device);

/// Puts every 5-D parameter of `module` (the 3D convolutions' weights) in channels-last 3D
/// memory format; values are unchanged.
void to_channels_last_3d(torch::nn::Module& module);

/// `x` [N, C, D, H, W] in channels-last 3D memory format (a copy unless it already is).
at::Tensor channels_last_3d(const at::Tensor& x);

}  // namespace vitruvian::models
