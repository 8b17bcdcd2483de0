#!/usr/bin/env bash
# launch/slurm/vitruvian.sbatch under a real Slurm (a one-node cluster on loopback, started
# here and stopped on every path), with 2 tasks, through both launchers:
#  - info: the ranks as Slurm assigned them (srun: task id = MPI rank, each task bound to its
#    own core; mpirun: ranks inside the batch step), and the allreduce check;
#  - a short train: the same losses through srun and through mpirun, and the model written;
#  - a campaign infer with that model: every study reported;
#  - a job array of 3 one-rank tasks on one campaign folder: each study done by one task;
#  - bench --quick (collectives and storage) through srun.
# And srun without PMIx (VITRUVIAN_SRUN_MPI=none) fails at once: OpenMPI will not start tasks it
# cannot wire into one job.
# Usage: slurm_jobs.sh VITRUVIAN WORKDIR
set -euo pipefail
vit=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
work=$2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
source "$here/../cli_helpers.sh"
source "$here/slurm_cluster.sh"
slurm_test_setup "$work"
slurm_train_config 4 6 3

# submit NAME ARGS...: the template with 2 tasks on this node, VITRUVIAN_* from the caller's
# environment; waits for the job and checks that it completed. Output in NAME.out.
submit() {
  local name=$1 id state
  shift
  id=$(VITRUVIAN="$vit" VITRUVIAN_MPIRUN="$root/launch/mpirun.sh" \
    sbatch --parsable --job-name="$name" --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 \
      --time=10 --output="$work/$name.out" "$root/launch/slurm/vitruvian.sbatch" "$@")
  state=$(slurm_wait_job "$id" 240) || true
  echo "$id $state"
  [[ $state == "${expect_state:-COMPLETED}" ]] || { cat "$work/$name.out"; fail "job $name ($id) ended $state, expected ${expect_state:-COMPLETED}"; }
}

for launcher in srun mpirun; do
  export LAUNCHER=$launcher
  submit "info_$launcher" --threads 1 info --output "info_$launcher.json"
  submit "train_$launcher" --config train.yaml --threads 1 train --run-dir "run_$launcher"
  printf 'input: chest.h5\noutput: campaign_%s\noutputs: [nifti]\nroutes:\n  - {name: organs, model: run_%s/model}\n' \
    "$launcher" "$launcher" > "campaign_$launcher.yaml"
  submit "infer_$launcher" --threads 1 infer --campaign "campaign_$launcher.yaml"
done
unset LAUNCHER

# A job array on one output folder: 3 array tasks of 1 rank each (2 run at once on 2 cores, the
# third when a core frees), the same campaign; the claims share out the studies.
expect_exit 0 more.err "$vit" phantom --kind chest-cardiac --studies 8 --shape 24,32,32 --out more.h5 --threads 2 --seed 100
printf 'input: more.h5\noutput: campaign_array\noutputs: [nifti]\nroutes:\n  - {name: organs, model: run_srun/model}\n' > campaign_array.yaml
array=$(LAUNCHER=srun VITRUVIAN="$vit" sbatch --parsable --job-name=array --array=0-2 --ntasks=1 --ntasks-per-node=1 --cpus-per-task=1 \
  --gpus-per-node=0 --time=10 --output="$work/array_%a.out" "$root/launch/slurm/vitruvian.sbatch" \
  --threads 1 --log-level debug --set runtime.log_all_ranks=true infer --campaign campaign_array.yaml)
for task in 0 1 2; do
  state=$(slurm_wait_job "${array}_$task" 240) || true
  [[ $state == COMPLETED ]] || { cat "array_$task.out"; fail "array task $task ended $state"; }
done

# bench through srun: the collectives and the storage on the allocation's two tasks.
LAUNCHER=srun submit bench_srun --threads 1 bench --quick --out bench_srun --sections collectives,storage

