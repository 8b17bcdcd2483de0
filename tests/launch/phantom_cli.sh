#!/usr/bin/env bash
# `vitruvian phantom` as a user runs it: 1, 2 and 3 ranks (one file and shards + index) give the
# same contents, checked with h5py alone (no Vitruvian needed to look inside); NIfTI copies read
# by nibabel match the HDF5 data and geometry; previews are PNG files; bad options give one line
# and exit 2; an unwritable output leaves nothing behind.
# Usage: phantom_cli.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"
prepare_workdir "$work"

common=(phantom --kind mixed --studies 5 --shape 36,44,40 --seed 3 --frames 5 --chunk 16)
expect_exit 0 one.err "$vit" "${common[@]}" --out one.h5 --preview previews --nifti nifti --threads 2
expect_exit 0 three.err "$mpirun" -np 3 "$vit" "${common[@]}" --out three.h5
expect_exit 0 shards.err "$mpirun" -np 2 "$vit" "${common[@]}" --out sharded.h5 --shard-studies 2
expect_exit 0 lz4.err "$vit" "${common[@]}" --out lz4.h5 --lz4
grep -q "wrote 5 studies to three.h5" three.err || fail "no summary line from rank 0"
ls -A | grep -q "\.tmp\." && fail "part files left behind: $(ls -A)"
[[ $(ls sharded.shard-*.h5 | wc -l) == 3 ]] || fail "expected 3 shards, got $(ls)"

$py - <<'PY'
import glob, json, os
import h5py, nibabel as nib, numpy as np

def walk(group, prefix=""):
    """Every object under `group`: path -> (attributes, array or None)."""
    out = {}
    def visit(name, obj):
        attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in obj.attrs.items()}
        data = obj[()] if isinstance(obj, h5py.Dataset) else None
        if isinstance(obj, h5py.Dataset):
            attrs["__dtype"] = str(obj.dtype)
            attrs["__chunks"] = obj.chunks
        out[prefix + name] = (attrs, data)
    group.visititems(visit)
    return out

def same(a, b, what):
    assert a.keys() == b.keys(), f"{what}: objects differ: {sorted(set(a) ^ set(b))}"
    for key in a:
        assert a[key][0] == b[key][0], f"{what}: attributes of {key} differ"
        if a[key][1] is not None:
            assert np.array_equal(a[key][1], b[key][1]), f"{what}: data of {key} differ"

one = h5py.File("one.h5", "r")
three = h5py.File("three.h5", "r")
assert one.attrs["format"] in ("vitruvian-volumes", b"vitruvian-volumes")
assert list(one.attrs["label_ids"]) == list(three.attrs["label_ids"])
same(walk(one["studies"]), walk(three["studies"]), "1 rank vs 3 ranks")
ids = sorted(one["studies"])
assert len(ids) == 5, ids
kinds = {json.loads(one["studies"][i].attrs["metadata_json"])["phantom"]["generator"]["kind"] for i in ids}
assert len(kinds) >= 2, kinds

# LZ4 (hdf5-filter-plugin): h5py reads the same contents through the plugin.
lz4 = h5py.File("lz4.h5", "r")
same(walk(lz4["studies"]), walk(one["studies"]), "LZ4 vs uncompressed")
assert "32004" in lz4["studies"][ids[0]]["labels/anatomy"]._filters, "not LZ4-compressed"

index = h5py.File("sharded.h5", "r")
assert index.attrs["format"] in ("vitruvian-volumes-index", b"vitruvian-volumes-index")
study_ids = [s.decode() if isinstance(s, bytes) else s for s in index.attrs["study_ids"]]
assert sorted(study_ids) == ids, study_ids
shards = [s.decode() if isinstance(s, bytes) else s for s in index.attrs["shards"]]
for sid, shard in zip(study_ids, index.attrs["study_shards"]):
    part = h5py.File(shards[shard], "r")
    same(walk(part["studies"][sid]), walk(one["studies"][sid]), f"shard study {sid}")

