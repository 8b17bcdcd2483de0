#!/usr/bin/env bash
# Faults of datasets, on 2 ranks: a file size limit (ulimit -f) hit while `phantom` and `convert`
# write a dataset gives one line naming the file and a non-zero exit, leaves an earlier dataset
# of that name as it was and no temporary file (the next run, without the limit, succeeds and
# leaves none either); a corrupted chunk inside a training study stops training with the study
# and series named, at set-up or in the middle of the run, or with data.on_bad_study: skip
# leaves that study out with a warning and trains on the others.
# Usage: data_faults.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

# limited RANKS KB COMMAND...: COMMAND on RANKS ranks, each rank's files limited to KB kilobytes.
# The limit is set inside each rank (after mpirun started), and MPI keeps to TCP: its
# shared-memory segments are files too.
limited() {
  local ranks=$1 kb=$2
  shift 2
  "$mpirun" --mca btl self,tcp -np "$ranks" bash "$here/file_limit.sh" "$kb" "$@"
}

# no_temporaries WHAT: no file of the temporary scheme (core/atomic_file.h) anywhere here.
no_temporaries() {
  local left
  left=$(find . -name '.*.tmp.*')
  [[ -z $left ]] || fail "$1: temporaries left behind: $left"
}

# one_error_line FILE NAME: FILE holds one error line (from any rank) that names NAME and says
# why, and nothing a crash would print.
one_error_line() {
  grep -E "$2.*(File too large|errno = 27)" "$1" > /dev/null || { cat "$1"; fail "no error naming $2 and the limit"; }
  ! grep -Eq "Signal|signal 25|core dumped|MPI_ABORT was invoked" "$1" || { cat "$1"; fail "a crash instead of an error"; }
}

# --- A file size limit while writing datasets ----------------------------------------------
expect_exit 0 first.err "$mpirun" -np 2 "$vit" phantom --kind chest-cardiac --studies 4 --shape 24,32,32 --out chest.h5 --threads 1
before=$(md5sum chest.h5)
# Replacing it (--force) under a limit it cannot fit in: one error, the old dataset unchanged.
rc=0
limited 2 40 "$vit" phantom --kind chest-cardiac --studies 4 --shape 24,32,32 --seed 5 --out chest.h5 --force --threads 1 \
  > phantom_limited.log 2>&1 || rc=$?
[[ $rc != 0 ]] || { cat phantom_limited.log; fail "phantom under a file size limit exited 0"; }
one_error_line phantom_limited.log "chest"
[[ $(md5sum chest.h5) == "$before" ]] || fail "phantom under a limit changed the existing chest.h5"
no_temporaries "phantom under a limit"
echo "phantom under a 40 KB limit: exit $rc: $(grep -Em1 'File too large|errno = 27' phantom_limited.log | cut -c1-220)"

# convert (one writer, rank 0: run on 1 rank): NIfTI copies of the studies into a new dataset;
# under the limit nothing is written.
expect_exit 0 export.err "$vit" export chest.h5 --out-dir nifti
rc=0
limited 1 20 "$vit" convert nifti/chest_cardiac_00000/cta.nii.gz --modality CT -o converted.h5 > convert_limited.log 2>&1 || rc=$?
[[ $rc != 0 ]] || { cat convert_limited.log; fail "convert under a file size limit exited 0"; }
one_error_line convert_limited.log "converted"
[[ ! -e converted.h5 ]] || fail "convert under a limit left converted.h5"
no_temporaries "convert under a limit"
echo "convert under a 20 KB limit: exit $rc: $(grep -Em1 'File too large|errno = 27' convert_limited.log | cut -c1-220)"
# The next runs, without the limit, write both and leave nothing else.
expect_exit 0 again.err "$mpirun" -np 2 "$vit" phantom --kind chest-cardiac --studies 4 --shape 24,32,32 --seed 5 --out chest.h5 --force --threads 1
[[ $(md5sum chest.h5) != "$before" ]] || fail "the rerun did not replace chest.h5"
expect_exit 0 convert.err "$vit" convert nifti/chest_cardiac_00000/cta.nii.gz --modality CT -o converted.h5
"$vit" inspect converted.h5 --no-volumes | grep -q "1 studies" || fail "converted.h5 is not a dataset of 1 study"
no_temporaries "the reruns"

