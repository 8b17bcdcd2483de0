// MPI backend collectives against closed-form expected values: every dtype, sizes 0, 1, odd and
// ~10 M elements, contiguous and strided tensors, async handles, sub-communicators, bad input.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "core/comm/collective_probe.h"
#include "core/comm/communicator.h"
#include "core/errors.h"
#include "tests/tools/mpi_test_environment.h"

namespace vitruvian {
namespace {

const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16,
                                             at::kInt,   at::kLong,   at::kByte};
const std::vector<std::int64_t> kSizes = {0, 1, 1001, 10'000'003};

class CommunicatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    comm_ = make_communicator(testing::mpi().world(), c10::Device(c10::kCPU),
                              CommunicatorOptions().timeout_s(120).name("world"))
                .release();
  }
  static void TearDownTestSuite() {
    delete comm_;
    comm_ = nullptr;
  }
  static Communicator& comm() { return *comm_; }
  static int rank() { return comm_->rank(); }
  static int n() { return comm_->size(); }

  /// The period 1..7 (as int64): small integers, exact in every dtype even summed over ranks.
  static at::Tensor period() { return at::arange(1, 8, at::kLong); }
  /// `values` (one period of 7) repeated to `numel` elements starting at element `offset`,
  /// in `dtype`. Built by tiling, so ~10 M-element references cost a copy, not arithmetic.
  static at::Tensor tiled(const at::Tensor& values, std::int64_t numel, at::ScalarType dtype, std::int64_t offset = 0) {
    const std::int64_t start = offset % 7;
    return values.to(dtype).repeat({(start + numel) / 7 + 1}).slice(0, start, start + numel).contiguous();
  }
  /// 1..7 repeating, as int64 (for building inputs).
  static at::Tensor pattern(std::int64_t numel, std::int64_t offset = 0) { return tiled(period(), numel, at::kLong, offset); }
  /// Rank r holds pattern * (r + 1).
  static at::Tensor contribution(std::int64_t numel, at::ScalarType dtype, int r, std::int64_t offset = 0) {
    return tiled(period().mul(r + 1), numel, dtype, offset);
  }
  /// Closed form of `op` over ranks 0..n-1 of pattern * (r + 1), computed on one period.
  static at::Tensor reduced(std::int64_t numel, ReduceOp op, at::ScalarType dtype, int ranks, std::int64_t offset = 0) {
    const std::int64_t sum_factor = static_cast<std::int64_t>(ranks) * (ranks + 1) / 2;
    const at::Tensor p = period();
    at::Tensor values;
    switch (op) {
      case ReduceOp::kSum: values = p.mul(sum_factor); break;
      case ReduceOp::kMax: values = p.mul(ranks); break;
      case ReduceOp::kMin: values = p; break;
      case ReduceOp::kAvg:
        values = at::isFloatingType(dtype) ? p.to(at::kDouble).mul(sum_factor).div(ranks)
                                           : p.mul(sum_factor).div(ranks, "trunc");
        break;
    }
    return tiled(values, numel, dtype, offset);
  }
  static std::string label(at::ScalarType dtype, std::int64_t numel) {
    return std::string(c10::toString(dtype)) + " x " + std::to_string(numel);
  }

  static Communicator* comm_;
};
Communicator* CommunicatorTest::comm_ = nullptr;

TEST_F(CommunicatorTest, AllreduceEveryOpDtypeAndSize) {
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
    for (at::ScalarType dtype : kDtypes) {
      for (std::int64_t numel : kSizes) {
        at::Tensor t = contribution(numel, dtype, rank());
        comm().allreduce(t, op);
        EXPECT_TRUE(at::equal(t, reduced(numel, op, dtype, n()))) << to_string(op) << " " << label(dtype, numel);
      }
    }
  }
}

