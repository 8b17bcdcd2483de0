// Tensor checks and the choice of implementation by device. The only place that needs a CUDA
// LibTorch (for the current stream); with a CPU LibTorch no tensor can be on CUDA.
#include "core/kernels/dispatch.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <initializer_list>
#include <utility>

#ifdef VITRUVIAN_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "core/errors.h"
#include "core/kernels/kernels_cuda.h"
#include "core/kernels/scalar_dispatch.h"

namespace vitruvian::kernels {
namespace {

std::string shape_text(const at::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ", ")); }

/// cpu() for a CPU tensor, cuda(stream) on the tensor's device for a CUDA one.
template <typename Cpu, typename Cuda>
auto on_device(const at::Tensor& t, const char* what, Cpu cpu, Cuda cuda) {
  if (t.device().is_cpu()) return cpu();
#ifdef VITRUVIAN_TORCH_CUDA
  if (t.is_cuda()) {
    const c10::cuda::CUDAGuard guard(t.device());
    return cuda(static_cast<void*>(c10::cuda::getCurrentCUDAStream(t.device().index()).stream()));
  }
#else
  (void)cuda;
#endif
  throw InputError(what, fmt::format("a tensor on {}; kernels run on CPU and CUDA tensors", t.device().str()));
}

void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* what) {
  if (a.device() != b.device()) {
    throw InputError(what, fmt::format("tensors on {} and {}; expected one device", a.device().str(), b.device().str()));
  }
}

void check_type(const at::Tensor& t, at::ScalarType type, const char* what, const char* name) {
  if (t.scalar_type() != type) {
    throw InputError(what, fmt::format("{} of type {}; expected {}", name, c10::toString(t.scalar_type()), c10::toString(type)));
  }
}

/// Every tensor float32 (InputError naming it), then all on the first one's device.
void check_float_on_one_device(const char* what, std::initializer_list<std::pair<const at::Tensor&, const char*>> named) {
  for (const auto& [t, name] : named) check_type(t, at::kFloat, what, name);
  for (const auto& [t, name] : named) check_same_device(named.begin()->first, t, what);
}

/// `t` contiguous in a type the kernels read directly (uint8, int16, int32, float32, float64),
/// other types (bool, int8, int64, float16) through float32.
at::Tensor readable(const at::Tensor& t) {
  const auto s = t.scalar_type();
  const bool direct = s == at::kByte || s == at::kShort || s == at::kInt || s == at::kFloat || s == at::kDouble;
  return direct ? t.contiguous() : t.to(at::kFloat).contiguous();
}

Grid grid_of(const at::Tensor& t, int first_spatial) {
  const int d = first_spatial;
  return {t.size(d), t.size(d + 1), t.size(d + 2), t.stride(d), t.stride(d + 1)};
}

Accumulator accumulator_of(const at::Tensor& values, const at::Tensor& weight, const char* what) {
  if (values.dim() != 4 || weight.dim() != 3 || values.sizes().slice(1) != weight.sizes()) {
    throw InputError(what, fmt::format("accumulator {} and weights {}; expected [K, D, H, W] and [D, H, W]",
                                       shape_text(values), shape_text(weight)));
  }
  if (values.scalar_type() != at::kFloat && values.scalar_type() != at::kHalf) {
    throw InputError(what, fmt::format("accumulator of type {}; expected float32 or float16", c10::toString(values.scalar_type())));
  }
  check_type(weight, at::kFloat, what, "the weight map");
  check_same_device(values, weight, what);
  const bool strides_match = values.stride(1) == weight.stride(0) && values.stride(2) == weight.stride(1);
  if (values.stride(3) != 1 || weight.stride(2) != 1 || !strides_match) {
    throw InputError(what, "accumulator and weight map need a contiguous x axis and the same spatial strides");
  }
  Accumulator acc;
  acc.values = values.data_ptr();
  acc.half = values.scalar_type() == at::kHalf;
  acc.classes = values.size(0);
  acc.class_stride = values.stride(0);
  acc.grid = grid_of(values, 1);
  acc.weight = weight.data_ptr<float>();
  return acc;
}

}  // namespace

Scalar scalar_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kByte: return Scalar::kUInt8;
    case at::kShort: return Scalar::kInt16;
    case at::kInt: return Scalar::kInt32;
    case at::kFloat: return Scalar::kFloat32;
    case at::kDouble: return Scalar::kFloat64;
    case at::kHalf: return Scalar::kFloat16;
    default: break;
  }
  // LibTorch 1.13 has no uint16 tensors: uint16 label maps are carried as int32.
  throw InputError("kernels", fmt::format("tensor of type {}; expected uint8, int16, int32, float16, float32 or float64",
                                          c10::toString(t.scalar_type())));
}