# NIfTI copies: nibabel reads the same voxels, and the affine is the LPS geometry turned to RAS.
for sid in ids:
    study = one["studies"][sid]
    for name, series in study["series"].items():
        img = nib.load(f"nifti/{sid}/{name}.nii.gz")
        data = series["image"][()]
        want = np.transpose(data, tuple(reversed(range(data.ndim))))  # [t,]z,y,x -> x,y,z[,t]
        assert np.array_equal(np.asarray(img.dataobj).astype(data.dtype), want), f"{sid}/{name} voxels"
        sp, org = series.attrs["spacing"], series.attrs["origin"]
        lps = np.diag(list(sp) + [1.0])
        lps[:3, 3] = org
        ras = np.diag([-1, -1, 1, 1]) @ lps
        assert np.allclose(img.affine, ras, atol=1e-4), f"{sid}/{name} affine {img.affine} vs {ras}"
    labels = nib.load(f"nifti/{sid}/anatomy.nii.gz")
    assert np.array_equal(np.asarray(labels.dataobj), study["labels/anatomy"][()].T), f"{sid} labels"
    png = open(f"previews/{sid}.png", "rb").read(8)
    assert png == b"\x89PNG\r\n\x1a\n", f"{sid} preview is not a PNG"
print("phantom contents agree across 1, 2 (shards) and 3 ranks; NIfTI and previews check out")
PY

# The dataset opens in Vitruvian too, with every label volume listed.
expect_exit 0 inspect.err "$vit" inspect sharded.h5
grep -q "vertebrae\|liver\|brain" inspect.err.out || fail "inspect lists no label volumes"
expect_exit 0 describe.err "$vit" phantom --kind head-neck --describe
grep -q "| penumbra | ischemic_penumbra (28) |" describe.err.out || fail "describe has no tissue table"

# Bad options: one line, exit 2, nothing written.
expect_exit 2 kind.err "$mpirun" -np 2 "$vit" phantom --kind liver --out bad.h5
[[ $(grep -c "'liver' is not a phantom kind; expected one of chest-cardiac" kind.err) == 1 ]] || { cat kind.err; fail "kind error"; }
expect_exit 2 shape.err "$vit" phantom --shape 4,64,64 --out bad.h5
grep -q -- "--shape: 4 voxels along an axis; expected 8 to 2048" shape.err || { cat shape.err; fail "shape error"; }
expect_exit 2 exists.err "$vit" phantom --out one.h5
grep -q "one.h5: exists already; pass --force" exists.err || fail "overwrite refused without a clear line"
[[ -e bad.h5 ]] && fail "a refused run wrote bad.h5"
expect_exit 2 noise.err "$vit" phantom --noise inf --out bad.h5
grep -q -- "--noise: inf; expected a factor from 0 to 10" noise.err || { cat noise.err; fail "noise bound"; }
# Shards of an existing dataset are not overwritten by another index name with the same stem.
expect_exit 2 shardclash.err "$vit" "${common[@]}" --out sharded.hdf5 --shard-studies 2
grep -q "sharded.shard-00000.h5: exists already" shardclash.err || { cat shardclash.err; fail "shard overwrite"; }
# A forced run that fails leaves the dataset it was to replace as it was.
cp one.h5 keep.h5
touch not_a_folder
expect_exit 2 keep.err "$mpirun" -np 2 "$vit" "${common[@]}" --out keep.h5 --force --nifti not_a_folder
grep -q "not_a_folder: exists and is not a folder" keep.err || { cat keep.err; fail "nifti folder check"; }
cmp -s one.h5 keep.h5 || fail "a failed --force run changed keep.h5"
# A forced rerun with fewer shards removes the old run's extra shard.
expect_exit 0 reshard.err "$vit" phantom --kind mixed --studies 2 --shape 36,44,40 --seed 3 --frames 5 --out sharded.h5 --shard-studies 1 --force
[[ $(ls sharded.shard-*.h5 | wc -l) == 2 ]] || fail "expected 2 shards after the rerun, got $(ls sharded.shard-*)"
expect_exit 0 inspect2.err "$vit" inspect sharded.h5 --no-volumes
# A folder that does not exist: the job fails as a whole, no part file is left anywhere.
expect_exit 2 folder.err "$mpirun" -np 2 "$vit" phantom --studies 3 --shape 16 --out missing/x.h5
grep -q "cannot create a file in this folder" folder.err || { cat folder.err; fail "no reason given"; }
[[ -z $(ls -A | grep -E "\.tmp\.") ]] || fail "temporary files left: $(ls -A)"
echo "phantom CLI: all checks passed"
