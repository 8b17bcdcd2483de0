#!/usr/bin/env bash
# Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<name>/) from what the project
# itself makes: small phantoms (HDF5 with deflate, LZ4, contiguous and 4D series, a shard index),
# their NIfTI-1/-2 and DICOM exports, the DICOM test series (tests/tools/write_test_dicom.cpp),
# model cards from one-step training runs (on a phantom and on its `preprocess --crop-body`
# copy, whose card records the crop), the example configs, C-FIND identifiers written by
# DCMTK's dump2dcm, and QIDO-RS and multipart answers in the shape Orthanc gives them.
# Regression inputs (crash-*, the inputs of fixed findings) are left as they are.
#
#   tests/fuzz/make_corpus.sh [--build-dir DIR] [--out DIR]
# DIR: a normal build tree (build by default) with bin/vitruvian and write_test_dicom;
# --out: where the corpora go (tests/fuzz/corpus by default).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$repo/build"
out="$here/corpus"
while (($#)); do
  case "$1" in
    --build-dir) build="${2:?--build-dir needs a folder}"; shift 2 ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make_corpus: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
vit="$build/bin/vitruvian"
writer="$(find "$build" -name write_test_dicom -type f -perm -u+x | head -1)"
[[ -x "$vit" && -n "$writer" ]] || { echo "make_corpus: build $build first (bin/vitruvian, write_test_dicom)" >&2; exit 2; }
command -v dump2dcm >/dev/null || { echo "make_corpus: no dump2dcm (DCMTK's tools; launch/setup.sh installs them)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
q() { "$@" >>"$tmp/log" 2>&1 || { echo "make_corpus: failed: $* (log: $(tail -3 "$tmp/log"))" >&2; exit 1; }; }
seeds() {  # seeds <harness>: a fresh folder for its seeds (regression inputs kept)
  mkdir -p "$out/$1"
  find "$out/$1" -type f ! -name 'crash-*' -delete
  echo "$out/$1"
}
join_files() {  # join_files <output> <file>...: files one after another, separated as fuzz_dicom expects
  local target=$1; shift
  : >"$target"
  local first=1
  for f in "$@"; do
    ((first)) || printf '\n--next-file--\n' >>"$target"
    cat "$f" >>"$target"
    first=0
  done
}

# HDF5 datasets and NIfTI files
phantom=(phantom --kind chest-cardiac --studies 1 --shape 10 --force)
q "$vit" "${phantom[@]}" --chunk 5 --deflate 1 --out "$tmp/deflate.h5" --nifti "$tmp/nifti"
q "$vit" "${phantom[@]}" --chunk 5 --lz4 --out "$tmp/lz4.h5"
q "$vit" "${phantom[@]}" --chunk contiguous --out "$tmp/contiguous.h5"
q "$vit" phantom --kind head-neck --studies 1 --shape 8 --frames 3 --chunk 4 --deflate 1 --force --out "$tmp/frames.h5"
q "$vit" phantom --kind msk --studies 2 --shape 8 --shard-studies 1 --force --out "$tmp/index.h5"
dir="$(seeds hdf5)"
for f in deflate lz4 contiguous frames index; do cp "$tmp/$f.h5" "$dir/phantom_$f.h5"; done

dir="$(seeds nifti)"
find "$tmp/nifti" -name '*.nii.gz' | sort | head -2 | while read -r f; do cp "$f" "$dir/phantom_$(basename "$(dirname "$f")")_$(basename "$f")"; done
study="$(ls "$tmp/nifti" | head -1)"
series="$(ls "$tmp/nifti/$study" | grep -v anatomy | head -1)"
q "$vit" export "$tmp/deflate.h5" --study "$study" --series "${series%.nii.gz}" -o "$dir/phantom_nifti1.nii"
q "$vit" export "$tmp/deflate.h5" --study "$study" --series "${series%.nii.gz}" --nifti2 -o "$dir/phantom_nifti2.nii"
q "$vit" export "$tmp/frames.h5" --out-dir "$tmp/frames_nifti"
ls -S $(find "$tmp/frames_nifti" -name '*.nii.gz') | head -1 | while read -r f; do cp "$f" "$dir/phantom_4d.nii.gz"; done

# DICOM series: three slices of each
q "$vit" phantom --kind chest-cardiac --studies 1 --shape 8 --force --dicom "$tmp/dicom"
q "$writer" "$tmp/test_dicom"
dir="$(seeds dicom)"
for series in $(find "$tmp/dicom" "$tmp/test_dicom" -name '*.dcm' -printf '%h\n' | sort -u); do
  name="$(basename "$(dirname "$series")")_$(basename "$series")"
  mapfile -t files < <(find "$series" -name '*.dcm' | sort | head -3)
  join_files "$dir/$name.dcms" "${files[@]}"
done

# Model card: a one-step training run of a two-stage U-Net
cat >"$tmp/train.yaml" <<YAML
data: {dataset: $tmp/deflate.h5, channels: [cta], label_map: anatomy, classes: [lung_left], validation_studies: 0,
       patch: [8, 8, 8], batch_size: 1, workers: 1}
model: {name: unet, stages: 2, base_features: 2}
train: {steps: 1, validate_every: 0, checkpoint_every: 1, run_dir: $tmp/run}
YAML
q "$vit" --device cpu --config "$tmp/train.yaml" train --force
dir="$(seeds model_card)"
cp "$tmp/run/model/model.json" "$dir/trained.json"
q "$vit" preprocess "$tmp/deflate.h5" -o "$tmp/cropped.h5" --channels cta --label anatomy --crop-body --force
q "$vit" --device cpu --config "$tmp/train.yaml" --set "data.dataset=$tmp/cropped.h5" --set "train.run_dir=$tmp/run_cropped" \
  train --force
cp "$tmp/run_cropped/model/model.json" "$dir/trained_body_crop.json"

# Configs
dir="$(seeds campaign_yaml)"
for f in campaign_example campaign_pacs_example quickstart_campaign; do cp "$repo/launch/configs/$f.yaml" "$dir/$f.yaml"; done
dir="$(seeds train_yaml)"
cp "$repo/launch/configs/quickstart.yaml" "$dir/quickstart.yaml"
cp "$repo/launch/configs/example.yaml" "$dir/example.yaml"
cp "$tmp/run/config.yaml" "$dir/resolved.yaml"

# C-FIND identifiers (byte 0: 0 implicit, 1 explicit little endian), as a PACS answers a study query
dir="$(seeds cfind_identifier)"
cat >"$tmp/identifier.dump" <<'DUMP'
(0008,0005) CS [ISO_IR 100]
(0008,0020) DA [20240105]
(0008,0050) SH [ACC0001]
(0008,0052) CS [STUDY]
(0008,0061) CS [CT\SEG\SR]
(0010,0020) LO [PHANTOM-0001]
(0020,000d) UI [1.2.826.0.1.3680043.10.1234.1.1]
(0020,1208) IS [42]
DUMP
for syntax in 0 1; do
  flag=$([[ $syntax == 0 ]] && echo +ti || echo +te)
  q dump2dcm -F "$flag" "$tmp/identifier.dump" "$tmp/identifier.dcm"
  { printf "\\x0$syntax"; cat "$tmp/identifier.dcm"; } >"$dir/identifier_$syntax.bin"
done

# QIDO-RS answers
dir="$(seeds qido_json)"
cat >"$dir/two_studies.json" <<'JSON'
[{"00080020":{"vr":"DA","Value":["20240105"]},"00080050":{"vr":"SH","Value":["ACC0001"]},
  "00080061":{"vr":"CS","Value":["CT","SEG"]},"00100020":{"vr":"LO","Value":["PHANTOM-0001"]},
  "0020000D":{"vr":"UI","Value":["1.2.826.0.1.3680043.10.1234.1.1"]},"00201208":{"vr":"IS","Value":[42]}},
 {"00080020":{"vr":"DA"},"00080061":{"vr":"CS","Value":["MR"]},"00100020":{"vr":"LO","Value":["PHANTOM-0002"]},
  "0020000D":{"vr":"UI","Value":["1.2.826.0.1.3680043.10.1234.1.2"]},"00201208":{"vr":"IS","Value":["7"]}}]
JSON
printf '[]' >"$dir/empty.json"

# multipart/related WADO-RS answers: two DICOM parts, and a part of another type
dir="$(seeds multipart)"
mapfile -t slices < <(find "$tmp/dicom" -name '*.dcm' | sort | head -2)
{
  printf 'multipart/related; type="application/dicom"; boundary=b0undary\n--b0undary\r\nContent-Type: application/dicom\r\n\r\n'
  cat "${slices[0]}"
  printf '\r\n--b0undary\r\nContent-Type: application/dicom\r\n\r\n'
  cat "${slices[1]}"
  printf '\r\n--b0undary--\r\n'
} >"$dir/two_instances.bin"
printf 'multipart/related; boundary="quoted b"\npreamble\r\n--quoted b\r\nContent-Type: application/json\r\n\r\n{}\r\n--quoted b\r\n\r\nno headers\r\n--quoted b--' \
  >"$dir/other_parts.bin"

du -sh "$out"/* | sed 's|^|make_corpus: |'
