// The plain U-Net's CPU inference forward on oneDNN primitives, activations blocked throughout
// (models/onednn_unet.h). A Plan is one input shape's chain of steps: primitives with their
// weights already in oneDNN's layout, norms, and the activation values each step reads and
// writes; values share a pool of buffers assigned from their lifetimes.
#include "models/onednn_unet.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/nn/module.h>
#include <torch/nn/functional/instancenorm.h>
#include <torch/nn/modules/instancenorm.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "models/unet.h"

#ifdef VITRUVIAN_HAVE_ONEDNN  // set by models/CMakeLists.txt when libdnnl-dev is installed
#include "models/onednn_common.h"
#endif

namespace vitruvian::models {

#ifdef VITRUVIAN_HAVE_ONEDNN
namespace {

using Axes = std::array<std::int64_t, 3>;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
using dnnl::memory;

/// A convolution, followed by instance norm + LeakyReLU unless gamma is undefined (the head).
struct ConvLayer {
  at::Tensor weight, bias;  ///< [out, in, kz, ky, kx], [out]
  at::Tensor gamma, beta;   ///< [out]
  double eps = 0;           ///< the norm's
  Axes kernel{}, stride{};
};

/// A snapshot of a plain UNet's weights, in the order the forward uses them.
struct Weights {
  std::int64_t in_channels = 0, classes = 0;
  float slope = 0.01F;
  std::vector<Axes> strides;                    ///< per stage
  std::vector<std::vector<ConvLayer>> encoder;  ///< per stage
  std::vector<at::Tensor> upsample;             ///< per decoder level: [Cin, Cout, kz, ky, kx]
  std::vector<std::vector<ConvLayer>> decoder;  ///< per decoder level (level j rebuilds stage stages − 2 − j)
  ConvLayer head;
};

memory::dims dims_of(std::int64_t n, std::int64_t c, const Axes& s) { return {n, c, s[0], s[1], s[2]}; }
memory::dims dims_of(const Axes& a) { return {a[0], a[1], a[2]}; }

/// n floats, in 64-byte pieces of constant size (inlined moves: a copy call per row of a few
/// dozen channels costs more than the copy).
inline void copy_floats(const float* from, float* to, std::int64_t n) {
  constexpr std::int64_t kPiece = 16;
  std::int64_t j = 0;
  for (; j + kPiece <= n; j += kPiece) std::memcpy(to + j, from + j, kPiece * sizeof(float));
  for (; j < n; ++j) to[j] = from[j];
}

/// out = [a, b] per row: channels-last activations, `rows` voxels of ca and cb channels.
void concat_rows(const float* a, std::int64_t ca, const float* b, std::int64_t cb, float* out, std::int64_t rows) {
  at::parallel_for(0, rows, 2048, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t r = first; r < last; ++r) {
      copy_floats(a + r * ca, out + r * (ca + cb), ca);
      copy_floats(b + r * cb, out + r * (ca + cb) + ca, cb);
    }
  });
}

/// One input shape's chain of oneDNN primitives and norms.
class Plan {
 public:
  /// `layout`: the activations' layout, oneDNN's choice for the network's convolutions (ndhwc,
  /// nCdhw16c or nCdhw8c), which the transposed convolutions and concatenations keep.
  Plan(const Weights& w, std::int64_t batch, const Axes& size, tag layout) : layout_(layout), engine_(onednn::cpu_engine()) {
    const int stages = static_cast<int>(w.encoder.size());
    input_ = add_value(memory::desc(dims_of(batch, w.in_channels, size), dt::f32, tag::ncdhw));
    std::vector<int> skips;
    int h = input_;
    for (int s = 0; s < stages; ++s) {
      for (const ConvLayer& layer : w.encoder[s]) h = conv_norm_act(h, layer, w.slope);
      skips.push_back(h);
    }
    for (std::size_t j = 0; j < w.decoder.size(); ++j) {
      const int s = stages - 2 - static_cast<int>(j);
      const int up = upsample(h, w.upsample[j], w.strides[s + 1]);
      h = concat(skips[s], up);
      for (const ConvLayer& layer : w.decoder[j]) h = conv_norm_act(h, layer, w.slope);
    }
    output_ = as_layout(conv(h, w.head), memory::desc(dims_of(batch, w.classes, size), dt::f32, tag::ncdhw));
    assign_slots();
    onednn::cpu_stream().wait();  // the weights' reorders
  }

