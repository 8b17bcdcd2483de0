// NCCL backend: communicator set-up over MPI, stream/event ordering, watchdog-driven abort.
#include "core/comm/nccl_communicator.h"

#include <ATen/ATen.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <numeric>

#ifdef VITRUVIAN_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "core/errors.h"

namespace vitruvian {
namespace {

void check_cuda(cudaError_t code, const char* call) {
  if (code != cudaSuccess) throw CudaError(call, static_cast<int>(code), cudaGetErrorString(code));
}

void check_nccl(ncclResult_t code, const char* call, ncclComm_t comm = nullptr) {
  if (code == ncclSuccess) return;
  std::string message = ncclGetErrorString(code);
  if (comm != nullptr) {
    const char* last = ncclGetLastError(comm);
    if (last != nullptr && *last != '\0') message += ": " + std::string(last);
  }
  throw NcclError(call, static_cast<int>(code), message);
}

ncclDataType_t nccl_datatype(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kInt: return ncclInt32;
    case at::kLong: return ncclInt64;
    case at::kByte: return ncclUint8;
    default: break;
  }
  throw InternalError("nccl_datatype", std::string("unchecked dtype ") + dtype_name(type));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

/// The stream LibTorch computes on for `device`: its current stream with a CUDA LibTorch, the
/// legacy default stream otherwise.
cudaStream_t compute_stream(int device) {
#ifdef VITRUVIAN_TORCH_CUDA
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;
  return cudaStreamLegacy;
#endif
}

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::atomic<bool> aborted{false};
};

/// One NCCL collective: a completion event on the communicator's stream.
class NcclWork final : public Work {
 public:
  NcclWork(int device, std::vector<at::Tensor> tensors, std::function<void()> after)
      : device_(device), tensors_(std::move(tensors)), after_(std::move(after)) {
    DeviceGuard guard(device_);
    check_cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  ~NcclWork() override {
    if (done_ != nullptr) cudaEventDestroy(done_);
  }
  cudaEvent_t event() const { return done_; }
  void wait() override {
    DeviceGuard guard(device_);
    check_cuda(cudaStreamWaitEvent(compute_stream(device_), done_, 0), "cudaStreamWaitEvent");
    if (after_) {
      after_();  // e.g. copy a staged result back into a strided tensor, on the compute stream
      after_ = nullptr;
    }
  }
  /// Blocks the host until the collective has finished (polling, so the watchdog stays in charge).
  void synchronize() {
    while (!is_completed()) std::this_thread::yield();
    wait();
  }
  bool is_completed() override {
    const cudaError_t state = cudaEventQuery(done_);
    if (state == cudaErrorNotReady) return false;
    check_cuda(state, "cudaEventQuery");
    return true;
  }

 private:
  int device_;
  cudaEvent_t done_ = nullptr;
  std::vector<at::Tensor> tensors_;  // alive until the work is gone
  std::function<void()> after_;
};

NcclCommunicator::NcclCommunicator(MpiComm bootstrap, int device, CommunicatorOptions options)
    : bootstrap_(std::move(bootstrap)),
      options_(std::move(options)),
      rank_(bootstrap_.rank()),
      size_(bootstrap_.size()),
      device_(device),
      state_(std::make_shared<State>()) {
  DeviceGuard guard(device_);
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  check_mpi(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, bootstrap_.get()), "MPI_Bcast(ncclUniqueId)");
  check_nccl(ncclCommInitRank(&state_->comm, size_, id, rank_), "ncclCommInitRank");
  check_cuda(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");

  std::weak_ptr<State> weak = state_;
  watchdog_ = std::make_unique<Watchdog>(
      "on communicator '" + options_.name() + "' (nccl, device " + std::to_string(device_) + ", " +
          std::to_string(size_) + " ranks)",
      options_.timeout_s(), [weak](const std::string& message) {
        spdlog::critical("{}", message);
        std::fprintf(stderr, "vitruvian: %s\n", message.c_str());
        std::fflush(stderr);
        if (auto state = weak.lock()) {
          state->aborted = true;
          ncclCommAbort(state->comm);  // frees the stuck kernels so the process can exit
        }
        MpiComm::world().abort(kCollectiveTimeoutExitCode);
      });
}

NcclCommunicator::~NcclCommunicator() {
  watchdog_.reset();
  if (state_->aborted) return;
  DeviceGuard guard(device_);
  if (state_->stream != nullptr) cudaStreamSynchronize(state_->stream);
  if (state_->comm != nullptr) {
    const ncclResult_t result = ncclCommDestroy(state_->comm);
    if (result != ncclSuccess) spdlog::warn("ncclCommDestroy failed: {}", ncclGetErrorString(result));
  }
  if (state_->stream != nullptr) cudaStreamDestroy(state_->stream);
}

WorkHandle NcclCommunicator::launch(std::string what, std::vector<at::Tensor> keep_alive,
                                    const std::function<void(void* stream)>& body, std::function<void()> after) {
  DeviceGuard guard(device_);
  cudaStream_t compute = compute_stream(device_);
  cudaEvent_t ready = nullptr;
  check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  check_cuda(cudaEventRecord(ready, compute), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(state_->stream, ready, 0), "cudaStreamWaitEvent");
  cudaEventDestroy(ready);  // released once the recorded work is done
#ifdef VITRUVIAN_TORCH_CUDA
  for (const at::Tensor& t : keep_alive) {
    if (t.defined() && t.numel() > 0) {
      c10::cuda::CUDACachingAllocator::recordStream(
          t.storage().data_ptr(),
          c10::cuda::getStreamFromExternal(state_->stream, static_cast<c10::DeviceIndex>(device_)));
    }
  }
#endif
  body(state_->stream);
  auto work = std::make_shared<NcclWork>(device_, std::move(keep_alive), std::move(after));
  check_cuda(cudaEventRecord(work->event(), state_->stream), "cudaEventRecord");
  std::weak_ptr<NcclWork> weak = work;
  watchdog_->begin(std::move(what), [weak] {
    auto alive = weak.lock();
    return !alive || cudaEventQuery(alive->event()) != cudaErrorNotReady;
  });
  return work;
}

WorkHandle NcclCommunicator::issue_allreduce(const at::Tensor& tensor, ReduceOp op, bool /*async*/) {
  check_tensor("allreduce", "the", tensor);
  const at::Tensor buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
  ncclComm_t comm = state_->comm;
  std::function<void()> after;
  if (!buffer.is_same(tensor)) after = [tensor, buffer] { tensor.copy_(buffer); };
  return launch(describe("allreduce", &tensor, to_string(op)), {tensor, buffer}, [&](void* stream) {
    if (buffer.numel() == 0) return;
    check_nccl(ncclAllReduce(buffer.data_ptr(), buffer.data_ptr(), static_cast<size_t>(buffer.numel()),
                             nccl_datatype(buffer.scalar_type()), nccl_op(op), comm, static_cast<cudaStream_t>(stream)),
               "ncclAllReduce", comm);
  }, std::move(after));
}

WorkHandle NcclCommunicator::issue_broadcast(const at::Tensor& tensor, int root, bool /*async*/) {
  check_tensor("broadcast", "the", tensor);
  check_root("broadcast", root);
  const at::Tensor buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
  ncclComm_t comm = state_->comm;
  std::function<void()> after;
  if (!buffer.is_same(tensor)) after = [tensor, buffer] { tensor.copy_(buffer); };
  const std::string detail = "root " + std::to_string(root);
  return launch(describe("broadcast", &tensor, detail.c_str()), {tensor, buffer}, [&](void* stream) {
    if (buffer.numel() == 0) return;
    check_nccl(ncclBroadcast(buffer.data_ptr(), buffer.data_ptr(), static_cast<size_t>(buffer.numel()),
                             nccl_datatype(buffer.scalar_type()), root, comm, static_cast<cudaStream_t>(stream)),
               "ncclBroadcast", comm);
  }, std::move(after));
}

WorkHandle NcclCommunicator::issue_allgather(const at::Tensor& input, const at::Tensor& output, bool /*async*/) {
  check_allgather(input, output);
  const at::Tensor in = input.contiguous();
  const at::Tensor out = output.is_contiguous() ? output : at::empty_like(output, at::MemoryFormat::Contiguous);
  ncclComm_t comm = state_->comm;
  std::function<void()> after;
  if (!out.is_same(output)) after = [output, out] { output.copy_(out); };
  return launch(describe("allgather", &input), {in, out, output}, [&](void* stream) {
    if (in.numel() == 0) return;
    check_nccl(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                             nccl_datatype(in.scalar_type()), comm, static_cast<cudaStream_t>(stream)),
               "ncclAllGather", comm);
  }, std::move(after));
}

WorkHandle NcclCommunicator::issue_allgatherv(const at::Tensor& input, const at::Tensor& output,
                                              const std::vector<std::int64_t>& counts, bool /*async*/) {
  check_allgatherv(input, output, counts);
  const at::Tensor in = input.contiguous();
  const at::Tensor out = output.is_contiguous() ? output : at::empty_like(output, at::MemoryFormat::Contiguous);
  ncclComm_t comm = state_->comm;
  std::function<void()> after;
  if (!out.is_same(output)) after = [output, out] { output.copy_(out); };
  const int me = rank_;
  return launch(describe("allgatherv", &input), {in, out, output}, [&](void* stream) {
    // NCCL has no allgatherv: one broadcast per rank into its slice, fused in a group.
    const ncclDataType_t type = nccl_datatype(in.scalar_type());
    char* base = out.numel() == 0 ? nullptr : static_cast<char*>(out.data_ptr());
    const size_t element = static_cast<size_t>(out.element_size());
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    size_t offset = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      const size_t n = static_cast<size_t>(counts[r]);
      if (n > 0) {
        void* slice = base + offset * element;
        const void* send = static_cast<int>(r) == me ? in.data_ptr() : slice;
        check_nccl(ncclBroadcast(send, slice, n, type, static_cast<int>(r), comm, static_cast<cudaStream_t>(stream)),
                   "ncclBroadcast (allgatherv)", comm);
      }
      offset += n;
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd", comm);
  }, std::move(after));
}

WorkHandle NcclCommunicator::issue_reduce_scatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op,
                                                  bool /*async*/) {
  check_reduce_scatter(input, output);
  const at::Tensor in = input.contiguous();
  const at::Tensor out = output.is_contiguous() ? output : at::empty_like(output, at::MemoryFormat::Contiguous);
  ncclComm_t comm = state_->comm;
  std::function<void()> after;
  if (!out.is_same(output)) after = [output, out] { output.copy_(out); };
  return launch(describe("reduce_scatter", &input, to_string(op)), {in, out, output}, [&](void* stream) {
    if (out.numel() == 0) return;
    check_nccl(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                 nccl_datatype(in.scalar_type()), nccl_op(op), comm, static_cast<cudaStream_t>(stream)),
               "ncclReduceScatter", comm);
  }, std::move(after));
}

