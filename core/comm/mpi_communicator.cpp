// MPI backend: inline blocking collectives, an ordered worker thread for async ones.
#include "core/comm/mpi_communicator.h"

#include <ATen/ATen.h>
#include <ATen/ThreadLocalState.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <climits>

#include "core/comm/roll_call.h"
#include "core/comm/staging.h"
#include "core/errors.h"

namespace vitruvian {

/// Completion of one MPI collective; wait() blocks on a condition variable.
class MpiWork final : public Work {
 public:
  void wait() override {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
  }
  bool is_completed() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
  }
  double busy_seconds() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_ ? busy_s_ : -1.0;
  }
  void finish(std::exception_ptr error, double busy_s) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
      error_ = std::move(error);
      busy_s_ = busy_s;
    }
    done_cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  double busy_s_ = -1.0;
  std::exception_ptr error_;
};

namespace {

MPI_Datatype mpi_datatype(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kInt: return MPI_INT32_T;
    case at::kLong: return MPI_INT64_T;
    case at::kByte: return MPI_UINT8_T;
    case at::kHalf:
    case at::kBFloat16: return MPI_UINT16_T;  // moved as 16-bit words, reduced by our own ops
    default: break;
  }
  throw InternalError("mpi_datatype", std::string("unchecked dtype ") + dtype_name(type));
}

int mpi_count(const char* collective, std::int64_t count) {
  if (count > INT_MAX) {
    throw InputError(collective, std::to_string(count) + " elements exceed MPI's 32-bit counts (" +
                                     std::to_string(INT_MAX) + "); split the tensor");
  }
  return static_cast<int>(count);
}

// Elementwise reductions for 16-bit floats, computed in float and rounded back.
template <class T, int kOp>
void reduce_16bit(void* in, void* inout, int* length, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *length; ++i) {
    const float x = static_cast<float>(a[i]), y = static_cast<float>(b[i]);
    b[i] = static_cast<T>(kOp == 0 ? x + y : (kOp == 1 ? std::max(x, y) : std::min(x, y)));
  }
}

/// Calls fn(offset, count) over [0, total) in pieces of at most `piece` elements, at least
/// once, so a 0-element collective still matches its peers' calls.
template <class F>
void for_each_piece(std::int64_t total, std::int64_t piece, F&& fn) {
  std::int64_t offset = 0;
  do {
    const int count = static_cast<int>(std::min(piece, total - offset));
    fn(offset, count);
    offset += count;
  } while (offset < total);
}

/// Sum -> average in place (integers truncate, as NCCL's ncclAvg).
void divide_for_average(const at::Tensor& tensor, int size) {
  if (at::isFloatingType(tensor.scalar_type())) {
    tensor.div_(size);
  } else {
    tensor.div_(size, "trunc");
  }
}

/// A roll call when the watchdog may fire and its thread may call MPI (MPI_THREAD_MULTIPLE).
std::unique_ptr<RollCall> make_roll_call(const MpiComm& comm, double timeout_s) {
  int provided = MPI_THREAD_SINGLE;
  check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
  if (timeout_s <= 0 || provided < MPI_THREAD_MULTIPLE || comm.size() < 2) return nullptr;
  return std::make_unique<RollCall>(comm);
}

}  // namespace

MpiCommunicator::MpiCommunicator(MpiComm comm, CommunicatorOptions options)
    : comm_(std::move(comm)),
      options_(std::move(options)),
      rank_(comm_.rank()),
      size_(comm_.size()),
      roll_call_(make_roll_call(comm_, options_.timeout_s())),
      watchdog_("on communicator '" + options_.name() + "' (mpi, " + std::to_string(size_) + " ranks)",
                options_.timeout_s(), [this](const std::string& message) { time_out(message); }) {
  if (options_.mpi_chunk_bytes() < 1) {
    throw InputError("CommunicatorOptions::mpi_chunk_bytes",
                     std::to_string(options_.mpi_chunk_bytes()) + " is not a size; expected >= 1 byte");
  }
  int provided = MPI_THREAD_SINGLE;
  check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
  async_threads_ = provided >= MPI_THREAD_MULTIPLE;
  if (!async_threads_ && rank_ == 0) {
    spdlog::warn("MPI gives {} (not MPI_THREAD_MULTIPLE): async collectives on '{}' run inline, without overlap",
                 provided, options_.name());
  }
  MPI_User_function* functions[2][3] = {
      {reduce_16bit<c10::Half, 0>, reduce_16bit<c10::Half, 1>, reduce_16bit<c10::Half, 2>},
      {reduce_16bit<c10::BFloat16, 0>, reduce_16bit<c10::BFloat16, 1>, reduce_16bit<c10::BFloat16, 2>}};
  for (int t = 0; t < 2; ++t) {
    for (int o = 0; o < 3; ++o) check_mpi(MPI_Op_create(functions[t][o], 1, &half_ops_[t][o]), "MPI_Op_create");
  }
}

