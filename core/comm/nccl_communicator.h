// NCCL backend for CUDA tensors (built when nvcc and NCCL are found). The unique id travels over
// MPI; collectives run on the communicator's own stream, ordered after the caller's current
// stream by an event, and wait() orders the caller's stream after them. The watchdog polls the
// completion events and, past the timeout, aborts the NCCL communicator and ends the job.
#pragma once

#include <memory>

#include "core/comm/communicator.h"
#include "core/comm/watchdog.h"

namespace vitruvian {

class NcclCommunicator final : public Communicator {
 public:
  /// Collective over `bootstrap` (owned): creates the NCCL communicator on CUDA device `device`.
  NcclCommunicator(MpiComm bootstrap, int device, CommunicatorOptions options);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "nccl"; }
  c10::DeviceType device_type() const override { return c10::kCUDA; }
  const CommunicatorOptions& options() const override { return options_; }
  int device() const noexcept { return device_; }
  int device_index() const override { return device_; }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& suffix) override;
  std::unique_ptr<Communicator> split_node_local() override;
  bool has_library_collective() const override { return true; }
  /// NCCL's own call on the communicator's stream, after the caller's stream, then a host wait.
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
  struct State;
  WorkHandle launch(const OpDescription& what, std::vector<at::Tensor> keep_alive, const std::function<void(void* stream)>& body,
                    std::function<void()> after = nullptr);

  MpiComm bootstrap_;
  CommunicatorOptions options_;
  int rank_ = 0, size_ = 1, device_ = 0;
  std::shared_ptr<State> state_;  // NCCL comm + stream; shared with the timeout handler
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace vitruvian
