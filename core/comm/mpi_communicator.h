// MPI backend for CPU tensors. Blocking calls run inline on the caller's thread (after any
// queued async work); async calls run in order on one worker thread per communicator, so they
// progress while the caller computes. float16/bfloat16 reductions use MPI user-defined ops.
// Reductions go in pieces of at most CommunicatorOptions::mpi_chunk_bytes. A collective that
// times out ends the job with a roll call of the peers (core/comm/roll_call.h) in its message.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "core/comm/communicator.h"
#include "core/comm/watchdog.h"

namespace vitruvian {

class MpiWork;
class RollCall;

class MpiCommunicator final : public Communicator {
 public:
  /// Takes ownership of `comm` (usually a dup of world). Async calls need MPI_THREAD_MULTIPLE;
  /// without it they run inline and complete before returning.
  MpiCommunicator(MpiComm comm, CommunicatorOptions options);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  c10::DeviceType device_type() const override { return c10::kCPU; }
  const CommunicatorOptions& options() const override { return options_; }
  /// The underlying MPI communicator (for raw MPI calls in benchmarks and tests).
  MPI_Comm mpi_comm() const noexcept { return comm_.get(); }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& suffix) override;
  std::unique_ptr<Communicator> split_node_local() override;
  bool has_library_collective() const override { return true; }
  void library_collective(const std::string& op, const at::Tensor& input, const at::Tensor& output) override;

 protected:
  WorkHandle issue_allreduce(const at::Tensor& tensor, ReduceOp op, bool async) override;
  WorkHandle issue_broadcast(const at::Tensor& tensor, int root, bool async) override;
  WorkHandle issue_allgather(const at::Tensor& input, const at::Tensor& output, bool async) override;
  WorkHandle issue_allgatherv(const at::Tensor& input, const at::Tensor& output,
                              const std::vector<std::int64_t>& counts, bool async) override;
  WorkHandle issue_reduce_scatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op, bool async) override;
  WorkHandle issue_barrier(bool async) override;

 private:
  using Task = std::function<void()>;
  struct Queued {
    std::shared_ptr<MpiWork> work;
    OpDescription what;
    Task task;
  };
  WorkHandle submit(const OpDescription& what, Task task, bool async);
  void execute(MpiWork& work, const OpDescription& what, const Task& task);
  void worker_loop();
  MPI_Op reduction(ReduceOp op, at::ScalarType type) const;
  /// Elements per MPI call so that `blocks` blocks of them stay within mpi_chunk_bytes.
  std::int64_t chunk_elements(std::int64_t element_size, int blocks) const;
  std::unique_ptr<Communicator> wrap(MpiComm comm, const std::string& suffix);
  /// The watchdog's handler: `message` with the roll call's findings, then end_job_on_timeout.
  [[noreturn]] void time_out(const std::string& message);

  MpiComm comm_;

  MpiComm library_comm_;  ///< a duplicate of comm_ for library_collective (made at its first call)
  CommunicatorOptions options_;
  int rank_ = 0, size_ = 1;
  bool async_threads_ = false;
  /// Names the peers that keep a timed-out collective waiting; with MPI_THREAD_MULTIPLE and a timeout only.
  std::unique_ptr<RollCall> roll_call_;
  Watchdog watchdog_;
  // MPI ops for 16-bit floats: [half, bfloat16] x [sum, max, min].
  MPI_Op half_ops_[2][3] = {};

  std::mutex issue_mutex_;  // one issuer at a time: keeps the call order on every rank
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_, idle_cv_;
  std::deque<Queued> queue_;
  bool worker_busy_ = false;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace vitruvian
