// Collectives over at::Tensor behind one interface: allreduce, broadcast, allgather(v),
// reduce_scatter and barrier, each blocking or async. Backends: MPI for CPU tensors, NCCL for
// CUDA tensors, chosen by make_communicator() from the device. A collective that does not finish
// within the timeout ends the whole job with a message naming this rank and the operation.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/comm/watchdog.h"
#include "core/mpi.h"

namespace vitruvian {

enum class ReduceOp { kSum, kAvg, kMax, kMin };
const char* to_string(ReduceOp op);
/// "float32", "bfloat16", "uint8", ... (PyTorch's Python names).
const char* dtype_name(at::ScalarType type);

/// An issued collective. Keeps its tensors alive until it completes.
class Work {
 public:
  virtual ~Work() = default;
  /// CPU: blocks until the result is in the tensors. CUDA: orders the caller's current stream
  /// after the collective (the host does not block). Rethrows the collective's error, if any.
  virtual void wait() = 0;
  /// True once the collective has finished (never blocks).
  virtual bool is_completed() = 0;
  /// Seconds the collective itself ran, once completed (from its start on the wire to its
  /// end, not counting time queued behind earlier ones); < 0 when the backend cannot tell.
  virtual double busy_seconds() { return -1.0; }
};
using WorkHandle = std::shared_ptr<Work>;

/// Options for a communicator (fluent setters).
class CommunicatorOptions {
 public:
  /// Seconds a collective may run before the job is ended; <= 0 disables the watchdog.
  CommunicatorOptions& timeout_s(double seconds) {
    timeout_s_ = seconds;
    return *this;
  }
  double timeout_s() const noexcept { return timeout_s_; }
  /// Name used in log lines and timeout messages ("world", "node", ...).
  CommunicatorOptions& name(std::string value) {
    name_ = std::move(value);
    return *this;
  }
  const std::string& name() const noexcept { return name_; }
  /// MPI backend: allreduce moves at most this many bytes per MPI call; reduce_scatter inputs
  /// larger than four times this go in packed pieces of at most this size.
  /// OpenMPI allocates a temporary as large as the message; from 32 MiB on glibc maps it fresh
  /// (page faults) on every call, which made one 32 MiB allreduce 30x slower than two of
  /// 16 MiB on the reference machine (docs/PERFORMANCE.md). Must be >= 1.
  CommunicatorOptions& mpi_chunk_bytes(std::int64_t bytes) {
    mpi_chunk_bytes_ = bytes;
    return *this;
  }
  std::int64_t mpi_chunk_bytes() const noexcept { return mpi_chunk_bytes_; }

 private:
  double timeout_s_ = 600.0;
  std::string name_ = "world";
  std::int64_t mpi_chunk_bytes_ = 16LL << 20;
};

/// Collective communication among the ranks of one group. Every rank must issue the same
/// collectives in the same order; calls on one communicator come from one thread at a time.
/// Tensors are passed as handles and written in place (like torch.distributed).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "mpi" or "nccl".
  virtual const char* backend() const = 0;
  /// Device type of the tensors this communicator takes (kCPU for MPI, kCUDA for NCCL).
  virtual c10::DeviceType device_type() const = 0;
  virtual const CommunicatorOptions& options() const = 0;
  /// The device index tensors must be on, or -1 for any (CPU).
  virtual int device_index() const { return -1; }

  /// In place: every rank ends with `op` over all ranks' `tensor` (same shape and dtype).
  void allreduce(const at::Tensor& tensor, ReduceOp op = ReduceOp::kSum) { issue_allreduce(tensor, op, false)->wait(); }
  WorkHandle allreduce_async(const at::Tensor& tensor, ReduceOp op = ReduceOp::kSum) { return issue_allreduce(tensor, op, true); }

  /// In place: every rank ends with rank `root`'s `tensor`.
  void broadcast(const at::Tensor& tensor, int root) { issue_broadcast(tensor, root, false)->wait(); }
  WorkHandle broadcast_async(const at::Tensor& tensor, int root) { return issue_broadcast(tensor, root, true); }

  /// `output` (size() * input.numel() elements, input's dtype) receives every rank's `input`
  /// in rank order.
  void allgather(const at::Tensor& input, const at::Tensor& output) { issue_allgather(input, output, false)->wait(); }
  WorkHandle allgather_async(const at::Tensor& input, const at::Tensor& output) {
    return issue_allgather(input, output, true);
  }

