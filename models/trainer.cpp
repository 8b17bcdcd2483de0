// The training step and its collective decisions.
#include "models/trainer.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>
#include <sstream>

#include "core/atomic_file.h"
#include "core/errors.h"
#include "core/json_numbers.h"
#include "core/stopwatch.h"
#include "models/losses.h"
#include "models/precision.h"

namespace vitruvian::models {
namespace {

constexpr double kPi = 3.14159265358979323846;

}  // namespace

void OptimizerConfig::visit(ConfigVisitor& v) {
  v.field("name", name, "sgd (Nesterov momentum) or adamw");
  v.field("lr", lr, "initial learning rate");
  v.field("momentum", momentum, "SGD momentum");
  v.field("weight_decay", weight_decay, "weight decay (decoupled for adamw)");
  v.field("schedule", schedule, "poly, cosine or constant");
  v.field("clip_norm", clip_norm, "gradient norm clipping (<= 0: none)");
}

void OptimizerConfig::validate() const {
  if (name != "sgd" && name != "adamw") throw ConfigError("optimizer.name", "'" + name + "'; expected sgd or adamw");
  if (schedule != "poly" && schedule != "cosine" && schedule != "constant") {
    throw ConfigError("optimizer.schedule", "'" + schedule + "'; expected poly, cosine or constant");
  }
  if (!(lr > 0)) throw ConfigError("optimizer.lr", fmt::format("{}; expected a positive learning rate", lr));
  if (!(momentum >= 0 && momentum < 1)) throw ConfigError("optimizer.momentum", fmt::format("{}; expected [0, 1)", momentum));
}

struct Trainer::State {
  UNet net{nullptr};
  Communicator* comm = nullptr;
  TrainerOptions options;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<GradientReducer> reducer;
  std::vector<at::Tensor> params;
  std::int64_t step = 0;
  int bad_streak = 0;
};

Trainer::Trainer(UNet net, Communicator& comm, TrainerOptions options) : state_(std::make_unique<State>()) {
  State& s = *state_;
  options.optimizer.validate();
  if (options.steps < 1) throw ConfigError("train.steps", fmt::format("{}; expected at least 1", options.steps));
  s.net = std::move(net);
  if (options.channels_last) to_channels_last_3d(*s.net);  // before the optimiser holds the parameters
  const auto first = s.net->parameters();
  s.net->use_onednn(options.onednn && !first.empty() && first.front().device().is_cpu());
  s.comm = &comm;
  s.options = options;
  s.params = s.net->parameters();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : s.params) comm.broadcast(p, 0);
    for (auto& b : s.net->buffers()) comm.broadcast(b, 0);
  }
  const auto& o = options.optimizer;
  if (o.name == "sgd") {
    s.optimizer = std::make_unique<torch::optim::SGD>(
        s.params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.momentum > 0).weight_decay(o.weight_decay));
  } else {
    s.optimizer = std::make_unique<torch::optim::AdamW>(s.params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  }
  s.reducer = std::make_unique<GradientReducer>(s.params, comm, options.buckets);
}

Trainer::~Trainer() = default;

double Trainer::learning_rate(std::int64_t step) const {
  const auto& o = state_->options;
  const double t = std::min(1.0, static_cast<double>(step) / static_cast<double>(o.steps));
  if (o.optimizer.schedule == "poly") return o.optimizer.lr * std::pow(1.0 - t, 0.9);
  if (o.optimizer.schedule == "cosine") return o.optimizer.lr * 0.5 * (1.0 + std::cos(kPi * t));
  return o.optimizer.lr;
}

