// Autocast state and channels-last conversion.
#include "models/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "core/errors.h"

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

Autocast::Autocast(Precision precision, const c10::Device& device)
    : on_(precision != Precision::kFloat32 && device.is_cuda()) {
  if (!on_) return;
  previous_ = at::autocast::is_enabled();
  previous_type_ = at::autocast::get_autocast_gpu_dtype();
  at::autocast::set_autocast_gpu_dtype(precision == Precision::kBFloat16 ? at::kBFloat16 : at::kHalf);
  at::autocast::set_enabled(true);
}

Autocast::~Autocast() {
  if (!on_) return;
  at::autocast::set_enabled(previous_);
  at::autocast::set_autocast_gpu_dtype(previous_type_);
  at::autocast::clear_cache();
}

void to_channels_last_3d(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 5) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast3d));
  }
}

at::Tensor channels_last_3d(const at::Tensor& x) { return x.contiguous(at::MemoryFormat::ChannelsLast3d); }

}  // namespace vitruvian::models
