// oneDNN convolutions and transposed convolutions on channels-last tensors, as autograd
// functions (models/onednn_ops.h), and what they share with the inference engine
// (models/onednn_common.h). Each shape's primitives are built once per thread and kept.
#include "models/onednn_ops.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/autograd/custom_function.h>

#include <map>
#include <tuple>
#include <vector>

#include "core/errors.h"
#include "models/precision.h"

#ifdef VITRUVIAN_HAVE_ONEDNN  // set by models/CMakeLists.txt when libdnnl-dev is installed
#include "models/onednn_common.h"
#endif

namespace vitruvian::models {

#ifdef VITRUVIAN_HAVE_ONEDNN

namespace onednn {

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& cpu_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

std::optional<dnnl::memory::format_tag> activation_layout(std::string* impl) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  static const auto probed = []() -> std::pair<std::optional<tag>, std::string> {
    const dnnl::memory::dims d{1, 32, 8, 8, 8};
    try {
    const dnnl::convolution_forward::primitive_desc pd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                        dnnl::memory::desc(d, dt::f32, tag::any), dnnl::memory::desc({32, 32, 3, 3, 3}, dt::f32, tag::any),
                                        dnnl::memory::desc(d, dt::f32, tag::any), {1, 1, 1}, {1, 1, 1}, {1, 1, 1}),
        cpu_engine());
    std::optional<tag> layout;
    for (const tag t : {tag::ndhwc, tag::nCdhw16c, tag::nCdhw8c}) {
      if (pd.dst_desc() == dnnl::memory::desc(d, dt::f32, t)) layout = t;
    }
    return {layout, std::string(pd.impl_info_str())};
    } catch (const dnnl::error& e) {
      return {std::nullopt, std::string("no convolution: ") + e.what()};
    }
  }();
  if (impl != nullptr) *impl = probed.second;
  return probed.first;
}

dnnl::memory weights_as(const at::Tensor& weight, const dnnl::memory::dims& dims, dnnl::memory::format_tag user,
                        const dnnl::memory::desc& want) {
  dnnl::memory plain({dims, dnnl::memory::data_type::f32, user}, cpu_engine(), const_cast<void*>(weight.data_ptr()));
  if (plain.get_desc() == want) return plain;
  dnnl::memory mine(want, cpu_engine());
  dnnl::reorder(plain, mine).execute(cpu_stream(), plain, mine);
  return mine;
}

std::int64_t conv_output_size(std::int64_t in, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
                              std::int64_t dilation, std::int64_t& padding_after) {
  const std::int64_t reach = dilation * (kernel - 1) + 1, out = (in + 2 * padding - reach) / stride + 1;
  padding_after = (out - 1) * stride + reach - in - padding;
  return out;
}

void not_reference(const std::string& impl, const char* what) {
  if (impl.rfind("ref", 0) == 0) {
    throw InternalError("oneDNN", fmt::format("oneDNN has only its reference kernel ({}) for a {} here", impl, what));
  }
}

}  // namespace onednn

namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
using dnnl::memory;
using Axes = std::array<std::int64_t, 3>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

memory::dims dims_of(at::IntArrayRef sizes) { return memory::dims(sizes.begin(), sizes.end()); }

/// One convolution's (or transposed convolution's) geometry: what its primitives depend on.
struct Geometry {
  bool transposed = false, training = false, bias = false;
  memory::dims src, weights, dst;  ///< oneDNN's dims; weights {Cout, Cin, k...}
  memory::dims strides, dilates, padding_l, padding_r;
  auto key() const { return std::tie(transposed, training, bias, src, weights, dst, strides, dilates, padding_l, padding_r); }
  bool operator<(const Geometry& o) const { return key() < o.key(); }
};

/// A geometry's primitives and the weight layouts each wants.
struct Primitives {
  dnnl::primitive forward, backward_data, backward_weights;
  memory::desc forward_weights, backward_data_weights, diff_weights;
};

/// The primitives of the descriptors given (backward ones only for training), refusing
/// reference kernels.
void keep(Primitives& p, const dnnl::primitive_desc& forward, const dnnl::primitive_desc* data,
          const dnnl::primitive_desc* weights, const char* what) {
  onednn::not_reference(forward.impl_info_str(), what);
  p.forward = dnnl::primitive(forward);
  p.forward_weights = forward.weights_desc();
  if (data != nullptr) {
    onednn::not_reference(data->impl_info_str(), what);
    p.backward_data = dnnl::primitive(*data);
    p.backward_data_weights = data->weights_desc();
  }
  if (weights != nullptr) {
    onednn::not_reference(weights->impl_info_str(), what);
    p.backward_weights = dnnl::primitive(*weights);
    p.diff_weights = weights->diff_weights_desc();
  }
}