TEST_F(CommunicatorTest, AllreduceStridedTensorWritesBackInPlace) {
  for (at::ScalarType dtype : kDtypes) {
    // A transposed [2, 1001] view: non-contiguous, every element distinct.
    at::Tensor storage = at::empty({1001, 2}, at::TensorOptions().dtype(dtype));
    at::Tensor view = storage.t();
    ASSERT_FALSE(view.is_contiguous());
    view.copy_(contribution(2 * 1001, dtype, rank()).view({2, 1001}));
    comm().allreduce(view, ReduceOp::kSum);
    EXPECT_TRUE(at::equal(view, reduced(2 * 1001, ReduceOp::kSum, dtype, n()).view({2, 1001})))
        << c10::toString(dtype);
    // Every other element of a 1-D tensor; the skipped ones must stay untouched.
    at::Tensor full = at::full({2002}, -1, at::TensorOptions().dtype(at::kDouble)).to(dtype);
    at::Tensor every_other = full.slice(0, 0, 2002, 2);
    every_other.copy_(contribution(1001, dtype, rank()));
    comm().allreduce(every_other, ReduceOp::kMax);
    EXPECT_TRUE(at::equal(every_other, reduced(1001, ReduceOp::kMax, dtype, n()))) << c10::toString(dtype);
    EXPECT_TRUE(at::equal(full.slice(0, 1, 2002, 2), at::full({1001}, -1, at::TensorOptions().dtype(at::kDouble)).to(dtype)))
        << c10::toString(dtype);
  }
}

TEST_F(CommunicatorTest, BroadcastFromEveryRoot) {
  for (at::ScalarType dtype : kDtypes) {
    for (std::int64_t numel : kSizes) {
      for (int root : {0, n() - 1}) {
        at::Tensor t = contribution(numel, dtype, rank());
        comm().broadcast(t, root);
        EXPECT_TRUE(at::equal(t, contribution(numel, dtype, root))) << "root " << root << " " << label(dtype, numel);
      }
    }
  }
}

TEST_F(CommunicatorTest, AllgatherEqualSizes) {
  for (at::ScalarType dtype : kDtypes) {
    for (std::int64_t numel : kSizes) {
      at::Tensor input = contribution(numel, dtype, rank());
      at::Tensor output = at::full({n() * numel}, 99, at::TensorOptions().dtype(dtype));
      comm().allgather(input, output);
      for (int r = 0; r < n(); ++r) {
        EXPECT_TRUE(at::equal(output.slice(0, r * numel, (r + 1) * numel), contribution(numel, dtype, r)))
            << "chunk " << r << " " << label(dtype, numel);
      }
    }
  }
}

TEST_F(CommunicatorTest, AllgatherIntoStridedOutput) {
  at::Tensor input = contribution(5, at::kFloat, rank());
  at::Tensor storage = at::zeros({5, n()}, at::kFloat);
  at::Tensor output = storage.t();  // [n, 5] non-contiguous view
  comm().allgather(input, output);
  for (int r = 0; r < n(); ++r) EXPECT_TRUE(at::equal(output[r], contribution(5, at::kFloat, r)));
}

/// Rank r contributes this many elements: rank 0 none, the others different odd-ish sizes.
std::int64_t variable_count(int r, std::int64_t scale) { return r == 0 ? 0 : scale + 2 * r - 1; }

TEST_F(CommunicatorTest, AllgathervVariableSizesWithCounts) {
  for (at::ScalarType dtype : kDtypes) {
    for (std::int64_t scale : {std::int64_t{1}, std::int64_t{1001}, std::int64_t{10'000'000} / n()}) {
      std::vector<std::int64_t> counts;
      std::int64_t total = 0;
      for (int r = 0; r < n(); ++r) counts.push_back(variable_count(r, scale)), total += counts.back();
      at::Tensor input = contribution(counts[static_cast<size_t>(rank())], dtype, rank());
      at::Tensor output = at::full({total}, 99, at::TensorOptions().dtype(dtype));
      comm().allgatherv(input, output, counts);
      std::int64_t offset = 0;
      for (int r = 0; r < n(); ++r) {
        const std::int64_t c = counts[static_cast<size_t>(r)];
        EXPECT_TRUE(at::equal(output.slice(0, offset, offset + c), contribution(c, dtype, r)))
            << "rank " << r << " part, " << label(dtype, total);
        offset += c;
      }
    }
  }
}

