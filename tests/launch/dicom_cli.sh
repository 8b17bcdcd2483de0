#!/usr/bin/env bash
# `vitruvian convert DICOM_DIR` as a user runs it, on a folder written by write_test_dicom (DCMTK):
# two studies, the first with two good series and one spoilt by a localizer slice. The bad series
# gets one line and exit 1; both studies land with the good series, named from their descriptions,
# with the written values and spacing (checked with h5py); the same again as shards plus an index.
# Usage: dicom_cli.sh VITRUVIAN WRITE_TEST_DICOM WORKDIR
set -euo pipefail
vit=$1
writer=$2
work=$3
source "$(dirname "${BASH_SOURCE[0]}")/cli_helpers.sh"
prepare_workdir "$work"
# one_rejection STDERR_FILE: exactly one rejection line, naming the spoilt series' first file
# and the reason, and no other line mentions that series.
one_rejection() {
  [[ $(grep -c "rejected" "$1") == 1 ]] || { cat "$1"; fail "$1: expected exactly one rejection line"; }
  [[ $(grep -c "scout_mixed" "$1") == 1 ]] || { cat "$1"; fail "$1: expected one line naming scout_mixed/"; }
  grep -Eq "^vitruvian convert: rejected [^ ]*patient7/scout_mixed/s3_img000\.dcm: series [0-9.]+\.3 \"CT Abdomen 5mm\": orientation changes within the series .*localizer" "$1" ||
    { cat "$1"; fail "$1: the rejection line does not name the file and the orientation change"; }
}

expect_exit 0 write.err "$writer" patient7 expected
[[ ! -s write.err && ! -s write.err.out ]] || { cat write.err write.err.out; fail "write_test_dicom printed something"; }

# One file: the bad series is named, the two studies land; exit 1 (something was rejected).
expect_exit 1 convert.err "$vit" convert patient7 -o d.h5
one_rejection convert.err
grep -q "d.h5: 2 studies, 3 series, 0 label maps.*; 1 rejected" convert.err.out || { cat convert.err.out; fail "summary"; }

# check_h5.py FILE: FILE (one file, or an index and its shards) holds what write_test_dicom wrote.
cat >check_h5.py <<'PY'
import json, sys
import h5py, numpy as np

# What write_test_dicom wrote: series number, name from the description, dtype, shape [z, y, x],
# spacing (x, y, z) mm, origin (first slice's position), direction cosines (row, column, normal as columns).
ct = ("1", "ct_abdomen_1_0mm", "int16", (6, 8, 7), (0.9, 0.7, 2.5), (-120.5, 33.25, 40.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
t2 = ("2", "t2_fse_cor", "uint16", (4, 5, 6), (1.5, 1.25, 4.0), (-100, 20, 80), (1, 0, 0, 0, 0, 1, 0, -1, 0))
pv = ("4", "portal_venous", "float32", (3, 4, 5), (0.6, 0.8, 1.5), (-120.5, 33.25, 40.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
want = {"patient7": ("1.2.826.0.1.3680043.2.1125.1.1", [ct, t2]), "patient7_2": ("1.2.826.0.1.3680043.2.1125.1.2", [pv])}

def check_study(study, sid):
    uid, series = want[sid]
    assert json.loads(study.attrs["metadata_json"])["study_instance_uid"] == uid, (sid, study.attrs["metadata_json"])
    assert sorted(study["series"]) == sorted(s[1] for s in series), (sid, list(study["series"]))
    for number, name, dtype, shape, spacing, origin, direction in series:
        group = study["series"][name]
        image = group["image"]
        assert image.dtype == np.dtype(dtype), (name, image.dtype)
        assert image.shape == shape, (name, image.shape)
        assert np.allclose(group.attrs["spacing"], spacing, atol=1e-9), (name, group.attrs["spacing"])
        assert np.allclose(group.attrs["origin"], origin, atol=1e-9), (name, group.attrs["origin"])
        assert np.allclose(np.ravel(group.attrs["direction"]), direction, atol=1e-9), (name, group.attrs["direction"])
        expected = np.load(f"expected/{number}.npy")
        assert expected.dtype == image.dtype and expected.shape == image.shape, (name, expected.dtype, expected.shape)
        assert np.array_equal(image[...], expected), f"{name}: values differ from what write_test_dicom wrote"

f = h5py.File(sys.argv[1], "r")
if f.attrs["format"] in ("vitruvian-volumes", b"vitruvian-volumes"):
    assert sorted(f["studies"]) == sorted(want), list(f["studies"])
    for sid in want:
        check_study(f["studies"][sid], sid)
else:  # an index: one study per shard, listed in the index, the same contents
    index = f
    assert index.attrs["format"] in ("vitruvian-volumes-index", b"vitruvian-volumes-index"), index.attrs["format"]
    text = lambda values: [v.decode() if isinstance(v, bytes) else v for v in values]
    ids, shards = text(index.attrs["study_ids"]), text(index.attrs["shards"])
    assert sorted(ids) == sorted(want), ids
    assert sorted(shards) == ["s.shard-00000.h5", "s.shard-00001.h5"], shards
    assert sorted(int(n) for n in index.attrs["study_shards"]) == [0, 1], index.attrs["study_shards"]
    for sid, n in zip(ids, index.attrs["study_shards"]):
        part = h5py.File(shards[n], "r")
        assert list(part["studies"]) == [sid], (shards[n], list(part["studies"]))
        check_study(part["studies"][sid], sid)
PY
$py check_h5.py d.h5 || fail "d.h5 does not hold what write_test_dicom wrote"

expect_exit 0 inspect.err "$vit" inspect d.h5
grep -q "d.h5: .*, 2 studies$" inspect.err.out || { cat inspect.err.out; fail "inspect count"; }
grep -Eq "series +ct_abdomen_1_0mm +CT +int16 +6x8x7 +0.9 0.7 2.5 " inspect.err.out || { cat inspect.err.out; fail "inspect ct"; }
grep -Eq "series +portal_venous +CT +float32 +3x4x5 +0.6 0.8 1.5 " inspect.err.out || { cat inspect.err.out; fail "inspect pv"; }

# Shards: one study per shard plus the index, the same rejection and the same contents.
expect_exit 1 shards.err "$vit" convert patient7 -o s.h5 --shard-studies 1
one_rejection shards.err
[[ $(ls s.shard-*.h5 | wc -l) == 2 && -f s.h5 ]] || { ls; fail "expected s.h5 and two shards"; }
$py check_h5.py s.h5 || fail "the shards do not hold what write_test_dicom wrote"
expect_exit 0 inspect_shards.err "$vit" inspect s.h5 --no-volumes
grep -q "2 studies in shards" inspect_shards.err.out || { cat inspect_shards.err.out; fail "index not recognised"; }
echo "DICOM convert CLI: all checks passed"
