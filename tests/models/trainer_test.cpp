// Data-parallel training: W ranks with B/W samples each equal one rank with all B after 10 steps;
// a resumed trainer continues with the very losses of an uninterrupted one; a non-finite loss on
// one rank makes every rank skip the step, and too many in a row stop the run everywhere;
// channels-last training follows the default layout's losses.
#include "models/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "models/registry.h"
#include "tests/tools/mpi_test_environment.h"
#include "tests/tools/scratch_dir.h"

namespace vitruvian::models {
namespace {

namespace fs = std::filesystem;
constexpr std::int64_t kBatch = 4;

UNet small_net() {
  torch::manual_seed(0);
  ModelConfig c;
  c.stages = 3;
  c.base_features = 4;
  c.strides = {1, 2, 2, 2, 2, 2};
  return make_model(c, 1, 3);
}

/// The global batch of a step: blobs of two classes in noise, a function of the step only.
MicroBatch global_batch(std::int64_t step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  at::Tensor target = torch::zeros({kBatch, 8, 12, 12}, torch::kLong);
  for (std::int64_t i = 0; i < kBatch; ++i) {
    const auto z = (step + i) % 3, y = (step * 2 + i) % 5;
    target[i].slice(0, z, z + 4).slice(1, y, y + 6).slice(2, 2, 8).fill_(1);
    target[i].slice(0, 1, 3).slice(1, 8, 11).slice(2, 7, 11).fill_(2);
  }
  const at::Tensor image = target.unsqueeze(1).to(torch::kFloat) + 0.3 * at::randn({kBatch, 1, 8, 12, 12}, gen);
  return {image, target};
}

MicroBatch share(const MicroBatch& batch, int rank, int world) {
  const std::int64_t n = kBatch / world;
  return {batch.first.slice(0, rank * n, (rank + 1) * n), batch.second.slice(0, rank * n, (rank + 1) * n)};
}

TrainerOptions options(std::int64_t steps = 10) {
  TrainerOptions o;
  o.steps = steps;
  o.optimizer.lr = 0.02;
  o.buckets = GradientReducerOptions{4096, 16384};  // several buckets even for a small net
  return o;
}

std::unique_ptr<Communicator> world() {
  return make_communicator(testing::mpi().world(), c10::Device(c10::kCPU), CommunicatorOptions().timeout_s(300));
}

/// W ranks with B/W samples against this rank alone with all B, for 10 steps; the largest weight
/// difference at the end.
double split_against_whole(Communicator& comm, at::ScalarType dtype) {
  const int rank = comm.rank(), size = comm.size();
  UNet a = small_net(), b = small_net();
  a->to(dtype);
  b->to(dtype);
  Trainer parallel(a, comm, options());
  const MpiComm self_mpi = testing::mpi().world().split(rank, 0);
  auto self = make_communicator(self_mpi, c10::Device(c10::kCPU), CommunicatorOptions().name("self"));
  Trainer alone(b, *self, options());
  for (std::int64_t step = 0; step < 10; ++step) {
    MicroBatch batch = global_batch(step);
    batch.first = batch.first.to(dtype);
    const StepResult p = parallel.step({share(batch, rank, size)});
    const StepResult w = alone.step({batch});
    EXPECT_NEAR(p.loss, w.loss, dtype == at::kDouble ? 1e-9 : 1e-4) << "step " << step;
    EXPECT_FALSE(p.skipped);
  }
  const auto pp = parallel.net()->parameters(), ap = alone.net()->parameters();
  double largest = 0;
  for (std::size_t i = 0; i < pp.size(); ++i) largest = std::max(largest, (pp[i] - ap[i]).abs().max().item<double>());
  return largest;
}

TEST(Trainer, RanksSplittingTheBatchEqualOneRankWithTheWholeBatch) {
  auto comm = world();
  ASSERT_EQ(kBatch % comm->size(), 0);
  // In float64 the split changes nothing but rounding at 1e-16: the weights agree far below 1e-5.
  EXPECT_LT(split_against_whole(*comm, at::kDouble), 1e-5);
  // In float32 the kernels LibTorch picks for batch B/W and B round differently, and momentum
  // amplifies that over 10 steps (measured up to 5e-5): equal within float32's reach.
  EXPECT_LT(split_against_whole(*comm, at::kFloat), 5e-4);
}

TEST(Trainer, ChannelsLastTrainsLikeTheDefaultLayout) {
  auto comm = world();
  std::vector<double> losses[2];
  for (const bool last : {false, true}) {
    TrainerOptions o = options(3);
    o.channels_last = last;
    Trainer trainer(small_net(), *comm, o);
    for (std::int64_t step = 0; step < 3; ++step) {
      losses[last].push_back(trainer.step({share(global_batch(step), comm->rank(), comm->size())}).loss);
    }
  }
  for (std::size_t i = 0; i < 3; ++i) EXPECT_NEAR(losses[1][i], losses[0][i], 1e-4 * std::abs(losses[0][i])) << "step " << i;
}

TEST(Trainer, ResumingFromSavedStateGivesTheSameLosses) {
  auto comm = world();
  const int rank = comm->rank(), size = comm->size();
  const testing::ScratchDir scratch;  // each rank saves into its own (named by its pid)
  const fs::path& dir = scratch.path();
  std::vector<double> uninterrupted, resumed;
  at::Tensor rng_after_save;
  {
    Trainer t(small_net(), *comm, options());
    for (std::int64_t step = 0; step < 10; ++step) {
      const double loss = t.step({share(global_batch(step), rank, size)}).loss;
      if (step == 5) {
        t.save(dir);
        at::Generator generator = at::detail::getDefaultCPUGenerator();
        const at::Tensor state = generator.get_state();
        rng_after_save = torch::rand({4});
        generator.set_state(state);
      }
      if (step > 5) uninterrupted.push_back(loss);
    }
  }
  {
    torch::manual_seed(99);  // a different start: everything must come from the saved state
    ModelConfig c;
    c.stages = 3;
    c.base_features = 4;
    c.strides = {1, 2, 2, 2, 2, 2};
    Trainer t(make_model(c, 1, 3), *comm, options());
    const at::Tensor draw_now = torch::rand({4});
    t.load(dir);
    EXPECT_EQ(t.steps_done(), 6);
    // LibTorch's generator is back where the saved run left it.
    EXPECT_TRUE(torch::equal(torch::rand({4}), rng_after_save));
    EXPECT_FALSE(torch::equal(draw_now, rng_after_save));
    for (std::int64_t step = 6; step < 10; ++step) resumed.push_back(t.step({share(global_batch(step), rank, size)}).loss);
  }
  ASSERT_EQ(resumed.size(), uninterrupted.size());
  for (std::size_t i = 0; i < resumed.size(); ++i) EXPECT_DOUBLE_EQ(resumed[i], uninterrupted[i]) << "step " << i + 7;
}

/// A damaged trainer.json is refused with one line naming the file and the key: a float or
/// too-long step (a cast nlohmann would do silently, the latter undefined), a negative one, a
/// streak beyond int.
TEST(Trainer, RefusesABrokenTrainerJson) {
  auto comm = world();
  const testing::ScratchDir scratch;
  const fs::path& dir = scratch.path();
  Trainer t(small_net(), *comm, options());
  t.save(dir);
  EXPECT_EQ(Trainer::saved_step(dir), 0);
  const std::vector<std::pair<std::string, std::string>> broken = {
      {R"({"step": 2.5, "bad_streak": 0, "optimizer": "adamw"})", "step is 2.5; expected a whole number"},
      {R"({"step": 22222222222222222222222222, "bad_streak": 0, "optimizer": "adamw"})", "step is 2.2222"},
      {R"({"step": -3, "bad_streak": 0, "optimizer": "adamw"})", "step is -3; expected 0 or more"},
      {R"({"step": 4, "bad_streak": 4294967296, "optimizer": "adamw"})", "bad_streak is 4294967296; expected a whole"},
      {R"({"step": 4, "bad_streak": "0", "optimizer": "adamw"})", "bad_streak is string"},
  };
  for (const auto& [text, expected] : broken) {
    std::ofstream(dir / "trainer.json") << text;
    try {
      t.load(dir);
      ADD_FAILURE() << "loaded " << text;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("trainer.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    EXPECT_THROW(Trainer::saved_step(dir), InputError) << text;
  }
}

TEST(Trainer, ANonFiniteLossOnOneRankMakesEveryRankSkip) {
  auto comm = world();
  const int rank = comm->rank(), size = comm->size();
  TrainerOptions o = options();
  o.max_bad_steps = 2;
  Trainer t(small_net(), *comm, o);
  t.step({share(global_batch(0), rank, size)});
  std::vector<at::Tensor> before;
  for (const auto& p : t.net()->parameters()) before.push_back(p.detach().clone());
  const int bad_rank = size - 1;
  auto poisoned = [&](std::int64_t step) {
    MicroBatch mine = share(global_batch(step), rank, size);
    if (rank == bad_rank) mine.first = mine.first.clone().fill_(std::numeric_limits<float>::quiet_NaN());
    return mine;
  };
  int reported = 0;
  const StepResult r = t.step({poisoned(1)}, [&](const std::string&) { ++reported; });
  EXPECT_TRUE(r.skipped);
  EXPECT_EQ(reported, rank == bad_rank ? 1 : 0);
  for (std::size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], t.net()->parameters()[i]));
  EXPECT_FALSE(t.step({share(global_batch(2), rank, size)}).skipped);  // the streak resets
  t.step({poisoned(3)});
  t.step({poisoned(4)});
  EXPECT_THROW(t.step({poisoned(5)}), InputError);  // third in a row, limit 2
}

}  // namespace
}  // namespace vitruvian::models
