// `vitruvian bench`: the one-command benchmark of the machine it runs on (under mpirun or srun),
// written as OUT/bench.json and OUT/bench.html; see launch/bench/bench.h for the sections.
#pragma once

#include <memory>

#include "launch/jobs/verb.h"

namespace vitruvian::jobs {

std::unique_ptr<Verb> make_bench_verb();

}  // namespace vitruvian::jobs