MpiCommunicator::~MpiCommunicator() {
  {
    std::unique_lock<std::mutex> lock(queue_mutex_);
    idle_cv_.wait(lock, [&] { return queue_.empty() && !worker_busy_; });
    stop_ = true;
  }
  queue_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  if (mpi_is_active()) {
    for (auto& per_type : half_ops_) {
      for (MPI_Op& op : per_type) {
        if (op != MPI_OP_NULL) MPI_Op_free(&op);
      }
    }
  }
}

std::int64_t MpiCommunicator::chunk_elements(std::int64_t element_size, int blocks) const {
  const std::int64_t elements = options_.mpi_chunk_bytes() / (element_size * blocks);
  return std::clamp<std::int64_t>(elements, 1, INT_MAX);
}

MPI_Op MpiCommunicator::reduction(ReduceOp op, at::ScalarType type) const {
  const int which = op == ReduceOp::kMax ? 1 : (op == ReduceOp::kMin ? 2 : 0);  // avg = sum, then divide
  if (type == at::kHalf) return half_ops_[0][which];
  if (type == at::kBFloat16) return half_ops_[1][which];
  return which == 1 ? MPI_MAX : (which == 2 ? MPI_MIN : MPI_SUM);
}

void MpiCommunicator::execute(MpiWork& work, const OpDescription& what, const Task& task) {
  std::exception_ptr error;
  const auto start = std::chrono::steady_clock::now();
  // While the collective runs, the watchdog thread answers peers' roll calls with `what`.
  Watchdog::DoneProbe answer_roll_calls;
  if (roll_call_) {
    answer_roll_calls = [this, &what] {
      roll_call_->answer(what);
      return false;
    };
  }
  const std::uint64_t watched = watchdog_.begin(what, std::move(answer_roll_calls));
  try {
    task();
  } catch (...) {
    error = std::current_exception();
  }
  watchdog_.end(watched);
  work.finish(error, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

WorkHandle MpiCommunicator::submit(const OpDescription& what, Task task, bool async) {
  auto work = std::make_shared<MpiWork>();
  std::lock_guard<std::mutex> issue(issue_mutex_);
  if (async && async_threads_) {
    // Run with the issuing thread's LibTorch state (grad mode, inference mode, ...), as the
    // blocking form does.
    task = [state = at::ThreadLocalState(), inner = std::move(task)] {
      at::ThreadLocalStateGuard guard(state);
      inner();
    };
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      if (!worker_.joinable()) worker_ = std::thread([this] { worker_loop(); });
      queue_.push_back(Queued{work, what, std::move(task)});
    }
    queue_cv_.notify_one();
    return work;
  }
  {
    // Blocking: let queued async collectives finish first, so every rank sees the same order.
    std::unique_lock<std::mutex> lock(queue_mutex_);
    idle_cv_.wait(lock, [&] { return queue_.empty() && !worker_busy_; });
  }
  execute(*work, what, task);
  return work;
}

void MpiCommunicator::worker_loop() {
  std::unique_lock<std::mutex> lock(queue_mutex_);
  while (true) {
    queue_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left
    Queued next = std::move(queue_.front());
    queue_.pop_front();
    worker_busy_ = true;
    lock.unlock();
    execute(*next.work, next.what, next.task);
    lock.lock();
    worker_busy_ = false;
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

WorkHandle MpiCommunicator::issue_allreduce(const at::Tensor& tensor, ReduceOp op, bool async) {
  check_tensor("allreduce", "the", tensor);
  const Staged staged = Staged::in_place(tensor);
  const MPI_Op mpi_op = reduction(op, tensor.scalar_type());
  const int size = size_;
  const std::int64_t piece = chunk_elements(tensor.element_size(), 1);
  MPI_Comm comm = comm_.get();
  return submit(describe("allreduce", &tensor, to_string(op)), [staged, op, mpi_op, size, piece, comm] {
    const MPI_Datatype type = mpi_datatype(staged.buffer().scalar_type());
    for_each_piece(staged.buffer().numel(), piece, [&](std::int64_t offset, int count) {
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, staged.data(offset), count, type, mpi_op, comm), "MPI_Allreduce");
    });
    if (op == ReduceOp::kAvg) divide_for_average(staged.buffer(), size);
    staged.write_back();
  }, async);
}

WorkHandle MpiCommunicator::issue_broadcast(const at::Tensor& tensor, int root, bool async) {
  check_tensor("broadcast", "the", tensor);
  check_root("broadcast", root);
  const Staged staged = Staged::in_place(tensor);
  MPI_Comm comm = comm_.get();
  return submit(describe("broadcast", &tensor, nullptr, root), [staged, root, comm] {
    const MPI_Datatype type = mpi_datatype(staged.buffer().scalar_type());
    // MPI counts are 32-bit: larger tensors go in pieces of INT_MAX elements.
    for_each_piece(staged.buffer().numel(), INT_MAX, [&](std::int64_t offset, int count) {
      check_mpi(MPI_Bcast(staged.data(offset), count, type, root, comm), "MPI_Bcast");
    });
    staged.write_back();
  }, async);
}

WorkHandle MpiCommunicator::issue_allgather(const at::Tensor& input, const at::Tensor& output, bool async) {
  check_allgather(input, output);
  const int count = mpi_count("allgather", input.numel());
  mpi_count("allgather", output.numel());
  const at::Tensor in = input.contiguous();
  const Staged out = Staged::output(output);
  MPI_Comm comm = comm_.get();
  return submit(describe("allgather", &input), [in, out, count, comm] {
    const MPI_Datatype type = mpi_datatype(in.scalar_type());
    check_mpi(MPI_Allgather(count == 0 ? nullptr : in.data_ptr(), count, type, out.data(), count, type, comm),
              "MPI_Allgather");
    out.write_back();
  }, async);
}

WorkHandle MpiCommunicator::issue_allgatherv(const at::Tensor& input, const at::Tensor& output,
                                             const std::vector<std::int64_t>& counts, bool async) {
  check_allgatherv(input, output, counts);
  mpi_count("allgatherv", output.numel());
  std::vector<int> counts32(counts.size()), displacements(counts.size());
  int offset = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    counts32[r] = static_cast<int>(counts[r]);
    displacements[r] = offset;
    offset += counts32[r];
  }
  const at::Tensor in = input.contiguous();
  const Staged out = Staged::output(output);
  MPI_Comm comm = comm_.get();
  const int mine = counts32[static_cast<size_t>(rank_)];
  return submit(describe("allgatherv", &input), [in, out, counts32, displacements, mine, comm] {
    const MPI_Datatype type = mpi_datatype(in.scalar_type());
    check_mpi(MPI_Allgatherv(mine == 0 ? nullptr : in.data_ptr(), mine, type, out.data(), counts32.data(),
                             displacements.data(), type, comm),
              "MPI_Allgatherv");
    out.write_back();
  }, async);
}

