#include "launch/jobs/bench.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>

#include "core/atomic_file.h"
#include "core/comm/communicator.h"
#include "core/errors.h"
#include "core/progress.h"
#include "core/version.h"
#include "launch/bench/bench.h"

namespace vitruvian::jobs {
namespace {

using json = nlohmann::ordered_json;
using bench::BenchOptions;
using bench::SectionResult;

const std::vector<std::string> kSections{"collectives", "storage", "training", "inference", "scaling"};

CLI::App* add_bench_command(CLI::App& app, BenchOptions& o) {
  CLI::App* cmd = add_verb_command(
      app, "bench",
      "Measure this machine: collectives against raw MPI, patch reads, training-step weak scaling, inference "
      "(campaign path and the MLPerf 3D U-Net shape) and a scaling projection; writes OUT/bench.json and OUT/bench.html");
  cmd->add_flag("--quick", o.quick, "Small sizes: a few minutes on a 2-core machine");
  cmd->add_option("-o,--out", o.out, "Output folder for bench.json and bench.html")->capture_default_str();
  cmd->add_option("--storage-dir", o.storage_dir,
                  "Where the storage section writes its dataset (the filesystem to measure; default OUT/storage)");
  cmd->add_option("--sections", o.sections, "Sections to run, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember(kSections))
      ->capture_default_str();
  return cmd;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  return text;
}

json machine_facts(const JobContext& context, const BenchOptions& options, int nodes) {
  return {{"date", utc_now()},
          {"ranks", context.env.size()},
          {"nodes", nodes},
          {"host (rank 0)", context.env.host()},
          {"device", context.device.str()},
          {"CPU", cpu_model()},
          {"cores (rank 0's node)", static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN))},
          {"threads per rank", at::get_num_threads()},
          {"versions", fmt::format("Vitruvian {}, LibTorch {}, {}", VITRUVIAN_VERSION, TORCH_VERSION, context.env.library_version())},
          {"sections", fmt::format("{}", fmt::join(options.sections, ", "))},
          {"mode", options.quick ? "--quick" : "full"}};
}

bool wanted(const BenchOptions& options, const std::string& name) {
  return std::find(options.sections.begin(), options.sections.end(), name) != options.sections.end();
}

/// Runs the chosen sections in order; scaling needs collectives and training.
std::vector<SectionResult> run_sections(bench::BenchContext& context) {
  const BenchOptions& options = context.options;
  std::vector<SectionResult> results;
  Progress progress("sections", static_cast<std::int64_t>(options.sections.size()), context.world.rank() == 0);
  auto find = [&](const std::string& name) -> const SectionResult* {
    for (const auto& r : results) {
      if (r.name == name) return &r;
    }
    return nullptr;
  };
  for (const std::string& name : kSections) {
    if (!wanted(options, name)) continue;
    if (name == "collectives") results.push_back(bench::run_collectives(context));
    if (name == "storage") results.push_back(bench::run_storage(context));
    if (name == "training") results.push_back(bench::run_training(context, find("storage")));
    if (name == "inference") results.push_back(bench::run_inference(context));
    if (name == "scaling") {
      const SectionResult* collectives = find("collectives");
      const SectionResult* training = find("training");
      if (collectives == nullptr || training == nullptr) {
        throw InputError("--sections", "scaling projects from the collectives and training sections; add them");
      }
      results.push_back(bench::run_scaling(context, *collectives, *training));
    }
    progress.advance(1, name);
  }
  return results;
}

ExitCode run_bench(const JobContext& context, const BenchOptions& options) {
  auto world = make_communicator(context.env.world(), c10::Device(c10::kCPU),
                                 CommunicatorOptions().timeout_s(context.runtime.collective_timeout_s).name("bench"));
  const at::Tensor leaders = at::full({1}, context.env.local_rank() == 0 ? 1 : 0, at::kLong);
  world->allreduce(leaders);
  bench::BenchContext bench_context{context, options, *world, static_cast<int>(leaders.item<std::int64_t>())};
  const std::vector<SectionResult> results = run_sections(bench_context);
  if (context.env.rank() != 0) return ExitCode::kOk;

  const json machine = machine_facts(context, options, bench_context.nodes);
  json report{{"machine", machine}, {"sections", json::object()}};
  bool wrong = false;
  for (const auto& r : results) {
    json verdicts = json::array();
    for (const auto& v : r.verdicts) {
      verdicts.push_back({{"figure", v.figure}, {"measured", v.measured}, {"reference", v.reference}, {"verdict", v.verdict}});
      std::cout << fmt::format("bench: {}: {}: {} (reference: {}): {}\n", r.name, v.figure, v.measured, v.reference, v.verdict);
    }
    wrong = wrong || r.wrong_results;
    report["sections"][r.name] = {{"method", r.method}, {"figures", r.data}, {"verdicts", verdicts}};
  }
  std::filesystem::create_directories(options.out);
  write_file_atomic(options.out / "bench.json", report.dump(2) + "\n");
  write_file_atomic(options.out / "bench.html", bench::bench_page(machine, results));
  std::cout << "bench: " << (options.out / "bench.html").string() << std::endl;
  if (wrong) std::cerr << "vitruvian bench: a collective gave wrong results (see bench.json)" << std::endl;
  return wrong ? ExitCode::kFailed : ExitCode::kOk;
}

}  // namespace

std::unique_ptr<Verb> make_bench_verb() { return make_options_verb(add_bench_command, run_bench); }

}  // namespace vitruvian::jobs
