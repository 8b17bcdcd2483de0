// Shared argument checks, variable-size allgather and the backend factory.
#include "core/comm/communicator.h"

#include <ATen/ATen.h>

#include <numeric>

#include "core/comm/mpi_communicator.h"
#include "core/errors.h"
#ifdef VITRUVIAN_WITH_NCCL
#include "core/comm/nccl_communicator.h"
#endif

namespace vitruvian {

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

const char* dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kByte: return "uint8";
    case at::kChar: return "int8";
    case at::kShort: return "int16";
    case at::kBool: return "bool";
    default: return c10::toString(type);
  }
}

namespace {
bool supported_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat: case at::kDouble: case at::kHalf: case at::kBFloat16:
    case at::kInt: case at::kLong: case at::kByte:
      return true;
    default:
      return false;
  }
}
void check_same_dtype(const char* collective, const at::Tensor& input, const at::Tensor& output) {
  if (output.scalar_type() != input.scalar_type()) {
    throw InputError(collective, std::string("output dtype ") + dtype_name(output.scalar_type()) +
                                     " differs from input dtype " + dtype_name(input.scalar_type()));
  }
}
std::string count_text(std::int64_t n) { return std::to_string(n) + (n == 1 ? " element" : " elements"); }
}  // namespace

void Communicator::check_tensor(const char* collective, const char* role, const at::Tensor& tensor) const {
  if (!tensor.defined()) throw InputError(collective, std::string(role) + " tensor is undefined");
  if (tensor.device().type() != device_type()) {
    throw InputError(collective, std::string(role) + " tensor is on " + tensor.device().str() + " but the '" + backend() +
                                     "' communicator takes " + c10::DeviceTypeName(device_type(), true) +
                                     " tensors (make_communicator picks the backend from the device)");
  }
  if (device_index() >= 0 && tensor.device().index() != device_index()) {
    throw InputError(collective, std::string(role) + " tensor is on " + tensor.device().str() +
                                     " but this communicator serves " + c10::DeviceTypeName(device_type(), true) + ":" +
                                     std::to_string(device_index()));
  }
  if (!supported_dtype(tensor.scalar_type())) {
    throw InputError(collective, std::string(role) + " tensor has dtype " + dtype_name(tensor.scalar_type()) +
                                     "; expected float32, float64, float16, bfloat16, int32, int64 or uint8");
  }
}

void Communicator::check_root(const char* collective, int root) const {
  if (root < 0 || root >= size()) {
    throw InputError(collective, "root " + std::to_string(root) + " is not a rank of this communicator (0.." +
                                     std::to_string(size() - 1) + ")");
  }
}

void Communicator::check_allgather(const at::Tensor& input, const at::Tensor& output) const {
  check_tensor("allgather", "input", input);
  check_tensor("allgather", "output", output);
  check_same_dtype("allgather", input, output);
  if (output.numel() != input.numel() * size()) {
    throw InputError("allgather", "output has " + count_text(output.numel()) + "; expected " + std::to_string(size()) +
                                      " ranks x " + count_text(input.numel()) + " = " + std::to_string(input.numel() * size()));
  }
}

void Communicator::check_allgatherv(const at::Tensor& input, const at::Tensor& output,
                                    const std::vector<std::int64_t>& counts) const {
  check_tensor("allgatherv", "input", input);
  check_tensor("allgatherv", "output", output);
  check_same_dtype("allgatherv", input, output);
  if (static_cast<int>(counts.size()) != size()) {
    throw InputError("allgatherv", "counts has " + std::to_string(counts.size()) + " entries; expected one per rank (" +
                                       std::to_string(size()) + ")");
  }
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] < 0) throw InputError("allgatherv", "counts[" + std::to_string(r) + "] is negative");
  }
  if (counts[static_cast<size_t>(rank())] != input.numel()) {
    throw InputError("allgatherv", "this rank's input has " + count_text(input.numel()) + " but counts[" +
                                       std::to_string(rank()) + "] is " + std::to_string(counts[static_cast<size_t>(rank())]));
  }
  const std::int64_t total = std::accumulate(counts.begin(), counts.end(), std::int64_t{0});
  if (output.numel() != total) {
    throw InputError("allgatherv", "output has " + count_text(output.numel()) + "; expected sum(counts) = " +
                                       std::to_string(total));
  }
}