/// The primitives of `g` for one kind of convolution (oneDNN's convolution and deconvolution
/// primitives take the same descriptors).
template <typename Forward, typename BackwardData, typename BackwardWeights>
Primitives build(const Geometry& g, dnnl::algorithm alg, const char* what) {
  const auto& engine = onednn::cpu_engine();
  const memory::desc src(g.src, dt::f32, tag::ndhwc), dst(g.dst, dt::f32, tag::ndhwc), weights(g.weights, dt::f32, tag::any);
  const memory::desc bias = g.bias ? memory::desc({g.weights[0]}, dt::f32, tag::a) : memory::desc();
  const auto prop = g.training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  const typename Forward::primitive_desc forward(
      typename Forward::desc(prop, alg, src, weights, bias, dst, g.strides, g.dilates, g.padding_l, g.padding_r), engine);
  Primitives p;
  if (!g.training) {
    keep(p, forward, nullptr, nullptr, what);
    return p;
  }
  const typename BackwardData::primitive_desc data(
      typename BackwardData::desc(alg, src, weights, dst, g.strides, g.dilates, g.padding_l, g.padding_r), engine, forward);
  const typename BackwardWeights::primitive_desc grads(
      typename BackwardWeights::desc(alg, src, weights, bias, dst, g.strides, g.dilates, g.padding_l, g.padding_r), engine, forward);
  keep(p, forward, &data, &grads, what);
  return p;
}

/// The primitives of `g`, built the first time on this thread; InternalError (at once, the
/// next times) when oneDNN has none or only its reference kernel.
const Primitives& primitives(const Geometry& g) {
  thread_local std::map<Geometry, Primitives> cache;
  thread_local std::map<Geometry, std::string> refused;
  if (const auto it = cache.find(g); it != cache.end()) return it->second;
  if (const auto it = refused.find(g); it != refused.end()) throw InternalError("oneDNN", it->second);
  Primitives p;
  try {
    p = g.transposed
                     ? build<dnnl::deconvolution_forward, dnnl::deconvolution_backward_data, dnnl::deconvolution_backward_weights>(
                           g, dnnl::algorithm::deconvolution_direct, "transposed convolution")
                     : build<dnnl::convolution_forward, dnnl::convolution_backward_data, dnnl::convolution_backward_weights>(
                           g, dnnl::algorithm::convolution_direct, "convolution");
  } catch (const dnnl::error& e) {
    refused[g] = std::string("no primitive for this geometry: ") + e.what();
    throw InternalError("oneDNN", refused[g]);
  } catch (const InternalError& e) {
    refused[g] = e.detail();
    throw;
  }
  return cache.emplace(g, std::move(p)).first->second;
}

void* data(const at::Tensor& t) { return const_cast<void*>(t.data_ptr()); }

/// The layout LibTorch's weights have for oneDNN's dims {Cout, Cin, k...}: a convolution's
/// [Cout, Cin, k...] is oidhw; a transposed convolution's [Cin, Cout, k...] is iodhw.
tag user_layout(const Geometry& g) { return g.transposed ? tag::iodhw : tag::oidhw; }


at::Tensor run_forward(const Geometry& g, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const Primitives& p = primitives(g);
  const auto& engine = onednn::cpu_engine();
  at::Tensor y = at::empty(at::IntArrayRef(g.dst), x.options().memory_format(at::MemoryFormat::ChannelsLast3d));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory({g.src, dt::f32, tag::ndhwc}, engine, data(x))},
                                       {DNNL_ARG_WEIGHTS, onednn::weights_as(weight, g.weights, user_layout(g), p.forward_weights)},
                                       {DNNL_ARG_DST, memory({g.dst, dt::f32, tag::ndhwc}, engine, data(y))}};
  if (g.bias) args.emplace(DNNL_ARG_BIAS, memory({{g.weights[0]}, dt::f32, tag::a}, engine, data(bias)));
  p.forward.execute(onednn::cpu_stream(), args);
  onednn::cpu_stream().wait();
  return y;
}

