#!/usr/bin/env bash
# The body crop of model routes, on a chest phantom and a small trained model: the same body
# padded with air gives, with crop: body, exactly the labels of the unpadded study inside the
# body's box and background outside it; crop: none runs the whole grid; the box (grown by
# crop_margin_mm, in voxels per axis) is in the report; bad crop values get one line. A model
# trained on a `preprocess --crop-body` dataset records the rule in its card, and a route that
# sets no crop follows it; a route that sets crop: none for it gets one warning line.
# Usage: infer_crop.sh VITRUVIAN WORKDIR
set -euo pipefail
vit=$1
work=$2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 3 --shape 24,32,32 --framing centred \
  --out chest.h5 --threads 2
train_small_model "$vit" cta "[lung_left, lung_right, $heart_class]" "[16, 16, 16]" 3 0.01 4

# body.nii.gz: the phantom's CT cut to its body (voxels above -500 HU); wide.nii.gz: the same
# voxels in the middle of a wider field of view of air.
$py - <<'PY'
import h5py, nibabel as nib, numpy as np
with h5py.File("chest.h5", "r") as f:
    s = f["studies/chest_cardiac_00000/series/cta"]
    image, spacing = s["image"][()], s.attrs["spacing"]
z, y, x = np.nonzero(image > -500)
body = image[z.min():z.max() + 1, y.min():y.max() + 1, x.min():x.max() + 1]
pad = (6, 14, 11)
wide = np.full([n + 2 * p for n, p in zip(body.shape, pad)], -1000, np.int16)
wide[pad[0]:pad[0] + body.shape[0], pad[1]:pad[1] + body.shape[1], pad[2]:pad[2] + body.shape[2]] = body
for name, v in (("body", body), ("wide", wide)):
    nib.save(nib.Nifti1Image(np.ascontiguousarray(v.transpose(2, 1, 0)), np.diag([*spacing, 1.0])), f"{name}.nii.gz")
np.save("box.npy", np.array([pad, body.shape]))
print("body", body.shape, "wide", wide.shape)
PY

campaign() {  # campaign FILE OUT INPUTS CROP_KEYS [MODEL]
  printf 'input: [%s]\noutput: %s\nseries_name: cta\nmodality: CT\noutputs: [nifti]\nroutes:\n  - {name: organs, model: %s, truth: none%s}\n' \
    "$3" "$2" "${5:-run/model}" "$4" > "$1"
}
campaign none.yaml none "body.nii.gz, wide.nii.gz" ", crop: none"
campaign tight.yaml tight "body.nii.gz, wide.nii.gz" ", crop: body, crop_margin_mm: 0"
campaign default.yaml default "wide.nii.gz" ""
for c in none tight default; do
  expect_exit 0 "$c.err" "$vit" --threads 2 infer --campaign "$c.yaml"
done

$py - <<'PY'
import json, nibabel as nib, numpy as np
def labels(out, sid):
    return np.asarray(nib.load(f"{out}/studies/{sid}/organs.nii.gz").dataobj).transpose(2, 1, 0)
def route(out, sid):
    r = json.load(open(f"{out}/studies/{sid}/report.json"))
    return r["routes"]["organs"], r["timing"]["routes"]["organs"]
pad, size = np.load("box.npy")
inside = tuple(slice(p, p + n) for p, n in zip(pad, size))
reference = labels("none", "body")
assert reference.any(), "the model predicted nothing on the body"

# (a) crop: body on the wide study = the unpadded study's labels inside the body's box; (b) background outside.
tight = labels("tight", "wide")
assert tight.shape == tuple(n + 2 * p for n, p in zip(size, pad)), tight.shape
assert np.array_equal(tight[inside], reference), "labels inside the box differ from the unpadded study's"
outside = np.ones(tight.shape, bool); outside[inside] = False
assert not tight[outside].any(), "labels outside the body's box"
crop, timing = route("tight", "wide")
assert crop["crop"]["start_zyx"] == pad.tolist() and crop["crop"]["size_zyx"] == size.tolist(), crop["crop"]
assert abs(crop["crop"]["fraction"] - np.prod(size) / tight.size) < 1e-3, crop["crop"]
# A study the box covers whole runs as it is.
assert np.array_equal(labels("tight", "body"), reference)
assert route("tight", "body")[0]["crop"]["fraction"] == 1.0

