// Bucketed gradient averaging: bucket layout (small first bucket, reverse parameter order, one
// dtype per bucket), averages equal to the mean over ranks, gradient accumulation without
// sync on inner steps, parameters without a gradient, and timing figures.
#include "core/comm/gradient_reducer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/tools/mpi_test_environment.h"

namespace vitruvian {
namespace {

std::unique_ptr<Communicator> world() {
  return make_communicator(testing::mpi().world(), c10::Device(c10::kCPU), CommunicatorOptions().timeout_s(120));
}

std::vector<at::Tensor> parameters(const std::vector<std::int64_t>& sizes) {
  std::vector<at::Tensor> p;
  for (std::size_t i = 0; i < sizes.size(); ++i) p.push_back(torch::full({sizes[i]}, 1.0 + static_cast<double>(i)).requires_grad_());
  return p;
}

TEST(GradientReducer, BucketsRunInReverseParameterOrderWithASmallFirstBucket) {
  auto comm = world();
  // float32: 100 elements = 400 B; first bucket limit 1 KB, then 2 KB.
  auto params = parameters({100, 100, 100, 100, 100, 100, 100, 100});
  GradientReducer reducer(params, *comm, GradientReducerOptions{1000, 2000});
  const auto& buckets = reducer.buckets();
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0], (std::vector<std::size_t>{7, 6}));        // 800 B ≤ 1000
  EXPECT_EQ(buckets[1], (std::vector<std::size_t>{5, 4, 3, 2, 1}));  // 2000 B
  EXPECT_EQ(buckets[2], (std::vector<std::size_t>{0}));
  // The first parameters, up to last_bucket_bytes, are a bucket of their own, launched last.
  GradientReducer tailed(params, *comm, GradientReducerOptions{1000, 2000, 800});
  ASSERT_EQ(tailed.buckets().size(), 3u);
  EXPECT_EQ(tailed.buckets()[0], (std::vector<std::size_t>{7, 6}));
  EXPECT_EQ(tailed.buckets()[1], (std::vector<std::size_t>{5, 4, 3, 2}));
  EXPECT_EQ(tailed.buckets()[2], (std::vector<std::size_t>{1, 0}));
  // Larger than the buckets before it, the tail is still one bucket.
  GradientReducer wide(params, *comm, GradientReducerOptions{400, 800, 1600});
  ASSERT_EQ(wide.buckets().size(), 4u);
  EXPECT_EQ(wide.buckets()[1], (std::vector<std::size_t>{6, 5}));
  EXPECT_EQ(wide.buckets()[3], (std::vector<std::size_t>{3, 2, 1, 0}));
  // No tail bucket when it would hold every parameter, or with last_bucket_bytes 0.
  for (const std::int64_t last : {std::int64_t{4000}, std::int64_t{0}}) {
    GradientReducer untailed(params, *comm, GradientReducerOptions{1000, 2000, last});
    EXPECT_EQ(untailed.buckets(), reducer.buckets()) << last;
  }
  // A parameter larger than a bucket gets one of its own.
  auto big = parameters({10, 1000, 10});
  GradientReducer single(big, *comm, GradientReducerOptions{100, 100});
  EXPECT_EQ(single.buckets().size(), 3u);
}

TEST(GradientReducer, GradientsAreAveragedAcrossRanksAfterBackward) {
  auto comm = world();
  const int rank = comm->rank(), size = comm->size();
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(6, 40), torch::nn::ReLU(), torch::nn::Linear(40, 3));
  // Buckets [last bias], [last weight], and the tail [first bias, first weight].
  GradientReducer reducer(net->parameters(), *comm, GradientReducerOptions{256, 1024, 1200});
  ASSERT_EQ(reducer.buckets().size(), 3u);
  EXPECT_EQ(reducer.buckets()[2], (std::vector<std::size_t>{1, 0}));
  // Every rank's input differs; the expected result is the mean of all ranks' gradients.
  auto input_of = [](int r) { return torch::full({4, 6}, 0.1 * (r + 1)) + torch::arange(24).view({4, 6}) * 0.01; };
  std::vector<at::Tensor> expected;
  for (const auto& p : net->parameters()) expected.push_back(torch::zeros_like(p));
  for (int r = 0; r < size; ++r) {
    net->zero_grad();
    net->forward(input_of(r)).pow(2).sum().backward();
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] += net->parameters()[i].grad() / size;
  }
  net->zero_grad();
  reducer.prepare(true);
  net->forward(input_of(rank)).pow(2).sum().backward();
  const CommStats stats = reducer.finish();
  EXPECT_EQ(stats.buckets, static_cast<int>(reducer.buckets().size()));
  EXPECT_GT(stats.total_s, 0);
  EXPECT_GE(stats.exposed_s, 0);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(torch::allclose(net->parameters()[i].grad(), expected[i], 1e-5, 1e-6)) << "parameter " << i;
  }
}

TEST(GradientReducer, AccumulatesLocallyThenAveragesTheSum) {
  auto comm = world();
  const int rank = comm->rank(), size = comm->size();
  auto params = parameters({5, 7});
  GradientReducer reducer(params, *comm);
  auto pass = [&](double scale) { ((params[0] * params[0]).sum() * scale + params[1].sum() * scale).backward(); };
  reducer.prepare(false);
  pass(rank + 1.0);  // inner step: no communication, .grad accumulates
  EXPECT_TRUE(torch::allclose(params[1].grad(), torch::full({7}, rank + 1.0)));
  reducer.prepare(true);
  pass(2.0);
  reducer.finish();
  // Local sum = (rank + 1) + 2 per element of params[1]; the mean over ranks of that:
  const double mean = (size + 1) / 2.0 + 2.0;
  EXPECT_TRUE(torch::allclose(params[1].grad(), torch::full({7}, mean)));
  EXPECT_TRUE(torch::allclose(params[0].grad(), 2 * params[0].detach() * mean));
}

TEST(GradientReducer, ParametersWithoutAGradientContributeZeros) {
  auto comm = world();
  auto params = parameters({3, 4});
  GradientReducer reducer(params, *comm);
  reducer.prepare(true);
  // Only rank 0 uses the second parameter.
  at::Tensor loss = params[0].sum();
  if (comm->rank() == 0) loss = loss + params[1].sum() * comm->size();
  loss.backward();
  reducer.finish();
  EXPECT_TRUE(torch::allclose(params[0].grad(), torch::ones({3})));
  EXPECT_TRUE(torch::allclose(params[1].grad(), torch::ones({4})));  // size / size
}

}  // namespace
}  // namespace vitruvian