TEST_F(CommunicatorTest, AllgathervRowsExchangesSizes) {
  // Rank r sends r + 1 rows of 3 columns (rank 1 sends a strided view); rows come back in order.
  at::Tensor rows = contribution(3 * (rank() + 1), at::kLong, rank()).view({rank() + 1, 3});
  if (rank() == 1) rows = rows.t().contiguous().t();
  at::Tensor all = comm().allgatherv(rows);
  ASSERT_EQ(all.dim(), 2);
  EXPECT_EQ(all.size(0), n() * (n() + 1) / 2);
  EXPECT_EQ(all.size(1), 3);
  std::int64_t row = 0;
  for (int r = 0; r < n(); ++r) {
    EXPECT_TRUE(at::equal(all.slice(0, row, row + r + 1), contribution(3 * (r + 1), at::kLong, r).view({r + 1, 3})));
    row += r + 1;
  }
  // A rank with no rows at all still takes part.
  at::Tensor maybe_empty = rank() == 0 ? at::empty({0, 2}, at::kFloat) : at::ones({1, 2}, at::kFloat);
  EXPECT_EQ(comm().allgatherv(maybe_empty).size(0), n() - 1);
}

TEST_F(CommunicatorTest, ReduceScatterEveryOpDtypeAndSize) {
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
    for (at::ScalarType dtype : kDtypes) {
      for (std::int64_t chunk : {std::int64_t{0}, std::int64_t{1}, std::int64_t{1001}, std::int64_t{10'000'000} / n()}) {
        at::Tensor input = contribution(n() * chunk, dtype, rank());
        at::Tensor output = at::full({chunk}, 99, at::TensorOptions().dtype(dtype));
        comm().reduce_scatter(input, output, op);
        EXPECT_TRUE(at::equal(output, reduced(chunk, op, dtype, n(), rank() * chunk)))
            << to_string(op) << " " << label(dtype, chunk);
      }
    }
  }
}

