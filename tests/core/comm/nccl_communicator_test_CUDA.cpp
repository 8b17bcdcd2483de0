// NCCL backend on CUDA tensors, against closed-form results. Skips where LibTorch sees no GPU.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <numeric>

#include "core/comm/collective_probe.h"
#include "core/comm/communicator.h"
#include "core/device.h"
#include "tests/tools/mpi_test_environment.h"

namespace vitruvian {
namespace {

class NcclCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible to LibTorch";
    // NCCL refuses two ranks of one communicator on the same GPU ("duplicate GPU").
    if (cuda_device_count() < testing::mpi().local_size()) {
      GTEST_SKIP() << testing::mpi().local_size() << " ranks on this host but " << cuda_device_count()
                   << " GPU(s): NCCL needs one per rank";
    }
    device_ = select_device(DeviceChoice::kCuda, testing::mpi().local_rank());
    comm_ = make_communicator(testing::mpi().world(), device_, CommunicatorOptions().timeout_s(120));
  }
  at::TensorOptions on(at::ScalarType dtype) const { return at::TensorOptions().dtype(dtype).device(device_); }
  c10::Device device_{c10::kCPU};
  std::unique_ptr<Communicator> comm_;
};

// NCCL's own calls (bench's reference) on the communicator's stream, and the probe timing both
// paths with the host waiting for the device.
TEST_F(NcclCommunicatorTest, LibraryCollectivesAndProbe) {
  ASSERT_TRUE(comm_->has_library_collective());
  const std::int64_t count = 100'000 * comm_->size();
  for (const std::string op : {"allreduce", "allgather", "reduce_scatter", "broadcast"}) {
    for (const bool library : {false, true}) {
      EXPECT_EQ(collective_wrong_elements(*comm_, op, count, at::kFloat, library), 0) << op << " library " << library;
    }
  }
  const CollectiveTiming t = time_collective(*comm_, "allreduce", 1 << 20, 5);
  EXPECT_GT(t.seconds, 0);
  EXPECT_GT(t.raw_seconds, 0);
  EXPECT_EQ(t.wrong, 0);
}

TEST_F(NcclCommunicatorTest, AllCollectivesEveryDtype) {
  const int n = comm_->size(), r = comm_->rank();
  ASSERT_STREQ(comm_->backend(), "nccl");
  for (at::ScalarType dtype : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kInt, at::kLong, at::kByte}) {
    for (std::int64_t numel : {std::int64_t{0}, std::int64_t{1}, std::int64_t{1001}, std::int64_t{10'000'003}}) {
      const at::Tensor base = at::arange(numel, at::kLong).remainder(7).add(1);
      at::Tensor t = base.mul(r + 1).to(on(dtype));
      comm_->allreduce(t, ReduceOp::kSum);
      EXPECT_TRUE(at::equal(t.cpu(), base.mul(n * (n + 1) / 2).to(dtype))) << c10::toString(dtype) << " " << numel;
      at::Tensor b = base.mul(r + 1).to(on(dtype));
      comm_->broadcast(b, n - 1);
      EXPECT_TRUE(at::equal(b.cpu(), base.mul(n).to(dtype)));
      at::Tensor gathered = at::empty({n * numel}, on(dtype));
      comm_->allgather(base.mul(r + 1).to(on(dtype)), gathered);
      for (int q = 0; q < n; ++q) {
        EXPECT_TRUE(at::equal(gathered.slice(0, q * numel, (q + 1) * numel).cpu(), base.mul(q + 1).to(dtype)));
      }
    }
  }
  std::vector<std::int64_t> counts;
  for (int q = 0; q < n; ++q) counts.push_back(q == 0 ? 0 : 1000 + q);
  at::Tensor mine = at::full({counts[static_cast<size_t>(r)]}, r, on(at::kFloat));
  at::Tensor out = at::empty({std::accumulate(counts.begin(), counts.end(), std::int64_t{0})}, on(at::kFloat));
  comm_->allgatherv(mine, out, counts);
  std::int64_t offset = 0;
  for (int q = 0; q < n; ++q) {
    EXPECT_TRUE(at::equal(out.slice(0, offset, offset + counts[static_cast<size_t>(q)]).cpu(),
                          at::full({counts[static_cast<size_t>(q)]}, q, at::kFloat)));
    offset += counts[static_cast<size_t>(q)];
  }
  at::Tensor rs_in = at::ones({n * 5}, on(at::kFloat)).mul(r + 1);
  at::Tensor rs_out = at::empty({5}, on(at::kFloat));
  auto work = comm_->reduce_scatter_async(rs_in, rs_out, ReduceOp::kAvg);
  work->wait();
  EXPECT_TRUE(at::allclose(rs_out.cpu(), at::full({5}, (n + 1) / 2.0, at::kFloat)));
  comm_->barrier();
}

}  // namespace
}  // namespace vitruvian
