// The collectives section: Vitruvian's communicator against the library's own call (MPI; NCCL on
// GPUs), inside a node and
// across nodes, and the alpha-beta fit the scaling section projects from.
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "core/comm/collective_probe.h"
#include "launch/bench/bench.h"
#include "launch/svg_chart.h"

namespace vitruvian::bench {
namespace {

using json = nlohmann::ordered_json;

constexpr double kTargetRatio = 0.9;  // the communicator's busbw against the library call's, at >= 1 MiB

/// "MPI" or "NCCL": whose call a scope's reference is.
std::string library_of(const std::string& scope) { return scope.find("NCCL") != std::string::npos ? "NCCL" : "MPI"; }

std::vector<std::int64_t> sizes(bool quick) {
  std::vector<std::int64_t> out;
  for (std::int64_t b = quick ? 1024 : 8; b <= (quick ? 4LL << 20 : 256LL << 20); b *= 4) out.push_back(b);
  return out;
}

int iterations_for(std::int64_t bytes, bool quick) {
  const std::int64_t budget = quick ? 16LL << 20 : 256LL << 20;
  return static_cast<int>(std::clamp<std::int64_t>(budget / std::max<std::int64_t>(bytes, 1), quick ? 5 : 10, quick ? 30 : 200));
}

/// Every size of allreduce and allgather on `comm` (its ranks only), as rows.
json measure_scope(Communicator& comm, const std::string& scope, bool quick) {
  json rows = json::array();
  for (const std::string op : {"allreduce", "allgather"}) {
    for (const std::int64_t bytes : sizes(quick)) {
      const CollectiveTiming t = time_collective(comm, op, bytes, iterations_for(bytes, quick));
      rows.push_back({{"scope", scope}, {"ranks", comm.size()}, {"op", op}, {"bytes", t.bytes},
                      {"vitruvian_us", t.seconds * 1e6}, {"raw_us", t.raw_seconds * 1e6},
                      {"busbw_GBps", t.busbw / 1e9}, {"raw_busbw_GBps", t.raw_busbw / 1e9},
                      {"vs_raw", t.seconds > 0 && t.raw_seconds > 0 ? t.raw_seconds / t.seconds : 0.0},
                      {"wrong", t.wrong}});
    }
  }
  return rows;
}

/// alpha: the smallest allreduce's time; beta: bytes per second beyond alpha for messages of
/// 1 MiB and more (least squares through alpha), as docs/SCALING.md fits them.
json fit_alpha_beta(const json& rows, const std::string& scope) {
  double alpha = 0, num = 0, den = 0;
  std::int64_t smallest = -1;
  for (const auto& r : rows) {
    if (r["scope"] != scope || r["op"] != "allreduce") continue;
    if (smallest < 0 || r["bytes"].get<std::int64_t>() < smallest) smallest = r["bytes"], alpha = r["vitruvian_us"].get<double>() * 1e-6;
  }
  for (const auto& r : rows) {
    if (r["scope"] != scope || r["op"] != "allreduce" || r["bytes"].get<std::int64_t>() < (1 << 20)) continue;
    const double n = r["bytes"].get<double>(), t = r["vitruvian_us"].get<double>() * 1e-6 - alpha;
    num += n * n, den += n * t;
  }
  if (smallest < 0 || den <= 0) return nullptr;
  return {{"scope", scope}, {"alpha_us", alpha * 1e6}, {"beta_GBps", num / den / 1e9}, {"smallest_bytes", smallest}};
}

std::string chart_of(const json& rows, const std::string& scope) {
  std::map<std::string, ChartSeries> series;
  const std::map<std::string, std::string> colours{{"allreduce", "#1f77b4"}, {"allgather", "#d62728"}};
  for (const auto& r : rows) {
    if (r["scope"] != scope) continue;
    const std::string op = r["op"];
    auto& ours = series[op + " vitruvian"];
    auto& raw = series[op + " raw " + library_of(scope)];
    ours.name = op + " vitruvian", ours.colour = colours.at(op);
    raw.name = op + " raw " + library_of(scope), raw.colour = colours.at(op), raw.dashed = true;
    ours.points.emplace_back(r["bytes"].get<double>(), r["busbw_GBps"].get<double>());
    raw.points.emplace_back(r["bytes"].get<double>(), r["raw_busbw_GBps"].get<double>());
  }
  std::vector<ChartSeries> list;
  for (auto& [name, s] : series) list.push_back(std::move(s));
  ChartAxes axes;
  axes.x_label = "message size (bytes)", axes.y_label = "bus bandwidth (GB/s)", axes.log_x = true, axes.log_y = true;
  return svg_line_chart("Bus bandwidth, " + scope, axes, list);
}

void add_verdicts(const json& rows, const std::string& scope, SectionResult& result) {
  for (const std::string op : {"allreduce", "allgather"}) {
    double worst = 1e300;
    std::int64_t at = 0, wrong = 0;
    for (const auto& r : rows) {
      if (r["scope"] != scope || r["op"] != op) continue;
      wrong += r["wrong"].get<std::int64_t>();
      if (r["bytes"].get<std::int64_t>() >= (1 << 20) && r["vs_raw"].get<double>() < worst) worst = r["vs_raw"], at = r["bytes"];
    }
    if (worst < 1e300) {
      result.verdicts.push_back({fmt::format("{} {} bus bandwidth, messages >= 1 MiB", scope, op),
                                 fmt::format("{:.2f}x raw {} at worst ({} B)", worst, library_of(scope), at),
                                 fmt::format(">= {:.1f}x the raw {} call on the same buffers, same run", kTargetRatio, library_of(scope)),
                                 met(worst >= kTargetRatio)});
    }
    result.wrong_results = result.wrong_results || wrong > 0;
    result.verdicts.push_back({fmt::format("{} {} results", scope, op), fmt::format("{} wrong elements", wrong),
                               "0: every result against its closed form", met(wrong == 0)});
  }
}

std::string table_of(const json& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) {
    cells.push_back({r["scope"], r["op"], fmt::format("{}", r["bytes"].get<std::int64_t>()),
                     fmt::format("{:.1f}", r["vitruvian_us"].get<double>()), fmt::format("{:.1f}", r["raw_us"].get<double>()),
                     fmt::format("{:.3f}", r["busbw_GBps"].get<double>()), fmt::format("{:.3f}", r["raw_busbw_GBps"].get<double>()),
                     fmt::format("{:.3f}", r["vs_raw"].get<double>())});
  }
  return html_table({"scope", "op", "bytes", "vitruvian (µs)", "library call (µs)", "busbw (GB/s)", "raw busbw (GB/s)", "vs raw"},
                    cells);
}

/// Rows of `comm`'s backend inside rank 0's node and, with several nodes, across one rank per
/// node; scopes named "intra-node" and "inter-node" plus `suffix`.
json measure_backend(Communicator& comm, const std::string& suffix, bool quick, int nodes, int* local_size) {
  json rows = json::array();
  auto local = comm.split_node_local();
  *local_size = local->size();
  json local_rows = local->size() > 1 ? measure_scope(*local, "intra-node" + suffix, quick) : json::array();
  if (comm.rank() == 0) rows.insert(rows.end(), local_rows.begin(), local_rows.end());
  if (nodes > 1) {
    const bool leader = local->rank() == 0;
    auto leaders = comm.split(leader ? 0 : 1, comm.rank(), "bench_leaders");
    if (leader) {
      json inter = measure_scope(*leaders, "inter-node" + suffix, quick);
      if (comm.rank() == 0) rows.insert(rows.end(), inter.begin(), inter.end());
    }
  }
  comm.barrier();
  return rows;
}

}  // namespace

