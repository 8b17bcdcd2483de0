// The info job: per-rank facts gathered over MPI, versions, and a collective self-check.
#include "launch/jobs/info.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/version.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/comm/communicator.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/huge_page_allocator.h"
#include "core/version.h"
#include "data/hdf5.h"
#include "launch/jobs/scheduler_facts.h"
#include "models/onednn_ops.h"
#include "models/registry.h"

namespace vitruvian::jobs {
namespace {

using json = nlohmann::ordered_json;

json rank_facts(const JobContext& context) {
  const MpiEnvironment& env = context.env;
  return json{{"rank", env.rank()},
              {"local_rank", env.local_rank()},
              {"local_size", env.local_size()},
              {"host", env.host()},
              {"pid", static_cast<long long>(::getpid())},
              {"device", context.device.str()},
              {"cuda_devices", cuda_device_count()},
              {"intra_op_threads", at::get_num_threads()},
              {"inter_op_threads", at::get_num_interop_threads()},
              {"scheduler", scheduler_facts()}};
}

/// Allreduce of each rank's (rank + 1) over `comm` on `device`: expects n(n+1)/2 everywhere.
json check_backend(Communicator& comm, c10::Device device) {
  const int n = comm.size();
  const at::Tensor value = at::full({1}, comm.rank() + 1, at::TensorOptions().dtype(at::kDouble).device(device));
  const auto start = std::chrono::steady_clock::now();
  comm.allreduce(value);
  comm.barrier();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const double got = value.cpu().item<double>();
  const double want = n * (n + 1) / 2.0;
  return json{{"backend", comm.backend()}, {"device", device.str()}, {"ok", got == want}, {"sum", got},
              {"expected", want}, {"ms", ms}};
}

std::string or_none(const std::string& text) { return text.empty() ? "none" : text; }

void print_table(const json& report) {
  const json& ranks = report["ranks"];
  std::set<std::string> hosts;
  for (const auto& r : ranks) hosts.insert(r["host"].get<std::string>());
  std::printf("Vitruvian %s: %zu rank%s on %zu host%s\n", report["versions"]["vitruvian"].get<std::string>().c_str(),
              ranks.size(), ranks.size() == 1 ? "" : "s", hosts.size(), hosts.size() == 1 ? "" : "s");
  std::printf("\n%-5s %-6s %-24s %-8s %-8s %-6s %s\n", "rank", "local", "host", "pid", "device", "cuda", "threads");
  for (const auto& r : ranks) {
    const std::string local = std::to_string(r["local_rank"].get<int>()) + "/" + std::to_string(r["local_size"].get<int>());
    const std::string threads =
        std::to_string(r["intra_op_threads"].get<int>()) + " intra, " + std::to_string(r["inter_op_threads"].get<int>()) + " inter";
    std::printf("%-5d %-6s %-24s %-8lld %-8s %-6d %s\n", r["rank"].get<int>(), local.c_str(),
                r["host"].get<std::string>().c_str(), r["pid"].get<long long>(), r["device"].get<std::string>().c_str(),
                r["cuda_devices"].get<int>(), threads.c_str());
  }
  print_scheduler(ranks);
  std::printf("\nbackends\n");
  for (const auto& b : report["backends"]) {
    std::printf("  %-5s %-22s %s\n", b["name"].get<std::string>().c_str(), b["tensors"].get<std::string>().c_str(),
                b["status"].get<std::string>().c_str());
  }
  std::printf("\nversions\n");
  for (const auto& [name, value] : report["versions"].items()) {
    std::printf("  %-16s %s\n", name.c_str(), value.get<std::string>().c_str());
  }
  std::printf("\nMPI threads: %s (asked for %s)\n", report["mpi_thread_level"].get<std::string>().c_str(),
              report["mpi_thread_level_requested"].get<std::string>().c_str());
  std::printf("malloc: %s\n", report["malloc"].get<std::string>().c_str());
  std::printf("tensor memory: %s\n", report["tensor_memory"].get<std::string>().c_str());
  std::printf("CPU convolutions: %s\n", report["cpu_convolutions"].get<std::string>().c_str());
  for (const auto& check : report["checks"]) {
    std::printf("check: allreduce over %zu ranks on %s (%s): %s, sum %.0f (expected %.0f), %.2f ms\n", ranks.size(),
                check["device"].get<std::string>().c_str(), check["backend"].get<std::string>().c_str(),
                check["ok"].get<bool>() ? "ok" : "WRONG", check["sum"].get<double>(), check["expected"].get<double>(),
                check["ms"].get<double>());
  }
}

}  // namespace

ExitCode run_info(const JobContext& context, const InfoOptions& options) {
  const MpiEnvironment& env = context.env;

  // Gather every rank's facts as JSON text through the communicator's variable-size allgather.
  const auto comm_options = CommunicatorOptions().timeout_s(context.runtime.collective_timeout_s).name("info");
  auto world = make_communicator(env.world(), c10::Device(c10::kCPU), comm_options);
  const std::string mine = rank_facts(context).dump() + "\n";  // compact JSON: one line per rank
  const at::Tensor bytes = at::from_blob(const_cast<char*>(mine.data()), {static_cast<std::int64_t>(mine.size())},
                                         at::TensorOptions().dtype(at::kByte))
                               .clone();
  const at::Tensor gathered = world->allgatherv(bytes);

  json checks = json::array();
  checks.push_back(check_backend(*world, c10::Device(c10::kCPU)));
  if (context.device.is_cuda()) {
    auto device_comm = make_communicator(env.world(), context.device, comm_options);
    checks.push_back(check_backend(*device_comm, context.device));
  }
  bool all_ok = true;
  for (const auto& c : checks) all_ok = all_ok && c["ok"].get<bool>();

  if (env.rank() != 0) return all_ok ? ExitCode::kOk : ExitCode::kFailed;

  json ranks = json::array();
  std::istringstream lines(std::string(reinterpret_cast<const char*>(gathered.data_ptr<std::uint8_t>()),
                                        static_cast<size_t>(gathered.numel())));
  for (std::string line; std::getline(lines, line);) ranks.push_back(json::parse(line));

  const std::string nccl_built = nccl_version_built();
  const std::string nccl_status =
      nccl_backend_built() ? "built (NCCL " + nccl_built + ", loaded " + or_none(nccl_version_loaded()) + ")"
                           : "not built (configure where nvcc and NCCL are installed)";
  json report{
      {"versions",
       {{"vitruvian", VITRUVIAN_VERSION},
        {"build", std::string(VITRUVIAN_BUILD_TYPE) + ", " + VITRUVIAN_CXX_COMPILER},
        {"libtorch", TORCH_VERSION},
        {"mpi", env.library_version() + " (MPI " + env.standard_version() + ")"},
        {"hdf5", data::hdf5_version()},
        {"nccl", nccl_backend_built() ? nccl_built : std::string("none")},
        {"cuda_runtime", or_none(cuda_runtime_version())},
        {"cuda_driver", or_none(cuda_driver_version())},
        {"spdlog", std::to_string(SPDLOG_VER_MAJOR) + "." + std::to_string(SPDLOG_VER_MINOR) + "." +
                       std::to_string(SPDLOG_VER_PATCH)}}},
      {"mpi_thread_level", thread_level_name(env.thread_level_provided())},
      {"malloc", env.malloc_pinned() ? "mmap threshold pinned at 32 MiB, trim at 1 GiB"
                                     : "glibc defaults (or the MALLOC_*_ environment)"},
      {"tensor_memory", huge_page_allocator_installed() ? "2 MiB-aligned, huge pages advised from 2 MiB"
                                                        : "LibTorch's allocator"},
      {"mpi_thread_level_requested", thread_level_name(env.thread_level_requested())},
      {"cpu_convolutions", models::cpu_convolutions()},
      {"backends",
       json::array({json{{"name", "mpi"}, {"tensors", "CPU tensors"}, {"status", "built"}},
                    json{{"name", "nccl"}, {"tensors", "CUDA tensors"}, {"status", nccl_status}}})},
      {"ranks", ranks},
      {"checks", checks}};

  if (options.json) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    print_table(report);
  }
  std::fflush(stdout);
  if (!options.output.empty()) write_file_atomic(options.output, report.dump(2) + "\n");
  if (const std::string disagreement = scheduler_disagreement(ranks); !disagreement.empty()) {
    std::fprintf(stderr, "vitruvian info: %s\n", disagreement.c_str());
    return ExitCode::kFailed;
  }
  return all_ok ? ExitCode::kOk : ExitCode::kFailed;
}

