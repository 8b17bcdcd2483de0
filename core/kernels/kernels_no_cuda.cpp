// The CUDA kernels' entry points in a build without the CUDA side: no device, and any call says
// how to get one. (With a CPU LibTorch no tensor reaches them; see dispatch.cpp.)
#include "core/errors.h"
#include "core/kernels/kernels_cuda.h"

namespace vitruvian::kernels::cuda {
namespace {

[[noreturn]] void no_cuda(const char* kernel) {
  throw InputError(kernel, "this build has no CUDA side (configure with nvcc and NCCL installed, VITRUVIAN_CUDA=ON)");
}

}  // namespace

int device_count() { return 0; }

void accumulate_windows(const WindowBatch&, const float*, const Accumulator&, void*) { no_cuda("accumulate_windows"); }
void normalize(const void*, Scalar, std::int64_t, const Normalization&, float*, void*) { no_cuda("normalize"); }
void resample(const void*, Scalar, const std::int64_t[3], void*, const std::int64_t[3], const IndexMap&, const Resampling&,
              void*) {
  no_cuda("resample");
}
void softmax_argmax(const Accumulator&, void*, Scalar, float*, void*) { no_cuda("softmax_argmax"); }
std::size_t label_stats_workspace_bytes(std::int64_t) { return 0; }
std::int64_t label_stats(const void*, Scalar, const Grid&, const void*, Scalar, std::int64_t, LabelStats*, void*, void*) {
  no_cuda("label_stats");
}
void connected_roots(const std::uint8_t*, const Grid&, int, std::int32_t*, void*) { no_cuda("connected_roots"); }
std::size_t deconvolve_workspace_bytes(std::int64_t, const ResidueBasis&) { return 0; }
void deconvolve_curves(const float*, std::int64_t, const ResidueBasis&, const ResidueOut&, void*, void*) {
  no_cuda("deconvolve_curves");
}
void dictionary_means(const float*, std::int64_t, const DictionaryValues&, float*, void*) { no_cuda("dictionary_means"); }
void best_mixture_scores(const float*, const float*, std::int64_t, const MixtureValues&, float*, void*) {
  no_cuda("best_mixture_scores");
}

}  // namespace vitruvian::kernels::cuda