  /// Bytes each pool slot needs.
  const std::vector<std::size_t>& slot_bytes() const { return slot_bytes_; }

  /// Runs the chain on x (contiguous float32) into out, with the pool's buffers.
  void run(const at::Tensor& x, at::Tensor& out, const std::vector<at::Tensor>& pool) {
    for (auto& v : values_) {
      if (v.slot >= 0) v.mem.set_data_handle(pool[static_cast<std::size_t>(v.slot)].data_ptr());
    }
    values_[input_].mem.set_data_handle(const_cast<void*>(x.data_ptr()));
    values_[output_].mem.set_data_handle(out.data_ptr());
    const auto data = [&](int v) { return static_cast<float*>(values_[v].mem.get_data_handle()); };
    for (auto& step : steps_) {
      switch (step.kind) {
        case Step::Kind::kPrimitive:
          step.primitive.execute(onednn::cpu_stream(), step.args);
          break;
        case Step::Kind::kNorm:
          instance_norm_act_blocked_(data(step.writes), step.batch, step.channels, step.block, step.voxels,
                                     step.norm->gamma.data_ptr<float>(), step.norm->beta.data_ptr<float>(), step.norm->eps, step.slope);
          break;
        case Step::Kind::kConcat:
          concat_rows(data(step.reads[0].second), values_[step.reads[0].second].desc.dims()[1], data(step.reads[1].second),
                      values_[step.reads[1].second].desc.dims()[1], data(step.writes), step.voxels);
          break;
      }
    }
    onednn::cpu_stream().wait();
  }

 private:
  struct Value {
    memory::desc desc;
    int last_read = -1;  ///< the last step reading it
    int slot = -1;       ///< pool buffer; -1: the caller's input or output
    memory mem;
  };
  struct Step {
    enum class Kind { kPrimitive, kNorm, kConcat } kind = Kind::kPrimitive;
    dnnl::primitive primitive;                   ///< kPrimitive
    std::vector<std::pair<int, int>> reads;      ///< (oneDNN argument, value)
    int writes = -1;                             ///< the value written (DNNL_ARG_DST), or normalised in place
    std::unordered_map<int, memory> args;        ///< weights and bias; the values once slots are assigned
    const ConvLayer* norm = nullptr;             ///< kNorm: the affine parameters
    std::int64_t batch = 0, channels = 0, block = 0, voxels = 0;  ///< kNorm; kConcat: voxels of the batch
    float slope = 1;
  };

  int add_value(const memory::desc& desc) {
    values_.push_back(Value{desc, -1, -1, {}});
    return static_cast<int>(values_.size()) - 1;
  }

  /// Adds a primitive step writing a new value of `dst` layout; returns that value.
  int add_step(dnnl::primitive primitive, std::vector<std::pair<int, int>> reads, const memory::desc& dst,
               std::unordered_map<int, memory> fixed = {}) {
    Step step;
    step.primitive = std::move(primitive);
    step.reads = std::move(reads);
    step.args = std::move(fixed);
    step.writes = add_value(dst);
    steps_.push_back(std::move(step));
    return steps_.back().writes;
  }

  /// v in `want`'s layout (a reorder step when it is not already).
  int as_layout(int v, const memory::desc& want) {
    if (values_[v].desc == want) return v;
    const dnnl::reorder::primitive_desc pd(engine_, values_[v].desc, engine_, want);
    return add_step(dnnl::reorder(pd), {{DNNL_ARG_FROM, v}}, want);
  }

