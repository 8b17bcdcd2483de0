// `vitruvian bench`: measures the machine it runs on, the way a team choosing a cluster would,
// each figure beside a stated reference and a verdict. Sections, each one function here:
//  - collectives: allreduce/allgather bus bandwidth over message sizes through Vitruvian's
//    communicator against the raw MPI call on the same buffers (nccl-tests' formulas), inside
//    a node and, with several nodes, across them; an alpha-beta fit of the allreduce;
//  - storage: random patch reads from an HDF5 dataset written on the target filesystem, against
//    the memory-copy bandwidth measured in the same run;
//  - training: training-step voxels/s on 1, 2, 4 ... N ranks (weak scaling), exposed
//    communication, and whether the storage keeps the step fed;
//  - inference: prediction through the campaigns' sliding window on CT-like volumes (studies/h,
//    voxels/s), and the MLPerf 3D U-Net shape's volumes/s per device;
//  - scaling: docs/SCALING.md's alpha-beta model refitted to the measured collectives and step,
//    projecting step time and efficiency to 8, 64 and 512 devices of this kind.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/comm/communicator.h"
#include "launch/jobs/job_context.h"

namespace vitruvian::bench {

struct BenchOptions {
  bool quick = false;                    ///< small sizes: minutes on a 2-core machine
  std::filesystem::path out = "bench";   ///< bench.json and bench.html
  std::filesystem::path storage_dir;     ///< where the storage section writes its dataset; "" = OUT/storage
  std::vector<std::string> sections{"collectives", "storage", "training", "inference", "scaling"};
};

/// One figure against its reference.
struct Verdict {
  std::string figure;     ///< what was measured
  std::string measured;   ///< the figure, with its unit
  std::string reference;  ///< what it is held against, with its source
  std::string verdict;    ///< "met", "not met" or "for information"
};

struct SectionResult {
  std::string name, title;
  std::string method;             ///< one paragraph: what ran, on what, how it was timed
  nlohmann::ordered_json data;    ///< the figures, for bench.json
  std::vector<Verdict> verdicts;
  std::vector<std::string> tables;  ///< HTML tables
  std::vector<std::string> charts;  ///< SVG
  bool wrong_results = false;       ///< a measured operation gave a wrong result (the command fails)
};

struct BenchContext {
  const jobs::JobContext& job;
  const BenchOptions& options;
  Communicator& world;  ///< MPI, CPU tensors
  int nodes = 1;        ///< hosts among the ranks
};

SectionResult run_collectives(BenchContext& context);
SectionResult run_storage(BenchContext& context);
/// `storage` (may be null): the reader's patches/s, to say whether it keeps the step fed.
SectionResult run_training(BenchContext& context, const SectionResult* storage);
SectionResult run_inference(BenchContext& context);
/// From the collectives' alpha-beta fit and the training section's one-rank step.
SectionResult run_scaling(BenchContext& context, const SectionResult& collectives, const SectionResult& training);

/// The whole page: the machine, every verdict in one table, then each section.
std::string bench_page(const nlohmann::ordered_json& machine, const std::vector<SectionResult>& sections);

/// "met" / "not met".
inline std::string met(bool ok) { return ok ? "met" : "not met"; }

/// An HTML table (cells escaped) with a header row.
std::string html_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

}  // namespace vitruvian::bench
