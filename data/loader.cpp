// PatchLoader: per-study caches (class locations, normalisation statistics) filled on first use,
// batches numbered and built by whichever worker takes the number, delivered in order.
#include "data/loader.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/errors.h"
#include "data/patch_sampler.h"
#include "data/random.h"
#include "data/sharder.h"

namespace vitruvian::data {
namespace {

constexpr const char* kWhere = "PatchLoader";
constexpr std::int64_t kStatsSamples = 10000;

/// What a study contributes to sampling and normalisation, computed once.
struct StudyCache {
  std::once_flag once;
  std::exception_ptr error;
  std::vector<std::int64_t> classes;                  ///< foreground classes present
  std::vector<std::vector<std::int32_t>> locations;   ///< per class: sampled flat voxel indices
  std::vector<IntensityStats> zscore;                 ///< per channel (kZscore channels only)
};

std::string join(const std::vector<std::string>& names) { return fmt::format("{}", fmt::join(names, ", ")); }

}  // namespace

IntensityStats volume_stats(const at::Tensor& voxels) {
  const at::Tensor v = voxels.to(at::kDouble);
  IntensityStats s;
  s.mean = v.mean().item<double>();
  s.std = v.std(/*unbiased=*/false).item<double>();
  s.count = v.numel();
  return s;
}

at::Tensor normalize_channel(const at::Tensor& raw, Normalization normalization, const IntensityStats& ct,
                             const IntensityStats& volume) {
  switch (normalization) {
    case Normalization::kCt:
      return normalize_ct(raw, ct);
    case Normalization::kZscore:
      return raw.sub(volume.mean).div(std::max(volume.std, kMinNormalizationStd)).to(at::kFloat);
    case Normalization::kNone:
      break;
  }
  return raw.to(at::kFloat);
}

struct PatchLoader::State {
  std::shared_ptr<const VolumeStore> store;
  TaskSpec task;
  LoaderOptions options;
  std::vector<ShardStudy> shard_studies;
  std::map<std::string, std::array<std::int64_t, 3>> shapes;  ///< per study, [z, y, x]
  std::unique_ptr<Augmenter> augmenter;

  std::mutex cache_mutex;
  std::map<std::string, std::unique_ptr<StudyCache>> caches;

  // Delivery: workers take numbers from `next_to_build`, wait while it is `queue_depth` ahead of
  // `delivered`, and file results in `ready`.
  std::mutex mutex;
  std::condition_variable batch_ready, slot_free;
  std::int64_t next_to_build = 0, delivered = 0;
  std::map<std::int64_t, Batch> ready;
  std::map<std::int64_t, std::exception_ptr> failed;
  bool stopping = false;
  double wait_s = 0.0;
  std::vector<std::thread> workers;

  // Plans per epoch, computed by whoever needs them first.
  std::mutex plan_mutex;
  std::map<std::int64_t, std::shared_ptr<const std::vector<std::size_t>>> shard_by_epoch;

  /// This rank's studies (indices into shard_studies) for `epoch`, in visiting order.
  std::shared_ptr<const std::vector<std::size_t>> shard(std::int64_t epoch) {
    std::lock_guard<std::mutex> lock(plan_mutex);
    auto& slot = shard_by_epoch[epoch];
    if (!slot) {
      slot = std::make_shared<const std::vector<std::size_t>>(
          data::shard_studies(shard_studies, options.rank, options.world, options.seed, epoch));
    }
    // Keep the last few epochs only (users hold their own reference).
    while (shard_by_epoch.size() > 4) shard_by_epoch.erase(shard_by_epoch.begin());
    return slot;
  }

  StudyCache& cache(const std::string& study) {
    StudyCache* entry = nullptr;
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto& slot = caches[study];
      if (!slot) slot = std::make_unique<StudyCache>();
      entry = slot.get();
    }
    std::call_once(entry->once, [&] {
      try {
        fill_cache(study, *entry);
      } catch (...) {
        entry->error = std::current_exception();
      }
    });
    if (entry->error) std::rethrow_exception(entry->error);
    return *entry;
  }

