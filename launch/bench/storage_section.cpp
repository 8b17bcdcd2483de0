// The storage section: random patches read from a phantom dataset that rank 0 writes on the
// target filesystem, by every rank at once, against the memory-copy bandwidth of this machine.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <random>

#include "data/phantom.h"
#include "data/phantom_write.h"
#include "data/volume_store.h"
#include "launch/bench/bench.h"

namespace vitruvian::bench {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

struct StorageShape {
  std::int64_t edge, studies, patch, reads;
};

StorageShape shape_of(bool quick) { return quick ? StorageShape{96, 2, 48, 40} : StorageShape{256, 4, 96, 200}; }

data::PhantomOptions phantoms(const StorageShape& s) {
  data::PhantomOptions o;
  o.shape_zyx = {s.edge, s.edge, s.edge};
  o.framing = data::PhantomFraming::kCentred;  // the grid is the shape the figures name
  return o;
}

/// Rank 0 writes the dataset (default storage: 64³ chunks) unless it is there; seconds spent.
double write_dataset(const fs::path& path, const StorageShape& s) {
  const auto start = Clock::now();
  if (fs::exists(path)) return 0;
  fs::create_directories(path.parent_path());
  data::VolumeWriter writer(path);
  const data::PhantomOptions options = phantoms(s);
  writer.set_label_table(data::phantom_label_table(options.kind));
  for (std::int64_t i = 0; i < s.studies; ++i) data::write_phantom_study(writer, data::make_phantom_study(options, i));
  writer.commit();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// Memory-copy bandwidth (bytes/s) of a buffer too large for the caches, best of a few.
double memcpy_bandwidth() {
  const std::size_t bytes = 64u << 20;
  std::vector<char> source(bytes, 1), target(bytes, 0);
  double best = 1e300;
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    std::memcpy(target.data(), source.data(), bytes);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  if (target[bytes / 2] != 1) throw std::logic_error("memcpy check");
  return static_cast<double>(bytes) / best;
}

}  // namespace

SectionResult run_storage(BenchContext& context) {
  SectionResult result;
  result.name = "storage";
  result.title = "Storage";
  const StorageShape s = shape_of(context.options.quick);
  const fs::path dir = context.options.storage_dir.empty() ? context.options.out / "storage" : context.options.storage_dir;
  const fs::path path = dir / fmt::format("bench_phantoms_{}.h5", s.edge);
  const double write_s = context.world.rank() == 0 ? write_dataset(path, s) : 0.0;
  context.world.barrier();

  const data::VolumeStore store(path);
  std::mt19937_64 rng(17 + static_cast<std::uint64_t>(context.world.rank()));
  std::uniform_int_distribution<std::int64_t> origin(0, s.edge - s.patch), study(0, s.studies - 1);
  context.world.barrier();
  const auto start = Clock::now();
  for (std::int64_t i = 0; i < s.reads; ++i) {
    const data::StudyInfo& info = store.studies()[static_cast<std::size_t>(study(rng))];
    const at::Tensor patch = store.read_series_region(info.id, info.series.front().name, {origin(rng), origin(rng), origin(rng)}, {s.patch, s.patch, s.patch});
    if (patch.numel() != s.patch * s.patch * s.patch) throw std::logic_error("patch of the wrong size");
  }
  const at::Tensor elapsed = at::full({1}, std::chrono::duration<double>(Clock::now() - start).count(), at::kDouble);
  context.world.allreduce(elapsed, ReduceOp::kMax);
  const double seconds = elapsed.item<double>();
  const double patch_bytes = static_cast<double>(s.patch * s.patch * s.patch) * 2;  // int16 CT
  const double patches = static_cast<double>(s.reads * context.world.size());
  const double bandwidth = patches * patch_bytes / seconds;
  context.world.barrier();  // every rank copies at once: the memory bandwidth they share
  const at::Tensor copies = at::full({1}, memcpy_bandwidth(), at::kDouble);
  context.world.allreduce(copies, ReduceOp::kSum);
  const double copy = copies.item<double>();

  result.method = fmt::format(
      "Rank 0 wrote {} chest phantoms of {}³ (int16 CT, Vitruvian's default 64³ chunks) to {} in {:.1f} s{}. Then each of "
      "the {} ranks read {} random {}³ patches of the CT series at once; time: the slowest rank's. The reference is "
      "the memory-copy bandwidth of 64 MiB per rank, all ranks at once, measured in the same run. A dataset just written "
      "is usually still in the page cache: point --storage-dir at the shared filesystem and use a dataset larger than "
      "memory for cold reads.",
      s.studies, s.edge, path.string(), write_s, write_s == 0 ? " (kept from an earlier run)" : "", context.world.size(),
      s.reads, s.patch);
  result.data = {{"path", path.string()},       {"patch_edge", s.patch},       {"reads_per_rank", s.reads},
                 {"ranks", context.world.size()}, {"seconds", seconds},        {"MBps", bandwidth / 1e6},
                 {"patches_per_s", patches / seconds}, {"memcpy_MBps", copy / 1e6}, {"of_memcpy", bandwidth / copy},
                 {"write_s", write_s}};
  result.verdicts.push_back({fmt::format("patch reads, {}³, {} ranks", s.patch, context.world.size()),
                             fmt::format("{:.0f} MB/s, {:.0f} patches/s", bandwidth / 1e6, patches / seconds),
                             fmt::format("memory copy: {:.0f} MB/s ({:.1f} % of it)", copy / 1e6, 100 * bandwidth / copy),
                             "for information"});
  result.tables.push_back(html_table(
      {"patch", "ranks", "reads", "MB/s", "patches/s", "memcpy MB/s", "of memcpy"},
      {{fmt::format("{}³", s.patch), std::to_string(context.world.size()), std::to_string(s.reads * context.world.size()),
        fmt::format("{:.0f}", bandwidth / 1e6), fmt::format("{:.0f}", patches / seconds), fmt::format("{:.0f}", copy / 1e6),
        fmt::format("{:.1f} %", 100 * bandwidth / copy)}}));
  return result;
}

}  // namespace vitruvian::bench
