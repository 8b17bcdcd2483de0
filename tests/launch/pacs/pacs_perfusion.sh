#!/usr/bin/env bash
# Scan to decision into the PACS. Head-neck phantoms whose 4D CT perfusion series is written as
# DICOM (`vitruvian phantom --dicom`), one of them then without temporal positions (frames told
# apart by AcquisitionTime, as many scanners send them):
# - `vitruvian perfusion DIR --dicom` writes core and penumbra as a DICOM SEG, CBF, CBV, MTT, Tmax
#   and TTP as DICOM parametric maps and the volumes and DEFUSE-3 verdict as an SR; dciodvfy finds
#   no error in any; decoded with pydicom (check_dicom_results.py) they equal labels.h5 and
#   report.json, on the first frame's slices of the 4D series; a forced rerun writes the same UIDs;
#   with nothing classed there is no SEG but the SR still holds the triage; --dicom on HDF5 input
#   is refused with one line.
# - The same phantoms stored into a real Orthanc (tests/tools/orthanc.sh), then `vitruvian infer`
#   on 2 ranks with a perfusion route and the PACS (DICOMweb) as source and destination: every
#   object is in the PACS once, under its study, and fetched back it passes the same checks.
# Usage: pacs_perfusion.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../cli_helpers.sh"
source "$here/../../tools/orthanc.sh"
prepare_workdir "$work"

expect_exit 0 phantom.err "$vit" phantom --kind head-neck --studies 2 --shape 16,48,48 --frames 12 --seed 5 \
  --out hn.h5 --dicom dicom --threads 2
