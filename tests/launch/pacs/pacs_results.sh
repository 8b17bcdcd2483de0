#!/usr/bin/env bash
# Scan to report in the PACS, end to end on 2 ranks and both protocols: phantoms written as DICOM
# (`vitruvian phantom --dicom`), stored into a real Orthanc (tests/tools/orthanc.sh), then
# `vitruvian infer` with that PACS as source and destination. The DICOM SEG and SR appear in
# Orthanc under the same studies; retrieved from it again and decoded independently (pydicom,
# tests/launch/check_dicom_results.py), the SEG's frames equal the campaign's label maps voxel for
# voxel and the SR's numbers equal report.json's.
# Usage: pacs_results.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../cli_helpers.sh"
source "$here/../../tools/orthanc.sh"
prepare_workdir "$work"

# Two chest phantoms, as HDF5 (to train on) and as DICOM (for the PACS); a small model.
expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 2 --shape 24,32,32 --out chest.h5 --dicom dicom --threads 2
train_small_model "$vit" ct "[lung_left, lung_right, $heart_class, coronary_lad, coronary_lcx, coronary_rca]" "[16, 16, 16]" 2 0.02 8

orthanc_start "$work/orthanc"
orthanc_store dicom || fail "storescu could not fill the PACS"

for protocol in dimse dicomweb; do
  if [[ $protocol == dimse ]]; then
    pacs="{protocol: dimse, host: 127.0.0.1, port: $ORTHANC_DICOM_PORT, aet: $ORTHANC_SCU_AET, called_aet: $ORTHANC_AET, timeout_s: 10}"
  else
    pacs="{protocol: dicomweb, url: '$ORTHANC_URL', timeout_s: 10}"
  fi
  cat > $protocol.yaml <<YAML
output: out_$protocol
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
  expect_exit 0 $protocol.err "$mpirun" -np 2 "$vit" --threads 1 infer --campaign $protocol.yaml
  grep -q "campaign: 2 studies done, 0 failed" $protocol.err || { cat $protocol.err; fail "$protocol: not every study done"; }
  for source in dicom/*/ct; do
    study=$(dicom_attr "$(ls "$source"/*.dcm | head -1)" StudyInstanceUID)
    local_dir=out_$protocol/studies/$study
    [[ -f $local_dir/organs.seg.dcm && -f $local_dir/report.sr.dcm ]] || { ls "$local_dir"; fail "$protocol: no SEG or SR for $study"; }
    # The SEG and SR as the PACS holds them, in the same study, beside the campaign's own outputs.
    check=check_$protocol/$study
    mkdir -p "$check"
    cp "$local_dir/report.json" "$local_dir/labels.h5" "$check/"
    for f in organs.seg.dcm report.sr.dcm; do
      ids=$(orthanc_lookup "$(dicom_attr "$local_dir/$f" SOPInstanceUID)")
      [[ $(wc -w <<<"$ids") == 1 ]] || fail "$protocol: $f of $study is in the PACS $(wc -w <<<"$ids") times"
      orthanc_rest "/instances/$ids/file" >"$check/$f"
      [[ $(dicom_attr "$check/$f" StudyInstanceUID) == "$study" ]] || fail "$protocol: $f is not filed under study $study"
    done
    $py "$here/../check_dicom_results.py" "$check" "$source" organs >"check_$protocol.out" ||
      { cat "check_$protocol.out"; fail "$protocol: the PACS's SEG/SR differ from the campaign's outputs ($study)"; }
  done
done
echo "pacs_results: SEG and SR in the PACS equal the campaign's outputs, both protocols"