SectionResult run_collectives(BenchContext& context) {
  SectionResult result;
  result.name = "collectives";
  result.title = "Collectives";
  const bool quick = context.options.quick;
  int local_size = 1, device_local = 1;
  json rows = measure_backend(context.world, "", quick, context.nodes, &local_size);
  // On GPUs also NCCL on the ranks' devices, against ncclAllReduce / ncclAllGather themselves.
  if (context.job.device.is_cuda()) {
    auto device_comm = make_communicator(context.job.env.world(), context.job.device,
                                         CommunicatorOptions().timeout_s(context.job.runtime.collective_timeout_s).name("bench_device"));
    json device_rows = measure_backend(*device_comm, " (NCCL)", quick, context.nodes, &device_local);
    rows.insert(rows.end(), device_rows.begin(), device_rows.end());
  }
  context.world.barrier();
  result.method = fmt::format(
      "Allreduce and allgather of float32 buffers from {} to {} bytes through Vitruvian's communicator and, in the same "
      "iterations on the same buffers, through the library's own call (alternating which goes first): MPI on CPU "
      "tensors{}. Time: the slowest rank's, median over iterations; bus bandwidth as nccl-tests defines it. Inside a "
      "node: the {} ranks of rank 0's node{}.",
      sizes(quick).front(), sizes(quick).back(),
      context.job.device.is_cuda() ? ", and NCCL on the ranks' GPUs (scopes marked NCCL; the host waits for the device)" : "",
      local_size,
      context.nodes > 1 ? fmt::format("; across nodes: one rank on each of the {} nodes", context.nodes) : " (one node: nothing across nodes)");
  result.data["rows"] = rows;
  result.data["fits"] = json::array();
  const std::vector<std::string> scopes{"intra-node", "inter-node", "intra-node (NCCL)", "inter-node (NCCL)"};
  for (const std::string& scope : scopes) {
    const json fit = fit_alpha_beta(rows, scope);
    if (!fit.is_null()) result.data["fits"].push_back(fit);
  }
  if (local_size < 2) {
    result.verdicts.push_back({"collectives inside a node", "one rank on this node", "at least 2 ranks per node", "for information"});
  }
  for (const std::string& scope : scopes) {
    if (std::none_of(rows.begin(), rows.end(), [&](const json& r) { return r["scope"] == scope; })) continue;
    add_verdicts(rows, scope, result);
    result.charts.push_back(chart_of(rows, scope));
  }
  if (!rows.empty()) result.tables.push_back(table_of(rows));
  return result;
}

}  // namespace vitruvian::bench