  void fill_cache(const std::string& study, StudyCache& entry) {
    const Volume label = store->read_label(study, task.label);
    const at::Tensor flat = label.voxels.reshape({-1}).to(at::kLong);
    const at::Tensor counts = at::bincount(flat).contiguous();
    // Foreground voxels grouped by class in one pass (a stable sort keeps each class's voxels in
    // scan order), instead of one scan of the volume per class.
    const at::Tensor foreground = at::nonzero(flat > 0).reshape({-1});
    const at::Tensor order = std::get<1>(at::sort(flat.index_select(0, foreground), /*stable=*/true, 0, false));
    const at::Tensor grouped = foreground.index_select(0, order).contiguous();
    const auto* class_counts = counts.data_ptr<std::int64_t>();
    // Sampled voxel lists, seeded per study so every rank and run keeps the same ones.
    std::mt19937_64 rng = seeded_rng({options.seed, portable_hash(study), 0x10ca7e});
    const std::int64_t* all = grouped.data_ptr<std::int64_t>();
    for (std::int64_t c = 1; c < counts.numel(); all += class_counts[c], ++c) {
      const std::int64_t n = class_counts[c];
      if (n == 0) continue;
      std::vector<std::int32_t> picked;
      const std::int64_t keep = std::min(n, options.max_class_locations);
      picked.reserve(static_cast<std::size_t>(keep));
      if (keep == n) {
        for (std::int64_t i = 0; i < n; ++i) picked.push_back(static_cast<std::int32_t>(all[i]));
      } else {
        // Partial Fisher–Yates over an index copy: `keep` distinct voxels.
        std::vector<std::int64_t> pool(all, all + n);
        for (std::int64_t i = 0; i < keep; ++i) {
          const auto j = i + static_cast<std::int64_t>(uniform_below(rng, static_cast<std::uint64_t>(n - i)));
          std::swap(pool[static_cast<std::size_t>(i)], pool[static_cast<std::size_t>(j)]);
          picked.push_back(static_cast<std::int32_t>(pool[static_cast<std::size_t>(i)]));
        }
      }
      entry.classes.push_back(c);
      entry.locations.push_back(std::move(picked));
    }
    entry.zscore.resize(task.channels.size());
    for (std::size_t ch = 0; ch < task.channels.size(); ++ch) {
      if (task.normalization[ch] != Normalization::kZscore) continue;
      entry.zscore[ch] = volume_stats(store->read_series(study, task.channels[ch]).voxels);
    }
  }

  at::Tensor normalize(const at::Tensor& raw, std::size_t ch, const StudyCache& entry) const {
    return normalize_channel(raw, task.normalization[ch], task.ct_stats[ch], entry.zscore[ch]);
  }

  /// One sample of `study`: image [C, pz, py, px], label [pz, py, px], its origin and forced class.
  struct Sample {
    at::Tensor image, label;
    std::array<std::int64_t, 3> origin{};
    std::int64_t forced_class = 0;
  };

  Sample read_sample(const std::string& study, bool force, std::mt19937_64& rng) {
    const StudyCache& entry = cache(study);
    const auto& shape = shapes.at(study);
    const auto& p = options.patch_size;
    Sample sample;
    if (force && !entry.classes.empty()) {
      const auto c = uniform_below(rng, entry.classes.size());
      const auto& where = entry.locations[c];
      std::int64_t voxel = where[uniform_below(rng, where.size())];
      const std::array<std::int64_t, 3> v{voxel / (shape[1] * shape[2]), (voxel / shape[2]) % shape[1], voxel % shape[2]};
      sample.origin = patch_origin_containing(rng, shape, p, v);
      sample.forced_class = entry.classes[c];
    } else {
      sample.origin = random_patch_origin(rng, shape, p);
    }
    // Only the part inside the volume is read and normalised; the rest stays padding (image
    // 0, the normalised value of "nothing"; label the pad value).
    sample.image = at::zeros({static_cast<std::int64_t>(task.channels.size()), p[0], p[1], p[2]}, at::kFloat);
    sample.label = at::full({p[0], p[1], p[2]}, options.label_pad_value, at::kLong);
    if (const auto overlap = patch_overlap(shape, p, sample.origin)) {
      for (std::size_t ch = 0; ch < task.channels.size(); ++ch) {
        const at::Tensor region = store->read_series_region(study, task.channels[ch], overlap->volume_start, overlap->size);
        box_view(sample.image[static_cast<std::int64_t>(ch)], overlap->patch_start, overlap->size)
            .copy_(normalize(region, ch, entry));
      }
      box_view(sample.label, overlap->patch_start, overlap->size)
          .copy_(store->read_label_region(study, task.label, overlap->volume_start, overlap->size));
    }
    if (augmenter) augmenter->apply(sample.image, sample.label, rng);
    return sample;
  }

