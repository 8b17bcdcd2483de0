#!/usr/bin/env bash
# `vitruvian infer` as a user runs it, on phantoms and a small trained model: 1, 2 and 3 ranks
# give identical label maps and reports; report figures match the phantom truth and an
# independent computation (volumes, nodules, Agatston per artery, Dice); a killed campaign
# resumes, redoing only what is missing or spoilt; a corrupt study (a truncated NIfTI file, a
# damaged HDF5 chunk) is recorded as failed while the others finish; bad options get one line.
# Usage: infer_cli.sh VITRUVIAN MPIRUN WORKDIR WRITE_TEST_DICOM
set -euo pipefail
vit=$1
mpirun=$2
work=$3
dicom_writer=$4
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

# Data and a small model (lungs, heart, nodules) trained for a few steps.
expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 6 --shape 40,48,48 --out chest.h5 --threads 2
expect_exit 0 fine.err "$vit" phantom --kind chest-cardiac --studies 2 --shape 160,256,256 --seed 3 --out fine.h5 --threads 2
train_small_model "$vit" cta "[lung_left, lung_right, $heart_class, lung_nodule]" "[24, 32, 32]" 3 0.01 6

cat > campaign.yaml <<'YAML'
input: chest.h5
output: out1
routes:
  - name: organs
    model: run/model
    largest_component: [lung_left, lung_right, heart]
    fill_holes: [heart]
    lesions: [lung_nodule]
  - name: reference
    labels: anatomy
    lesions: [lung_nodule]
calcium:
  series: ct
  arteries: [coronary_lad, coronary_lcx, coronary_rca]
YAML

# 1, 2 and 3 ranks: the same outputs.
expect_exit 0 np1.err "$vit" --threads 1 infer --campaign campaign.yaml
grep -q "campaign: 6 studies done, 0 failed" np1.err || { cat np1.err; fail "1 rank did not finish 6 studies"; }
expect_exit 0 np2.err "$mpirun" -np 2 "$vit" infer --campaign campaign.yaml --out out2
expect_exit 0 np3.err "$mpirun" -np 3 "$vit" infer --campaign campaign.yaml --out out3
[[ -f out1/index.html && -f out1/campaign.json && -f out1/campaign.yaml ]] || fail "campaign summary missing: $(ls out1)"
$py - <<'PY'
import json, os
import h5py, numpy as np

def outputs(out):
    studies = {}
    for sid in sorted(os.listdir(f"{out}/studies")):
        report = json.load(open(f"{out}/studies/{sid}/report.json"))
        ranks = report.pop("timing")["rank"]
        with h5py.File(f"{out}/studies/{sid}/labels.h5", "r") as f:
            maps = {n: f[f"studies/{sid}/labels/{n}"][()] for n in f[f"studies/{sid}/labels"]}
        studies[sid] = (report, maps, ranks)
    return studies

one = outputs("out1")
assert len(one) == 6, sorted(one)
for out in ("out2", "out3"):
    other = outputs(out)
    assert sorted(other) == sorted(one), (out, sorted(other))
    for sid, (report, maps, _) in one.items():
        assert other[sid][0] == report, f"{out}/{sid}: report differs from the 1-rank run"
        assert sorted(other[sid][1]) == sorted(maps) == ["organs", "reference"], sorted(maps)
        for name in maps:
            assert np.array_equal(other[sid][1][name], maps[name]), f"{out}/{sid}: label map {name} differs"
    ranks = {r for _, _, r in other.values()}
    assert len(ranks) >= 2, f"{out}: every study ran on rank {ranks}"
# Model routes' maps are written in the ids of the file's own label table, which names the model's classes.
with h5py.File("out1/studies/chest_cardiac_00000/labels.h5", "r") as f:
    table = dict(zip([n.decode() if isinstance(n, bytes) else n for n in f.attrs["label_names"]], f.attrs["label_ids"]))
    organs = f["studies/chest_cardiac_00000/labels/organs"][()]
allowed = {0} | {int(table[n]) for n in ("lung_left", "lung_right", "heart", "lung_nodule")}
assert set(np.unique(organs).tolist()) <= allowed, (np.unique(organs), table)
assert "heart" in table and table["lung_left"] == 2, table  # the dataset's own ids are kept
summary = json.load(open("out3/campaign.json"))
assert summary["done"] == 6 and summary["failed"] == [] and summary["ranks"] == 3, summary
html = open("out1/index.html").read()
for sid in one:
    assert f"studies/{sid}/thumbnail.png" in html and os.path.getsize(f"out1/studies/{sid}/thumbnail.png") > 1000
print("1, 2 and 3 ranks: identical label maps and reports")
PY

