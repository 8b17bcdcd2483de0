// The training loader: the same batches for any number of workers, patches equal to the
// normalised volume at their origin, foreground forcing, every study each epoch, clear errors.
#include "data/loader.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include "core/errors.h"
#include "tests/data/scratch_test.h"

namespace vitruvian::data {
namespace {

namespace fs = std::filesystem;

class LoaderTest : public ScratchTest<3> {
 protected:
  // `studies` studies with a CT and an MR series on one grid and a sparse two-class label map.
  std::shared_ptr<const VolumeStore> dataset(int studies, bool shifted_mr = false) {
    const auto path = dir_ / "d.h5";
    {
      VolumeWriter writer(path, StorageOptions{{8, 8, 8}, 1, true});
      writer.set_label_table({{1, "organ"}, {2, "lesion"}});
      for (int i = 0; i < studies; ++i) {
        const std::string id = "s" + std::to_string(i);
        const std::int64_t z = 12 + i, y = 20, x = 18;
        Volume ct;
        ct.type = VoxelType::kInt16;
        ct.voxels = at::randint(-1000, 1500, {z, y, x}, at::kShort);
        ct.modality = "CT";
        Volume mr = ct;
        mr.type = VoxelType::kFloat32;
        mr.voxels = at::rand({z, y, x}) * 500 + 100;
        mr.modality = "MR";
        if (shifted_mr && i == 1) mr.geometry.origin[0] += 3.0;
        Volume label;
        label.type = VoxelType::kUInt8;
        label.voxels = at::zeros({z, y, x}, at::kByte);
        label.voxels.slice(0, 2, 5).slice(1, 3, 9).slice(2, 4, 8).fill_(1);
        label.voxels[z - 2][y - 3][x - 1] = 2;  // one voxel in a corner
        writer.add_series(id, "ct", ct, id);
        writer.add_series(id, "mr", mr, id);
        writer.add_label(id, "organs", "ct", label, id);
      }
      writer.commit();
    }
    return std::make_shared<const VolumeStore>(path);
  }

  static TaskSpec task() {
    TaskSpec t;
    t.channels = {"ct", "mr"};
    t.label = "organs";
    return t;
  }