  /// The convolution of `layer` (padding kernel/2, the layer's stride), its output in oneDNN's
  /// choice of layout.
  int conv(int src, const ConvLayer& layer) {
    const auto& in = values_[src].desc.dims();
    const std::int64_t out_channels = layer.weight.size(0), in_channels = layer.weight.size(1);
    memory::dims pad_l, pad_r, out{in[0], out_channels};
    for (int a = 0; a < 3; ++a) {
      std::int64_t after = 0;
      out.push_back(onednn::conv_output_size(in[2 + a], layer.kernel[a], layer.stride[a], layer.kernel[a] / 2, 1, after));
      pad_l.push_back(layer.kernel[a] / 2);
      pad_r.push_back(after);
    }
    const memory::dims wdims{out_channels, in_channels, layer.kernel[0], layer.kernel[1], layer.kernel[2]};
    const memory::desc bias({out_channels}, dt::f32, tag::a);
    const memory::desc dst_desc(out, dt::f32, tag::any);
    const dnnl::convolution_forward::primitive_desc pd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                        memory::desc(in, dt::f32, tag::any), memory::desc(wdims, dt::f32, tag::any), bias,
                                        dst_desc, dims_of(layer.stride), pad_l, pad_r),
        engine_);
    onednn::not_reference(pd.impl_info_str(), "convolution");
    const int source = as_layout(src, pd.src_desc());
    std::unordered_map<int, memory> fixed{
        {DNNL_ARG_WEIGHTS, onednn::weights_as(layer.weight, wdims, tag::oidhw, pd.weights_desc())},
        {DNNL_ARG_BIAS, memory(bias, engine_, const_cast<void*>(layer.bias.data_ptr()))}};
    return add_step(dnnl::convolution_forward(pd), {{DNNL_ARG_SRC, source}}, pd.dst_desc(), std::move(fixed));
  }

  int conv_norm_act(int src, const ConvLayer& layer, float slope) {
    const int v = conv(src, layer);
    const memory::desc& desc = values_[v].desc;
    const auto d = desc.dims();
    Step step;
    step.kind = Step::Kind::kNorm;
    step.norm = &layer;
    step.writes = v;
    step.reads = {{DNNL_ARG_SRC, v}};
    step.batch = d[0];
    step.channels = d[1];
    step.voxels = d[2] * d[3] * d[4];
    step.slope = slope;
    for (const auto& [block, layout] : {std::pair{d[1], tag::ndhwc}, std::pair{std::int64_t{16}, tag::nCdhw16c},
                                        std::pair{std::int64_t{8}, tag::nCdhw8c}, std::pair{std::int64_t{1}, tag::ncdhw}}) {
      if (step.block == 0 && desc == memory::desc(d, dt::f32, layout)) step.block = block;
    }
    if (step.block == 0) {
      throw InternalError("oneDNN U-Net", fmt::format("oneDNN chose a layout the norm does not know for {} channels", d[1]));
    }
    steps_.push_back(std::move(step));
    return v;
  }

  /// The transposed convolution kernel = stride (no bias), weight [Cin, Cout, kz, ky, kx]: from
  /// and to the activations' layout where oneDNN has a fast kernel for that (channels-last on
  /// AVX-512; with `any` it would return nCdhw16c there), else in the layouts it picks.
  int upsample(int src, const at::Tensor& weight, const Axes& stride) {
    const auto& in = values_[src].desc.dims();
    const std::int64_t in_channels = weight.size(0), out_channels = weight.size(1);
    const memory::dims out{in[0], out_channels, in[2] * stride[0], in[3] * stride[1], in[4] * stride[2]};
    const memory::dims wdims{out_channels, in_channels, stride[0], stride[1], stride[2]};
    const auto make = [&](tag layout) {
      return dnnl::deconvolution_forward::primitive_desc(
          dnnl::deconvolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct,
                                            memory::desc(in, dt::f32, layout), memory::desc(wdims, dt::f32, tag::any),
                                            memory::desc(out, dt::f32, layout), dims_of(stride), {0, 0, 0}, {0, 0, 0}),
          engine_);
    };
    auto pd = make(layout_);
    if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0) pd = make(tag::any);  // nCdhw8c on AVX2: its own choice
    onednn::not_reference(pd.impl_info_str(), "transposed convolution");
    const int source = as_layout(src, pd.src_desc());
    // LibTorch's [Cin, Cout, ...] is oneDNN's {Cout, Cin, ...} with the input channel outermost.
    std::unordered_map<int, memory> fixed{{DNNL_ARG_WEIGHTS, onednn::weights_as(weight, wdims, tag::iodhw, pd.weights_desc())}};
    return add_step(dnnl::deconvolution_forward(pd), {{DNNL_ARG_SRC, source}}, pd.dst_desc(), std::move(fixed));
  }

  /// [a, b] along channels, both halves first in the activations' layout. Channels-last: one
  /// pass of row copies (oneDNN's concatenation takes its slow reference path there); blocked:
  /// oneDNN's, which then copies whole blocks.
  int concat(int a, int b) {
    const int first = as_layout(a, memory::desc(values_[a].desc.dims(), dt::f32, layout_));
    const int second = as_layout(b, memory::desc(values_[b].desc.dims(), dt::f32, layout_));
    auto dims = values_[first].desc.dims();
    dims[1] += values_[second].desc.dims()[1];
    const memory::desc dst(dims, dt::f32, layout_);
    const std::vector<std::pair<int, int>> reads{{DNNL_ARG_MULTIPLE_SRC, first}, {DNNL_ARG_MULTIPLE_SRC + 1, second}};
    if (layout_ != tag::ndhwc) {
      const dnnl::concat::primitive_desc pd(dst, 1, {values_[first].desc, values_[second].desc}, engine_);
      return add_step(dnnl::concat(pd), reads, pd.dst_desc());
    }
    Step step;
    step.kind = Step::Kind::kConcat;
    step.reads = reads;
    step.voxels = dims[0] * dims[2] * dims[3] * dims[4];
    step.writes = add_value(dst);
    steps_.push_back(std::move(step));
    return steps_.back().writes;
  }

  /// Every value written by a step gets a pool slot for its lifetime (from its step to its last
  /// reader), the smallest free one that fits, or a new one; then the steps' arguments are bound.
  void assign_slots() {
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      for (const auto& [arg, v] : steps_[i].reads) values_[v].last_read = static_cast<int>(i);
    }
    std::vector<bool> busy;
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      Value& out = values_[steps_[i].writes];
      if (steps_[i].kind != Step::Kind::kNorm && steps_[i].writes != output_) {
        const std::size_t need = out.desc.get_size();
        int best = -1;
        for (std::size_t s = 0; s < slot_bytes_.size(); ++s) {
          if (busy[s] || slot_bytes_[s] < need) continue;
          if (best < 0 || slot_bytes_[s] < slot_bytes_[static_cast<std::size_t>(best)]) best = static_cast<int>(s);
        }
        if (best < 0) {
          best = static_cast<int>(slot_bytes_.size());
          slot_bytes_.push_back(need);
          busy.push_back(false);
        }
        out.slot = best;
        busy[static_cast<std::size_t>(best)] = true;
      }
      for (const auto& [arg, v] : steps_[i].reads) {
        if (values_[v].last_read == static_cast<int>(i) && values_[v].slot >= 0) busy[static_cast<std::size_t>(values_[v].slot)] = false;
      }
    }
    for (auto& v : values_) v.mem = memory(v.desc, engine_, DNNL_MEMORY_NONE);
    for (auto& step : steps_) {
      if (step.kind != Step::Kind::kPrimitive) continue;
      for (const auto& [arg, v] : step.reads) step.args.emplace(arg, values_[v].mem);
      step.args.emplace(DNNL_ARG_DST, values_[step.writes].mem);
    }
  }

  tag layout_;
  const dnnl::engine& engine_;
  std::vector<Value> values_;
  std::vector<Step> steps_;
  std::vector<std::size_t> slot_bytes_;
  int input_ = -1, output_ = -1;
};