  /// Variable sizes: rank r contributes counts[r] elements (its input's numel); `output`
  /// (sum(counts) elements) receives them in rank order.
  void allgatherv(const at::Tensor& input, const at::Tensor& output, const std::vector<std::int64_t>& counts) {
    issue_allgatherv(input, output, counts, false)->wait();
  }
  WorkHandle allgatherv_async(const at::Tensor& input, const at::Tensor& output, const std::vector<std::int64_t>& counts) {
    return issue_allgatherv(input, output, counts, true);
  }
  /// Variable sizes along dim 0, sizes not known in advance: exchanges each rank's row count
  /// first and returns the rows of every rank concatenated in rank order. Trailing dimensions
  /// must agree across ranks.
  at::Tensor allgatherv(const at::Tensor& input);

  /// `input` (size() * output.numel() elements): rank r's `output` is `op` over all ranks of
  /// chunk r of `input`.
  void reduce_scatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op = ReduceOp::kSum) {
    issue_reduce_scatter(input, output, op, false)->wait();
  }
  WorkHandle reduce_scatter_async(const at::Tensor& input, const at::Tensor& output, ReduceOp op = ReduceOp::kSum) {
    return issue_reduce_scatter(input, output, op, true);
  }

  /// Returns once every rank has entered the barrier (blocks the host on every backend).
  void barrier() { issue_barrier(false)->wait(); }
  WorkHandle barrier_async() { return issue_barrier(true); }

  /// Collective: ranks with equal `color` form a new communicator of the same backend, ordered
  /// by `key`; named "<this name>/<suffix>".
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& suffix) = 0;
  /// Collective: the ranks on this node (for hierarchical schemes).
  virtual std::unique_ptr<Communicator> split_node_local() = 0;

  /// Whether the backend's own library call can be run through library_collective().
  virtual bool has_library_collective() const { return false; }
  /// Collective: the backend library's own call on this communicator (MPI_Allreduce,
  /// ncclAllReduce, ...), blocking the host until it is done: the reference that benchmarks
  /// hold the communicator against. `op` is "allreduce" (in place on `input`, sum),
  /// "allgather" (`input` → `output`), "reduce_scatter" (`input` → `output`, sum) or
  /// "broadcast" (in place on `input`, from rank 0); contiguous tensors of this backend's
  /// device. InternalError on a backend without one.
  virtual void library_collective(const std::string& op, const at::Tensor& input, const at::Tensor& output);

 protected:
  // `async` false: the caller waits right away (backends may run the call inline).
  virtual WorkHandle issue_allreduce(const at::Tensor& tensor, ReduceOp op, bool async) = 0;
  virtual WorkHandle issue_broadcast(const at::Tensor& tensor, int root, bool async) = 0;
  virtual WorkHandle issue_allgather(const at::Tensor& input, const at::Tensor& output, bool async) = 0;
  virtual WorkHandle issue_allgatherv(const at::Tensor& input, const at::Tensor& output,
                                      const std::vector<std::int64_t>& counts, bool async) = 0;
  virtual WorkHandle issue_reduce_scatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op,
                                          bool async) = 0;
  virtual WorkHandle issue_barrier(bool async) = 0;

  // Argument checks shared by the backends; each throws InputError naming the collective.
  void check_tensor(const char* collective, const char* role, const at::Tensor& tensor) const;
  void check_allgather(const at::Tensor& input, const at::Tensor& output) const;
  void check_allgatherv(const at::Tensor& input, const at::Tensor& output, const std::vector<std::int64_t>& counts) const;
  void check_reduce_scatter(const at::Tensor& input, const at::Tensor& output) const;
  void check_root(const char* collective, int root) const;
  /// The next operation's description for the watchdog (no string work: see OpDescription).
  OpDescription describe(const char* collective, const at::Tensor* tensor = nullptr, const char* op = nullptr,
                         int root = -1);

 private:
  std::uint64_t sequence_ = 0;
};

/// Creates the backend for `device` over a duplicate of `comm` (collective over `comm`): MPI
/// for CPU, NCCL for CUDA (device index = the CUDA device this rank uses). Throws InputError for
/// a device type no backend serves, or CUDA in a build without the NCCL backend.
std::unique_ptr<Communicator> make_communicator(const MpiComm& comm, c10::Device device,
                                                const CommunicatorOptions& options = {});

/// True if this build has the NCCL backend.
bool nccl_backend_built();
/// NCCL version this build was compiled against ("2.28.9"), or "" without the NCCL backend.
std::string nccl_version_built();
/// NCCL version of the library loaded at run time, or "" (no backend / not loadable).
std::string nccl_version_loaded();

}  // namespace vitruvian