WorkHandle MpiCommunicator::issue_reduce_scatter(const at::Tensor& input, const at::Tensor& output, ReduceOp op,
                                                 bool async) {
  check_reduce_scatter(input, output);
  mpi_count("reduce_scatter", input.numel());
  const at::Tensor in = input.contiguous();
  const Staged out = Staged::output(output);
  const MPI_Op mpi_op = reduction(op, input.scalar_type());
  const int size = size_;
  const std::int64_t piece = chunk_elements(input.element_size(), size_);
  MPI_Comm comm = comm_.get();
  return submit(describe("reduce_scatter", &input, to_string(op)), [in, out, op, mpi_op, size, piece, comm] {
    const MPI_Datatype type = mpi_datatype(in.scalar_type());
    const std::int64_t count = out.buffer().numel();
    // Splitting costs a packing copy (13% at 64 MiB), so only inputs past 4 x mpi_chunk_bytes
    // go in pieces: from 128 MiB a single call page-faults in every measured run (10x slower);
    // at 64 MiB only in some, and then raw MPI does too (docs/PERFORMANCE.md).
    if (count <= 4 * piece) {
      check_mpi(MPI_Reduce_scatter_block(in.numel() == 0 ? nullptr : in.data_ptr(), out.data(), static_cast<int>(count),
                                         type, mpi_op, comm),
                "MPI_Reduce_scatter_block");
    } else {
      // Pieces of each rank's block, packed [size, piece] so every call stays under the chunk.
      const at::Tensor blocks = in.view({size, count});
      for_each_piece(count, piece, [&](std::int64_t offset, int length) {
        const at::Tensor packed = blocks.slice(1, offset, offset + length).contiguous();
        check_mpi(MPI_Reduce_scatter_block(packed.data_ptr(), out.data(offset), length, type, mpi_op, comm),
                  "MPI_Reduce_scatter_block");
      });
    }
    if (op == ReduceOp::kAvg) divide_for_average(out.buffer(), size);
    out.write_back();
  }, async);
}

