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

#include "core/comm/staging.h"
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

/// The work to run in Work::wait() (on the caller's stream) for a staged strided tensor.
std::function<void()> copy_back(const Staged& staged) {
  if (!staged.copied()) return nullptr;
  return [staged] { staged.write_back(); };
}

/// Makes `device` current on the calling thread. Never switches back: restoring device 0 would
/// create a CUDA context there for every rank (CUDA 12+ creates contexts on cudaSetDevice).
void use_device(int device) {
  int current = -1;
  check_cuda(cudaGetDevice(&current), "cudaGetDevice");
  if (current != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
}

/// Closes an NCCL group on every path, so a failed launch never leaves later calls queued in it.
class NcclGroup {
 public:
  explicit NcclGroup(ncclComm_t comm) : comm_(comm) { check_nccl(ncclGroupStart(), "ncclGroupStart"); }
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;
  ~NcclGroup() {
    if (open_) ncclGroupEnd();
  }
  void end() {
    open_ = false;
    check_nccl(ncclGroupEnd(), "ncclGroupEnd", comm_);
  }

 private:
  ncclComm_t comm_;
  bool open_ = true;
};

/// A completion event shared by a Work and its watchdog entry, so the watchdog keeps watching a
/// collective whose handle the caller already dropped.
class CompletionEvent {
 public:
  CompletionEvent() { check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreateWithFlags"); }
  CompletionEvent(const CompletionEvent&) = delete;
  CompletionEvent& operator=(const CompletionEvent&) = delete;
  ~CompletionEvent() { cudaEventDestroy(event_); }
  cudaEvent_t get() const { return event_; }
  /// True once the work before the event has run; throws CudaError on a device error.
  bool done() const {
    const cudaError_t state = cudaEventQuery(event_);
    if (state == cudaErrorNotReady) return false;
    check_cuda(state, "cudaEventQuery");
    return true;
  }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t ready = nullptr;  // re-recorded on the caller's stream before every collective
};

/// One NCCL collective: a completion event on the communicator's stream.
class NcclWork final : public Work {
 public:
  NcclWork(int device, std::shared_ptr<CompletionEvent> done, std::vector<at::Tensor> tensors,
           std::function<void()> after)
      : device_(device), done_(std::move(done)), tensors_(std::move(tensors)), after_(std::move(after)) {}
  void wait() override {
    use_device(device_);
    check_cuda(cudaStreamWaitEvent(compute_stream(device_), done_->get(), 0), "cudaStreamWaitEvent");
    if (after_) {
      after_();  // e.g. copy a staged result back into a strided tensor, on the compute stream
      after_ = nullptr;
    }
  }
  /// Blocks the host until the collective has finished (polling, so the watchdog stays in charge).
  void synchronize() {
    while (!done_->done()) std::this_thread::yield();
    wait();
  }
  bool is_completed() override { return done_->done(); }

 private:
  int device_;
  std::shared_ptr<CompletionEvent> done_;
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
  use_device(device_);
  // Rank 0's status travels with the id, so a failure there fails every rank instead of
  // leaving the others waiting in the broadcast.
  struct {
    int status;
    ncclUniqueId id;
  } bootstrap_message;
  std::memset(&bootstrap_message, 0, sizeof bootstrap_message);
  if (rank_ == 0) bootstrap_message.status = static_cast<int>(ncclGetUniqueId(&bootstrap_message.id));
  check_mpi(MPI_Bcast(&bootstrap_message, sizeof bootstrap_message, MPI_BYTE, 0, bootstrap_.get()),
            "MPI_Bcast(ncclUniqueId)");
  check_nccl(static_cast<ncclResult_t>(bootstrap_message.status), "ncclGetUniqueId (on rank 0)");
  check_nccl(ncclCommInitRank(&state_->comm, size_, bootstrap_message.id, rank_), "ncclCommInitRank");
  check_cuda(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  check_cuda(cudaEventCreateWithFlags(&state_->ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");

  const int device_index = device_;
  watchdog_ = std::make_unique<Watchdog>(
      "on communicator '" + options_.name() + "' (nccl, device " + std::to_string(device_) + ", " +
          std::to_string(size_) + " ranks)",
      options_.timeout_s(), end_job_on_timeout, [device_index] { cudaSetDevice(device_index); });
}

NcclCommunicator::~NcclCommunicator() {
  use_device(device_);
  // Drain while the watchdog still watches the outstanding work: a peer that never joins ends
  // the job through the timeout instead of hanging this destructor.
  if (state_->stream != nullptr) {
    while (cudaStreamQuery(state_->stream) == cudaErrorNotReady) std::this_thread::yield();
  }
  watchdog_.reset();
  if (state_->comm != nullptr) {
    const ncclResult_t result = ncclCommDestroy(state_->comm);
    if (result != ncclSuccess) spdlog::warn("ncclCommDestroy failed: {}", ncclGetErrorString(result));
  }
  if (state_->ready != nullptr) cudaEventDestroy(state_->ready);
  if (state_->stream != nullptr) cudaStreamDestroy(state_->stream);
}

WorkHandle NcclCommunicator::launch(const OpDescription& what, std::vector<at::Tensor> keep_alive,
                                    const std::function<void(void* stream)>& body, std::function<void()> after) {
  use_device(device_);
  // cudaStreamWaitEvent waits for the event's state at this call, so one event serves every
  // collective (calls on a communicator come from one thread at a time).
  check_cuda(cudaEventRecord(state_->ready, compute_stream(device_)), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(state_->stream, state_->ready, 0), "cudaStreamWaitEvent");
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
  auto done = std::make_shared<CompletionEvent>();
  check_cuda(cudaEventRecord(done->get(), state_->stream), "cudaEventRecord");
  watchdog_->begin(what, [done, what] {
    try {
      return done->done();
    } catch (const Error& e) {  // a device error: the waiter sees it too; stop watching
      spdlog::error("{} failed on the device: {}", what.str(), e.what());
      return true;
    }
  });
  return std::make_shared<NcclWork>(device_, std::move(done), std::move(keep_alive), std::move(after));
}

WorkHandle NcclCommunicator::issue_allreduce(const at::Tensor& tensor, ReduceOp op, bool /*async*/) {
  check_tensor("allreduce", "the", tensor);
  const Staged staged = Staged::in_place(tensor);
  const at::Tensor& buffer = staged.buffer();
  ncclComm_t comm = state_->comm;
  return launch(describe("allreduce", &tensor, to_string(op)), {tensor, buffer}, [&](void* stream) {
    if (buffer.numel() == 0) return;
    check_nccl(ncclAllReduce(buffer.data_ptr(), buffer.data_ptr(), static_cast<size_t>(buffer.numel()),
                             nccl_datatype(buffer.scalar_type()), nccl_op(op), comm, static_cast<cudaStream_t>(stream)),
               "ncclAllReduce", comm);
  }, copy_back(staged));
}

WorkHandle NcclCommunicator::issue_broadcast(const at::Tensor& tensor, int root, bool /*async*/) {
  check_tensor("broadcast", "the", tensor);
  check_root("broadcast", root);
  const Staged staged = Staged::in_place(tensor);
  const at::Tensor& buffer = staged.buffer();
  ncclComm_t comm = state_->comm;
  return launch(describe("broadcast", &tensor, nullptr, root), {tensor, buffer}, [&](void* stream) {
    if (buffer.numel() == 0) return;
    check_nccl(ncclBroadcast(buffer.data_ptr(), buffer.data_ptr(), static_cast<size_t>(buffer.numel()),
                             nccl_datatype(buffer.scalar_type()), root, comm, static_cast<cudaStream_t>(stream)),
               "ncclBroadcast", comm);
  }, copy_back(staged));
}

WorkHandle NcclCommunicator::issue_allgather(const at::Tensor& input, const at::Tensor& output, bool /*async*/) {
  check_allgather(input, output);
  const at::Tensor in = input.contiguous();
  const Staged staged = Staged::output(output);
  const at::Tensor& out = staged.buffer();
  ncclComm_t comm = state_->comm;
  return launch(describe("allgather", &input), {in, out, output}, [&](void* stream) {
    if (in.numel() == 0) return;
    check_nccl(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()),
                             nccl_datatype(in.scalar_type()), comm, static_cast<cudaStream_t>(stream)),
               "ncclAllGather", comm);
  }, copy_back(staged));
}

WorkHandle NcclCommunicator::issue_allgatherv(const at::Tensor& input, const at::Tensor& output,
                                              const std::vector<std::int64_t>& counts, bool /*async*/) {
  check_allgatherv(input, output, counts);
  const at::Tensor in = input.contiguous();
  const Staged staged = Staged::output(output);
  const at::Tensor& out = staged.buffer();
  ncclComm_t comm = state_->comm;
  const int me = rank_;
  return launch(describe("allgatherv", &input), {in, out, output}, [&](void* stream) {
    // NCCL has no allgatherv: one broadcast per rank into its slice, fused in a group.
    const ncclDataType_t type = nccl_datatype(in.scalar_type());
    char* base = out.numel() == 0 ? nullptr : static_cast<char*>(out.data_ptr());
    const size_t element = static_cast<size_t>(out.element_size());
    NcclGroup group(comm);
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
    group.end();
  }, copy_back(staged));
}

WorkHandle NcclCommunicator::issue_reduce_scatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op,
                                                  bool /*async*/) {
  check_reduce_scatter(input, output);
  const at::Tensor in = input.contiguous();
  const Staged staged = Staged::output(output);
  const at::Tensor& out = staged.buffer();
  ncclComm_t comm = state_->comm;
  return launch(describe("reduce_scatter", &input, to_string(op)), {in, out, output}, [&](void* stream) {
    if (out.numel() == 0) return;
    check_nccl(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                                 nccl_datatype(in.scalar_type()), nccl_op(op), comm, static_cast<cudaStream_t>(stream)),
               "ncclReduceScatter", comm);
  }, copy_back(staged));
}

WorkHandle NcclCommunicator::issue_barrier(bool async) {
  // A one-element allreduce on the device; the blocking form also blocks the host.
  const at::Tensor token = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(c10::kCUDA, device_));
  ncclComm_t comm = state_->comm;
  auto work = launch(describe("barrier"), {token}, [&](void* stream) {
    check_nccl(ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclFloat32, ncclSum, comm,
                             static_cast<cudaStream_t>(stream)),
               "ncclAllReduce (barrier)", comm);
  });
  if (!async) std::static_pointer_cast<NcclWork>(work)->synchronize();
  return work;
}