ExitCode run_model_info(const JobContext& context, const InfoOptions& options, const models::ModelConfig& network) {
  if (context.env.rank() != 0) return ExitCode::kOk;
  if (options.patch.size() != 3) throw ConfigError("--patch", "expected three sizes Z,Y,X");
  models::UNet net = models::make_model(network, options.in_channels, options.classes);
  const std::array<std::int64_t, 3> patch{options.patch[0], options.patch[1], options.patch[2]};
  const double flops = models::forward_flops_per_voxel(net, patch);
  const std::int64_t parameters = models::parameter_count(*net);
  const auto& o = net->options();
  json stages = json::array();
  for (int s = 0; s < o.stages(); ++s) {
    stages.push_back({{"features", o.features()[s]}, {"stride_zyx", o.strides()[s]}, {"kernel_zyx", o.kernels()[s]}});
  }
  json report = {{"model", network.name},
                 {"block", models::block_type_name(o.block())},
                 {"in_channels", options.in_channels},
                 {"classes", options.classes},
                 {"parameters", parameters},
                 {"forward_flops_per_voxel", flops},
                 {"patch_zyx", patch},
                 {"forward_gflops_per_patch", flops * static_cast<double>(patch[0] * patch[1] * patch[2]) / 1e9},
                 {"stages", stages}};
  if (options.json) {
    std::cout << report.dump(2) << std::endl;
  } else {
    std::cout << fmt::format("{} ({} blocks): {} input channel(s), {} classes, {} stages\n", network.name,
                             models::block_type_name(o.block()), options.in_channels, options.classes, o.stages());
    std::cout << fmt::format("parameters       {:>14L}\n", parameters);
    std::cout << fmt::format("forward FLOPs    {:>14.4g} per voxel ({:.1f} GFLOP per {}x{}x{} patch)\n", flops,
                             report["forward_gflops_per_patch"].get<double>(), patch[0], patch[1], patch[2]);
    std::cout << "stage  features  stride z,y,x  kernel z,y,x\n";
    for (int s = 0; s < o.stages(); ++s) {
      std::cout << fmt::format("{:>5}  {:>8}  {:>12}  {:>12}\n", s, o.features()[s], fmt::format("{}", fmt::join(o.strides()[s], ",")),
                               fmt::format("{}", fmt::join(o.kernels()[s], ",")));
    }
  }
  if (!options.output.empty()) write_file_atomic(options.output, report.dump(2) + "\n");
  return ExitCode::kOk;
}

