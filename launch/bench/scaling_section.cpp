// The scaling section: docs/SCALING.md's alpha-beta model of a data-parallel step, refitted to
// what this run measured (the allreduce inside a node and, with several nodes, across them; the
// one-rank training step), projecting step time and efficiency to 8, 64 and 512 devices.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "launch/bench/bench.h"
#include "launch/svg_chart.h"

namespace vitruvian::bench {
namespace {

using json = nlohmann::ordered_json;

// Across nodes when only one node ran: one 400 Gb/s NIC per device, NCCL-like latency.
constexpr double kAssumedNicBusbw = 48e9, kAssumedNicAlpha = 12e-6;

struct Link {
  double alpha = 0;  ///< seconds per ring step
  double busbw = 0;  ///< bytes/s
  bool measured = false;
};

/// Ring allreduce of n bytes over p ranks: 2(p-1) steps (nccl-tests' busbw).
double ring(double n, int p, const Link& link) {
  if (p <= 1) return 0;
  return 2.0 * (p - 1) * link.alpha + n * 2.0 * (p - 1) / p / link.busbw;
}

/// Reduce-scatter + allgather inside a node, allreduce of n / per_node across nodes.
double hierarchical(double n, int devices, int per_node, const Link& inside, const Link& across) {
  const int nodes = std::max(1, devices / per_node);
  return ring(n, std::min(devices, per_node), inside) + ring(n / per_node, nodes, across);
}

/// A fit (t = alpha + n / beta for an allreduce over `ranks`) as a ring link.
Link link_of(const json& fit, int ranks) {
  Link l;
  const double steps = 2.0 * std::max(1, ranks - 1);
  l.alpha = fit["alpha_us"].get<double>() * 1e-6 / steps;
  l.busbw = fit["beta_GBps"].get<double>() * 1e9 * 2.0 * (ranks - 1) / ranks;
  l.measured = true;
  return l;
}

const json* find_fit(const SectionResult& collectives, const std::string& scope) {
  if (!collectives.data.contains("fits")) return nullptr;
  for (const auto& f : collectives.data["fits"]) {
    if (f["scope"] == scope) return &f;
  }
  return nullptr;
}

int ranks_of(const SectionResult& collectives, const std::string& scope) {
  for (const auto& r : collectives.data["rows"]) {
    if (r["scope"] == scope) return r["ranks"].get<int>();
  }
  return 2;
}

std::vector<double> buckets_of(double gradient_bytes) {
  std::vector<double> out{std::min(gradient_bytes, 1.0 * (1 << 20))};
  double left = gradient_bytes - out.front();
  while (left > 0) out.push_back(std::min(left, 25.0 * (1 << 20))), left -= out.back();
  return out;
}

}  // namespace

SectionResult run_scaling(BenchContext& context, const SectionResult& collectives, const SectionResult& training) {
  SectionResult result;
  result.name = "scaling";
  result.title = "Scaling projection";
  // On GPUs the gradients go over NCCL: its fits when they were measured, else MPI's.
  const bool nccl = find_fit(collectives, "intra-node (NCCL)") != nullptr;
  const std::string suffix = nccl ? " (NCCL)" : "";
  const json* inside_fit = find_fit(collectives, "intra-node" + suffix);
  if (context.world.rank() != 0 || inside_fit == nullptr || !training.data.contains("rows") || training.data["rows"].empty()) {
    result.method = "Needs the collectives section inside a node (2 or more ranks per node) and the training section.";
    return result;
  }
  const int per_node = std::max(2, context.world.size() / context.nodes);
  const Link inside = link_of(*inside_fit, ranks_of(collectives, "intra-node" + suffix));
  const json* across_fit = find_fit(collectives, "inter-node" + suffix);
  const Link across =
      across_fit ? link_of(*across_fit, ranks_of(collectives, "inter-node" + suffix)) : Link{kAssumedNicAlpha, kAssumedNicBusbw, false};
  const json& one = training.data["rows"][0];
  const double compute = one["step_s"].get<double>(), backward = compute * 2 / 3;
  const double gradient_bytes = one["parameters"].get<double>() * 4;
  const std::vector<double> buckets = buckets_of(gradient_bytes);

  json rows = json::array();
  ChartSeries efficiency{"projected efficiency", {}, "#1f77b4"};
  std::vector<std::vector<std::string>> cells;
  for (const int devices : {1, 8, 64, 512}) {
    double comm = 0;
    for (const double b : buckets) comm += hierarchical(b, devices, per_node, inside, across);
    const double last = hierarchical(buckets.back(), devices, per_node, inside, across);
    const double exposed = devices > 1 ? std::max(last, comm - backward) : 0.0;
    const double step = compute + exposed;
    rows.push_back({{"devices", devices}, {"nodes", std::max(1, devices / per_node)}, {"allreduce_s", comm},
                    {"exposed_s", exposed}, {"step_s", step}, {"efficiency", compute / step}});
    efficiency.points.emplace_back(devices, compute / step);
    cells.push_back({std::to_string(devices), std::to_string(std::max(1, devices / per_node)), fmt::format("{:.2f}", comm * 1e3),
                     fmt::format("{:.2f}", exposed * 1e3), fmt::format("{:.1f}", step * 1e3), fmt::format("{:.1f} %", 100 * compute / step)});
  }
  result.data = {{"devices_per_node", per_node},
                 {"library", nccl ? "NCCL" : "MPI"},
                 {"inside", {{"alpha_us_per_step", inside.alpha * 1e6}, {"busbw_GBps", inside.busbw / 1e9}, {"measured", true}}},
                 {"across", {{"alpha_us_per_step", across.alpha * 1e6}, {"busbw_GBps", across.busbw / 1e9}, {"measured", across.measured}}},
                 {"step_compute_s", compute}, {"gradient_bytes", gradient_bytes}, {"buckets", buckets.size()}, {"rows", rows}};
  result.method = fmt::format(
      "The step of the training section's network ({:.1f} ms on one rank, {:.1f} MB of float32 gradients in {} buckets: 1 MiB, "
      "then 25 MiB) with its allreduce hierarchical: a ring inside each node of {} devices (fitted here: {:.2f} µs per ring "
      "step, {:.2f} GB/s bus bandwidth), and a ring across nodes on each device's share ({}: {:.2f} µs, {:.1f} GB/s). "
      "Buckets overlap backward (2/3 of the step); exposed = max(last bucket, all buckets − backward). A model, not a "
      "measurement: see docs/SCALING.md.",
      compute * 1e3, gradient_bytes / 1e6, buckets.size(), per_node, inside.alpha * 1e6, inside.busbw / 1e9,
      across.measured ? "fitted across this run's nodes" : "assumed, one node ran", across.alpha * 1e6, across.busbw / 1e9);
  result.tables.push_back(html_table({"devices", "nodes", "allreduce of all buckets (ms)", "exposed (ms)", "step (ms)", "efficiency"}, cells));
  ChartAxes axes;
  axes.x_label = "devices", axes.y_label = "scaling efficiency", axes.log_x = true;
  result.charts.push_back(svg_line_chart("Projected scaling efficiency", axes, {efficiency}));
  for (const auto& r : rows) {
    if (r["devices"] == 1) continue;
    result.verdicts.push_back({fmt::format("projected efficiency, {} devices", r["devices"].get<int>()),
                               fmt::format("{:.1f} % ({:.1f} ms step)", 100 * r["efficiency"].get<double>(), r["step_s"].get<double>() * 1e3),
                               "a projection from this run's figures", "for information"});
  }
  return result;
}

}  // namespace vitruvian::bench