void NcclCommunicator::library_collective(const std::string& op, const at::Tensor& input, const at::Tensor& output) {
  use_device(device_);
  check_cuda(cudaEventRecord(state_->ready, compute_stream(device_)), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(state_->stream, state_->ready, 0), "cudaStreamWaitEvent");
  ncclComm_t comm = state_->comm;
  cudaStream_t stream = state_->stream;
  const ncclDataType_t type = nccl_datatype(input.scalar_type());
  const auto count = static_cast<size_t>(input.numel());
  if (op == "allreduce") {
    check_nccl(ncclAllReduce(input.data_ptr(), input.data_ptr(), count, type, ncclSum, comm, stream), "ncclAllReduce", comm);
  } else if (op == "allgather") {
    check_nccl(ncclAllGather(input.data_ptr(), output.data_ptr(), count, type, comm, stream), "ncclAllGather", comm);
  } else if (op == "reduce_scatter") {
    check_nccl(ncclReduceScatter(input.data_ptr(), output.data_ptr(), static_cast<size_t>(output.numel()), type, ncclSum,
                                 comm, stream),
               "ncclReduceScatter", comm);
  } else if (op == "broadcast") {
    check_nccl(ncclBroadcast(input.data_ptr(), input.data_ptr(), count, type, 0, comm, stream), "ncclBroadcast", comm);
  } else {
    throw InternalError("library_collective", "unknown collective '" + op + "'");
  }
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
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