/// dL/dx (when wanted), dL/dweight and dL/dbias (when wanted) from dL/dy.
variable_list run_backward(const Geometry& g, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& grad,
                           bool want_x, bool want_params) {
  const Primitives& p = primitives(g);
  const auto& engine = onednn::cpu_engine();
  auto& stream = onednn::cpu_stream();
  const memory diff_dst({g.dst, dt::f32, tag::ndhwc}, engine, data(grad));
  at::Tensor dx, dw, db;
  if (want_x) {
    dx = at::empty(at::IntArrayRef(g.src), x.options().memory_format(at::MemoryFormat::ChannelsLast3d));
    p.backward_data.execute(stream, {{DNNL_ARG_DIFF_DST, diff_dst},
                                     {DNNL_ARG_WEIGHTS, onednn::weights_as(weight, g.weights, user_layout(g), p.backward_data_weights)},
                                     {DNNL_ARG_DIFF_SRC, memory({g.src, dt::f32, tag::ndhwc}, engine, data(dx))}});
  }
  if (want_params) {
    dw = at::empty_like(weight, at::MemoryFormat::Contiguous);
    const memory user({g.weights, dt::f32, user_layout(g)}, engine, data(dw));
    memory user_weights = user;
    memory diff_weights = user.get_desc() == p.diff_weights ? user : memory(p.diff_weights, engine);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory({g.src, dt::f32, tag::ndhwc}, engine, data(x))},
                                         {DNNL_ARG_DIFF_DST, diff_dst},
                                         {DNNL_ARG_DIFF_WEIGHTS, diff_weights}};
    if (g.bias) {
      db = at::empty({g.weights[0]}, weight.options());
      args.emplace(DNNL_ARG_DIFF_BIAS, memory({{g.weights[0]}, dt::f32, tag::a}, engine, data(db)));
    }
    p.backward_weights.execute(stream, args);
    if (diff_weights != user) dnnl::reorder(diff_weights, user_weights).execute(stream, diff_weights, user_weights);
  }
  stream.wait();
  return {dx, dw, db};
}

/// x [N, C, D, H, W] and weight [out, C, k...] (transposed: [C, out, k...]) float32 on the CPU;
/// bias (when defined) one value per output channel.
void check_input(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, bool transposed, const char* what) {
  if (!onednn_channels_last()) {
    throw InternalError(what, "oneDNN keeps no channels-last layout on this CPU (see onednn_channels_last())");
  }
  const std::int64_t in = weight.dim() == 5 ? weight.size(transposed ? 0 : 1) : -1, out = weight.dim() == 5 ? weight.size(transposed ? 1 : 0) : -1;
  if (x.dim() != 5 || !x.device().is_cpu() || x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat ||
      !weight.device().is_cpu() || in != x.size(1) || (bias.defined() && bias.numel() != out)) {
    throw InputError(what, fmt::format("input [{}] ({}), weight [{}], bias [{}]; expected float32 CPU tensors [N, C, D, H, W], "
                                       "weight [{}] and one bias per output channel",
                                       fmt::join(x.sizes(), ", "), c10::toString(x.scalar_type()), fmt::join(weight.sizes(), ", "),
                                       bias.defined() ? fmt::format("{}", bias.numel()) : "none",
                                       transposed ? "C, out, kz, ky, kx" : "out, C, kz, ky, kx"));
  }
}

/// Whether the call builds a graph: training primitives (forward_training and the backward).
bool training(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
}

/// A geometry as one list of integers, for an autograd context (which keeps IValues).
std::vector<std::int64_t> encode(const Geometry& g) {
  std::vector<std::int64_t> v{g.transposed, g.bias};
  for (const auto* d : {&g.src, &g.weights, &g.dst, &g.strides, &g.dilates, &g.padding_l, &g.padding_r}) {
    v.push_back(static_cast<std::int64_t>(d->size()));
    v.insert(v.end(), d->begin(), d->end());
  }
  return v;
}