WorkHandle MpiCommunicator::issue_barrier(bool async) {
  MPI_Comm comm = comm_.get();
  return submit(describe("barrier"), [comm] { check_mpi(MPI_Barrier(comm), "MPI_Barrier"); }, async);
}

void MpiCommunicator::time_out(const std::string& message) {
  std::string roll;
  if (roll_call_) {
    try {
      // Long enough for peers' watchdogs (polling every limit/10, at most 250 ms) to answer.
      roll = ". Roll call: " + roll_call_->ask(std::clamp(options_.timeout_s() / 4, 0.5, 5.0));
    } catch (const std::exception& e) {
      roll = std::string(". Roll call failed: ") + e.what();
    }
  }
  end_job_on_timeout(message + roll);
}

std::unique_ptr<Communicator> MpiCommunicator::wrap(MpiComm comm, const std::string& suffix) {
  CommunicatorOptions options = options_;
  options.name(options_.name() + "/" + suffix);
  return std::make_unique<MpiCommunicator>(std::move(comm), std::move(options));
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key, const std::string& suffix) {
  MpiComm part;
  submit(describe("split"), [&] { part = comm_.split(color, key); }, false)->wait();
  return wrap(std::move(part), suffix);
}

void MpiCommunicator::library_collective(const std::string& op, const at::Tensor& input, const at::Tensor& output) {
  // On a duplicate of the communicator, from the caller's thread: MPI's own call, nothing around it.
  if (!library_comm_.valid()) library_comm_ = comm_.dup();
  const MPI_Datatype type = mpi_datatype(input.scalar_type());
  const int count = static_cast<int>(input.numel());
  MPI_Comm comm = library_comm_.get();
  if (op == "allreduce") {
    MPI_Allreduce(MPI_IN_PLACE, input.data_ptr(), count, type, MPI_SUM, comm);
  } else if (op == "allgather") {
    MPI_Allgather(input.data_ptr(), count, type, output.data_ptr(), count, type, comm);
  } else if (op == "reduce_scatter") {
    MPI_Reduce_scatter_block(input.data_ptr(), output.data_ptr(), static_cast<int>(output.numel()), type, MPI_SUM, comm);
  } else if (op == "broadcast") {
    MPI_Bcast(input.data_ptr(), count, type, 0, comm);
  } else {
    throw InternalError("library_collective", "unknown collective '" + op + "'");
  }
}

std::unique_ptr<Communicator> MpiCommunicator::split_node_local() {
  MpiComm part;
  submit(describe("split_node_local"), [&] { part = comm_.split_node_local(); }, false)->wait();
  return wrap(std::move(part), "node");
}

}  // namespace vitruvian