  /// Studies left out as unreadable (skip_bad_studies), each warned about once.
  std::mutex bad_mutex;
  std::set<std::string> bad_studies;

  bool is_bad(const std::string& study) {
    std::lock_guard<std::mutex> lock(bad_mutex);
    return bad_studies.count(study) != 0;
  }
  /// `warn`: false where every rank finds the same study (set-up), so that one rank says it.
  void leave_out(const std::string& study, const std::string& error, bool warn = true) {
    std::lock_guard<std::mutex> lock(bad_mutex);
    if (bad_studies.insert(study).second && warn) {
      spdlog::warn("study '{}' left out of training (data.on_bad_study: skip): {}", study, error);
    }
  }

  Batch build(std::int64_t index) {
    Batch batch;
    batch.index = index;
    batch.epoch = index / options.steps_per_epoch;
    std::mt19937_64 rng = seeded_rng({options.seed, static_cast<std::uint64_t>(options.rank),
                                      static_cast<std::uint64_t>(options.world), static_cast<std::uint64_t>(index)});
    const auto order_ptr = shard(batch.epoch);
    const auto& order = *order_ptr;
    const auto forced = forced_in_batch(rng, options.batch_size, options.foreground_fraction);
    std::vector<at::Tensor> images, labels;
    for (std::int64_t i = 0; i < options.batch_size; ++i) {
      // Samples walk this rank's shard in its shuffled order, so each epoch visits every study;
      // a study left out as unreadable passes its turn to the next one.
      const std::int64_t k = (index % options.steps_per_epoch) * options.batch_size + i;
      for (std::size_t step = 0;; ++step) {
        if (step == order.size()) {
          throw InputError(store->path().string(), fmt::format("every study of rank {}'s shard is unreadable; "
                                                               "nothing left to train on", options.rank));
        }
        const std::string& study = shard_studies[order[(static_cast<std::size_t>(k) + step) % order.size()]].id;
        if (options.skip_bad_studies && is_bad(study)) continue;
        const std::mt19937_64 before = rng;  // a study left out consumes no draws: batches stay reproducible
        try {
          Sample sample = read_sample(study, forced[static_cast<std::size_t>(i)], rng);
          images.push_back(sample.image);
          labels.push_back(sample.label);
          batch.studies.push_back(study);
          batch.origins.push_back(sample.origin);
          batch.forced_class.push_back(sample.forced_class);
          break;
        } catch (const Error& e) {
          if (!options.skip_bad_studies) throw;
          leave_out(study, e.what());
          rng = before;
        }
      }
    }
    batch.image = at::stack(images);
    batch.label = at::stack(labels);
    if (options.pin_memory && at::globalContext().hasCUDA()) {
      batch.image = batch.image.pin_memory();
      batch.label = batch.label.pin_memory();
    }
    return batch;
  }

  void work() {
#ifdef _OPENMP
    // One OpenMP thread for LibTorch ops in this worker (a per-thread setting): the workers are
    // the parallelism, and the training thread's own setting stays as the runtime chose it.
    omp_set_num_threads(1);
#endif
    while (true) {
      std::int64_t index = 0;
      {
        std::unique_lock<std::mutex> lock(mutex);
        slot_free.wait(lock, [&] { return stopping || next_to_build < delivered + options.queue_depth; });
        if (stopping) return;
        index = next_to_build++;
      }
      Batch batch;
      std::exception_ptr error;
      try {
        batch = build(index);
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (error) {
          failed[index] = error;
        } else {
          ready.emplace(index, std::move(batch));
        }
      }
      batch_ready.notify_all();
    }
  }
};