  static LoaderOptions options(int workers) {
    LoaderOptions o;
    o.patch_size = {8, 16, 16};
    o.batch_size = 3;
    o.workers = workers;
    o.queue_depth = 3;
    o.seed = 42;
    o.steps_per_epoch = 4;
    return o;
  }

};

TEST_F(LoaderTest, SameBatchesForAnyNumberOfWorkers) {
  const auto store = dataset(4);
  std::vector<Batch> one, three;
  {
    PatchLoader loader(store, task(), options(1));
    for (int i = 0; i < 10; ++i) one.push_back(loader.next());
  }
  {
    PatchLoader loader(store, task(), options(3));
    for (int i = 0; i < 10; ++i) three.push_back(loader.next());
  }
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(one[i].index, i);
    EXPECT_EQ(three[i].index, i);
    EXPECT_EQ(one[i].studies, three[i].studies);
    EXPECT_EQ(one[i].origins, three[i].origins);
    EXPECT_TRUE(at::equal(one[i].image, three[i].image)) << "batch " << i;
    EXPECT_TRUE(at::equal(one[i].label, three[i].label)) << "batch " << i;
  }
  EXPECT_EQ(one[0].image.sizes(), (std::vector<std::int64_t>{3, 2, 8, 16, 16}));
  EXPECT_EQ(one[0].label.sizes(), (std::vector<std::int64_t>{3, 8, 16, 16}));
  // Another seed draws other patches.
  auto other = options(2);
  other.seed = 43;
  PatchLoader loader(store, task(), other);
  bool differs = false;
  for (int i = 0; i < 5; ++i) differs = differs || loader.next().origins != one[i].origins;
  EXPECT_TRUE(differs);
}

TEST_F(LoaderTest, StartingAtBatchNGivesTheSameBatchesAsRunningUpToIt) {
  const auto store = dataset(4);
  std::vector<Batch> all;
  {
    PatchLoader loader(store, task(), options(2));
    for (int i = 0; i < 9; ++i) all.push_back(loader.next());
  }
  auto later = options(2);
  later.first_batch = 5;
  PatchLoader loader(store, task(), later);
  for (int i = 5; i < 9; ++i) {
    const Batch b = loader.next();
    EXPECT_EQ(b.index, i);
    EXPECT_EQ(b.epoch, all[i].epoch);
    EXPECT_EQ(b.studies, all[i].studies);
    EXPECT_TRUE(at::equal(b.image, all[i].image)) << "batch " << i;
  }
}

TEST_F(LoaderTest, WorkersStopQueueDepthBatchesAheadOfASlowConsumer) {
  const auto store = dataset(4);
  auto o = options(3);
  o.queue_depth = 2;
  PatchLoader loader(store, task(), o);
  // Nobody consumes: the three workers fill the queue and then wait.
  for (int round = 0; round < 3; ++round) {
    std::int64_t peak = 0;
    for (int poll = 0; poll < 2000 && peak < o.queue_depth; ++poll) {  // up to 10 s on a busy machine
      peak = std::max(peak, loader.batches_ahead());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // time to overshoot, if they could
    EXPECT_EQ(loader.batches_ahead(), o.queue_depth) << "round " << round;
    EXPECT_EQ(loader.next().index, round);  // one taken frees one slot
  }
}

TEST_F(LoaderTest, PatchesAreTheNormalisedVolumeAtTheirOrigin) {
  const auto store = dataset(3);
  PatchLoader loader(store, task(), options(2));
  const auto stats = loader.ct_stats()[0];
  EXPECT_GT(stats.count, 0);
  EXPECT_LT(stats.lower, stats.upper);
  for (int b = 0; b < 6; ++b) {
    const Batch batch = loader.next();
    for (std::size_t i = 0; i < batch.studies.size(); ++i) {
      const auto& id = batch.studies[i];
      const auto& o = batch.origins[i];
      const at::Tensor ct = normalize_ct(store->read_series(id, "ct").voxels, stats);
      const at::Tensor mr = normalize_zscore(store->read_series(id, "mr").voxels);
      const at::Tensor label = store->read_label(id, "organs").voxels.to(at::kLong);
      // The expected patch: padded with 0 (image) and 0 (label) outside the volume.
      const auto pad = [&](const at::Tensor& v) {
        const std::int64_t z = v.size(0), y = v.size(1), x = v.size(2);
        at::Tensor out = at::zeros({8, 16, 16}, v.options());
        for (std::int64_t k = 0; k < 8; ++k)
          for (std::int64_t j = 0; j < 16; ++j)
            for (std::int64_t l = 0; l < 16; ++l) {
              const std::int64_t vz = o[0] + k, vy = o[1] + j, vx = o[2] + l;
              if (vz >= 0 && vz < z && vy >= 0 && vy < y && vx >= 0 && vx < x) out[k][j][l] = v[vz][vy][vx];
            }
        return out;
      };
      EXPECT_TRUE(at::allclose(batch.image[i][0], pad(ct), 1e-5, 1e-5)) << id;
      EXPECT_TRUE(at::allclose(batch.image[i][1], pad(mr), 1e-4, 1e-4)) << id;
      EXPECT_TRUE(at::equal(batch.label[i], pad(label))) << id;
      if (batch.forced_class[i] > 0) {
        EXPECT_TRUE((batch.label[i] == batch.forced_class[i]).any().item<bool>());
      }
    }
  }
}

TEST_F(LoaderTest, ForegroundFractionAndEveryStudyEachEpoch) {
  const auto store = dataset(5);
  auto o = options(2);
  o.batch_size = 2;
  o.steps_per_epoch = 5;  // 10 samples per epoch over 5 studies
  o.foreground_fraction = 0.5;
  PatchLoader loader(store, task(), o);
  std::int64_t forced = 0, samples = 0, lesion = 0;
  std::map<std::int64_t, std::multiset<std::string>> seen;
  for (int b = 0; b < 200; ++b) {
    const Batch batch = loader.next();
    for (std::size_t i = 0; i < batch.studies.size(); ++i) {
      seen[batch.epoch].insert(batch.studies[i]);
      forced += batch.forced_class[i] > 0;
      lesion += batch.forced_class[i] == 2;
      ++samples;
    }
  }
  EXPECT_NEAR(static_cast<double>(forced) / samples, 0.5, 0.05);
  // Classes are balanced: the one-voxel lesion is forced as often as the organ.
  EXPECT_NEAR(static_cast<double>(lesion) / forced, 0.5, 0.07);
  for (const auto& [epoch, studies] : seen) {
    for (int s = 0; s < 5; ++s) EXPECT_EQ(studies.count("s" + std::to_string(s)), 2u) << "epoch " << epoch;
  }
  EXPECT_GE(loader.wait_seconds(), 0.0);
}

TEST_F(LoaderTest, TaskProblemsAreNamed) {
  const auto store = dataset(2, /*shifted_mr=*/true);
  const auto message = [&](TaskSpec t, LoaderOptions o) -> std::string {
    try {
      PatchLoader loader(store, std::move(t), o);
    } catch (const Error& e) {
      return e.what();
    }
    return "accepted";
  };
  auto t = task();
  EXPECT_NE(message(t, options(1)).find("study 's1'"), std::string::npos);
  EXPECT_NE(message(t, options(1)).find("series 'mr' is not on the grid of 'ct'"), std::string::npos);
  t.channels = {"ct", "t2"};
  EXPECT_NE(message(t, options(1)).find("has no series 't2' (it has: ct, mr)"), std::string::npos);
  t = task();
  t.channels = {"ct"};
  t.label = "vessels";
  EXPECT_NE(message(t, options(1)).find("has no label map 'vessels'"), std::string::npos);
  t = task();
  t.channels = {"ct"};
  auto o = options(1);
  o.world = 3;
  o.rank = 0;
  EXPECT_NE(message(t, o).find("has 2 studies for 3 ranks"), std::string::npos);
  o = options(0);
  EXPECT_NE(message(t, o).find("must all be >= 1"), std::string::npos);
}

}  // namespace
}  // namespace vitruvian::data
