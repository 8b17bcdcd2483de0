"""Independent checks of a campaign's reports on phantoms, with numpy/scipy/h5py only.

check_campaign_truth.py DATASET OUTPUT_DIR MEASURE_ROUTE [MODEL_ROUTE]
- MEASURE_ROUTE measured the truth label map: its volumes equal the phantom's recorded label
  volumes, its nodule count the recorded nodules, and its calcium score per artery equals an
  Agatston score computed here from the non-contrast CT and the truth arteries (slice-wise
  8-connected lesions, peak weights, slice spacing / 3 mm, nearest artery within 3 mm or one
  voxel diagonal where that is longer), with a score on exactly the arteries the phantom put
  plaques on.
- MODEL_ROUTE (optional): its volumes equal the voxel counts of its label map in labels.h5 and
  its Dice equals the Dice of that map against the truth, grouped as the model card says.
"""
import json
import sys

import h5py
import numpy as np
from scipy import ndimage

dataset, out, measure = sys.argv[1], sys.argv[2], sys.argv[3]
model_route = sys.argv[4] if len(sys.argv) > 4 else None
WEIGHTS = [(400, 4), (300, 3), (200, 2), (130, 1)]


def agatston(ct, region, arteries, spacing_zyx):
    """Per artery and unassigned: the score, computed from scratch."""
    sz, sy, sx = spacing_zyx
    # Calcium lying mostly outside the region (over the whole volume) is bone reaching in; the
    # rest counts inside the region.
    calcium, m = ndimage.label(ct >= 130, structure=np.ones((3, 3, 3)))
    inside = np.bincount(calcium[region], minlength=m + 1)
    outside = np.bincount(calcium[~region], minlength=m + 1)
    kept = inside > outside
    kept[0] = False
    cand_full = kept[calcium] & region
    box = ndimage.find_objects(region.astype(np.uint8))[0]  # every artery lies inside the region
    ct, cand = ct[box], cand_full[box]
    arteries = {a: mask[box] for a, mask in arteries.items()}
    lesions3d, n = ndimage.label(cand, structure=np.ones((3, 3, 3)))
    reach = max(3.0, float(np.sqrt(np.sum(np.square(spacing_zyx)))))  # touching counts on any grid
    nearest = np.full(n + 1, np.inf)
    owner = np.full(n + 1, None, dtype=object)
    for name, mask in arteries.items():
        if not mask.any():
            continue
        dist = ndimage.distance_transform_edt(~mask, sampling=spacing_zyx)
        for i in range(1, n + 1):
            d = dist[lesions3d == i].min()
            if d <= reach and d < nearest[i]:
                nearest[i], owner[i] = d, name
    scores = {name: 0.0 for name in arteries}
    scores[None] = 0.0
    for z in range(ct.shape[0]):
        spots, m = ndimage.label(cand[z], structure=np.ones((3, 3)))
        for s in range(1, m + 1):
            where = spots == s
            area = where.sum() * sy * sx
            if area < 1.0:
                continue
            peak = ct[z][where].max()
            weight = next(w for t, w in WEIGHTS if peak >= t)
            lesion = lesions3d[z][where][0]
            scores[owner[lesion]] += area * weight * sz / 3.0
    return scores


def grown(mask, radius_mm, spacing_zyx):
    """Voxels within radius_mm (Euclidean) of the mask."""
    return ndimage.distance_transform_edt(~mask, sampling=spacing_zyx) <= radius_mm


with h5py.File(dataset, "r") as f:
    table = dict(zip(f.attrs["label_ids"], [n.decode() if isinstance(n, bytes) else n for n in f.attrs["label_names"]]))
    ids = {v: k for k, v in table.items()}
    checked = 0
    for sid in f["studies"]:
        study = f["studies"][sid]
        truth = json.loads(study.attrs["metadata_json"])["phantom"]
        report = json.load(open(f"{out}/studies/{sid}/report.json"))
        anatomy = study["labels/anatomy"][()]
        spacing_xyz = study["series/ct"].attrs["spacing"]
        spacing_zyx = (spacing_xyz[2], spacing_xyz[1], spacing_xyz[0])
        structures = report["routes"][measure]["structures"]
        for name, ml in truth["label_volumes_ml"].items():
            got = structures[name]["volume_ml"]
            assert abs(got - ml) <= 1e-3, f"{sid} {name}: volume {got} mL, phantom {ml} mL"
        nodules = structures.get("lung_nodule", {}).get("lesions", {}).get("count", 0)
        assert nodules == len(truth["nodules"]), f"{sid}: {nodules} nodules reported, phantom has {len(truth['nodules'])}"
        # Calcium from scratch.
        ct = study["series/ct/image"][()].astype(np.float32)
        arteries = {a: anatomy == ids[a] for a in ("coronary_lad", "coronary_lcx", "coronary_rca")}
        region = grown(np.any(list(arteries.values()), axis=0), 3.0, spacing_zyx)
        expected = agatston(ct, region, arteries, spacing_zyx)
        calcium = report["calcium"]
        for a in arteries:
            got = calcium["arteries"][a]["agatston"]
            assert abs(got - expected[a]) <= 1e-3 * max(1.0, expected[a]), f"{sid} {a}: Agatston {got}, computed here {expected[a]}"
        assert abs(calcium["unassigned"]["agatston"] - expected[None]) <= 1e-3 * max(1.0, expected[None])
        with_plaques = {"coronary_" + p["artery"] for p in truth["plaques"]}
        scored = {a for a in arteries if calcium["arteries"][a]["agatston"] > 0}
        assert scored == with_plaques, f"{sid}: arteries scored {sorted(scored)}, plaques on {sorted(with_plaques)}"
        if model_route:
            r = report["routes"][model_route]
            with h5py.File(f"{out}/studies/{sid}/labels.h5", "r") as lf:
                pred = lf[f"studies/{sid}/labels/{model_route}"][()]
                names = [n.decode() if isinstance(n, bytes) else n for n in lf.attrs["label_names"]]
                file_ids = dict(zip(names, lf.attrs["label_ids"]))
            voxel_ml = float(np.prod(spacing_xyz)) / 1000
            card = json.load(open(r["model"] + "/model.json"))
            lookup = np.zeros(65536, dtype=np.int64)
            for c, label_ids in enumerate(card["class_label_ids"]):
                for i in label_ids:
                    if i > 0:
                        lookup[i] = c
            grouped = lookup[anatomy]
            for c, name in enumerate(card["class_names"][1:], start=1):
                mine = pred == file_ids[name]  # labels.h5 writes each class as its name's id in the file's table
                got = r["structures"][name]["volume_ml"]
                assert abs(got - mine.sum() * voxel_ml) < 1e-5, f"{sid} {name}: volume {got} vs labels.h5"
                inter = (mine & (grouped == c)).sum()
                total = mine.sum() + (grouped == c).sum()
                dice = r["dice"][name]
                if total == 0:
                    assert dice is None
                else:
                    assert abs(dice - 2 * inter / total) < 1e-5, f"{sid} {name}: Dice {dice}, computed here {2 * inter / total}"
        checked += 1
print(f"campaign reports agree with the phantom truth and independent computation on {checked} studies")