PatchLoader::PatchLoader(std::shared_ptr<const VolumeStore> store, TaskSpec task, LoaderOptions options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  if (!store) throw InputError(kWhere, "no dataset");
  const auto& o = options;
  if (o.patch_size[0] < 1 || o.patch_size[1] < 1 || o.patch_size[2] < 1) {
    throw ConfigError(kWhere, fmt::format("patch size {} has a size < 1", fmt::join(o.patch_size, "x")));
  }
  if (o.first_batch < 0) throw ConfigError("loader", fmt::format("first batch {}; expected >= 0", o.first_batch));
  if (o.batch_size < 1 || o.workers < 1 || o.queue_depth < 1 || o.steps_per_epoch < 1) {
    throw ConfigError(kWhere, fmt::format("batch size {}, workers {}, queue depth {} and steps per epoch {} must all be >= 1",
                                          o.batch_size, o.workers, o.queue_depth, o.steps_per_epoch));
  }
  if (!(o.foreground_fraction >= 0.0 && o.foreground_fraction <= 1.0)) {
    throw ConfigError(kWhere, fmt::format("foreground fraction {} is not in [0, 1]", o.foreground_fraction));
  }
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world) {
    throw ConfigError(kWhere, fmt::format("rank {} of {} is not a valid rank", o.rank, o.world));
  }
  if (task.channels.empty()) throw ConfigError(kWhere, "the task names no input channels");
  if (task.label.empty()) throw ConfigError(kWhere, "the task names no target label map");
  std::vector<StudyInfo> studies;
  for (const auto& study : store->studies()) {
    if (task.studies.empty() || std::find(task.studies.begin(), task.studies.end(), study.id) != task.studies.end()) {
      studies.push_back(study);
    }
  }
  for (const auto& id : task.studies) store->study(id);  // InputError naming a study the dataset lacks
  if (static_cast<int>(studies.size()) < o.world) {
    throw ConfigError(kWhere, fmt::format("{} has {} studies for {} ranks; every rank needs at least one",
                                          store->path().string(), studies.size(), o.world));
  }
  // Every study: all channels on the reference grid, 3D; the label map on it too.
  for (const auto& study : studies) {
    const std::string where = fmt::format("{}: study '{}'", store->path().string(), study.id);
    std::vector<std::string> names;
    for (const auto& info : study.series) names.push_back(info.name);
    const SeriesInfo* reference = study.find_series(task.channels.front());
    for (const auto& channel : task.channels) {
      const SeriesInfo* info = study.find_series(channel);
      if (info == nullptr) {
        throw InputError(where, fmt::format("has no series '{}' (it has: {})", channel, join(names)));
      }
      if (info->shape.size() != 3) {
        throw InputError(where, fmt::format("series '{}' is 4D; input channels are 3D series", channel));
      }
      if (info->shape != reference->shape || !info->geometry.matches(reference->geometry)) {
        throw InputError(where, fmt::format("series '{}' is not on the grid of '{}' ({} vs {}); resample it onto the "
                                            "reference first (vitruvian preprocess)",
                                            channel, reference->name, fmt::join(info->shape, "x"),
                                            fmt::join(reference->shape, "x")));
      }
    }
    const LabelInfo* label = study.find_label(task.label);
    if (label == nullptr) throw InputError(where, "has no label map '" + task.label + "'");
    if (label->shape != reference->shape) {
      throw InputError(where, fmt::format("label map '{}' is not on the grid of '{}'", task.label, reference->name));
    }
    s.shapes[study.id] = {reference->shape[0], reference->shape[1], reference->shape[2]};
    s.shard_studies.push_back({study.id, study.voxels});
  }
  // Normalisation per channel: by modality unless given.
  if (task.normalization.empty()) {
    const StudyInfo& first = studies.front();
    for (const auto& channel : task.channels) {
      task.normalization.push_back(first.find_series(channel)->modality == "CT" ? Normalization::kCt
                                                                                : Normalization::kZscore);
    }
  }
  if (task.normalization.size() != task.channels.size()) {
    throw ConfigError(kWhere, fmt::format("{} normalizations for {} channels", task.normalization.size(), task.channels.size()));
  }
  if (task.ct_stats.empty()) {
    // Dataset statistics from every study's foreground, pooled.
    task.ct_stats.resize(task.channels.size());
    for (std::size_t ch = 0; ch < task.channels.size(); ++ch) {
      if (task.normalization[ch] != Normalization::kCt) continue;
      std::vector<double> pooled;
      std::mt19937_64 rng = seeded_rng({o.seed, ch, 0xc7});
      for (const auto& study : studies) {
        if (s.is_bad(study.id)) continue;
        try {
          const Volume image = store->read_series(study.id, task.channels[ch]);
          const Volume label = store->read_label(study.id, task.label);
          const auto values = sample_foreground_intensities(image.voxels, label.voxels, kStatsSamples, rng);
          pooled.insert(pooled.end(), values.begin(), values.end());
        } catch (const Error& e) {
          if (!o.skip_bad_studies) throw;
          s.leave_out(study.id, e.what(), o.rank == 0);
        }
      }
      if (pooled.empty()) {
        throw InputError(store->path().string(), "no foreground voxels to take CT statistics from; give them in the task");
      }
      task.ct_stats[ch] = intensity_stats(std::move(pooled));
    }
  } else if (task.ct_stats.size() != task.channels.size()) {
    throw ConfigError(kWhere, fmt::format("{} CT statistics for {} channels", task.ct_stats.size(), task.channels.size()));
  }
  // Studies found unreadable above (every rank reads the same ones) leave every rank's shards alike.
  const auto left_out = std::remove_if(s.shard_studies.begin(), s.shard_studies.end(),
                                       [&](const ShardStudy& study) { return s.is_bad(study.id); });
  s.shard_studies.erase(left_out, s.shard_studies.end());
  if (static_cast<int>(s.shard_studies.size()) < o.world) {
    throw InputError(store->path().string(), fmt::format("{} readable studies for {} ranks; every rank needs at least one",
                                                         s.shard_studies.size(), o.world));
  }
  s.store = std::move(store);
  s.task = std::move(task);
  s.options = options;
  s.augmenter = std::make_unique<Augmenter>(options.augment);
  s.next_to_build = s.delivered = s.options.first_batch;
  for (int w = 0; w < options.workers; ++w) s.workers.emplace_back([&s] { s.work(); });
}

PatchLoader::~PatchLoader() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stopping = true;
  }
  state_->slot_free.notify_all();
  for (auto& worker : state_->workers) worker.join();
}

Batch PatchLoader::next() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  const std::int64_t want = s.delivered;
  const auto start = std::chrono::steady_clock::now();
  s.batch_ready.wait(lock, [&] { return s.ready.count(want) > 0 || s.failed.count(want) > 0; });
  s.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (const auto failed = s.failed.find(want); failed != s.failed.end()) {
    const std::exception_ptr error = failed->second;
    s.failed.erase(failed);
    ++s.delivered;
    lock.unlock();
    s.slot_free.notify_all();
    std::rethrow_exception(error);
  }
  Batch batch = std::move(s.ready.at(want));
  s.ready.erase(want);
  ++s.delivered;
  lock.unlock();
  s.slot_free.notify_all();
  return batch;
}

std::int64_t PatchLoader::batches_ahead() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->next_to_build - state_->delivered;
}

double PatchLoader::wait_seconds() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->wait_s;
}

const std::vector<IntensityStats>& PatchLoader::ct_stats() const { return state_->task.ct_stats; }
const TaskSpec& PatchLoader::task() const { return state_->task; }

}  // namespace vitruvian::data