# srun without a PMI (the cluster's MpiDefault=none): Debian's OpenMPI refuses to start tasks it
# cannot wire into one job, so the job fails at once instead of running as worlds of one rank.
expect_state=FAILED VITRUVIAN_SRUN_MPI=none LAUNCHER=srun submit info_no_pmi --threads 1 info
grep -q "PMI support" info_no_pmi.out || { cat info_no_pmi.out; fail "srun without PMIx: OpenMPI's reason missing"; }

$py - <<'PY'
import json, os

# info: Slurm's view beside MPI's.
for launcher in ("srun", "mpirun"):
    ranks = json.load(open(f"info_{launcher}.json"))["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1], ranks
    assert all(r["scheduler"]["scheduler"] == "slurm" for r in ranks), ranks
    assert len({r["scheduler"]["job"] for r in ranks}) == 1
    if launcher == "srun":
        assert [r["scheduler"]["task"] for r in ranks] == [0, 1], ranks
        assert [r["scheduler"]["local_task"] for r in ranks] == [r["local_rank"] for r in ranks], ranks
        assert all(r["scheduler"]["step"] != "batch" for r in ranks), ranks
        cpus = [r["scheduler"]["cpus"] for r in ranks]
        assert len(set(cpus)) == 2 and all("," not in c and "-" not in c for c in cpus), f"not one core each: {cpus}"
    else:
        assert all(r["scheduler"]["step"] == "batch" for r in ranks), ranks
    text = open(f"info_{launcher}.out").read()
    assert "scheduler: Slurm job" in text and "check: allreduce over 2 ranks on cpu (mpi): ok" in text, text

# train: six steps, the same losses through both launchers, a model and the last checkpoint.
def losses(run):
    out = {}
    for line in open(f"{run}/metrics.jsonl"):
        j = json.loads(line)
        if "loss" in j:
            out[j["step"]] = j["loss"]
    return out
a, b = losses("run_srun"), losses("run_mpirun")
assert sorted(a) == list(range(1, 7)), a
assert a == b, f"srun and mpirun runs differ: {a} vs {b}"
for run in ("run_srun", "run_mpirun"):
    assert os.path.isfile(f"{run}/model/model.json"), os.listdir(run)

# infer: every study of the dataset reported, by both launchers.
for launcher in ("srun", "mpirun"):
    summary = json.load(open(f"campaign_{launcher}/campaign.json"))
    done = sorted(os.listdir(f"campaign_{launcher}/studies"))
    assert len(done) == 4 and all(os.path.isfile(f"campaign_{launcher}/studies/{s}/report.json") for s in done), done
# The array: every study done by exactly one task, the folder's summary complete.
import re
done_by = {}
for task in range(3):
    for study in re.findall(r"study (\S+) done on rank 0", open(f"array_{task}.out").read()):
        assert study not in done_by, f"{study} done by array tasks {done_by[study]} and {task}"
        done_by[study] = task
studies = sorted(os.listdir("campaign_array/studies"))
assert len(studies) == 8 and sorted(done_by) == studies, (done_by, studies)
# (How the studies split depends on which task started first: small studies may all go to one.)
assert json.load(open("campaign_array/campaign.json"))["done"] == 8
assert not os.listdir("campaign_array/.claims") or os.listdir("campaign_array/.claims") == ["summary.lock"] or \
    all(n.startswith(".") or n == "summary.lock" for n in os.listdir("campaign_array/.claims")), os.listdir("campaign_array/.claims")

# bench: two tasks, correct collectives, the storage read by both.
bench = json.load(open("bench_srun/bench.json"))
assert bench["machine"]["ranks"] == 2 and list(bench["sections"]) == ["collectives", "storage"], bench["machine"]
assert all(r["wrong"] == 0 and r["ranks"] == 2 for r in bench["sections"]["collectives"]["figures"]["rows"])
assert bench["sections"]["storage"]["figures"]["ranks"] == 2
print("info, train and infer ran under Slurm through srun and mpirun; losses", a[1], "->", a[6],
      "; array tasks did", [list(done_by.values()).count(t) for t in range(3)], "studies")
PY