namespace {

CLI::App* add_info_command(CLI::App& app, InfoOptions& o) {
  CLI::App* info = add_verb_command(
      app, "info",
      "Show ranks, hosts, devices, backends and library versions, and check an allreduce across all ranks");
  info->add_flag("--json", o.json, "Print a JSON report instead of the table");
  info->add_option("-o,--output", o.output, "Also write the JSON report to this file (atomically)");
  info->add_option(
      "--model", o.model,
      "Describe a network instead: unet, resenc_unet or sk_unet (model.name; the other model.* keys apply)");
  info->add_option("--in-channels", o.in_channels, "With --model: input channels")->capture_default_str();
  info->add_option("--classes", o.classes, "With --model: classes including background")->capture_default_str();
  info->add_option("--stages", o.stages, "With --model: resolution stages (model.stages)")->capture_default_str();
  info->add_option("--patch", o.patch, "With --model: patch Z,Y,X for the FLOP count")
      ->delimiter(',')
      ->capture_default_str();
  return info;
}

/// `info`, or with --model the network of the `model:` section (--model and --stages stand for
/// model.name and model.stages).
class InfoVerb final : public Verb {
 public:
  CLI::App* add_to(CLI::App& app) override {
    CLI::App* info = add_info_command(app, options_);
    stages_ = info->get_option("--stages");
    return info;
  }
  std::vector<ConfigVisit> sections() override {
    if (options_.model.empty()) return {};
    return {[this](ConfigVisitor& v) { v.section("model", [this](ConfigVisitor& m) { network_.visit(m); }); }};
  }
  std::vector<std::string> overrides() const override {
    if (options_.model.empty()) return {};
    std::vector<std::string> keys{"model.name=" + options_.model};
    if (stages_->count() > 0) keys.push_back("model.stages=" + std::to_string(options_.stages));
    return keys;
  }
  ExitCode run(const JobContext& context) override {
    return options_.model.empty() ? run_info(context, options_) : run_model_info(context, options_, network_);
  }

 private:
  InfoOptions options_;
  models::ModelConfig network_;
  CLI::Option* stages_ = nullptr;
};

}  // namespace

std::unique_ptr<Verb> make_info_verb() { return std::make_unique<InfoVerb>(); }

}  // namespace vitruvian::jobs