# --- A corrupted chunk in a training dataset ------------------------------------------------
# Compressed chunks carry zlib's checksum (adler32), so a damaged one cannot pass for data.
expect_exit 0 train_set.err "$vit" phantom --kind chest-cardiac --studies 5 --shape 24,32,32 --deflate 1 --chunk 8,16,16 \
  --out train.h5 --threads 2
$py "$here/corrupt_chunk.py" train.h5 studies/chest_cardiac_00001/series/cta/image
bad="chest_cardiac_00001/series/cta/image"

# train_run NAME NORMALIZATION ON_BAD_STUDY EXIT: 3 steps on 2 ranks (the last study held out).
train_run() {
  local name=$1 normalization=$2 on_bad=$3 want=$4 rc=0
  cat > "$name.yaml" <<YAML
data:
  dataset: train.h5
  channels: [cta]
  normalization: [$normalization]
  classes: [lung_left, lung_right]
  validation_studies: 1
  patch: [16, 16, 16]
  batch_size: 2
  workers: 1
  on_bad_study: $on_bad
model: {stages: 2, base_features: 4}
optimizer: {name: adamw, lr: 0.01}
train: {steps: 3, validate_every: 0, checkpoint_every: 3, run_dir: $name}
YAML
  timeout 120 "$mpirun" -np 2 "$vit" --config "$name.yaml" --threads 1 train > "$name.log" 2>&1 || rc=$?
  if [[ $want == nonzero ]]; then
    [[ $rc != 0 ]] || { cat "$name.log"; fail "$name: exited 0"; }
  else
    [[ $rc == "$want" ]] || { cat "$name.log"; fail "$name: exited $rc, expected $want"; }
  fi
}
# CT channels: every study is read whole at set-up for the CT statistics; the damage is found
# there, one line, exit 2.
train_run ct_stop ct stop 2
grep -E "$bad.*corrupt" ct_stop.log > /dev/null || { cat ct_stop.log; fail "ct_stop: the study and series are not named"; }
[[ ! -e ct_stop/model ]] || fail "ct_stop: a model was written"
echo "corrupt chunk, CT statistics: $(grep -Em1 "$bad" ct_stop.log | cut -c1-220)"
# z-score channels: the study is first read by a loader thread during the run; the rank that
# holds it ends the job naming it.
train_run zscore_stop zscore stop nonzero
grep -E "training failed on rank [01] .*$bad.*corrupt" zscore_stop.log > /dev/null ||
  { cat zscore_stop.log; fail "zscore_stop: the study and series are not named"; }
[[ ! -e zscore_stop/model ]] || fail "zscore_stop: a model was written"
echo "corrupt chunk, during the run: $(grep -Em1 "training failed" zscore_stop.log | cut -c1-220)"
# on_bad_study: skip: one warning naming the study, and the run finishes on the others.
for mode in ct zscore; do
  train_run "${mode}_skip" "$mode" skip 0
  [[ $(grep -c "study 'chest_cardiac_00001' left out of training" "${mode}_skip.log") == 1 ]] ||
    { cat "${mode}_skip.log"; fail "${mode}_skip: not one warning naming the study"; }
  grep -E "left out.*$bad.*corrupt" "${mode}_skip.log" > /dev/null || { cat "${mode}_skip.log"; fail "${mode}_skip: no reason"; }
  [[ -f ${mode}_skip/model/model.json ]] || fail "${mode}_skip: no model written"
done
# A value other than stop or skip is refused with the choices.
train_run bad_value ct sometimes 2
grep -q "data.on_bad_study: 'sometimes'; expected stop or skip" bad_value.log || { cat bad_value.log; fail "bad on_bad_study value"; }
echo "data faults: all checks passed"