/// The snapshot, or the reason there is none.
std::string snapshot(const UNetImpl& net, Weights& w) {
  const UNetOptions& o = net.options();
  if (o.block() != BlockType::kPlain) return fmt::format("{} encoder blocks (the engine runs the plain U-Net)", block_type_name(o.block()));
  const auto params = net.named_parameters();
  const auto modules = net.named_modules();
  std::string problem;
  const auto get = [&](const std::string& name) -> at::Tensor {
    const at::Tensor* p = params.find(name);
    if (p == nullptr) {
      if (problem.empty()) problem = "no parameter " + name;
      return {};
    }
    if (p->scalar_type() != at::kFloat || !p->device().is_cpu()) {
      if (problem.empty()) problem = fmt::format("parameter {} is {} on {}; expected float32 on the CPU", name, c10::toString(p->scalar_type()), p->device().str());
      return {};
    }
    return p->detach().clone().contiguous();
  };
  const auto layer = [&](const std::string& prefix, const Axes& kernel, const Axes& stride, bool norm) {
    ConvLayer l;
    l.weight = get(prefix + ".conv.weight");
    l.bias = get(prefix + ".conv.bias");
    if (norm) {
      l.gamma = get(prefix + ".norm.weight");
      l.beta = get(prefix + ".norm.bias");
      const auto* module = modules.find(prefix + ".norm");
      const auto* instance_norm = module != nullptr ? (*module)->as<torch::nn::InstanceNorm3dImpl>() : nullptr;
      if (instance_norm == nullptr && problem.empty()) problem = "no instance norm " + prefix + ".norm";
      if (instance_norm != nullptr) l.eps = instance_norm->options.eps();
    }
    l.kernel = kernel;
    l.stride = stride;
    return l;
  };
  const int stages = o.stages();
  w.in_channels = o.in_channels();
  w.classes = o.num_classes();
  w.slope = static_cast<float>(o.negative_slope());
  w.strides = o.strides();
  for (int s = 0; s < stages; ++s) {
    w.encoder.emplace_back();
    for (int c = 0; c < o.convs_per_stage(); ++c) {
      w.encoder.back().push_back(layer(fmt::format("encoder.{}.conv{}", s, c), o.kernels()[s], c == 0 ? o.strides()[s] : Axes{1, 1, 1}, true));
    }
  }
  const int levels = stages - 1;
  for (int j = 0; j < levels; ++j) {
    const int s = stages - 2 - j;
    w.upsample.push_back(get(fmt::format("upsample.{}.conv.weight", j)));
    w.decoder.emplace_back();
    for (int c = 0; c < o.convs_per_stage(); ++c) {
      w.decoder.back().push_back(layer(fmt::format("decoder.{}.conv{}", j, c), o.kernels()[s], {1, 1, 1}, true));
    }
  }
  w.head = layer(fmt::format("heads.{}", o.deep_supervision() ? levels - 1 : 0), {1, 1, 1}, {1, 1, 1}, false);
  return problem;
}

}  // namespace