# (c) crop: none runs the whole wide grid: more windows, recorded as none.
none, none_timing = route("none", "wide")
assert none["crop"] == {"mode": "none", "from": "route"}, none["crop"]
assert none_timing["windows"] > timing["windows"], (none_timing["windows"], timing["windows"])
assert none_timing["predicted_voxels"] == none_timing["voxels"] == tight.size

# The default: crop_margin_mm 10 at 12.5 mm = 1 voxel on every side.
default = route("default", "wide")[0]["crop"]
assert default["mode"] == "body" and default["margin_mm"] == 10, default
# run/model was trained on phantoms no preprocess cropped: its card has no crop record.
assert "crop" not in json.load(open("run/model/model.json"))
assert default["from"] == default["margin_from"] == "default", default
assert crop["crop"]["from"] == crop["crop"]["margin_from"] == "route", crop["crop"]
assert default["start_zyx"] == (pad - 1).tolist() and default["size_zyx"] == (size + 2).tolist(), default
wide = labels("default", "wide")
outside = np.ones(wide.shape, bool); outside[tuple(slice(p - 1, p + n + 1) for p, n in zip(pad, size))] = False
assert not wide[outside].any(), "labels outside the default box"
print(f"crop: box {size.tolist()} of {list(tight.shape)} ({crop['crop']['fraction']:.2f}), "
      f"windows {timing['windows']} vs {none_timing['windows']} uncropped")
PY

# (d) Bad values: one line naming the route and what was expected.
campaign bad.yaml bad "wide.nii.gz" ", crop: tight"
expect_exit 2 bad.err "$vit" infer --campaign bad.yaml
grep -q "bad.yaml:[0-9]*.*crop 'tight'; expected body or none" bad.err || { cat bad.err; fail "bad crop not named"; }
[[ $(grep -c "vitruvian:" bad.err) == 1 ]] || { cat bad.err; fail "expected one error line"; }
campaign margin.yaml margin "wide.nii.gz" ", crop_margin_mm: -5"
expect_exit 2 margin.err "$vit" infer --campaign margin.yaml
grep -q "crop_margin_mm -5; expected 0..500 mm" margin.err || { cat margin.err; fail "bad margin not named"; }
[[ ! -e bad && ! -e margin ]] || fail "a failed start created the output folder"

# (e) The training crop in the model card, followed by routes that set no crop.
expect_exit 0 pre.err "$vit" preprocess chest.h5 -o chest_body.h5 --channels cta --label anatomy --crop-body
expect_exit 0 train_body.err "$vit" --config train.yaml --threads 2 --set data.dataset=chest_body.h5 \
  --set train.run_dir=run_body --set train.steps=1 --set train.checkpoint_every=1 train
campaign card.yaml card "wide.nii.gz" "" run_body/model
campaign card_none.yaml card_none "wide.nii.gz" ", crop: none" run_body/model
for c in card card_none; do
  expect_exit 0 "$c.err" "$vit" --threads 2 infer --campaign "$c.yaml"
done
[[ $(grep -c "crop none, but model run_body/model was trained on studies cropped to the body" card_none.err) == 1 ]] ||
  { cat card_none.err; fail "expected one warning for crop: none on a body-cropped model"; }
grep -q "card_none.yaml:[0-9]*.*crop none" card_none.err || { cat card_none.err; fail "the warning does not name the route"; }
! grep -q "crop none, but" card.err default.err none.err || fail "a warning without crop: none on a body-cropped model"
$py - <<'PY'
import h5py, json
with h5py.File("chest_body.h5", "r") as f:
    margins = [json.loads(s.attrs["metadata_json"])["preprocessed"]["crop"]["margin_mm"] for s in f["studies"].values()]
margin = max(max(m) for m in margins)
card = json.load(open("run_body/model/model.json"))
assert card["crop"] == {"rule": "body", "margin_mm": margin}, (card.get("crop"), margin)
def crop(out):
    return json.load(open(f"{out}/studies/wide/report.json"))["routes"]["organs"]["crop"]
c = crop("card")
assert c["mode"] == "body" and c["margin_mm"] == margin, c
assert c["from"] == c["margin_from"] == "model card", c
assert crop("card_none") == {"mode": "none", "from": "route"}, crop("card_none")
print(f"card: crop body, margin {margin} mm from the preprocessed studies")
PY
echo "infer crop: all checks passed"
