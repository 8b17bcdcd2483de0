#!/usr/bin/env bash
# Faults of a campaign's inputs and outputs, on 2 ranks. 200 small studies with 10 damaged among
# them (corrupted chunks of 7 images and 3 label maps): 190 reports, 10 failures each naming its
# study and what is wrong, the ledger agreeing, and a rerun that redoes none of the 190 (their
# files untouched). A file size limit (ulimit -f) hit while writing results: the studies fail
# with a line naming the file, the studies done before stay as they were, and the next run
# without the limit does the rest and leaves no temporary file.
# Usage: campaign_faults.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

# --- 200 studies, 10 damaged ---------------------------------------------------------------
expect_exit 0 phantom.err "$mpirun" -np 2 "$vit" phantom --kind chest-cardiac --studies 200 --shape 16,16,16 --deflate 1 \
  --chunk 8,16,16 --out many.h5 --threads 1
damaged=()
objects=()
for n in 3 17 42 64 99 120 151; do
  id=$(printf 'chest_cardiac_%05d' "$n")
  damaged+=("$id")
  objects+=("studies/$id/series/cta/image")
done
for n in 8 77 190; do
  id=$(printf 'chest_cardiac_%05d' "$n")
  damaged+=("$id")
  objects+=("studies/$id/labels/anatomy")
done
$py "$here/corrupt_chunk.py" many.h5 "${objects[@]}"
printf '%s\n' "${damaged[@]}" | sort > damaged.txt
printf 'input: many.h5\noutput: OUT\nroutes:\n  - {name: reference, labels: anatomy}\n' > campaign.yaml

expect_exit 1 first.err "$mpirun" -np 2 "$vit" --threads 1 infer --campaign campaign.yaml
grep -q "campaign: 190 studies done, 10 failed" first.err || { cat first.err; fail "not 190 done and 10 failed"; }
[[ $(grep -c "^.*study chest_cardiac_[0-9]* failed on rank [01]" first.err) == 10 ]] ||
  { cat first.err; fail "not one line per failed study"; }
$py - <<'PY'
import json, os
damaged = open("damaged.txt").read().split()
s = json.load(open("OUT/campaign.json"))
assert s["done"] == 190, s["done"]
assert sorted(f["study"] for f in s["failed"]) == damaged, s["failed"]
for f in s["failed"]:
    sid, error = f["study"], f["error"]
    assert f"studies/{sid}/" in error and "corrupt" in error and "\n" not in error, (sid, error)
ledger = sorted(n[:-5] for n in os.listdir("OUT/failed"))
assert ledger == damaged, ledger
for sid in damaged:
    record = json.load(open(f"OUT/failed/{sid}.json"))
    assert record["study"] == sid and sid in record["error"], record
    assert not os.path.exists(f"OUT/studies/{sid}"), sid
reports = [d for d in os.listdir("OUT/studies") if os.path.isfile(f"OUT/studies/{d}/report.json")]
assert len(reports) == 190 and not set(reports) & set(damaged), len(reports)
print("200 studies, 10 damaged:", s["failed"][0]["error"][:160])
PY
find OUT/studies -type f -printf '%T@ %p\n' | sort -k2 > first_files.txt
expect_exit 1 rerun.err "$mpirun" -np 2 "$vit" --threads 1 infer --campaign campaign.yaml
grep -q "campaign: 200 studies, 190 already done, 10 to run on 2 ranks" rerun.err || { cat rerun.err; fail "the rerun redid done studies"; }
grep -q "campaign: 190 studies done, 10 failed" rerun.err || { cat rerun.err; fail "the rerun's outcome differs"; }
find OUT/studies -type f -printf '%T@ %p\n' | sort -k2 > rerun_files.txt
cmp -s first_files.txt rerun_files.txt || { diff first_files.txt rerun_files.txt | head; fail "the rerun touched the studies' files"; }
[[ -z $(find . -name '.*.tmp.*') ]] || fail "temporaries left: $(find . -name '.*.tmp.*')"
echo "rerun: none of the 190 redone, the 10 failed again"

# --- A file size limit while writing results -------------------------------------------------
expect_exit 0 bigger.err "$vit" phantom --kind chest-cardiac --studies 6 --shape 24,32,32 --out bigger.h5 --threads 2
printf 'input: bigger.h5\noutput: LIMITED\nroutes:\n  - {name: reference, labels: anatomy}\n' > limited.yaml
expect_exit 0 before.err "$mpirun" -np 2 "$vit" --threads 1 infer --campaign limited.yaml \
  --studies chest_cardiac_00000,chest_cardiac_00001,chest_cardiac_00002
find LIMITED/studies -type f -exec md5sum {} + | sort -k2 > before_files.txt
# Each rank's files limited to 12 KB (set inside the ranks; MPI on TCP: its shared memory is files).
rc=0
"$mpirun" --mca btl self,tcp -np 2 bash "$here/file_limit.sh" 12 "$vit" --threads 1 infer --campaign limited.yaml \
  > limited.log 2>&1 || rc=$?
[[ $rc == 1 ]] || { cat limited.log; fail "a campaign under a file size limit exited $rc, expected 1"; }
grep -q "campaign: 6 studies, 3 already done, 3 to run" limited.log || { cat limited.log; fail "the limited run redid done studies"; }
[[ $(grep -Ec "study chest_cardiac_0000[345] failed on rank [01]: .*(File too large|errno = 27)" limited.log) == 3 ]] ||
  { cat limited.log; fail "not one line naming the file and the limit per study"; }
! grep -Eq "Signal|signal 25|core dumped|MPI_ABORT was invoked" limited.log || { cat limited.log; fail "a crash"; }
find LIMITED/studies -type f -exec md5sum {} + | sort -k2 > after_files.txt
cmp -s before_files.txt after_files.txt || { diff before_files.txt after_files.txt | head; fail "earlier results changed"; }
echo "under a 12 KB limit: $(grep -Em1 'failed on rank' limited.log | cut -c1-240)"
expect_exit 0 unlimited.err "$mpirun" -np 2 "$vit" --threads 1 infer --campaign limited.yaml
grep -q "campaign: 6 studies done, 0 failed" unlimited.err || { cat unlimited.err; fail "the next run did not finish"; }
[[ -z $(find LIMITED -name '.*.tmp.*') ]] || fail "temporaries left: $(find LIMITED -name '.*.tmp.*')"
[[ -z $(ls LIMITED/failed) ]] || fail "failure records left: $(ls LIMITED/failed)"
echo "campaign faults: all checks passed"