void accumulate_windows(const at::Tensor& logits, const at::Tensor& importance, const std::int64_t* origins,
                        const at::Tensor& values, const at::Tensor& weight) {
  constexpr const char* kWhat = "accumulate_windows";
  const Accumulator acc = accumulator_of(values, weight, kWhat);
  if (logits.dim() != 5 || logits.size(1) != acc.classes || importance.dim() != 3 ||
      logits.sizes().slice(2) != importance.sizes()) {
    throw InputError(kWhat, fmt::format("logits {}, importance {} for {} classes; expected [B, K, wz, wy, wx] and [wz, wy, wx]",
                                        shape_text(logits), shape_text(importance), acc.classes));
  }
  check_type(logits, at::kFloat, kWhat, "the logits");
  check_type(importance, at::kFloat, kWhat, "the importance map");
  check_same_device(logits, values, kWhat);
  check_same_device(importance, values, kWhat);
  const at::Tensor l = logits.contiguous(), imp = importance.contiguous();
  WindowBatch batch;
  batch.logits = l.data_ptr<float>();
  batch.windows = l.size(0);
  batch.classes = l.size(1);
  batch.wz = l.size(2), batch.wy = l.size(3), batch.wx = l.size(4);
  batch.origins = origins;  // checked against the accumulator by either implementation before any work
  on_device(
      values, kWhat, [&] { kernels::accumulate_windows(batch, imp.data_ptr<float>(), acc); },
      [&](void* stream) { cuda::accumulate_windows(batch, imp.data_ptr<float>(), acc, stream); });
}

at::Tensor softmax_argmax(const at::Tensor& values, const at::Tensor& weight, at::ScalarType label_type,
                          at::Tensor* max_prob) {
  constexpr const char* kWhat = "softmax_argmax";
  const Accumulator acc = accumulator_of(values, weight, kWhat);
  if (label_type != at::kByte && label_type != at::kInt) {
    throw InputError(kWhat, fmt::format("labels of type {}; expected uint8 or int32", c10::toString(label_type)));
  }
  const auto& g = acc.grid;
  at::Tensor labels = at::empty({g.nz, g.ny, g.nx}, values.options().dtype(label_type));
  float* prob = nullptr;
  if (max_prob != nullptr) {
    *max_prob = at::empty({g.nz, g.ny, g.nx}, values.options().dtype(at::kFloat));
    prob = max_prob->data_ptr<float>();
  }
  const Scalar type = scalar_of(labels);
  on_device(
      values, kWhat, [&] { kernels::softmax_argmax(acc, labels.data_ptr(), type, prob); },
      [&](void* stream) { cuda::softmax_argmax(acc, labels.data_ptr(), type, prob, stream); });
  return labels;
}

at::Tensor normalize(const at::Tensor& image, const Normalization& norm) {
  constexpr const char* kWhat = "normalize";
  const at::Tensor in = readable(image);
  const Scalar type = scalar_of(in);
  at::Tensor out = at::empty(in.sizes(), in.options().dtype(at::kFloat));
  on_device(
      in, kWhat, [&] { kernels::normalize(in.data_ptr(), type, in.numel(), norm, out.data_ptr<float>()); },
      [&](void* stream) { cuda::normalize(in.data_ptr(), type, in.numel(), norm, out.data_ptr<float>(), stream); });
  return out;
}

void resample(const at::Tensor& src, const at::Tensor& dst, const IndexMap& map, const Resampling& how) {
  constexpr const char* kWhat = "resample";
  if (src.dim() != 3 || dst.dim() != 3 || !dst.is_contiguous()) {
    throw InputError(kWhat, fmt::format("source {} and destination {}; expected 3D volumes, the destination contiguous",
                                        shape_text(src), shape_text(dst)));
  }
  check_same_device(src, dst, kWhat);
  check_type(dst, how.linear ? at::kFloat : src.scalar_type(), kWhat, "the destination");
  if (src.numel() == 0 || dst.numel() == 0) {
    throw InputError(kWhat, fmt::format("source {} or destination {} is empty", shape_text(src), shape_text(dst)));
  }
  const at::Tensor in = src.contiguous();
  const Scalar type = scalar_of(in);
  const std::int64_t n[3] = {in.size(0), in.size(1), in.size(2)}, m[3] = {dst.size(0), dst.size(1), dst.size(2)};
  on_device(
      in, kWhat, [&] { kernels::resample(in.data_ptr(), type, n, dst.data_ptr(), m, map, how); },
      [&](void* stream) { cuda::resample(in.data_ptr(), type, n, dst.data_ptr(), m, map, how, stream); });
}

