// Autocast state and channels-last conversion.
#include "models/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "core/errors.h"
#include "core/torch_compat.h"

namespace vitruvian::models {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kBFloat16: return "bf16";
    case Precision::kFloat16: return "fp16";
    case Precision::kFloat32: break;
  }
  return "fp32";
}

Precision precision_from_name(const std::string& name, const std::string& key) {
  if (name == "fp32") return Precision::kFloat32;
  if (name == "bf16") return Precision::kBFloat16;
  if (name == "fp16") return Precision::kFloat16;
  throw ConfigError(key, "'" + name + "'; expected fp32, bf16 or fp16");
}

using torch_compat::cuda_autocast_dtype;
using torch_compat::cuda_autocast_enabled;
using torch_compat::set_cuda_autocast_dtype;
using torch_compat::set_cuda_autocast_enabled;

Autocast::Autocast(Precision precision, const c10::Device& device)
    : on_(precision != Precision::kFloat32 && device.is_cuda()) {
  if (!on_) return;
  previous_ = cuda_autocast_enabled();
  previous_type_ = cuda_autocast_dtype();
  set_cuda_autocast_dtype(precision == Precision::kBFloat16 ? at::kBFloat16 : at::kHalf);
  set_cuda_autocast_enabled(true);
}

Autocast::~Autocast() {
  if (!on_) return;
  set_cuda_autocast_enabled(previous_);
  set_cuda_autocast_dtype(previous_type_);
  at::autocast::clear_cache();
}

bool cpu_bfloat16_convolutions() {
  static const bool available = [] {
    try {
      torch::NoGradGuard no_grad;
      at::conv3d(at::zeros({1, 16, 4, 4, 4}, at::kBFloat16), at::zeros({16, 16, 3, 3, 3}, at::kBFloat16), {}, 1, 1);
      return true;
    } catch (const std::exception&) {  // oneDNN has no bf16 convolution below AVX-512
      return false;
    }
  }();
  return available;
}

bool whole_bfloat16(Precision precision, const c10::Device& device) {
  return precision == Precision::kBFloat16 && device.is_cpu() && cpu_bfloat16_convolutions();
}

void to_channels_last_3d(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 5) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast3d));
  }
}

at::Tensor channels_last_3d(const at::Tensor& x) { return x.contiguous(at::MemoryFormat::ChannelsLast3d); }

}  // namespace vitruvian::models
