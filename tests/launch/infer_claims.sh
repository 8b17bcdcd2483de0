#!/usr/bin/env bash
# Several campaign jobs (separate mpiruns) on one output folder: three at once do 12 studies, each
# exactly once; then a job killed mid-study and a job frozen mid-study (its heartbeat stopped) leave
# claims that later jobs take over (process gone; no heartbeat for the timeout), and every study
# ends done once with nothing half written left.
# Usage: infer_claims.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

# Every process of job NAME: mpirun and its ranks (Open MPI puts each rank in a process group of
# its own), found by the job's campaign file name on their command lines.
job_pids() { pgrep -f -- "infer --campaign job_$1.yaml" || true; }
kill_job() {
  local pids
  pids=$(job_pids "$1")
  [[ -z $pids ]] || kill -9 $pids 2>/dev/null || true
  [[ -z ${pid_of[$1]:-} ]] || { wait "${pid_of[$1]}"; } 2>/dev/null || true
}
declare -A pid_of
cleanup() { for j in a b c k f a2 b2; do kill_job $j; done; }
trap cleanup EXIT

expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 12 --shape 24,32,32 --out chest.h5 --threads 2
train_small_model "$vit" cta "[lung_left, lung_right, $heart_class]" "[24, 32, 32]" 2 0.01 4

# start NAME OUT RANKS [ENV...]: job NAME in the background (its own campaign file, same keys).
start() {
  local name=$1 out=$2 ranks=$3
  shift 3
  printf 'input: chest.h5\noutput: %s\nmirror_axes: zyx\nroutes:\n  - {name: organs, model: run/model}\n' "$out" \
    > "job_$name.yaml"
  env "$@" "$mpirun" -np "$ranks" "$vit" --threads 1 --log-level debug --set runtime.log_all_ranks=true \
    infer --campaign "job_$name.yaml" --set claim_timeout_s=2 > "$name.log" 2>&1 &
  pid_of[$name]=$!
}
# finished NAME...: each job exited 0.
finished() {
  for name in "$@"; do
    local rc=0
    wait "${pid_of[$name]}" || rc=$?
    [[ $rc == 0 ]] || { cat "$name.log"; fail "job $name exited $rc"; }
  done
}
# done_once OUT LOG...: every study of the folder done exactly once over the jobs' logs, nothing
# half written or claimed left, and the summary of all 12.
done_once() {
  local out=$1
  shift
  $py - "$out" "$@" <<'PY'
import collections, json, os, re, sys
out, logs = sys.argv[1], sys.argv[2:]
by = collections.defaultdict(list)
for log in logs:
    for sid in re.findall(r"study (\S+) done on rank", open(log).read()):
        by[sid].append(log)
twice = {s: l for s, l in by.items() if len(l) > 1}
assert not twice, f"studies done more than once: {twice}"
studies = sorted(os.listdir(f"{out}/studies"))
assert len(studies) == 12 and all(not s.startswith(".") for s in studies), f"studies folder: {studies}"
assert sorted(by) == studies, f"done in the logs {sorted(by)} but in the folder {studies}"
assert all(os.path.exists(f"{out}/studies/{s}/manifest.json") for s in studies)
assert os.listdir(f"{out}/failed") == [], os.listdir(f"{out}/failed")
left = [n for n in os.listdir(f"{out}/.claims") if not n.startswith(".")]
assert left == [], f"claims left: {left}"
s = json.load(open(f"{out}/campaign.json"))
assert s["done"] == 12 and s["failed"] == [] and s["in_progress_elsewhere"] == [], s
print(f"{out}: 12 studies, each done once:", {l: sum(1 for x in by.values() if x == [l]) for l in logs})
PY
}

# 1. Three jobs at once (2, 1 and 2 ranks) on one folder.
SECONDS=0
start a out1 2
start b out1 1
start c out1 2
finished a b c
done_once out1 a.log b.log c.log
echo "three concurrent jobs: ${SECONDS} s"
# --force while another job holds a claim in the folder (a live claim of another node) is refused.
printf '{"job": "slurm array 9_1", "rank": 0, "host": "another-node", "pid": 1, "timeout_s": 300}\n' \
  > out1/.claims/chest_cardiac_00003.claim
expect_exit 2 force.err "$vit" --threads 1 infer --campaign job_a.yaml --force
grep -q "another job is working in out1" force.err || { cat force.err; fail "--force beside a live claim was not refused"; }
rm out1/.claims/chest_cardiac_00003.claim

# 2. Job k stops while writing its first study's outputs (labels.h5 written, the rest not), and
# every process of it is killed: its claim and half-written folder stay.
SECONDS=0
start k out2 1 VITRUVIAN_FAULT=campaign.sink@0#2:stop
for _ in $(seq 1 1200); do
  half=$(ls -a out2/studies 2>/dev/null | grep -E '^\..*\.tmp\.' || true)
  [[ -n $half && -n "$(ls out2/.claims/*.claim 2>/dev/null)" ]] && break
  sleep 0.05
done
[[ -n $half ]] || { cat k.log; fail "job k did not stop mid-study"; }
study=${half#.}
study=${study%%.tmp.*}
sleep 0.3  # SIGSTOP reached
kill_job k
sleep 0.2
[[ -z $(job_pids k) ]] || fail "job k has processes left: $(job_pids k)"
# Job f takes over k's claim at once (same host, process gone), then freezes in the same place:
# alive, but its heartbeat stops.
start f out2 1 VITRUVIAN_FAULT=campaign.sink@0#2:stop
for _ in $(seq 1 1200); do
  grep -q "study $study: taking over the claim of .*(its process is gone)" f.log && ls -a out2/studies | grep -q "^\.$study\.tmp\." &&
    ! ls -a out2/studies | grep -q "^$half\$" && break
  sleep 0.05
done
grep -q "study $study: taking over the claim of .*(its process is gone)" f.log || { cat f.log; fail "job f did not take over k's claim"; }
sleep 2.5  # past the 2 s claim timeout since f's last heartbeat
# Two more jobs at once: exactly one takes over f's claim (no heartbeat), and they do the rest.
start a2 out2 1
start b2 out2 2
finished a2 b2
takeovers=$(cat a2.log b2.log | grep -c "study $study: taking over the claim of .*(no heartbeat for" || true)
[[ $takeovers == 1 ]] || { cat a2.log b2.log; fail "f's stale claim was taken over $takeovers times"; }
kill_job f
done_once out2 k.log f.log a2.log b2.log
echo "killed and frozen jobs taken over: ${SECONDS} s"
echo "infer claims: all checks passed"
