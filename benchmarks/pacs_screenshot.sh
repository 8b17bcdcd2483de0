#!/usr/bin/env bash
# A picture of a campaign's results in a real PACS: chest phantoms written as DICOM and stored
# into a local Orthanc (tests/tools/orthanc.sh), a small model trained on other phantoms of
# the kind, `vitruvian infer` with that Orthanc as source and `store_to`, then Orthanc Explorer's
# page of the first study photographed by headless Chromium: its CT series beside the DICOM SEG
# and SR the campaign sent back. About 30 s on 2 cores; Orthanc is stopped on every path.
#   benchmarks/pacs_screenshot.sh OUTPUT.png [BUILD_DIR]
# Needs Orthanc with its DICOMweb plugin, DCMTK's storescu, curl, python3 and Chromium
# (apt-get install --no-install-recommends chromium). KEEP=1 keeps the work folder.
set -euo pipefail
out=${1:?usage: pacs_screenshot.sh OUTPUT.png [BUILD_DIR]}
build=${2:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
[[ -x $build/bin/vitruvian ]] || { echo "pacs_screenshot.sh: no $build/bin/vitruvian (build first)" >&2; exit 1; }
vit=$(cd "$build" && pwd)/bin/vitruvian
chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $chromium ]] || { echo "pacs_screenshot.sh: no Chromium (apt-get install --no-install-recommends chromium)" >&2; exit 1; }
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
work=$(mktemp -d /tmp/vitruvian_pacs_screenshot.XXXXXX)
source "$root/tests/tools/orthanc.sh"
cleanup() {
  orthanc_stop
  if [[ -n ${KEEP:-} ]]; then echo "work folder: $work" >&2; return; fi
  rm -rf "$work" 2>/dev/null || { sleep 1; rm -rf "$work"; } # Chromium's helpers may still be closing files
}
trap cleanup EXIT
cd "$work"
step() { echo "pacs_screenshot: $*" >&2; }
run() { "$@" >>log.txt 2>&1 || { tail -20 log.txt >&2; echo "pacs_screenshot.sh: failed: $*" >&2; exit 1; }; }

step "phantoms and a small model"
run "$vit" phantom --kind chest-cardiac --studies 1 --shape 64,96,96 --dicom dicom --threads 2
run "$vit" phantom --kind chest-cardiac --studies 3 --shape 64,96,96 --seed 7 --out train.h5 --threads 2
cat >train.yaml <<'YAML'
data:
  dataset: train.h5
  channels: [ct]
  classes: [lung_left, lung_right, "heart=heart_left_ventricle+heart_right_ventricle+heart_left_atrium+heart_right_atrium+heart_myocardium", coronary_lad, coronary_lcx, coronary_rca]
  validation_studies: 1
  patch: [32, 32, 32]
  batch_size: 2
  workers: 1
model: {stages: 3, base_features: 8}
optimizer: {name: adamw, lr: 0.01}
train: {steps: 30, validate_every: 0, checkpoint_every: 30, run_dir: run}
YAML
run "$vit" --config train.yaml --threads 2 train

step "Orthanc, the study stored, the campaign"
orthanc_start "$work/orthanc"
trap cleanup EXIT # orthanc_start set its own (orthanc_stop alone)
run storescu -aet "$ORTHANC_SCU_AET" -aec "$ORTHANC_AET" +sd +r 127.0.0.1 "$ORTHANC_DICOM_PORT" dicom
pacs="{protocol: dimse, host: 127.0.0.1, port: $ORTHANC_DICOM_PORT, aet: $ORTHANC_SCU_AET, called_aet: $ORTHANC_AET, timeout_s: 30}"
cat >campaign.yaml <<YAML
output: out
outputs: [hdf5, dicom_seg, dicom_sr]
source:
  pacs: ${pacs%\}}, query: {modality: CT}}
store_to: $pacs
routes:
  - {name: organs, model: run/model, modality: CT}
calcium:
  series: ct
  arteries: [coronary_lad, coronary_lcx, coronary_rca]
YAML
run "$root/launch/mpirun.sh" -np 2 "$vit" --threads 1 infer --campaign campaign.yaml
grep -q "campaign: 1 studies done, 0 failed" log.txt || { tail -20 log.txt >&2; echo "pacs_screenshot.sh: the study was not done" >&2; exit 1; }

# The study's Orthanc id, from its StudyInstanceUID (the campaign's output folder is named after it).
study_uid=$(basename "$(ls -d out/studies/*/ | head -1)")
study_id=$(orthanc_rest /tools/lookup -X POST -d "$study_uid" |
  python3 -c 'import json,sys; print(next(x["ID"] for x in json.load(sys.stdin) if x["Type"] == "Study"))')
modalities=$(orthanc_rest "/studies/$study_id/series" |
  python3 -c 'import json,sys; print(" ".join(sorted(s["MainDicomTags"].get("Modality", "?") for s in json.load(sys.stdin))))')
step "study $study_uid in the PACS: series $modalities"
[[ " $modalities " == *" SEG "* && " $modalities " == *" SR "* ]] ||
  { echo "pacs_screenshot.sh: the PACS holds no SEG or SR in the study (series: $modalities)" >&2; exit 1; }

step "screenshot of Orthanc Explorer"
url="$ORTHANC_REST/app/explorer.html#study?uuid=$study_id"
"$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/chromium" \
  --window-size=1100,780 --virtual-time-budget=5000 --screenshot="$work/shot.png" "$url" >>log.txt 2>&1 || true
[[ -s shot.png ]] || { tail -20 log.txt >&2; echo "pacs_screenshot.sh: Chromium wrote no screenshot" >&2; exit 1; }
mv shot.png "$out.tmp" && mv "$out.tmp" "$out"
step "wrote $out"