# Report figures against the phantom truth and independent computation, at 1.6 mm (the model's
# route resamples to its training spacing and back).
sed -e 's/^input: chest.h5/input: fine.h5/' -e 's/^output: out1/output: truth/' campaign.yaml > truth.yaml
expect_exit 0 truth.err "$mpirun" -np 2 "$vit" infer --campaign truth.yaml
$py "$here/check_campaign_truth.py" fine.h5 truth reference organs
grep -q '"resampled_to_mm"' truth/studies/chest_cardiac_00000/report.json || fail "no resampling recorded"

# Spoilt and partial outputs are redone, verified ones skipped.
echo "junk" >> out1/studies/chest_cardiac_00002/report.json
mkdir -p out1/studies/.chest_cardiac_00003.tmp.999.0 && touch out1/studies/.chest_cardiac_00003.tmp.999.0/labels.h5
cp out2/studies/chest_cardiac_00002/report.json expected_00002.json
expect_exit 0 redo.err "$vit" --threads 1 infer --campaign campaign.yaml
grep -q "6 studies, 5 already done, 1 to run" redo.err || { cat redo.err; fail "the spoilt study was not the only one redone"; }
[[ ! -e out1/studies/.chest_cardiac_00003.tmp.999.0 ]] || fail "a killed run's temporary folder was left"

# --force with --studies redoes only those; the other studies' results stay.
before=$(stat -c %Y out1/studies/chest_cardiac_00004/manifest.json)
expect_exit 0 force1.err "$vit" --threads 1 infer --campaign campaign.yaml --studies chest_cardiac_00001 --force
grep -q "1 studies, 0 already done, 1 to run" force1.err || { cat force1.err; fail "--force --studies did not redo just one study"; }
[[ $(ls out1/studies | wc -l) == 6 && $(stat -c %Y out1/studies/chest_cardiac_00004/manifest.json) == "$before" ]] ||
  fail "--force --studies touched other studies"

# Kill and resume: a campaign killed after its first study loses only the study in flight.
expect_exit 0 slow_ref.err "$mpirun" -np 2 "$vit" infer --campaign campaign.yaml --out slow_ref --mirror zyx
"$vit" --threads 1 infer --campaign campaign.yaml --out slow --mirror zyx > killed.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [[ -n "$(ls slow/studies/*/manifest.json 2>/dev/null)" ]] && break
  sleep 0.05