struct OneDnnUNet::Impl {
  Weights weights;
  tag layout = tag::ndhwc;  ///< the activations'
  std::map<std::array<std::int64_t, 4>, std::unique_ptr<Plan>> plans;  ///< by [N, D, H, W]
  std::map<std::array<std::int64_t, 4>, std::string> refused;
  std::vector<at::Tensor> pool;  ///< activation buffers, shared by every plan (one runs at a time)

  /// Grows the pool to what `plan` needs.
  void fit(const Plan& plan) {
    const auto& need = plan.slot_bytes();
    for (std::size_t s = 0; s < need.size(); ++s) {
      const auto bytes = static_cast<std::int64_t>(need[s]);
      if (s == pool.size()) {
        pool.push_back(at::empty({bytes}, at::kByte));
      } else if (pool[s].numel() < bytes) {
        pool[s] = at::empty({bytes}, at::kByte);
      }
    }
  }
};

std::unique_ptr<OneDnnUNet> OneDnnUNet::create(const UNetImpl& net, std::string* why) {
  auto impl = std::make_unique<Impl>();
  std::string problem = snapshot(net, impl->weights);
  if (problem.empty()) {
    std::string kernel;
    if (const auto layout = onednn::activation_layout(&kernel)) {
      impl->layout = *layout;
    } else {
      problem = fmt::format("oneDNN keeps a plain layout on this CPU ({})", kernel);
    }
  }
  if (!problem.empty()) {
    if (why != nullptr) *why = problem;
    return nullptr;
  }
  return std::unique_ptr<OneDnnUNet>(new OneDnnUNet(std::move(impl)));
}