# The second study as many scanners send perfusion: no TemporalPositionIdentifier, each slice
# position repeated once per frame, the files in no useful order; the frames follow AcquisitionTime.
$py "$here/../../tools/without_temporal_positions.py" dicom/head_neck_00001/perfusion dicom/head_neck_00001/perfusion
# source_of STUDY_DIR: the phantom's perfusion folder of the study a result folder belongs to.
source_of() {
  local study s
  study=$(dicom_attr "$1/perfusion.seg.dcm" StudyInstanceUID)
  for s in dicom/*/perfusion; do
    [[ $(dicom_attr "$(ls "$s"/*.dcm | head -1)" StudyInstanceUID) == "$study" ]] && { echo "$s"; return 0; }
  done
  fail "no source series for $1 (study $study)"
}
objects="perfusion.seg.dcm perfusion_cbf.pm.dcm perfusion_cbv.pm.dcm perfusion_mtt.pm.dcm perfusion_tmax.pm.dcm perfusion_ttp.pm.dcm report.sr.dcm"

# ---- vitruvian perfusion --dicom, local ----
expect_exit 0 local.err "$vit" --threads 2 perfusion dicom -o local --dicom
for study in local/studies/*/; do
  for f in $objects; do
    [[ -f $study/$f ]] || { ls "$study"; fail "$study: no $f"; }
    grep -q "\"$f\"" "$study/manifest.json" || fail "$study: the manifest does not list $f"
    /usr/bin/dciodvfy "$study/$f" >dciodvfy.out 2>&1 || true
    if grep -q "^Error" dciodvfy.out; then cat dciodvfy.out; fail "dciodvfy finds errors in $study/$f"; fi
  done
  $py "$here/../check_dicom_results.py" "$study" "$(source_of "$study")" perfusion >check_local.out ||
    { cat check_local.out; fail "the DICOM objects of $study differ from its labels.h5 and report.json"; }
done
cat check_local.out

# A forced rerun gives every object the same UIDs: a PACS replaces them rather than adding copies.
# uids: every local object's file, SOP Instance UID and Series UID.
uids() {
  $py -c 'import glob, pydicom
for f in sorted(glob.glob("local/studies/*/*.dcm")):
    d = pydicom.dcmread(f, stop_before_pixels=True)
    print(f, d.SOPInstanceUID, d.SeriesInstanceUID)'
}
uids >uids_first.txt
expect_exit 0 again.err "$vit" --threads 2 perfusion dicom -o local --dicom --force
uids >uids_again.txt
diff uids_first.txt uids_again.txt >/dev/null || { diff uids_first.txt uids_again.txt; fail "a rerun changed UIDs"; }
[[ $(sort -u -k2,2 uids_first.txt | wc -l) == 14 ]] || { cat uids_first.txt; fail "expected 14 distinct SOP Instance UIDs"; }

# Nothing classed (thresholds no tissue meets): no SEG, the maps as always, and the SR still
# carries the triage: no core, no side, not eligible.
expect_exit 0 none.err "$vit" --threads 2 --set perfusion.rcbf_threshold=0.001 --set perfusion.tmax_threshold_s=100 \
  perfusion dicom -o none --dicom
$py - <<'PY'
import glob, os, pydicom
for study in sorted(glob.glob("none/studies/*/")):
    names = set(os.listdir(study))
    assert "perfusion.seg.dcm" not in names and "perfusion_cbf.pm.dcm" in names and "report.sr.dcm" in names, names
    sr = pydicom.dcmread(f"{study}/report.sr.dcm")
    def walk(items):
        for item in items:
            yield item
            yield from walk(getattr(item, "ContentSequence", []))
    groups = [i for i in walk(sr.ContentSequence) if i.ValueType == "CONTAINER" and i.ConceptNameCodeSequence[0].CodeMeaning == "Measurement Group"]
    assert len(groups) == 1, len(groups)
    texts = {c.ConceptNameCodeSequence[0].CodeMeaning: [] for c in groups[0].ContentSequence}
    for c in groups[0].ContentSequence:
        texts[c.ConceptNameCodeSequence[0].CodeMeaning].append(getattr(c, "TextValue", None))
    assert texts["Tracking Identifier"] == ["perfusion Tmax > 100 s"], texts
    assert texts["Qualitative Evaluations"] == [
        "Mismatch: 0.0 mL, ratio none (no core)", "Lesion side: none",
        "DEFUSE-3: not eligible; core 0.0 mL < 70 (met); mismatch ratio none (no core) >= 1.8 (not met); "
        "mismatch 0.0 mL >= 15 (not met)"], texts["Qualitative Evaluations"]
print("nothing classed: no SEG, the maps, and the SR's triage says so")
PY
for f in none/studies/*/report.sr.dcm; do
  /usr/bin/dciodvfy "$f" >dciodvfy.out 2>&1 || true
  if grep -q "^Error" dciodvfy.out; then cat dciodvfy.out; fail "dciodvfy finds errors in $f"; fi
done

# DICOM outputs need DICOM input: one line, exit 2, nothing written.
expect_exit 2 refused.err "$vit" --threads 2 perfusion hn.h5 -o refused --dicom
grep -q "outputs: 'dicom_seg' needs DICOM input .*hn.h5 is not a DICOM folder" refused.err || { cat refused.err; fail "no refusal line"; }
[[ ! -e refused/studies ]] || fail "a refused run wrote studies"

# ---- the same through the PACS ----
orthanc_start "$work/orthanc"
orthanc_store dicom || fail "storescu could not fill the PACS"
cat > pacs.yaml <<YAML
output: pacs_out
outputs: [hdf5, dicom_seg, dicom_pmap, dicom_sr]
source:
  pacs: {protocol: dicomweb, url: '$ORTHANC_URL', timeout_s: 10, query: {modality: CT}}
store_to: {protocol: dicomweb, url: '$ORTHANC_URL', timeout_s: 10}
routes:
  - {name: perfusion, analysis: perfusion}
YAML
expect_exit 0 pacs.err "$mpirun" -np 2 "$vit" --threads 1 infer --campaign pacs.yaml
grep -q "campaign: 2 studies done, 0 failed" pacs.err || { cat pacs.err; fail "not every study done"; }
for local_dir in pacs_out/studies/*/; do
  study=$(basename "$local_dir")
  check=check_pacs/$study
  mkdir -p "$check"
  cp "$local_dir/report.json" "$local_dir/labels.h5" "$check/"
  for f in $objects; do
    ids=$(orthanc_lookup "$(dicom_attr "$local_dir/$f" SOPInstanceUID)")
    [[ $(wc -w <<<"$ids") == 1 ]] || fail "$f of $study is in the PACS $(wc -w <<<"$ids") times"
    orthanc_rest "/instances/$ids/file" >"$check/$f"
    [[ $(dicom_attr "$check/$f" StudyInstanceUID) == "$study" ]] || fail "$f is not filed under study $study"
  done
  $py "$here/../check_dicom_results.py" "$check" "$(source_of "$check")" perfusion >check_pacs.out ||
    { cat check_pacs.out; fail "the PACS's objects of $study differ from the campaign's outputs"; }
done
cat check_pacs.out
echo "pacs_perfusion: SEG, parametric maps and SR valid, equal to the maps and report, locally and in the PACS"