done
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
done_before=$(ls slow/studies/*/manifest.json 2>/dev/null | wc -l)
((done_before >= 1 && done_before < 6)) || { cat killed.log; fail "the kill came at the wrong time: $done_before studies done"; }
expect_exit 0 resume.err "$mpirun" -np 2 "$vit" infer --campaign campaign.yaml --out slow --mirror zyx
grep -q "6 studies, $done_before already done, $((6 - done_before)) to run" resume.err || { cat resume.err; fail "resume did not skip the finished studies"; }
$py - <<'PY'
import json, os
import h5py, numpy as np
for sid in sorted(os.listdir("slow_ref/studies")):
    a, b = (json.load(open(f"{o}/studies/{sid}/report.json")) for o in ("slow", "slow_ref"))
    a.pop("timing"), b.pop("timing")
    assert a == b, f"{sid}: the resumed campaign's report differs"
    with h5py.File(f"slow/studies/{sid}/labels.h5") as f, h5py.File(f"slow_ref/studies/{sid}/labels.h5") as g:
        assert np.array_equal(f[f"studies/{sid}/labels/organs"][()], g[f"studies/{sid}/labels/organs"][()])
print("killed and resumed: the same outputs as an uninterrupted run")
PY

# A corrupt study is isolated: a truncated NIfTI file among good ones, then a damaged HDF5 chunk.
expect_exit 0 export.err "$vit" export chest.h5 --out-dir nifti_src
mkdir -p nifti_in
cp nifti_src/chest_cardiac_00000/cta.nii.gz nifti_in/case_a.nii.gz
cp nifti_src/chest_cardiac_00001/cta.nii.gz nifti_in/case_b.nii.gz
head -c 3000 nifti_src/chest_cardiac_00002/cta.nii.gz > nifti_in/case_bad.nii.gz
expect_exit 1 nifti.err "$mpirun" -np 2 "$vit" infer --input nifti_in --series-name cta --modality CT --model organs=run/model --out nifti_out --nifti
$py - <<'PY'
import json
s = json.load(open("nifti_out/campaign.json"))
assert s["done"] == 2 and [f["study"] for f in s["failed"]] == ["case_bad"], s
assert "case_bad.nii.gz" in s["failed"][0]["error"], s["failed"][0]
r = json.load(open("nifti_out/studies/case_a/report.json"))
assert set(r["routes"]["organs"]["structures"]) == {"lung_left", "lung_right", "heart", "lung_nodule"}, r["routes"]
import nibabel
img = nibabel.load("nifti_out/studies/case_a/organs.nii.gz")
assert img.shape == nibabel.load("nifti_in/case_a.nii.gz").shape, img.shape
print("a truncated NIfTI study failed alone:", s["failed"][0]["error"][:100])
PY
# A changed setting changes the campaign's fingerprint: every study is redone (the truncated one
# is listed again and fails again).
expect_exit 1 refit.err "$vit" --threads 1 infer --input nifti_in --series-name cta --modality CT --model organs=run/model --out nifti_out --overlap 0.25
grep -q "3 studies, 0 already done, 3 to run" refit.err || { cat refit.err; fail "a changed overlap did not redo the studies"; }

# Over the memory limit: each study fails with the figures, the campaign ends with exit 1.
expect_exit 1 tight.err "$vit" --threads 1 infer --input chest.h5 --model run/model --out tight --memory-limit 1M --studies chest_cardiac_00000,chest_cardiac_00001
grep -q "out of memory budget: .* GB needed for [0-9]*x[0-9]*x[0-9]* voxels and 5 classes, memory_limit 0.00 GB" tight.err ||
  { cat tight.err; fail "no memory-limit failure"; }
# Routing by modality and task: a head-neck route does not run on chest studies.
printf 'input: chest.h5\noutput: routed\nstudies: [chest_cardiac_00000]\nroutes:\n  - {name: brain, model: run/model, task: head-neck}\n  - {name: chest, model: run/model, modality: CT, task: chest-cardiac}\n' > routed.yaml
expect_exit 0 routed.err "$vit" --threads 1 infer --campaign routed.yaml
$py - <<'PY'
import json
r = json.load(open("routed/studies/chest_cardiac_00000/report.json"))
assert list(r["routes"]) == ["chest"] and r["routes"]["chest"]["series"] == ["ct"], r["routes"].keys()
print("routing by task and modality: chest ran on", r["routes"]["chest"]["series"])
PY
expect_exit 0 deflate.err "$vit" phantom --kind chest-cardiac --studies 3 --shape 40,48,48 --deflate 1 --out damaged.h5 --threads 2
$py - <<'PY'
import h5py
with h5py.File("damaged.h5", "r") as f:
    d = f["studies/chest_cardiac_00001/series/cta/image"]
    offset, size = d.id.get_chunk_info(0).byte_offset, d.id.get_chunk_info(0).size
with open("damaged.h5", "r+b") as raw:
    raw.seek(offset + size // 3)
    raw.write(b"\xff" * 64)
PY
expect_exit 1 damaged.err "$vit" --threads 1 infer --input damaged.h5 --model run/model --out damaged_out
grep -q "study chest_cardiac_00001 failed" damaged.err || { cat damaged.err; fail "the damaged study was not reported"; }
grep -q "campaign: 2 studies done, 1 failed" damaged.err || { cat damaged.err; fail "the other studies did not finish"; }
grep -q "chest_cardiac_00001" damaged_out/index.html || fail "the failure is not on the page"

# DICOM study folders as input: imported by rank 0 (a localizer series is left out with its
# reason), one study per StudyInstanceUID, routed by modality.
expect_exit 0 dicom_write.err "$dicom_writer" patient7 expected
printf 'input: patient7\noutput: dicom_out\nroutes:\n  - {name: organs, model: run/model, modality: CT}\n' > dicom.yaml
expect_exit 0 dicom.err "$mpirun" -np 2 "$vit" infer --campaign dicom.yaml
$py - <<'PY'
import json
s = json.load(open("dicom_out/campaign.json"))
assert s["done"] == 2 and s["failed"] == [], s
r = json.load(open("dicom_out/studies/patient7/report.json"))
assert r["routes"]["organs"]["series"] == ["ct_abdomen_1_0mm"], r["routes"]["organs"]["series"]
assert any(n.startswith("left out ") and "orientation changes within the series" in n for n in r["notes"]), r["notes"]
print("DICOM studies:", s["done_studies"])
PY

# bf16 on the CPU (a whole-bf16 network): labels close to fp32's, and the settings are part of
# the fingerprint, so switching precision redoes the studies.
expect_exit 0 fp32.err "$vit" --threads 1 infer --input chest.h5 --model run/model --out precision_out --studies chest_cardiac_00000,chest_cardiac_00001
expect_exit 0 bf16.err "$vit" --threads 1 infer --input chest.h5 --model run/model --out precision_out --studies chest_cardiac_00000,chest_cardiac_00001 --precision bf16
grep -q "2 studies, 0 already done, 2 to run" bf16.err || { cat bf16.err; fail "bf16 did not redo the studies"; }
expect_exit 0 fp32_again.err "$vit" --threads 1 infer --input chest.h5 --model run/model --out fp32_out --studies chest_cardiac_00000,chest_cardiac_00001
$py - <<'PY'
import h5py
for sid in ("chest_cardiac_00000", "chest_cardiac_00001"):
    with h5py.File(f"fp32_out/studies/{sid}/labels.h5", "r") as a, h5py.File(f"precision_out/studies/{sid}/labels.h5", "r") as b:
        x, y = a[f"studies/{sid}/labels/organs"][()], b[f"studies/{sid}/labels/organs"][()]
        agree = (x == y).mean()
        assert agree > 0.98, (sid, agree)
        print(f"bf16 labels equal to fp32's on {100 * agree:.3f} % of voxels ({sid})")
PY

# The CPU engine: the plain U-Net in fp32 runs on oneDNN's primitives directly (where oneDNN has
# vector kernels on this CPU), or on LibTorch's ops with --engine libtorch: the same labels but
# for a few voxels where two classes' logits tie within float rounding.
expect_exit 0 libtorch.err "$vit" --threads 1 infer --input chest.h5 --model run/model --out libtorch_out --studies chest_cardiac_00000,chest_cardiac_00001 --engine libtorch
# What should run comes from the CPU (`vitruvian info`), not from the campaign's own log.
"$vit" info > info.txt 2>&1 || { cat info.txt; fail "vitruvian info failed"; }
grep -q "CPU convolutions: oneDNN directly" info.txt && onednn=onednn || onednn=libtorch
grep -q "model .*: CPU forward on" fp32_again.err || { cat fp32_again.err; fail "the campaign did not say which engine runs the model"; }
$py - "$onednn" <<'PY'
import json, sys
import h5py
for sid in ("chest_cardiac_00000", "chest_cardiac_00001"):
    timing = lambda out: json.load(open(f"{out}/studies/{sid}/report.json"))["timing"]["routes"]["organs"]["engine"]
    assert timing("fp32_out") == sys.argv[1] and timing("libtorch_out") == "libtorch", (timing("fp32_out"), timing("libtorch_out"))
    with h5py.File(f"fp32_out/studies/{sid}/labels.h5", "r") as a, h5py.File(f"libtorch_out/studies/{sid}/labels.h5", "r") as b:
        x, y = a[f"studies/{sid}/labels/organs"][()], b[f"studies/{sid}/labels/organs"][()]
        agree = (x == y).mean()
        assert agree > 0.9999, (sid, agree)
        print(f"{sys.argv[1]} labels equal to LibTorch's ops' on {100 * agree:.4f} % of voxels ({sid})")
PY
expect_exit 2 engine.err "$vit" infer --input chest.h5 --model run/model --out z --engine tensorrt
grep -q "engine 'tensorrt'; expected auto or libtorch" engine.err || { cat engine.err; fail "bad engine not named"; }

# Bad options: one line each, exit 2.
expect_exit 2 nomodel.err "$mpirun" -np 2 "$vit" infer --input chest.h5 --model missing_model --out x
grep -q "missing_model/model.json" nomodel.err || { cat nomodel.err; fail "missing model not named"; }
[[ $(grep -c "vitruvian:" nomodel.err) == 1 ]] || { cat nomodel.err; fail "expected one error line"; }
printf 'input: chest.h5\noutput: y\nroutes:\n  - name: a\n    model: run/model\n    overlapp: 0.5\n' > typo.yaml
expect_exit 2 typo.err "$vit" infer --campaign typo.yaml
grep -q "typo.yaml:6: unknown key 'routes.0.overlapp'" typo.err || { cat typo.err; fail "unknown key not named with its line"; }
expect_exit 2 noroute.err "$vit" infer --input chest.h5 --out z
grep -q "no routes" noroute.err || { cat noroute.err; fail "no routes not reported"; }
expect_exit 2 badclass.err "$vit" infer --input chest.h5 --out z --campaign <(printf 'routes:\n  - name: a\n    model: %s/run/model\n    fill_holes: [liver]\n' "$PWD")
grep -q "fill_holes names 'liver'" badclass.err || { cat badclass.err; fail "unknown class not named"; }
expect_exit 2 precision.err "$vit" infer --input chest.h5 --model run/model --out z --precision int8
grep -q "precision: 'int8'; expected fp32, bf16 or fp16" precision.err || { cat precision.err; fail "bad precision not named"; }
# The documented example parses (every key known) and stops at its first missing model, creating nothing.
expect_exit 2 example.err "$vit" infer --campaign "$here/../../launch/configs/campaign_example.yaml"
grep -q "/models/heart_coronaries/model.json: cannot be read" example.err || { cat example.err; fail "the example campaign did not parse"; }
[[ ! -e /results/campaign_2026_12 ]] || fail "a failed start created the output folder"
echo "infer CLI: all checks passed"