bool OneDnnUNet::accepts(const at::Tensor& x, std::string* why) {
  const Weights& w = impl_->weights;
  std::string problem;
  if (x.dim() != 5 || x.size(1) != w.in_channels || x.scalar_type() != at::kFloat || !x.device().is_cpu() || x.numel() == 0) {
    problem = fmt::format("input {} {} of shape [{}]; expected float32 [N, {}, D, H, W] on the CPU", c10::toString(x.scalar_type()),
                          x.device().str(), fmt::join(x.sizes(), ", "), w.in_channels);
  } else {
    Axes size{x.size(2), x.size(3), x.size(4)};
    for (std::size_t s = 1; s < w.strides.size() && problem.empty(); ++s) {
      for (int a = 0; a < 3; ++a) {
        if (size[a] % w.strides[s][a] != 0) {
          problem = fmt::format("size {} along axis {} at stage {} does not divide by its stride {}", size[a], a, s, w.strides[s][a]);
        }
        size[a] /= w.strides[s][a];
      }
    }
  }
  if (problem.empty()) {
    const std::array<std::int64_t, 4> key{x.size(0), x.size(2), x.size(3), x.size(4)};
    if (const auto r = impl_->refused.find(key); r != impl_->refused.end()) {
      problem = r->second;
    } else if (impl_->plans.count(key) == 0) {
      try {
        auto plan = std::make_unique<Plan>(w, key[0], Axes{key[1], key[2], key[3]}, impl_->layout);
        impl_->fit(*plan);
        impl_->plans.emplace(key, std::move(plan));
      } catch (const dnnl::error& e) {
        problem = impl_->refused[key] = std::string("oneDNN: ") + e.what();
      } catch (const Error& e) {
        problem = impl_->refused[key] = e.detail();
      }
    }
  }
  if (why != nullptr) *why = problem;
  return problem.empty();
}

at::Tensor OneDnnUNet::forward(const at::Tensor& x) {
  std::string why;
  if (!accepts(x, &why)) throw InputError("oneDNN U-Net", why);
  const at::Tensor in = x.contiguous();
  at::Tensor out = at::empty({x.size(0), impl_->weights.classes, x.size(2), x.size(3), x.size(4)}, x.options());
  impl_->plans.at({x.size(0), x.size(2), x.size(3), x.size(4)})->run(in, out, impl_->pool);
  return out;
}

std::int64_t OneDnnUNet::buffer_bytes() const {
  std::int64_t bytes = 0;
  for (const auto& b : impl_->pool) bytes += b.numel();
  return bytes;
}

#else  // no oneDNN headers in this build

struct OneDnnUNet::Impl {};

std::unique_ptr<OneDnnUNet> OneDnnUNet::create(const UNetImpl&, std::string* why) {
  if (why != nullptr) *why = "this build has no oneDNN headers (libdnnl-dev)";
  return nullptr;
}
bool OneDnnUNet::accepts(const at::Tensor&, std::string* why) {
  if (why != nullptr) *why = "this build has no oneDNN headers (libdnnl-dev)";
  return false;
}
at::Tensor OneDnnUNet::forward(const at::Tensor&) { throw InputError("oneDNN U-Net", "this build has no oneDNN headers (libdnnl-dev)"); }
std::int64_t OneDnnUNet::buffer_bytes() const { return 0; }

#endif

OneDnnUNet::OneDnnUNet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OneDnnUNet::~OneDnnUNet() = default;

}  // namespace vitruvian::models