StepResult Trainer::step(const std::vector<MicroBatch>& micro_batches, const std::function<void(const std::string&)>& on_skip) {
  State& s = *state_;
  if (micro_batches.empty()) throw InputError("trainer", "a step needs at least one micro-batch");
  StepResult result;
  result.step = s.step + 1;
  result.lr = learning_rate(s.step);
  s.net->train();
  at::Tensor loss_sum;  // stays on the device: the step synchronises with the host once
  for (std::size_t m = 0; m < micro_batches.size(); ++m) {
    const bool last = m + 1 == micro_batches.size();
    s.reducer->prepare(last);
    auto start = std::chrono::steady_clock::now();
    at::Tensor loss;
    {
      const Autocast autocast(s.options.bf16 ? Precision::kBFloat16 : Precision::kFloat32, micro_batches[m].first.device());
      const at::Tensor& image = micro_batches[m].first;
      const auto outputs = s.net->forward(s.options.channels_last ? channels_last_3d(image) : image);
      loss = deep_supervision_loss(outputs, micro_batches[m].second) / static_cast<double>(micro_batches.size());
    }
    result.forward_s += seconds_since(start);
    start = std::chrono::steady_clock::now();
    loss.backward();
    result.backward_s += seconds_since(start);
    const at::Tensor value = loss.detach().to(at::kDouble);
    loss_sum = loss_sum.defined() ? loss_sum + value : value;
  }
  const CommStats comm = s.reducer->finish();
  result.comm = comm;
  // One collective: [loss sum, ranks with a non-finite loss, ranks with non-finite gradients].
  // Averaged gradients should be equal on every rank, but MPI does not promise bitwise
  // equality, so their check travels with the loss.
  std::vector<at::Tensor> grads_finite;
  for (const auto& p : s.params) {
    if (p.grad().defined()) grads_finite.push_back(at::isfinite(p.grad()).all());
  }
  const at::Tensor loss_bad = at::isfinite(loss_sum).logical_not();
  const at::Tensor grads_bad = grads_finite.empty() ? at::zeros_like(loss_bad) : at::stack(grads_finite).all().logical_not();
  at::Tensor agreed = at::stack({at::where(loss_bad, at::zeros_like(loss_sum), loss_sum), loss_bad.to(at::kDouble),
                                 grads_bad.to(at::kDouble)});
  s.comm->allreduce(agreed, ReduceOp::kSum);
  agreed = agreed.cpu();
  const double bad_ranks = agreed[1].item<double>(), bad_gradients = agreed[2].item<double>();
  ++s.step;
  if (bad_ranks > 0 || bad_gradients > 0) {
    result.skipped = true;
    result.loss = std::numeric_limits<double>::quiet_NaN();
    s.optimizer->zero_grad();
    const bool finite = !loss_bad.item<bool>();
    if (on_skip && !finite) on_skip(fmt::format("non-finite loss at step {} on this rank", result.step));
    if (on_skip && bad_ranks == 0 && s.comm->rank() == 0) {
      on_skip(fmt::format("non-finite averaged gradient at step {} (every rank's loss was finite)", result.step));
    }
    if (++s.bad_streak > s.options.max_bad_steps) {
      throw InputError("training", fmt::format("{} steps in a row had a non-finite loss or gradient on some rank (limit {}); "
                                               "lower the learning rate or check the data",
                                               s.bad_streak, s.options.max_bad_steps));
    }
    return result;
  }
  s.bad_streak = 0;
  result.loss = agreed[0].item<double>() / s.comm->size();
  const auto start = std::chrono::steady_clock::now();
  if (s.options.optimizer.clip_norm > 0) torch::nn::utils::clip_grad_norm_(s.params, s.options.optimizer.clip_norm);
  for (auto& group : s.optimizer->param_groups()) group.options().set_lr(result.lr);
  s.optimizer->step();
  s.optimizer->zero_grad();
  result.optimizer_s = seconds_since(start);
  return result;
}

std::int64_t Trainer::steps_done() const { return state_->step; }
UNet& Trainer::net() { return state_->net; }

namespace {

/// torch::save(value, path) through memory and write_file_atomic: LibTorch's file writer throws
/// again from its destructor when a write fails (a full disk, a file size limit), which ends the
/// process. A failure is one line naming the file and the system's reason.
template <class T>
void save_file(const T& value, const std::filesystem::path& path) {
  std::ostringstream bytes;
  try {
    torch::save(value, bytes);
  } catch (const c10::Error& e) {
    throw InputError(path.string(), std::string("cannot be serialised: ") + e.what_without_backtrace());
  }
  write_file_atomic(path, bytes.str());
}

}  // namespace

void Trainer::save(const std::filesystem::path& dir) const {
  const State& s = *state_;
  save_file(s.net, dir / "model.pt");
  save_file(*s.optimizer, dir / "optimizer.pt");
  {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    save_file(generator.get_state(), dir / "rng.pt");
  }
  write_file_atomic(dir / "trainer.json",
                    nlohmann::json{{"step", s.step}, {"bad_streak", s.bad_streak}, {"optimizer", s.options.optimizer.name}}.dump(2));
}

namespace {

/// trainer.json of a saved trainer, checked for the fields load() needs.
nlohmann::json read_trainer_json(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "trainer.json";
  std::ifstream in(path);
  if (!in) throw InputError(path.string(), "cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  try {
    auto j = nlohmann::json::parse(text.str());
    const std::int64_t step = json_whole<std::int64_t>(j.at("step"), path.string(), "step");
    const int bad_streak = json_whole<int>(j.at("bad_streak"), path.string(), "bad_streak");
    for (const auto& [key, value] : {std::pair<const char*, std::int64_t>{"step", step}, {"bad_streak", bad_streak}}) {
      if (value < 0) throw InputError(path.string(), fmt::format("{} is {}; expected 0 or more", key, value));
    }
    j.at("optimizer").get<std::string>();
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path.string(), std::string("not readable: ") + e.what());
  }
}

}  // namespace

std::int64_t Trainer::saved_step(const std::filesystem::path& dir) { return read_trainer_json(dir).at("step"); }

void Trainer::load(const std::filesystem::path& dir) {
  State& s = *state_;
  {
    const auto j = read_trainer_json(dir);
    if (j.at("optimizer") != s.options.optimizer.name) {
      throw InputError((dir / "trainer.json").string(),
                       fmt::format("was written by optimizer {}; this run uses {}", j.at("optimizer").get<std::string>(),
                                   s.options.optimizer.name));
    }
    s.step = j.at("step");
    s.bad_streak = j.at("bad_streak");
  }
  try {
    // Onto this rank's device: rank 0 saved from its own (cuda:0 on a GPU node).
    const c10::Device device = s.params.front().device();
    torch::load(s.net, (dir / "model.pt").string(), device);
    torch::load(*s.optimizer, (dir / "optimizer.pt").string(), device);
    at::Tensor rng_state;
    torch::load(rng_state, (dir / "rng.pt").string());
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng_state);
  } catch (const c10::Error& e) {
    throw InputError(dir.string(), std::string("the checkpoint does not load into this network: ") + e.what_without_backtrace());
  }
}

}  // namespace vitruvian::models