WorkHandle NcclCommunicator::issue_barrier(bool async) {
  // A one-element allreduce on the device; the blocking form also blocks the host.
  const at::Tensor token = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(c10::kCUDA, device_));
  ncclComm_t comm = state_->comm;
  auto work = launch(describe("barrier", nullptr), {token}, [&](void* stream) {
    check_nccl(ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclFloat32, ncclSum, comm,
                             static_cast<cudaStream_t>(stream)),
               "ncclAllReduce (barrier)", comm);
  });
  if (!async) std::static_pointer_cast<NcclWork>(work)->synchronize();
  return work;
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key, const std::string& suffix) {
  CommunicatorOptions options = options_;
  options.name(options_.name() + "/" + suffix);
  return std::make_unique<NcclCommunicator>(bootstrap_.split(color, key), device_, std::move(options));
}

std::unique_ptr<Communicator> NcclCommunicator::split_node_local() {
  CommunicatorOptions options = options_;
  options.name(options_.name() + "/node");
  return std::make_unique<NcclCommunicator>(bootstrap_.split_node_local(), device_, std::move(options));
}

std::string nccl_version_built() {
  return std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + "." + std::to_string(NCCL_PATCH);
}

std::string nccl_version_loaded() {
  int version = 0;
  if (ncclGetVersion(&version) != ncclSuccess) return "";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." + std::to_string(version % 100);
}

}  // namespace vitruvian