std::vector<LabelStats> label_stats(const at::Tensor& labels, const at::Tensor* image, std::int64_t n_labels,
                                    std::int64_t* outside) {
  constexpr const char* kWhat = "label_stats";
  if (labels.dim() != 3 || n_labels < 1) {
    throw InputError(kWhat, fmt::format("labels {} and {} labels; expected [z, y, x] and at least 1", shape_text(labels), n_labels));
  }
  const bool label_type_ok = labels.scalar_type() == at::kByte || labels.scalar_type() == at::kInt;
  const at::Tensor l = label_type_ok ? labels.contiguous() : labels.to(at::kInt).contiguous();
  at::Tensor img;
  if (image != nullptr) {
    if (image->sizes() != labels.sizes()) {
      throw InputError(kWhat, fmt::format("labels {} and image {}; expected the same shape", shape_text(labels), shape_text(*image)));
    }
    check_same_device(labels, *image, kWhat);
    img = readable(*image);
  }
  const Scalar ltype = scalar_of(l);
  const Scalar itype = img.defined() ? scalar_of(img) : Scalar::kFloat32;
  const void* ip = img.defined() ? img.data_ptr() : nullptr;
  const Grid grid = Grid::dense(l.size(0), l.size(1), l.size(2));
  std::vector<LabelStats> out(static_cast<std::size_t>(n_labels));
  const std::int64_t off = on_device(
      l, kWhat, [&] { return kernels::label_stats(l.data_ptr(), ltype, grid, ip, itype, n_labels, out.data()); },
      [&](void* stream) {
        // Scratch from LibTorch's caching allocator, which may hold most of the device.
        const at::Tensor workspace = at::empty({static_cast<std::int64_t>(cuda::label_stats_workspace_bytes(n_labels))},
                                               l.options().dtype(at::kByte));
        return cuda::label_stats(l.data_ptr(), ltype, grid, ip, itype, n_labels, out.data(), stream, workspace.data_ptr());
      });
  if (outside != nullptr) *outside = off;
  return out;
}

at::Tensor connected_roots(const at::Tensor& mask, int connectivity) {
  constexpr const char* kWhat = "connected components";
  if (mask.dim() != 3) throw InputError(kWhat, fmt::format("mask of shape {}; expected [z, y, x]", shape_text(mask)));
  const at::Tensor m = mask.scalar_type() == at::kByte ? mask.contiguous() : mask.ne(0).to(at::kByte).contiguous();
  at::Tensor roots = at::empty(m.sizes(), m.options().dtype(at::kInt));
  const Grid grid = Grid::dense(m.size(0), m.size(1), m.size(2));
  on_device(
      m, kWhat, [&] { kernels::connected_roots(m.data_ptr<std::uint8_t>(), grid, connectivity, roots.data_ptr<std::int32_t>()); },
      [&](void* stream) {
        cuda::connected_roots(m.data_ptr<std::uint8_t>(), grid, connectivity, roots.data_ptr<std::int32_t>(), stream);
      });
  return roots;
}