TEST_F(CommunicatorTest, AsyncHandlesCompleteInIssueOrder) {
  std::vector<at::Tensor> tensors;
  std::vector<WorkHandle> works;
  for (int i = 0; i < 6; ++i) {
    tensors.push_back(contribution(100'000, at::kFloat, rank()).mul(i + 1));
    works.push_back(comm().allreduce_async(tensors.back(), ReduceOp::kSum));
  }
  at::Tensor gathered = at::empty({n() * 3}, at::kInt);
  works.push_back(comm().allgather_async(at::full({3}, rank(), at::kInt), gathered));
  works.push_back(comm().barrier_async());
  // A blocking call after async ones runs after them on every rank.
  at::Tensor sync = at::full({4}, rank() + 1, at::kDouble);
  comm().allreduce(sync, ReduceOp::kMax);
  EXPECT_TRUE(at::equal(sync, at::full({4}, n(), at::kDouble)));
  for (auto it = works.rbegin(); it != works.rend(); ++it) (*it)->wait();
  for (const auto& w : works) EXPECT_TRUE(w->is_completed());
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(at::equal(tensors[static_cast<size_t>(i)],
                          reduced(100'000, ReduceOp::kSum, at::kFloat, n()).mul(i + 1)))
        << "async allreduce " << i;
  }
  for (int r = 0; r < n(); ++r) EXPECT_TRUE(at::equal(gathered.slice(0, 3 * r, 3 * r + 3), at::full({3}, r, at::kInt)));
}

TEST_F(CommunicatorTest, AsyncBroadcastAndReduceScatter) {
  at::Tensor b = at::full({7}, rank() == 0 ? 42 : 0, at::kLong);
  at::Tensor in = at::ones({n() * 5}, at::kDouble).mul(rank() + 1);
  at::Tensor out = at::empty({5}, at::kDouble);
  auto w1 = comm().broadcast_async(b, 0);
  auto w2 = comm().reduce_scatter_async(in, out, ReduceOp::kAvg);
  w2->wait();
  w1->wait();
  EXPECT_TRUE(at::equal(b, at::full({7}, 42, at::kLong)));
  EXPECT_TRUE(at::allclose(out, at::full({5}, (n() + 1) / 2.0, at::kDouble)));
}

TEST_F(CommunicatorTest, SplitIntoSubCommunicators) {
  auto parity = comm().split(rank() % 2, rank(), "parity");
  const int expected_size = (n() + 1 - rank() % 2) / 2;
  EXPECT_EQ(parity->size(), expected_size);
  EXPECT_EQ(parity->rank(), rank() / 2);
  EXPECT_STREQ(parity->backend(), "mpi");
  EXPECT_EQ(parity->options().name(), "world/parity");
  at::Tensor t = at::full({3}, rank(), at::kLong);
  parity->allreduce(t, ReduceOp::kSum);
  std::int64_t want = 0;
  for (int r = rank() % 2; r < n(); r += 2) want += r;
  EXPECT_TRUE(at::equal(t, at::full({3}, want, at::kLong)));

  auto node = comm().split_node_local();  // tests run on one host
  EXPECT_EQ(node->size(), n());
  EXPECT_EQ(node->rank(), rank());
  node->barrier();
}

// The library's own calls (benchmarks' reference) and the probe that times both paths: every
// op's result matches its closed form through the communicator and through MPI, and the timing
// reports both paths for whole elements per rank.
TEST_F(CommunicatorTest, LibraryCollectivesAndProbeAgreeWithClosedForms) {
  ASSERT_TRUE(comm_->has_library_collective());
  const std::int64_t count = 1000 * comm_->size();
  for (const std::string op : {"allreduce", "allgather", "reduce_scatter", "broadcast"}) {
    for (const bool library : {false, true}) {
      EXPECT_EQ(collective_wrong_elements(*comm_, op, count, at::kFloat, library), 0) << op << " library " << library;
      EXPECT_EQ(collective_wrong_elements(*comm_, op, count, at::kLong, library), 0) << op << " library " << library;
    }
  }
  const CollectiveTiming t = time_collective(*comm_, "allreduce", 4096 + 3, 4);
  EXPECT_EQ(t.bytes % (4 * comm_->size()), 0);
  EXPECT_GT(t.seconds, 0);
  EXPECT_GT(t.raw_seconds, 0);
  EXPECT_EQ(t.wrong, 0);
  EXPECT_DOUBLE_EQ(collective_bus_factor("allreduce", 4), 1.5);
  EXPECT_THROW(make_collective_buffers(*comm_, "alltoall", count, at::kFloat), InputError);
}

TEST_F(CommunicatorTest, BadArgumentsThrowInputErrorBeforeAnyCommunication) {
  at::Tensor x = at::ones({4}, at::kFloat);
  EXPECT_THROW(comm().allreduce(at::ones({2}, at::kBool)), InputError);
  EXPECT_THROW(comm().allreduce(at::Tensor()), InputError);
  EXPECT_THROW(comm().broadcast(x, n()), InputError);
  EXPECT_THROW(comm().broadcast(x, -1), InputError);
  EXPECT_THROW(comm().allgather(x, at::empty({4 * n() + 1}, at::kFloat)), InputError);
  EXPECT_THROW(comm().allgather(x, at::empty({4 * n()}, at::kDouble)), InputError);
  EXPECT_THROW(comm().reduce_scatter(at::ones({4 * n() - 1}, at::kFloat), x), InputError);
  std::vector<std::int64_t> wrong(static_cast<size_t>(n()), 4);
  wrong[static_cast<size_t>(rank())] = 3;
  EXPECT_THROW(comm().allgatherv(x, at::empty({4 * n()}, at::kFloat), wrong), InputError);
  try {
    comm().allgather(x, at::empty({1}, at::kFloat));
    FAIL() << "no exception";
  } catch (const InputError& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("allgather: output has 1 element; expected " + std::to_string(n()) + " ranks x 4 elements"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("rank " + std::to_string(rank())), std::string::npos) << text;
  }
  // The communicator still works afterwards: nothing was half-issued.
  comm().allreduce(x);
  EXPECT_TRUE(at::equal(x, at::full({4}, n(), at::kFloat)));
}

TEST_F(CommunicatorTest, FactoryRejectsDevicesWithoutBackend) {
  EXPECT_THROW(make_communicator(testing::mpi().world(), c10::Device(c10::kMeta)), InputError);
  if (!nccl_backend_built()) {
    EXPECT_THROW(make_communicator(testing::mpi().world(), c10::Device(c10::kCUDA, 0)), InputError);
  }
}

}  // namespace
}  // namespace vitruvian

namespace vitruvian {
namespace {

// Tiny pieces put chunk boundaries at odd offsets: results must not depend on the chunking.
TEST(MpiChunking, ReductionsInPiecesMatchClosedForm) {
  for (std::int64_t chunk_bytes : {std::int64_t{1}, std::int64_t{24}, std::int64_t{500}}) {
    auto comm = make_communicator(testing::mpi().world(), c10::Device(c10::kCPU),
                                  CommunicatorOptions().timeout_s(120).mpi_chunk_bytes(chunk_bytes));
    const int n = comm->size(), r = comm->rank();
    for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kLong, at::kByte}) {
      const at::Tensor base = at::arange(1001, at::kLong).remainder(7).add(1);
      at::Tensor t = base.mul(r + 1).to(dtype);
      comm->allreduce(t, ReduceOp::kSum);
      EXPECT_TRUE(at::equal(t, base.mul(n * (n + 1) / 2).to(dtype))) << chunk_bytes << " " << dtype_name(dtype);
      at::Tensor avg = base.mul(r + 1).to(dtype);
      comm->allreduce(avg, ReduceOp::kAvg);
      const at::Tensor want_avg = at::isFloatingType(dtype) ? base.to(at::kDouble).mul(n * (n + 1) / 2).div(n).to(dtype)
                                                            : base.mul(n * (n + 1) / 2).div(n, "trunc").to(dtype);
      EXPECT_TRUE(at::equal(avg, want_avg)) << chunk_bytes << " " << dtype_name(dtype);

      const std::int64_t block = 1001;
      const at::Tensor full = at::arange(n * block, at::kLong).remainder(7).add(1);
      at::Tensor out = at::full({block}, 99, at::TensorOptions().dtype(dtype));
      comm->reduce_scatter(full.mul(r + 1).to(dtype), out, ReduceOp::kMax);
      EXPECT_TRUE(at::equal(out, full.slice(0, r * block, (r + 1) * block).mul(n).to(dtype)))
          << chunk_bytes << " " << dtype_name(dtype);
    }
  }
  EXPECT_THROW(make_communicator(testing::mpi().world(), c10::Device(c10::kCPU), CommunicatorOptions().mpi_chunk_bytes(0)),
               InputError);
}

}  // namespace
}  // namespace vitruvian

