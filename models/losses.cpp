// Dice + CE with log-softmax for stable cross-entropy and softmax probabilities for Dice.
#include "models/losses.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/errors.h"

namespace vitruvian::models {

at::Tensor dice_ce_loss(const at::Tensor& logits, const at::Tensor& target, double smooth) {
  if (logits.dim() != 5 || target.dim() != 4 || logits.size(0) != target.size(0) ||
      logits.sizes().slice(2) != target.sizes().slice(1)) {
    throw InputError("loss", fmt::format("logits {} and target {}; expected [N, C, D, H, W] and [N, D, H, W]",
                                         fmt::join(logits.sizes(), "x"), fmt::join(target.sizes(), "x")));
  }
  const std::int64_t classes = logits.size(1);
  if (logits.device().is_cpu() && logits.scalar_type() == at::kFloat && classes >= 2 && target.scalar_type() == at::kLong &&
      target.numel() > 0) {
    const auto [low, high] = at::aminmax(target);
    if (low.item<std::int64_t>() < 0 || high.item<std::int64_t>() >= classes) {
      throw InputError("loss", fmt::format("target classes {}..{}; expected 0..{}", low.item<std::int64_t>(),
                                           high.item<std::int64_t>(), classes - 1));
    }
    return dice_ce_loss_fused(logits.contiguous(), target.contiguous(), smooth);
  }
  // At least float32 (half or bfloat16 logits from autocast are widened; float64 stays).
  const at::Tensor log_p = at::log_softmax(logits.scalar_type() == at::kDouble ? logits : logits.to(at::kFloat), 1);
  const at::Tensor ce = at::nll_loss_nd(log_p, target);
  const at::Tensor p = log_p.exp();
  const at::Tensor onehot = at::one_hot(target, classes).permute({0, 4, 1, 2, 3}).to(p.scalar_type());
  const std::vector<std::int64_t> spatial = {2, 3, 4};
  const at::Tensor tp = (p * onehot).sum(spatial);  // [N, C]
  const at::Tensor fp = (p * (1 - onehot)).sum(spatial);
  const at::Tensor fn = ((1 - p) * onehot).sum(spatial);
  const at::Tensor dice = (2 * tp + smooth) / (2 * tp + fp + fn + smooth);
  const at::Tensor foreground = dice.slice(1, 1, classes);
  return ce + (1 - foreground.mean());
}

std::vector<double> deep_supervision_weights(std::size_t levels) {
  std::vector<double> w(levels);
  double sum = 0;
  for (std::size_t i = 0; i < levels; ++i) sum += (w[i] = 1.0 / static_cast<double>(1ULL << i));
  for (double& x : w) x /= sum;
  return w;
}

at::Tensor deep_supervision_loss(const std::vector<at::Tensor>& outputs, const at::Tensor& target) {
  if (outputs.empty()) throw InputError("loss", "no network outputs");
  const auto weights = deep_supervision_weights(outputs.size());
  at::Tensor total;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    at::Tensor t = target;
    if (outputs[i].sizes().slice(2) != target.sizes().slice(1)) {
      const auto size = outputs[i].sizes().slice(2).vec();
      t = at::upsample_nearest3d(target.unsqueeze(1).to(at::kFloat), size, c10::nullopt, c10::nullopt, c10::nullopt)
              .squeeze(1)
              .to(at::kLong);
    }
    const at::Tensor term = dice_ce_loss(outputs[i], t) * weights[i];
    total = total.defined() ? total + term : term;
  }
  return total;
}

}  // namespace vitruvian::models