void Communicator::check_reduce_scatter(const at::Tensor& input, const at::Tensor& output) const {
  check_tensor("reduce_scatter", "input", input);
  check_tensor("reduce_scatter", "output", output);
  check_same_dtype("reduce_scatter", input, output);
  if (input.numel() != output.numel() * size()) {
    throw InputError("reduce_scatter", "input has " + count_text(input.numel()) + "; expected " +
                                           std::to_string(size()) + " ranks x " + count_text(output.numel()) + " = " +
                                           std::to_string(output.numel() * size()));
  }
}

OpDescription Communicator::describe(const char* collective, const at::Tensor* tensor, const char* op, int root) {
  OpDescription what;
  what.name = collective;
  what.sequence = ++sequence_;
  what.op = op;
  what.root = root;
  if (tensor != nullptr) {
    what.dtype = dtype_name(tensor->scalar_type());
    what.numel = tensor->numel();
  }
  return what;
}

void Communicator::library_collective(const std::string& op, const at::Tensor& /*input*/, const at::Tensor& /*output*/) {
  throw InternalError("library_collective", std::string("the '") + backend() + "' backend has no library call for " + op);
}

at::Tensor Communicator::allgatherv(const at::Tensor& input) {
  check_tensor("allgatherv", "input", input);
  if (input.dim() == 0) throw InputError("allgatherv", "input is a scalar; expected at least one dimension");
  const auto cpu_long = at::TensorOptions().dtype(at::kLong);
  // Each rank's row count and elements per row (product of the trailing dimensions, known even
  // for a rank with no rows), exchanged with this communicator's own backend.
  std::int64_t row_size = 1;
  for (std::int64_t d = 1; d < input.dim(); ++d) row_size *= input.size(d);
  at::Tensor mine = at::tensor({input.size(0), row_size}, cpu_long).to(input.device());
  at::Tensor all = at::empty({size(), 2}, cpu_long.device(input.device()));
  allgather(mine, all);
  const at::Tensor shapes = all.cpu();
  const auto* values = shapes.data_ptr<std::int64_t>();
  std::vector<std::int64_t> counts(static_cast<size_t>(size()));
  std::int64_t rows = 0;
  for (int r = 0; r < size(); ++r) {
    const std::int64_t r_rows = values[2 * r], r_row_size = values[2 * r + 1];
    if (r_row_size != values[1]) {  // every rank sees the same table, so every rank throws
      throw InputError("allgatherv", "rank " + std::to_string(r) + " sends rows of " + std::to_string(r_row_size) +
                                         " elements but rank 0 sends rows of " + std::to_string(values[1]) +
                                         "; trailing dimensions must agree across ranks");
    }
    counts[static_cast<size_t>(r)] = r_rows * r_row_size;
    rows += r_rows;
  }
  std::vector<std::int64_t> shape = input.sizes().vec();
  shape[0] = rows;
  at::Tensor output = at::empty(shape, input.options().memory_format(at::MemoryFormat::Contiguous));
  allgatherv(input, output, counts);
  return output;
}

bool nccl_backend_built() {
#ifdef VITRUVIAN_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_communicator(const MpiComm& comm, c10::Device device,
                                                const CommunicatorOptions& options) {
  switch (device.type()) {
    case c10::kCPU:
      return std::make_unique<MpiCommunicator>(comm.dup(), options);
    case c10::kCUDA:
#ifdef VITRUVIAN_WITH_NCCL
      return std::make_unique<NcclCommunicator>(comm.dup(), device.has_index() ? device.index() : 0, options);
#else
      throw InputError("make_communicator", "CUDA tensors need the NCCL backend, which this build lacks "
                                            "(configure with -DVITRUVIAN_CUDA=ON where nvcc and NCCL are installed)");
#endif
    default:
      throw InputError("make_communicator", "no communicator backend for device " + device.str() +
                                                "; expected cpu (MPI) or cuda (NCCL)");
  }
}

}  // namespace vitruvian

#ifndef VITRUVIAN_WITH_NCCL
namespace vitruvian {
std::string nccl_version_built() { return ""; }
std::string nccl_version_loaded() { return ""; }
}  // namespace vitruvian
#endif