Deconvolved deconvolve_curves(const at::Tensor& curves, const at::Tensor& analysis, const at::Tensor& synthesis,
                              const std::vector<std::int32_t>& levels, double max_oscillation) {
  constexpr const char* kWhat = "deconvolve_curves";
  if (curves.dim() != 2 || analysis.dim() != 2 || synthesis.dim() != 2 || analysis.size(1) != curves.size(1) ||
      synthesis.size(0) != analysis.size(0)) {
    throw InputError(kWhat, fmt::format("curves {}, analysis {} and synthesis {}; expected [n, T], [K, T] and [K, L]",
                                        shape_text(curves), shape_text(analysis), shape_text(synthesis)));
  }
  check_float_on_one_device(
      kWhat, {{curves, "the curves"}, {analysis, "the analysis matrix"}, {synthesis, "the synthesis matrix"}});
  const at::Tensor c = curves.contiguous(), a = analysis.contiguous(), s = synthesis.contiguous();
  ResidueBasis basis;
  basis.samples = a.size(1);
  basis.length = s.size(1);
  basis.components = a.size(0);
  basis.analysis = a.data_ptr<float>();
  basis.synthesis = s.data_ptr<float>();
  basis.levels = levels.data();
  basis.n_levels = static_cast<std::int64_t>(levels.size());
  basis.max_oscillation = max_oscillation;
  detail::check_basis(basis);  // before anything is allocated for it
  const std::int64_t n = c.size(0);
  Deconvolved d;
  d.peak = at::empty({n}, c.options());
  d.peak_at = at::empty({n}, c.options());
  d.components = at::empty({n}, c.options().dtype(at::kInt));
  const ResidueOut out{d.peak.data_ptr<float>(), d.peak_at.data_ptr<float>(), d.components.data_ptr<std::int32_t>()};
  on_device(
      c, kWhat, [&] { kernels::deconvolve_curves(c.data_ptr<float>(), n, basis, out); },
      [&](void* stream) {
        // Scratch from LibTorch's caching allocator, which may hold most of the device.
        const at::Tensor workspace = at::empty({static_cast<std::int64_t>(cuda::deconvolve_workspace_bytes(n, basis))},
                                               c.options().dtype(at::kByte));
        cuda::deconvolve_curves(c.data_ptr<float>(), n, basis, out, stream, workspace.data_ptr());
      });
  return d;
}

at::Tensor dictionary_means(const at::Tensor& scores, const at::Tensor& scaled, const at::Tensor& plain,
                            double inverse_two_variance) {
  constexpr const char* kWhat = "dictionary_means";
  if (scores.dim() != 2 || scaled.dim() != 2 || scaled.size(0) != 2 || plain.dim() != 1 ||
      scaled.size(1) != scores.size(1) || plain.size(0) != scores.size(1)) {
    throw InputError(kWhat, fmt::format("scores {}, scaled values {} and plain values {}; expected [n, K], [2, K] and [K]",
                                        shape_text(scores), shape_text(scaled), shape_text(plain)));
  }
  check_float_on_one_device(kWhat, {{scores, "the scores"}, {scaled, "the scaled values"}, {plain, "the plain values"}});
  const at::Tensor s = scores.contiguous(), a = scaled.contiguous(), p = plain.contiguous();
  DictionaryValues d;
  d.entries = s.size(1);
  d.scaled = a.data_ptr<float>();
  d.plain = p.data_ptr<float>();
  d.inverse_two_variance = static_cast<float>(inverse_two_variance);
  detail::check_dictionary(d);
  const std::int64_t n = s.size(0);
  at::Tensor out = at::empty({n, 3}, s.options());
  on_device(
      s, kWhat, [&] { kernels::dictionary_means(s.data_ptr<float>(), n, d, out.data_ptr<float>()); },
      [&](void* stream) { cuda::dictionary_means(s.data_ptr<float>(), n, d, out.data_ptr<float>(), stream); });
  return out;
}

at::Tensor best_mixture_scores(const at::Tensor& scores, const at::Tensor& share, const at::Tensor& gain,
                               const at::Tensor& offset) {
  constexpr const char* kWhat = "best_mixture_scores";
  if (scores.dim() != 2 || share.dim() != 1 || gain.dim() != 1 || offset.dim() != 1 ||
      share.size(0) != scores.size(0) || gain.size(0) != scores.size(1) || offset.size(0) != scores.size(1)) {
    throw InputError(kWhat,
                     fmt::format("scores {}, shares {}, gains {} and offsets {}; expected [n, K], [n], [K] and [K]",
                                 shape_text(scores), shape_text(share), shape_text(gain), shape_text(offset)));
  }
  check_float_on_one_device(
      kWhat, {{scores, "the scores"}, {share, "the shares"}, {gain, "the gains"}, {offset, "the offsets"}});
  const at::Tensor s = scores.contiguous(), h = share.contiguous(), g = gain.contiguous(), o = offset.contiguous();
  MixtureValues m;
  m.entries = s.size(1);
  m.gain = g.data_ptr<float>();
  m.offset = o.data_ptr<float>();
  detail::check_mixture(m);
  const std::int64_t n = s.size(0);
  at::Tensor out = at::empty({n}, s.options());
  on_device(
      s, kWhat,
      [&] { kernels::best_mixture_scores(s.data_ptr<float>(), h.data_ptr<float>(), n, m, out.data_ptr<float>()); },
      [&](void* stream) {
        cuda::best_mixture_scores(s.data_ptr<float>(), h.data_ptr<float>(), n, m, out.data_ptr<float>(), stream);
      });
  return out;
}

}  // namespace vitruvian::kernels
