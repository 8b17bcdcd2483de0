#include "launch/jobs/scheduler_facts.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace vitruvian::jobs {
namespace {

using json = nlohmann::ordered_json;

std::string env_or(const char* name, const std::string& fallback = "") {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

json env_int(const char* name) {
  const std::string text = env_or(name);
  if (text.empty()) return nullptr;
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  return end != nullptr && *end == '\0' ? json(value) : json(text);
}

}  // namespace

std::string cpu_affinity_list() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return "unknown";
  std::vector<std::string> parts;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    int last = cpu;
    while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &set)) ++last;
    parts.push_back(last == cpu ? std::to_string(cpu) : fmt::format("{}-{}", cpu, last));
    cpu = last;
  }
  return fmt::format("{}", fmt::join(parts, ","));
}

json scheduler_facts() {
  const std::string job = env_or("SLURM_JOB_ID");
  if (job.empty()) return nullptr;
  const std::string array_job = env_or("SLURM_ARRAY_JOB_ID");
  const std::string step = env_or("SLURM_STEP_ID");  // set for srun's tasks, not for the batch script
  return json{{"scheduler", "slurm"},
              {"job", job},
              {"array_task", array_job.empty() ? json(nullptr) : json(array_job + "_" + env_or("SLURM_ARRAY_TASK_ID"))},
              {"step", step.empty() ? json("batch") : json(step)},
              {"step_tasks", step.empty() ? json(nullptr) : env_int("SLURM_STEP_NUM_TASKS")},
              {"task", step.empty() ? json(nullptr) : env_int("SLURM_PROCID")},
              {"local_task", step.empty() ? json(nullptr) : env_int("SLURM_LOCALID")},
              {"node", env_or("SLURMD_NODENAME", env_or("SLURM_TOPOLOGY_ADDR"))},
              {"cpus", cpu_affinity_list()},
              {"gpus", env_or("SLURM_STEP_GPUS", env_or("SLURM_JOB_GPUS", env_or("CUDA_VISIBLE_DEVICES", "none")))}};
}

std::string scheduler_disagreement(const json& ranks) {
  for (const auto& r : ranks) {
    const json& s = r["scheduler"];
    if (s.is_null() || s["step"] == "batch") continue;  // mpirun inside an allocation: no task ids to compare
    if (s["step_tasks"].is_number() && s["step_tasks"].get<long>() != static_cast<long>(ranks.size())) {
      return fmt::format(
          "Slurm step {}.{} started {} tasks but MPI sees {} rank(s): srun did not wire the tasks into one MPI "
          "job (launch with srun --mpi=pmix, the PMI that OpenMPI and Slurm share; `srun --mpi=list`)",
          s["job"].get<std::string>(), s["step"].get<std::string>(), s["step_tasks"].get<long>(), ranks.size());
    }
    if (s["task"].is_number() && s["task"].get<long>() != r["rank"].get<long>()) {
      return fmt::format("Slurm task {} on {} is MPI rank {}: srun's task ids and MPI's ranks disagree",
                         s["task"].get<long>(), s["node"].get<std::string>(), r["rank"].get<long>());
    }
  }
  return "";
}

void print_scheduler(const json& ranks) {
  if (ranks.empty() || ranks[0]["scheduler"].is_null()) return;
  const json& first = ranks[0]["scheduler"];
  const std::string array =
      first["array_task"].is_null() ? "" : " (array task " + first["array_task"].get<std::string>() + ")";
  const std::string how = first["step"] == "batch"
                              ? "ranks started inside the batch step (mpirun)"
                              : "step " + first["step"].get<std::string>() + ", ranks started by srun";
  std::printf("\nscheduler: Slurm job %s%s, %s\n", first["job"].get<std::string>().c_str(), array.c_str(), how.c_str());
  std::printf("%-5s %-6s %-6s %-24s %-10s %s\n", "rank", "task", "local", "node", "cpus", "gpus");
  for (const auto& r : ranks) {
    const json& s = r["scheduler"];
    if (s.is_null()) continue;
    auto text = [](const json& v) {
      return v.is_null() ? std::string("-") : v.is_string() ? v.get<std::string>() : v.dump();
    };
    std::printf("%-5d %-6s %-6s %-24s %-10s %s\n", r["rank"].get<int>(), text(s["task"]).c_str(),
                text(s["local_task"]).c_str(), s["node"].get<std::string>().c_str(),
                s["cpus"].get<std::string>().c_str(), s["gpus"].get<std::string>().c_str());
  }
}

}  // namespace vitruvian::jobs
