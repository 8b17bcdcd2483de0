#!/usr/bin/env bash
# A campaign stopped by SIGTERM on every rank (as Slurm sends it), on 2 ranks: each rank finishes
# the study in flight and takes no other, the summary is written, mpirun exits 3 and no partial
# study folder is left; the rerun does the rest and none of the finished studies again. Rank 0
# (which hands out the studies) is held at its second study by
# VITRUVIAN_FAULT=campaign.study@0#2:stop (SIGSTOP), so the signal arrives with studies left;
# every process of the job is gone afterwards on every path.
# Usage: infer_signals.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"
prepare_workdir "$work"
vit_exe=$(readlink -f "$vit")

# rank_pids: the process ids of this folder's vitruvian ranks.
rank_pids() {
  local pid
  for pid in $(pgrep -f -- "$vit_exe" || true); do
    [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$vit_exe" && $(readlink -f "/proc/$pid/cwd" 2>/dev/null) == "$PWD" ]] &&
      echo "$pid"
  done
  return 0
}
launcher=""
cleanup() {
  [[ -n $launcher ]] && kill -9 "$launcher" 2>/dev/null || true
  for pid in $(rank_pids); do kill -CONT "$pid" 2>/dev/null; kill -9 "$pid" 2>/dev/null; done
  return 0
}
trap cleanup EXIT

expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 8 --shape 24,32,32 --out set.h5 --threads 1
printf 'input: set.h5\noutput: OUT\nroutes:\n  - {name: reference, labels: anatomy}\n' > campaign.yaml

VITRUVIAN_FAULT="campaign.study@0#2:stop" "$mpirun" -np 2 "$vit" infer --campaign campaign.yaml > stopped.log 2>&1 &
launcher=$!
deadline=$((SECONDS + 60))
until [[ $(for pid in $(rank_pids); do awk '{print $3}' "/proc/$pid/stat"; done | grep -c T) == 1 ]]; do
  ((SECONDS < deadline)) || { cat stopped.log; fail "rank 0 did not reach its second study"; }
  sleep 0.05
done
for pid in $(rank_pids); do kill -TERM "$pid"; done
for pid in $(rank_pids); do kill -CONT "$pid"; done
rc=0
wait "$launcher" || rc=$?
launcher=""
[[ $rc == 3 ]] || { cat stopped.log; fail "the stopped campaign exited $rc, expected 3"; }
[[ -z $(rank_pids) ]] || fail "ranks left running"
# Rank 0 finishes its second study; rank 1 its study in flight (one it had asked for while rank 0 was held).
done=$(sed -n 's/.*campaign: stopped by SIGTERM; \([0-9]\) of 8 studies done; run the same command again to do the other [0-9]$/\1/p' stopped.log)
[[ -n $done ]] && ((done >= 2 && done <= 7)) || { cat stopped.log; fail "no stop line, or not 2 to 7 studies done"; }
[[ $(ls OUT/studies | wc -l) == "$done" ]] || fail "expected the $done finished study folders, got: $(ls -A OUT/studies)"
[[ -z $(find OUT -name '.*tmp*') ]] || fail "temporaries left: $(find OUT -name '.*tmp*')"
$py - <<'PY'
import json
c = json.load(open("OUT/campaign.json"))
assert c["stopped_by"] == "SIGTERM", c.get("stopped_by")
left = [f for f in c["failed"] if f["error"].startswith("not started: the campaign was stopped by SIGTERM")]
assert len(left) == 8 - c["done"], c
PY
for d in OUT/studies/*; do stat -c '%n %i %Y' "$d/report.json"; done > finished.txt

expect_exit 0 rerun.err "$mpirun" -np 2 "$vit" infer --campaign campaign.yaml
grep -q "campaign: 8 studies, $done already done, $((8 - done)) to run" rerun.err || { cat rerun.err; fail "the rerun did not skip the finished studies"; }
grep -q "campaign: 8 studies done, 0 failed" rerun.err || { cat rerun.err; fail "the rerun did not finish"; }
while read -r name inode mtime; do
  [[ $(stat -c '%n %i %Y' "$name") == "$name $inode $mtime" ]] || fail "$name was written again"
done < finished.txt
$py -c "import json; c = json.load(open('OUT/campaign.json')); assert c['stopped_by'] is None and c['done'] == 8, c"
echo "infer signals: all checks passed"