namespace vitruvian {
namespace {

// Async work runs with the issuing thread's LibTorch state: averaging a leaf that requires grad
// in place is fine under NoGradGuard (as for gradients and parameters), on the worker thread too.
TEST(MpiAsync, KeepsTheCallersGradMode) {
  auto comm = make_communicator(testing::mpi().world(), c10::Device(c10::kCPU), CommunicatorOptions().timeout_s(120));
  const int n = comm->size(), r = comm->rank();
  at::NoGradGuard no_grad;
  at::Tensor parameter = at::full({6}, r + 1, at::kFloat).set_requires_grad(true);
  auto work = comm->allreduce_async(parameter, ReduceOp::kAvg);
  EXPECT_NO_THROW(work->wait());
  EXPECT_TRUE(at::allclose(parameter, at::full({6}, (n + 1) / 2.0, at::kFloat)));
}

TEST(AllgathervRows, MismatchedTrailingDimensionsFailOnEveryRank) {
  auto comm = make_communicator(testing::mpi().world(), c10::Device(c10::kCPU), CommunicatorOptions().timeout_s(120));
  // The last rank sends no rows, but of a different width: every rank must reject it alike.
  const bool last = comm->rank() == comm->size() - 1;
  at::Tensor rows = last ? at::empty({0, 4}, at::kFloat) : at::ones({2, 3}, at::kFloat);
  EXPECT_THROW(comm->allgatherv(rows), InputError);
  comm->barrier();  // still in step afterwards
}

}  // namespace
}  // namespace vitruvian
