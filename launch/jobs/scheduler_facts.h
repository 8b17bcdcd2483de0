// What the cluster scheduler (Slurm) told each rank: job, step, task ids, CPU binding and GPUs,
// read from the SLURM_* environment and the process's CPU affinity. The info job prints them
// beside the MPI ranks and checks that a step started by srun agrees with MPI: the same number
// of tasks as ranks, and task id = rank (a launch without PMI gives each task a world of one).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace vitruvian::jobs {

/// This rank's scheduler facts; null when not inside a Slurm job.
nlohmann::ordered_json scheduler_facts();

/// The CPUs this process may run on, as a list with ranges ("0-3,8").
std::string cpu_affinity_list();

/// Empty when the ranks' facts (each holding "rank" and "scheduler") agree with the scheduler's
/// step, else one line saying what differs and what to do.
std::string scheduler_disagreement(const nlohmann::ordered_json& ranks);

/// The scheduler section of `vitruvian info` (nothing outside Slurm).
void print_scheduler(const nlohmann::ordered_json& ranks);

}  // namespace vitruvian::jobs
