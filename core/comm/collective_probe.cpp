#include "core/comm/collective_probe.h"

#include <algorithm>
#include <chrono>

#include "core/errors.h"

namespace vitruvian {

double collective_bus_factor(const std::string& op, int n) {
  if (op == "allreduce") return 2.0 * (n - 1) / n;
  if (op == "allgather" || op == "reduce_scatter") return static_cast<double>(n - 1) / n;
  return 1.0;
}

CollectiveBuffers make_collective_buffers(const Communicator& comm, const std::string& op, std::int64_t count,
                                          at::ScalarType dtype) {
  if (op != "allreduce" && op != "allgather" && op != "reduce_scatter" && op != "broadcast") {
    throw InputError("collective", "'" + op + "'; expected allreduce, allgather, reduce_scatter or broadcast");
  }
  const int n = comm.size();
  const c10::Device device(comm.device_type(), static_cast<c10::DeviceIndex>(comm.device_index()));
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  CollectiveBuffers buf;
  buf.op = op;
  buf.count = count;
  const at::Tensor values = at::arange(count, at::kLong).remainder(5).add(comm.rank() + 1).to(opts);
  if (op == "allreduce" || op == "broadcast") {
    buf.a = values;
  } else if (op == "allgather") {
    buf.a = values.slice(0, 0, count / n).contiguous();
    buf.b = at::empty({count}, opts);
  } else {
    buf.a = values;
    buf.b = at::empty({count / n}, opts);
  }
  return buf;
}

bool has_raw_collective(const Communicator& comm) { return comm.has_library_collective(); }

void run_collective(Communicator& comm, CollectiveBuffers& buf, bool raw) {
  if (raw) return comm.library_collective(buf.op, buf.a, buf.b);
  if (buf.op == "allreduce") {
    comm.allreduce(buf.a, ReduceOp::kSum);
  } else if (buf.op == "allgather") {
    comm.allgather(buf.a, buf.b);
  } else if (buf.op == "reduce_scatter") {
    comm.reduce_scatter(buf.a, buf.b, ReduceOp::kSum);
  } else {
    comm.broadcast(buf.a, 0);
  }
}

double time_collective_once(Communicator& comm, CollectiveBuffers& buf, bool raw) {
  comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  run_collective(comm, buf, raw);
  // A device backend's call returns before the device is done: its barrier blocks the host
  // until the op, queued before it on the same stream, has run (both paths alike).
  if (comm.device_type() != c10::kCPU) comm.barrier();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const at::Tensor elapsed = at::full({1}, seconds, at::TensorOptions().dtype(at::kDouble).device(buf.a.device()));
  comm.allreduce(elapsed, ReduceOp::kMax);
  return elapsed.cpu().item<double>();
}

std::int64_t collective_wrong_elements(Communicator& comm, const std::string& op, std::int64_t count,
                                       at::ScalarType dtype, bool raw) {
  const int n = comm.size(), rank = comm.rank();
  CollectiveBuffers buf = make_collective_buffers(comm, op, count, dtype);
  run_collective(comm, buf, raw);
  const at::Tensor index = at::arange(count, at::kLong).remainder(5).to(buf.a.device());
  at::Tensor got, want;
  if (op == "allreduce") {
    got = buf.a, want = index.mul(n).add(n * (n + 1) / 2);
  } else if (op == "broadcast") {
    got = buf.a, want = index.add(1);
  } else if (op == "allgather") {
    got = buf.b;
    const std::int64_t chunk = count / n;
    std::vector<at::Tensor> parts;
    for (int r = 0; r < n; ++r) parts.push_back(index.slice(0, 0, chunk).add(r + 1));
    want = at::cat(parts);
  } else {
    const std::int64_t chunk = count / n;
    got = buf.b, want = index.slice(0, rank * chunk, (rank + 1) * chunk).mul(n).add(n * (n + 1) / 2);
  }
  const at::Tensor wrong = got.to(at::kDouble).ne(want.to(at::kDouble)).sum().to(at::kLong).reshape({1});
  comm.allreduce(wrong, ReduceOp::kSum);
  return wrong.cpu().item<std::int64_t>();
}

double median_of(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

CollectiveTiming time_collective(Communicator& comm, const std::string& op, std::int64_t bytes, int iterations,
                                 at::ScalarType dtype) {
  const int n = comm.size();
  const std::int64_t element = static_cast<std::int64_t>(c10::elementSize(dtype));
  const std::int64_t count = std::max<std::int64_t>(bytes / element / n, 1) * n;
  CollectiveBuffers buf = make_collective_buffers(comm, op, count, dtype);
  const bool raw = has_raw_collective(comm);
  for (int i = 0; i < 2; ++i) {
    if (raw) time_collective_once(comm, buf, true);
    time_collective_once(comm, buf, false);
  }
  std::vector<double> raw_times, times;
  for (int i = 0; i < iterations; ++i) {
    if (raw && i % 2 == 0) raw_times.push_back(time_collective_once(comm, buf, true));
    times.push_back(time_collective_once(comm, buf, false));
    if (raw && i % 2 == 1) raw_times.push_back(time_collective_once(comm, buf, true));
  }
  CollectiveTiming t;
  t.op = op;
  t.bytes = count * element;
  t.seconds = median_of(times);
  t.raw_seconds = median_of(raw_times);
  const double factor = collective_bus_factor(op, n);
  t.busbw = t.seconds > 0 ? static_cast<double>(t.bytes) / t.seconds * factor : 0;
  t.raw_busbw = t.raw_seconds > 0 ? static_cast<double>(t.bytes) / t.raw_seconds * factor : 0;
  t.wrong = collective_wrong_elements(comm, op, count, dtype, false) +
            (raw ? collective_wrong_elements(comm, op, count, dtype, true) : 0);
  return t;
}

}  // namespace vitruvian