Geometry decode(const std::vector<std::int64_t>& v) {
  Geometry g;
  g.transposed = v[0] != 0;
  g.bias = v[1] != 0;
  std::size_t at = 2;
  for (auto* d : {&g.src, &g.weights, &g.dst, &g.strides, &g.dilates, &g.padding_l, &g.padding_r}) {
    const auto n = static_cast<std::size_t>(v[at++]);
    d->assign(v.begin() + static_cast<std::ptrdiff_t>(at), v.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
  }
  return g;
}

/// Convolution or transposed convolution, on LibTorch's weight layouts.
class ConvFunction : public torch::autograd::Function<ConvFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                            Geometry g) {
    const at::Tensor xc = channels_last_3d(x), wc = weight.contiguous();
    const at::Tensor bc = g.bias ? bias.contiguous() : at::Tensor();
    at::Tensor y = run_forward(g, xc, wc, bc);
    ctx->save_for_backward({xc, wc});
    ctx->saved_data["geometry"] = encode(g);
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    Geometry g = decode(ctx->saved_data["geometry"].toIntVector());
    g.training = true;
    const bool want_params = ctx->needs_input_grad(1) || (g.bias && ctx->needs_input_grad(2));
    auto out = run_backward(g, saved[0], saved[1], channels_last_3d(grads[0]), ctx->needs_input_grad(0), want_params);
    out.emplace_back();  // the geometry
    return out;
  }
};

}  // namespace

bool onednn_channels_last() { return onednn::activation_layout() == dnnl::memory::format_tag::ndhwc; }

std::string cpu_convolutions() {
  std::string kernel;
  const auto layout = onednn::activation_layout(&kernel);
  if (!layout) return "LibTorch's ops (oneDNN keeps a plain layout: " + kernel + ")";
  if (*layout == tag::ndhwc) return "oneDNN directly, activations channels-last (" + kernel + "): training and inference";
  return fmt::format("oneDNN directly for inference, activations {} ({}); training on LibTorch's ops",
                     *layout == tag::nCdhw16c ? "nCdhw16c" : "nCdhw8c", kernel);
}

at::Tensor onednn_conv3d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const Axes& stride,
                         const Axes& padding, std::int64_t dilation) {
  check_input(x, weight, bias, false, "onednn_conv3d");
  Geometry g;
  g.training = training(x, weight, bias);
  g.bias = bias.defined();
  g.src = dims_of(x.sizes());
  g.weights = dims_of(weight.sizes());
  g.dst = {x.size(0), weight.size(0)};
  for (int a = 0; a < 3; ++a) {
    std::int64_t after = 0;
    g.dst.push_back(onednn::conv_output_size(x.size(2 + a), weight.size(2 + a), stride[a], padding[a], dilation, after));
    g.strides.push_back(stride[a]);
    g.dilates.push_back(dilation - 1);
    g.padding_l.push_back(padding[a]);
    g.padding_r.push_back(after);
  }
  // An undefined tensor cannot be an autograd input: no bias travels as an empty one.
  return ConvFunction::apply(x, weight, g.bias ? bias : at::empty({0}, weight.options()), g);
}

at::Tensor onednn_conv_transpose3d(const at::Tensor& x, const at::Tensor& weight) {
  check_input(x, weight, at::Tensor(), true, "onednn_conv_transpose3d");
  Geometry g;
  g.training = training(x, weight, at::Tensor());
  g.transposed = true;
  g.src = dims_of(x.sizes());
  g.weights = {weight.size(1), weight.size(0), weight.size(2), weight.size(3), weight.size(4)};
  g.dst = {x.size(0), weight.size(1)};
  for (int a = 0; a < 3; ++a) {
    g.dst.push_back(x.size(2 + a) * weight.size(2 + a));
    g.strides.push_back(weight.size(2 + a));
    g.dilates.push_back(0);
    g.padding_l.push_back(0);
    g.padding_r.push_back(0);
  }
  return ConvFunction::apply(x, weight, at::empty({0}, weight.options()), g);
}

#else  // no oneDNN headers in this build

bool onednn_channels_last() { return false; }

std::string cpu_convolutions() { return "LibTorch's ops (this build has no oneDNN headers, libdnnl-dev)"; }

at::Tensor onednn_conv3d(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::array<std::int64_t, 3>&,
                         const std::array<std::int64_t, 3>&, std::int64_t) {
  throw InternalError("onednn_conv3d", "this build has no oneDNN headers (libdnnl-dev)");
}

at::Tensor onednn_conv_transpose3d(const at::Tensor&, const at::Tensor&) {
  throw InternalError("onednn_conv_transpose3d", "this build has no oneDNN headers (libdnnl-dev)");
}

#endif

}  // namespace vitruvian::models
