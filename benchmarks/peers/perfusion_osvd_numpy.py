#!/usr/bin/python3
"""The NumPy/SciPy side of the perfusion comparison: docs/PERFUSION.md's whole per-study method
(checks, arrival and baseline, brain mask, in-plane smoothing, AIF/VOF, block-circulant oSVD,
maps, tissue classes, volumes, DEFUSE-3) written as a Python engineer would with Debian's
python3-numpy, python3-scipy and python3-h5py: vectorised over voxels, float32 for the curves,
LAPACK's SVD for the L×L matrix, BLAS matrix products for the residues of all voxels.

    OMP_NUM_THREADS=2 /usr/bin/python3 benchmarks/peers/perfusion_osvd_numpy.py \
        --input data.h5 --study ID [--series perfusion] --json out.json [--maps maps.h5]

Threads: only BLAS/LAPACK (OpenBLAS) use more than one; it reads OMP_NUM_THREADS /
OPENBLAS_NUM_THREADS from the caller's environment. NumPy's element-wise work and
scipy.ndimage are single-threaded (ndimage holds the GIL, so a thread pool does not help).

Memory: the series is read one frame (or one z slab of one frame) at a time; the brain's curves
are formed per z slab (slabs aligned to the dataset's chunks). They are kept for the
deconvolution pass while they fit --cache-mib; slabs past it are read and smoothed again.

Where docs/PERFUSION.md leaves a choice open, this script takes the following:
 1. First mask (for the arrival): the mask procedure of step 2 applied with frame 0 as the
    baseline; g(t) is the mean of the raw frame t over it. The final mask is the same
    procedure on the baseline. Arrival and baseline as written: e = g − the median of frames 1–3,
    a = the first frame from frame 2 on with e ≥ 5 % of the largest e from frame 2 on, baseline =
    mean of frames 0 … a−2 (at least frame 0).
 2. Bone = raw baseline > bone_hu (not smoothed), less its pieces (8-connected in plane) under 4
    pixels (a brain voxel's noise on thin slices); the brain window is tested on the baseline
    smoothed in plane over what is not bone (baseline × not-bone, smoothed, divided by the
    smoothed not-bone mask). "Cannot reach the air at the border without crossing bone":
    4-connected paths in the slice from the border's air (below -500 HU; from the whole border
    where a slice has none there) through pixels that are not bone nor beside bone (the skull
    widened by one pixel, 8-neighbourhood, closes the one-pixel gaps of thin bone); the widened rim
    still counts as inside.
 3. In-plane Gaussian: scipy.ndimage.gaussian_filter, σ_x = smoothing_mm / spacing_x and
    σ_y = smoothing_mm / spacing_y voxels, kernel radius ⌈3 σ⌉ (Vitruvian's taps), the edge pixels repeated
    past the border ('nearest'). ΔC is smoothed over the brain alone: set to 0 outside the brain
    mask, the smoothed slice divided by the smoothed mask.
 4. Temporal [1 2 1]/4 (off by default): end frames use their own value as the missing
    neighbour.
 5. Δt is the median frame interval; AUC = Σ ΔC · Δt over all frames; TTP = t[k] − t[0] + δ·Δt
    with δ from the parabola through frames k−1, k, k+1 (δ = 0 at the first or last frame or
    when the three points are not concave). FWHM counts the contiguous frames around the peak
    with ΔC > peak / 2, times Δt.
 6. AIF candidates: peak ≥ the 99th percentile of the brain's peaks (numpy's linear
    interpolation). The AIF and VOF are the means of their voxels' curves not smoothed in plane
    (candidates are chosen on the smoothed ones). The AIF's own TTP is that of the mean curve.
    VOF: TTP ≥ TTP(AIF) + Δt. Ties are broken by the voxel's z-y-x order (stable sort). Each
    takes more of its ranked candidates where σ / √count (σ: the MAD of frame 1 − frame 0 over
    the brain, an even sample of 2^20 voxels, × 1.4826 / √2) is over 1 % of the first count's
    peak: at most 1 000, and only candidates ranking at least half the count-th's value. The
    ranking: the best 4 000 by their smoothed curves' peak (AUC), then by that of their
    neighbours' curves, each smoothed curve less its own voxel's share w = the Gaussian's centre
    tap / the smoothed brain mask there ((curve − w · own curve) / (1 − w)), where the centre tap
    is at most 0.1 (else by the smoothed curves alone).
 7. oSVD levels: the m ≤ K (K: the count with s ≥ osvd_min_threshold · s_max) that end between
    distinct singular values (the circulant matrix's come in equal pairs, kept or dropped
    together), from K down; when none passes, the smallest is kept. OI of a zero residue is 0.
    The residue's peak position is refined by the parabola through l−1, l, l+1 (not at l = 0 or
    L−1); positions past L/2 are negative delays (Tmax = (pos − L)·Δt).
 8. CBF, CBV, MTT, Tmax, TTP are computed for every brain voxel; MTT is 0 where CBF ≤ 0.
 9. Tissue = brain voxels with cbv_min ≤ CBV ≤ cbv_max and CBF ≤ cbf_max; with low_cbv_core, a
    voxel below cbv_min (not a vessel) with CBF > 0 and Tmax above the threshold is core and
    hypoperfused, and counts as tissue, though not as healthy tissue. The midline is the
    brain mask's centroid in patient x (LPS, + = left); a voxel on the midline counts as right.
    Core and hypoperfused are taken over the tissue of both hemispheres (not only the lesion
    side); rCBF = CBF / healthy mean CBF. Islands: 26-connected components with fewer voxels
    than min_island_ml / voxel volume are removed.
10. DEFUSE-3 with no core: the ratio criterion is met when hypoperfused > 0 (ratio = ∞,
    reported as null).
"""
import argparse
import json
import math
import os
import sys
import time

import h5py
import numpy as np
from scipy import ndimage

DEFAULTS = {
    "min_frames": 10,
    "max_interval_deviation": 0.10,
    "min_enhancement_hu": 2.0,
    "bone_hu": 200.0,
    "brain_hu": [15.0, 60.0],
    "smoothing_mm": 3.0,
    "temporal_smoothing": False,
    "aif_voxels": 8,
    "vof_voxels": 8,
    "aif_lps_mm": None,
    "vof_lps_mm": None,
    "deconvolution": "osvd",
    "osvd_min_threshold": 0.02,
    "max_oscillation": 0.095,
    "svd_threshold": 0.20,
    "hematocrit_ratio": 0.73,
    "density": 1.04,
    "cbv_min": 0.4,
    "low_cbv_core": True,
    "cbv_max": 8.0,
    "cbf_max": 150.0,
    "tmax_threshold_s": 6.0,
    "rcbf_threshold": 0.30,
    "min_island_ml": 1.0,
    "defuse3_core_max_ml": 70.0,
    "defuse3_ratio_min": 1.8,
    "defuse3_mismatch_min_ml": 15.0,
}


# The in-plane Gaussian: kernel radius ⌈3 σ⌉ (scipy's own default, int(3 σ + 0.5), is a tap
# shorter at some σ, e.g. 6.4 pixels), the edge pixels repeated beyond the border.
def gauss_radius(sigma):
    return int(math.ceil(3.0 * sigma))


class StudyError(Exception):
    """A study the method refuses; the message is its failure record (one line per failure)."""


class Stages:
    """Seconds spent per stage, accumulated (slabs interleave reading, smoothing and deconvolution)."""

    def __init__(self):
        self.seconds = {}

    def add(self, name, t0):
        t1 = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + (t1 - t0)
        return t1


# ---------------------------------------------------------------------------------------------
# Input


class Series:
    """A 4D series of a Vitruvian dataset: frames read on demand, in HU, as float32."""

    def __init__(self, path, study, name):
        self.file = h5py.File(path, "r", rdcc_nbytes=64 << 20, rdcc_nslots=12421)
        where = f"studies/{study}/series/{name}"
        if f"studies/{study}" not in self.file:
            raise StudyError(f"{path}: no study '{study}'")
        if where not in self.file:
            raise StudyError(f"{path}: no series '{name}' in study '{study}'")
        group = self.file[where]
        self.image = group["image"]
        self.where = f"{path}:{where}"
        if self.image.ndim != 4:
            raise StudyError(f"{self.where}: the series is {self.image.ndim}D; expected 4D [t,z,y,x]")
        self.shape = self.image.shape[1:]
        self.frames = self.image.shape[0]
        self.times = np.asarray(group.attrs.get("frame_times_s", []), dtype=np.float64)
        self.spacing = np.asarray(group.attrs["spacing"], dtype=np.float64)  # x, y, z
        self.origin = np.asarray(group.attrs["origin"], dtype=np.float64)
        self.direction = np.asarray(group.attrs["direction"], dtype=np.float64).reshape(3, 3)
        # The format stores HU; a rescale pair is applied if a file carries one.
        self.slope = float(group.attrs.get("rescale_slope", 1.0))
        self.intercept = float(group.attrs.get("rescale_intercept", 0.0))
        chunks = self.image.chunks
        self.slab = int(chunks[1]) if chunks else 16

    def frame(self, t, z0=0, z1=None, y0=0, y1=None, x0=0, x1=None):
        out = self.image[t, z0:z1, y0:y1, x0:x1].astype(np.float32)
        if self.slope != 1.0 or self.intercept != 0.0:
            out *= self.slope
            out += self.intercept
        return out

    def window(self, z, y0, y1, x0, x1):
        """[t, y, x] around one voxel, all frames."""
        out = self.image[:, z, y0:y1, x0:x1].astype(np.float32)
        if self.slope != 1.0 or self.intercept != 0.0:
            out = out * self.slope + self.intercept
        return out

    def to_index(self, lps):
        """Nearest voxel (z, y, x) of an LPS point in mm."""
        m = self.direction * self.spacing[None, :]
        ijk = np.linalg.solve(m, np.asarray(lps, dtype=np.float64) - self.origin)
        ijk = np.clip(np.rint(ijk).astype(np.int64), 0, np.array(self.shape[::-1]) - 1)
        return int(ijk[2]), int(ijk[1]), int(ijk[0])


def check_frames(series, cfg):
    failures = []
    t = series.times
    if series.frames < cfg["min_frames"]:
        failures.append(f"{series.frames} frames; expected at least {cfg['min_frames']}")
    if len(t) != series.frames:
        failures.append(f"{len(t)} frame times for {series.frames} frames")
        return failures, 0.0
    d = np.diff(t)
    if len(d) == 0 or np.any(d <= 0):
        failures.append("frame times are not strictly increasing")
        return failures, 0.0
    dt = float(np.median(d))
    worst = float(np.max(np.abs(d - dt)) / dt)
    if worst > cfg["max_interval_deviation"]:
        failures.append(f"a frame interval deviates {100 * worst:.1f} % from the median {dt:.3f} s; "
                        f"expected within {100 * cfg['max_interval_deviation']:.0f} %")
    return failures, dt


# ---------------------------------------------------------------------------------------------
# Masks


def smooth_inplane(volume, sigma_yx):
    """Each axial slice of a [z, y, x] float32 volume smoothed by a Gaussian (σ in voxels)."""
    radius = (0, gauss_radius(sigma_yx[0]), gauss_radius(sigma_yx[1]))
    return ndimage.gaussian_filter(volume, sigma=(0.0, sigma_yx[0], sigma_yx[1]), output=np.float32, mode="nearest",
                                   radius=radius)


def brain_mask(baseline, sigma_yx, cfg):
    bone = baseline > cfg["bone_hu"]
    # Pieces of under 4 pixels (8-connected in plane) are not bone: a brain voxel's noise on thin
    # slices.
    plane = np.zeros((3, 3, 3), dtype=bool)
    plane[1] = True
    pieces, _ = ndimage.label(bone, structure=plane)
    bone &= (np.bincount(pieces.ravel()) >= 4)[pieces]
    # Intracranial: per slice, the non-bone pixels that no 4-connected path of pixels clear of the
    # widened skull joins to the slice's border (one 3D labelling with an in-plane structure labels
    # every slice at once).
    inplane = np.zeros((3, 3, 3), dtype=bool)
    inplane[1] = ndimage.generate_binary_structure(2, 1)
    around = np.zeros((3, 3, 3), dtype=bool)
    around[1] = True
    wall = ndimage.binary_dilation(bone, structure=around)
    labels, _ = ndimage.label(~wall, structure=inplane)
    # The paths start at the air on the slice's border (below -500 HU), so brain that a field of
    # view cut through the skull leaves at the border stays inside; a slice with no air at its
    # border starts from all of it.
    seeds = np.zeros(baseline.shape, dtype=bool)
    seeds[:, 0, :] = seeds[:, -1, :] = seeds[:, :, 0] = seeds[:, :, -1] = True
    seeds &= ~wall
    del wall
    air_seeds = seeds & (baseline < -500)
    seeds = np.where(air_seeds.any(axis=(1, 2))[:, None, None], air_seeds, seeds)
    outside = np.zeros(labels.max() + 1, dtype=bool)
    outside[np.unique(labels[seeds])] = True
    outside[0] = False  # the wall: its rim is inside, its bone is removed below
    intracranial = ~outside[labels]
    intracranial &= ~bone
    del labels
    tissue = (~bone).astype(np.float32)
    weight = smooth_inplane(tissue, sigma_yx)
    smoothed = smooth_inplane(baseline * tissue, sigma_yx) / np.maximum(weight, 1e-6)
    del tissue, weight
    lo, hi = cfg["brain_hu"]
    candidate = intracranial & (smoothed >= lo) & (smoothed <= hi)
    labels, n = ndimage.label(candidate, structure=ndimage.generate_binary_structure(3, 1))
    if n == 0:
        return np.zeros_like(candidate)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def arrival(series, sigma_yx, cfg, stages):
    """The first mask, the brain's mean curve, the arrival frame and the baseline volume."""
    t0 = time.perf_counter()
    frame0 = series.frame(0)
    t0 = stages.add("read", t0)
    mask0 = brain_mask(frame0, sigma_yx, cfg)
    t0 = stages.add("mask", t0)
    if not mask0.any():
        raise StudyError(f"{series.where}: no brain found in frame 0 (intracranial voxels within "
                         f"{cfg['brain_hu'][0]:g} … {cfg['brain_hu'][1]:g} HU)")
    g = np.empty(series.frames)
    g[0] = frame0[mask0].mean(dtype=np.float64)
    box = ndimage.find_objects(mask0.astype(np.uint8))[0]  # read only the first mask's bounding box
    inside = mask0[box]
    for t in range(1, series.frames):
        f = series.frame(t, box[0].start, box[0].stop, box[1].start, box[1].stop, box[2].start, box[2].stop)
        t0 = stages.add("read", t0)
        g[t] = f[inside].mean(dtype=np.float64)
        t0 = stages.add("mask", t0)
    # The level: the median of frames 1-3, not frame 0 (the mask's bone threshold, on one frame's
    # raw voxels, took that frame's noisiest brain voxels for bone).
    e = g - np.median(g[1:4])
    peak = e[2:].max()
    if peak < cfg["min_enhancement_hu"]:
        raise StudyError(f"{series.where}: no contrast arrival (the brain's mean enhancement peaks at "
                         f"{peak:.2f} HU; expected at least {cfg['min_enhancement_hu']:g} HU)")
    a = 2 + int(np.argmax(e[2:] >= 0.05 * peak))
    frames = max(1, a - 1)  # arteries fill a frame or two before the brain's mean
    baseline = frame0
    for t in range(1, frames):
        f = series.frame(t)
        t0 = stages.add("read", t0)
        baseline += f
    baseline /= frames
    brain = brain_mask(baseline, sigma_yx, cfg)
    stages.add("mask", t0)
    if not brain.any():
        raise StudyError(f"{series.where}: no brain found in the baseline")
    return brain, baseline, a, e


# ---------------------------------------------------------------------------------------------
# Curves


def temporal_121(curves):
    """[1 2 1]/4 along the last axis, the end frames repeated."""
    p = np.concatenate([curves[..., :1], curves, curves[..., -1:]], axis=-1)
    return (p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]) * np.float32(0.25)


def parabola_offset(y0, y1, y2):
    denom = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(denom < 0, 0.5 * (y0 - y2) / denom, 0.0)
    return np.clip(d, -0.5, 0.5)


def curve_stats(c, times, dt):
    """AUC, peak, TTP (s) and FWHM (s) of curves [n, T]."""
    n, T = c.shape
    rows = np.arange(n)
    auc = c.sum(axis=1, dtype=np.float64).astype(np.float32) * np.float32(dt)
    k = c.argmax(axis=1)
    peak = c[rows, k]
    inner = (k > 0) & (k < T - 1)
    km, kp = np.clip(k - 1, 0, T - 1), np.clip(k + 1, 0, T - 1)
    d = np.where(inner, parabola_offset(c[rows, km], peak, c[rows, kp]), 0.0)
    ttp = (times[k] - times[0] + d * dt).astype(np.float32)
    below = c <= (peak * np.float32(0.5))[:, None]
    idx = np.arange(T)
    left = np.where(below & (idx < k[:, None]), idx, -1).max(axis=1)
    right = np.where(below & (idx > k[:, None]), idx, T).min(axis=1)
    fwhm = ((right - left - 1) * dt).astype(np.float32)
    return auc, peak, ttp, fwhm


class Curves:
    """ΔC curves of the brain voxels, formed slab by slab."""

    def __init__(self, series, baseline, brain, sigma_yx, cfg):
        self.series, self.baseline, self.brain = series, baseline, brain
        self.sigma_yx, self.temporal = sigma_yx, cfg["temporal_smoothing"]
        self.radius = tuple(gauss_radius(s) for s in sigma_yx)  # the kernel's radius
        Z, Y, X = series.shape
        self.slabs = [(z, min(z + series.slab, Z)) for z in range(0, Z, series.slab)]
        # Voxel indices (flat, z-y-x order) of the brain in each slab.
        self.index = [np.flatnonzero(brain[z0:z1]) + z0 * Y * X for z0, z1 in self.slabs]
        # The Gaussian's centre tap (1 without smoothing), and per slab each brain voxel's own
        # curve's weight in its smoothed curve (the centre tap over the smoothed mask), once formed.
        self.centre = 1.0
        for sigma, r in zip(sigma_yx, self.radius):
            if sigma > 0:
                w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
                self.centre *= float(w[r] / w.sum())
        self.own = [np.empty(0, dtype=np.float32) for _ in self.slabs]

    def crop(self, s):
        """The slab's brain bounding box, widened in-plane by the kernel radius (clipped to the
        slice): the smoothed values at the brain voxels are those of whole slices."""
        z0, z1 = self.slabs[s]
        Y, X = self.series.shape[1:]
        zz, yy, xx = np.unravel_index(self.index[s], self.series.shape)
        ry, rx = self.radius
        return (int(zz.min()), int(zz.max()) + 1, max(int(yy.min()) - ry, 0), min(int(yy.max()) + ry + 1, Y),
                max(int(xx.min()) - rx, 0), min(int(xx.max()) + rx + 1, X)), (zz, yy, xx)

    def slab(self, s, stages):
        T = self.series.frames
        ct = np.empty((T, len(self.index[s])), dtype=np.float32)
        if len(self.index[s]) == 0:
            return np.ascontiguousarray(ct.T)
        (z0, z1, y0, y1, x0, x1), (zz, yy, xx) = self.crop(s)
        local = np.ravel_multi_index((zz - z0, yy - y0, xx - x0), (z1 - z0, y1 - y0, x1 - x0))
        base = self.baseline[z0:z1, y0:y1, x0:x1]
        t0 = time.perf_counter()
        keep = self.brain[z0:z1, y0:y1, x0:x1].astype(np.float32)
        share = smooth_inplane(keep, self.sigma_yx).ravel()[local]
        self.own[s] = np.float32(self.centre) / share
        for t in range(T):
            f = self.series.frame(t, z0, z1, y0, y1, x0, x1)
            t0 = stages.add("read", t0)
            f -= base
            f *= keep
            ct[t] = smooth_inplane(f, self.sigma_yx).ravel()[local] / share
            t0 = stages.add("curves", t0)
        c = np.ascontiguousarray(ct.T)
        if self.temporal:
            c = temporal_121(c)
        stages.add("curves", t0)
        return c

    def rows(self, positions, cache, stages):
        """The smoothed curves [len(positions), T] of the brain voxels at `positions` (in the
        slabs' order), from `cache` (per slab, None where it was not kept) or formed again, and
        each one's own curve's weight in it [len(positions)]."""
        out = np.empty((len(positions), self.series.frames), dtype=np.float32)
        own = np.empty(len(positions), dtype=np.float32)
        start = 0
        for s, index in enumerate(self.index):
            here = np.flatnonzero((positions >= start) & (positions < start + len(index)))
            if len(here):
                c = cache[s] if cache[s] is not None else self.slab(s, stages)
                out[here] = c[positions[here] - start]
                own[here] = self.own[s][positions[here] - start]
            start += len(index)
        return out, own

    def at(self, voxels):
        """Curves [len(voxels), T] of any voxels (z, y, x), not smoothed in plane: these are the
        reference curves of vessels a few voxels wide, which smoothing would dilute. One read per
        slice, of the box around that slice's voxels."""
        v = np.asarray(voxels, dtype=np.int64).reshape(-1, 3)
        c = np.empty((len(v), self.series.frames), dtype=np.float32)
        for z in np.unique(v[:, 0]):
            rows = np.flatnonzero(v[:, 0] == z)
            y, x = v[rows, 1], v[rows, 2]
            w = self.series.window(int(z), int(y.min()), int(y.max()) + 1, int(x.min()), int(x.max()) + 1)
            c[rows] = (w[:, y - y.min(), x - x.min()] - self.baseline[z, y, x]).T
        return temporal_121(c) if self.temporal else c


# ---------------------------------------------------------------------------------------------
# Arterial input, venous output


def first_pass_area(c, dt):
    """Summed to the first frame after the peak under 20 % of it, then (where it falls under 20 %
    within the acquisition) an exponential tail from the end of that frame's interval, with the
    time constant of the fall from 50 % to there, at most the time from the peak to there."""
    c = np.asarray(c, dtype=np.float64)
    k = int(c.argmax())
    if not c[k] > 0:
        return 0.0
    half, end = k, k
    while half + 1 < len(c) and c[half] > 0.5 * c[k]:
        half += 1
    while end + 1 < len(c) and c[end] > 0.2 * c[k]:
        end += 1
    area = float(c[:end + 1].sum()) * dt
    if end > half and 0 < c[end] <= 0.2 * c[k]:
        tau = min((end - half) * dt / np.log(c[half] / c[end]), (end - k) * dt)
        area += float(c[end]) * tau * np.exp(-dt / (2 * tau))
    return area


def own_baseline(c):
    """The curve less the mean of its frames before the last one under 10 % of its peak ahead of it."""
    k = int(c.argmax())
    if not c[k] > 0:
        return c
    below = np.flatnonzero(c[:k] < 0.1 * c[k])
    if len(below) == 0 or below[-1] < 1:
        return c
    return (c - c[:below[-1]].astype(np.float64).mean()).astype(c.dtype)


def frame_noise(series, brain):
    """σ per voxel and frame: the MAD of frame 1 less frame 0 over the brain (an even sample of
    2^20 voxels of a larger one), over √2."""
    index = np.flatnonzero(brain)
    step = -(-len(index) // (1 << 20))
    zz, yy, xx = np.unravel_index(index[::step], brain.shape)
    box = ndimage.find_objects(brain.astype(np.uint8))[0]
    lo = [b.start for b in box]
    f0, f1 = (series.frame(t, box[0].start, box[0].stop, box[1].start, box[1].stop, box[2].start, box[2].stop)
              for t in (0, 1))
    d = (f1 - f0)[zz - lo[0], yy - lo[1], xx - lo[2]].astype(np.float64)
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0)


def reference(curves, ranked, values, count, voxels, noise):
    """The mean curve of the first `count` of `ranked` (best first; `values` theirs) and their
    voxels, over more of them where its noise per frame (noise / √count) would be over 1 % of its
    peak: at most 1 000, and only those whose value is at least half the count-th's."""
    count = min(count, len(ranked))
    c = curves.at(voxels(ranked[:count])).mean(axis=0)
    if c.max() > 0 and count > 0:
        eligible = int(np.count_nonzero(values >= 0.5 * values[count - 1]))
        needed = int(min(np.ceil((noise / (0.01 * float(c.max()))) ** 2), 1000, eligible))
        if needed > count:
            count = needed
            c = curves.at(voxels(ranked[:count])).mean(axis=0)
    return c, voxels(ranked[:count])


def neighbours_ranked(ranked, values, which, curves, cache, stages, voxels, series, dt):
    """The best 4 000 of `ranked` (best first by `values`, statistic `which` of curve_stats of their
    smoothed curves) ranked again by that of their neighbours' curves, and those values; `ranked`
    and `values` as they are where the Gaussian's centre tap is over 0.1."""
    if curves.centre > 0.1:
        return ranked, values
    pool = ranked[:4000]
    smoothed, w = curves.rows(pool, cache, stages)
    own = curves.at(voxels(pool))
    w = w[:, None]
    apart = np.where(w <= 0.999, (smoothed - w * own) / np.maximum(1 - w, 0.001), smoothed).astype(np.float32)
    values = curve_stats(apart, series.times, dt)[which]
    order = np.argsort(-values, kind="stable")
    return pool[order], values[order]


def select_inputs(stats, curves, cache, stages, series, dt, cfg, noise):
    auc, peak, ttp, fwhm = stats
    shape = series.shape
    brain_index = np.concatenate(curves.index)

    def voxels(rows):
        return [tuple(int(v) for v in np.unravel_index(brain_index[r], shape)) for r in rows]

    if cfg["aif_lps_mm"] is not None:
        aif_vox = [series.to_index(cfg["aif_lps_mm"])]
        aif = curves.at(aif_vox).mean(axis=0)
    else:
        cand = np.flatnonzero(peak >= np.percentile(peak, 99))
        cand = cand[ttp[cand] <= np.median(ttp[cand])]
        cand = cand[fwhm[cand] <= np.median(fwhm[cand])]
        ranked = cand[np.argsort(-peak[cand], kind="stable")]
        ranked, values = neighbours_ranked(ranked, peak[ranked], 1, curves, cache, stages, voxels, series, dt)
        aif, aif_vox = reference(curves, ranked, values, cfg["aif_voxels"], voxels, noise)
    a_auc, a_peak, a_ttp, _ = (v[0] for v in curve_stats(aif[None, :], series.times, dt))
    if cfg["vof_lps_mm"] is not None:
        vof_vox = [series.to_index(cfg["vof_lps_mm"])]
        vof = curves.at(vof_vox).mean(axis=0)
    else:
        late = np.flatnonzero(ttp >= a_ttp + dt)
        if len(late) == 0:
            raise StudyError(f"{series.where}: no venous output (no brain voxel peaks {dt:.2f} s after the "
                             f"arterial input's {a_ttp:.2f} s)")
        ranked = late[np.argsort(-auc[late], kind="stable")]
        ranked, values = neighbours_ranked(ranked, auc[ranked], 0, curves, cache, stages, voxels, series, dt)
        vof, vof_vox = reference(curves, ranked, values, cfg["vof_voxels"], voxels, noise)
    vof = own_baseline(vof)
    v_auc, v_peak, v_ttp, _ = (v[0] for v in curve_stats(vof[None, :], series.times, dt))
    scale = 1.0
    if a_auc <= 0:
        raise StudyError(f"{series.where}: the arterial input's AUC is {a_auc:.3g}; expected > 0")
    a_first, v_first = first_pass_area(aif, dt), first_pass_area(vof, dt)
    if v_first > a_first > 0:
        scale = float(v_first / a_first)
        aif = aif * np.float32(scale)
    summary = {
        "aif": {"voxels_zyx": aif_vox, "peak_hu": float(a_peak) * scale, "ttp_s": float(a_ttp),
                "auc_hu_s": float(a_auc) * scale, "scaled_by": scale},
        "vof": {"voxels_zyx": vof_vox, "peak_hu": float(v_peak), "ttp_s": float(v_ttp), "auc_hu_s": float(v_auc)},
    }
    return aif.astype(np.float32), vof, summary


# ---------------------------------------------------------------------------------------------
# Deconvolution


class Basis:
    """analysis [T, K] (Uᵀ's first T columns over s_k, transposed) and synthesis [K, L] (Vᵀ's rows)."""

    def __init__(self, aif, dt, cfg):
        T = len(aif)
        a = np.asarray(aif, dtype=np.float64)
        # The input linear between its samples: weights (a[k−1] + 4a[k] + a[k+1]) / 6.
        if cfg["deconvolution"] == "osvd":
            L = 2 * T
            padded = np.zeros(L)
            padded[:T] = a
            w = (np.roll(padded, 1) + 4 * padded + np.roll(padded, -1)) / 6
            i = np.arange(L)
            A = dt * w[(i[:, None] - i[None, :]) % L]
            limit, self.max_oscillation = cfg["osvd_min_threshold"], cfg["max_oscillation"]
        else:
            L = T
            ext = np.concatenate([[0.0], a, [0.0]])
            w = (ext[:-2] + 4 * ext[1:-1] + ext[2:]) / 6
            i = np.arange(T)
            A = np.where(i[:, None] >= i[None, :], dt * w[(i[:, None] - i[None, :]) % T], 0.0)
            limit, self.max_oscillation = cfg["svd_threshold"], 0.0
        U, s, Vt = np.linalg.svd(A)
        K = int(np.count_nonzero(s >= limit * s[0]))
        # Levels end between distinct singular values: the circulant matrix's come in equal pairs
        # (a frequency and its conjugate), kept or dropped together.
        m = np.arange(1, K + 1)
        self.levels = m[(m == K) | (s[np.minimum(m, len(s) - 1)] < s[m - 1] * (1 - 1e-6))]
        self.L, self.K, self.dt = L, K, dt
        self.singular = s
        self.analysis = (U[:T, :K] / s[:K]).astype(np.float32)
        self.synthesis = np.ascontiguousarray(Vt[:K]).astype(np.float32)


def oscillation(r):
    d2 = r[:, 2:] + r[:, :-2]
    d2 -= 2 * r[:, 1:-1]
    np.abs(d2, out=d2)
    top = np.abs(r).max(axis=1)
    num = d2.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(top > 0, num / (r.shape[1] * top), 0.0)


def residue_peaks(r, basis):
    n, L = r.shape
    rows = np.arange(n)
    k = r.argmax(axis=1)
    peak = r[rows, k]
    inner = (k > 0) & (k < L - 1)
    d = parabola_offset(r[rows, np.maximum(k - 1, 0)], peak, r[rows, np.minimum(k + 1, L - 1)])
    return peak, k + np.where(inner, d, 0.0)


def deconvolve(c, basis, block=1024):
    """Peak of the kept residue, its (refined) position and the kept level, per curve [n, T].
    The two matrix products run over the whole slab (BLAS, threaded); the level search in blocks
    of 1024 curves, whose residues (240 KiB) stay in the CPU's L2 cache: 3x faster than whole
    slabs, and their temporaries stay below glibc's trim threshold, so the pages are reused."""
    n = c.shape[0]
    peak = np.empty(n, dtype=np.float32)
    pos = np.empty(n, dtype=np.float32)
    level = np.empty(n, dtype=np.int32)
    z = c @ basis.analysis  # [n, K]
    r = z @ basis.synthesis  # [n, L]: the residues with all K components
    if basis.max_oscillation <= 0:
        peak[:], pos[:] = residue_peaks(r, basis)
        level[:] = basis.K
        return peak, pos, level
    for i in range(0, n, block):
        j = slice(i, i + block)
        search_levels(z[j], r[j], basis, peak[j], pos[j], level[j])
    return peak, pos, level


def search_levels(z, r, basis, peak, pos, level):
    """oSVD: from the most components down, the first residue whose oscillation index passes.
    r (a view of this block's residues) is updated in place."""
    n = z.shape[0]
    active = np.arange(n)
    levels = basis.levels[::-1]
    for i, m in enumerate(levels):
        ok = oscillation(r) <= basis.max_oscillation
        if i == len(levels) - 1:
            ok[:] = True
        if ok.any():
            rows = active[ok]
            peak[rows], pos[rows] = residue_peaks(r[ok], basis)
            level[rows] = m
            if ok.all():
                break
            keep = ~ok
            active, r, z = active[keep], r[keep], z[keep]
        below = levels[i + 1]
        r -= z[:, below:m] @ basis.synthesis[below:m]  # down to the next level's components


# ---------------------------------------------------------------------------------------------
# Tissue, volumes, triage


def remove_islands(mask3, min_voxels):
    labels, n = ndimage.label(mask3, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return mask3
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


def tissue_classes(maps, brain_index, series, cfg):
    shape = series.shape
    voxel_ml = float(np.prod(series.spacing)) / 1000.0
    cbf, cbv, tmax = maps["cbf"], maps["cbv"], maps["tmax"]
    vessel = (cbv > cfg["cbv_max"]) | (cbf > cfg["cbf_max"])
    tissue = (cbv >= cfg["cbv_min"]) & ~vessel
    collapsed = ((cbv < cfg["cbv_min"]) & (cbf > 0) & (tmax > cfg["tmax_threshold_s"]) & ~vessel if cfg["low_cbv_core"]
                 else np.zeros_like(tissue))
    zyx = np.unravel_index(brain_index, shape)
    m = series.direction * series.spacing[None, :]
    x_lps = series.origin[0] + m[0, 0] * zyx[2] + m[0, 1] * zyx[1] + m[0, 2] * zyx[0]
    midline = float(x_lps.mean())
    left = x_lps > midline
    late = (tissue & (tmax > cfg["tmax_threshold_s"])) | collapsed
    late_left, late_right = int(np.count_nonzero(late & left)), int(np.count_nonzero(late & ~left))
    lesion_left = late_left > late_right
    healthy = tissue & ~late & (left != lesion_left)
    if not healthy.any():
        raise StudyError(f"{series.where}: no healthy tissue in the contralateral hemisphere to normalise CBF")
    healthy_cbf = float(cbf[healthy].mean(dtype=np.float64))
    rcbf = cbf / np.float32(healthy_cbf)
    min_voxels = cfg["min_island_ml"] / voxel_ml

    def cleaned(sel):
        m3 = np.zeros(shape, dtype=bool)
        m3.ravel()[brain_index[sel]] = True
        return remove_islands(m3, min_voxels)

    core = cleaned((tissue & (rcbf < cfg["rcbf_threshold"])) | collapsed)
    hypo = cleaned(late)
    penumbra = hypo & ~core
    tissue = tissue | collapsed
    masks = {"tissue": tissue, "core": core, "hypoperfused": hypo, "penumbra": penumbra}
    info = {"midline_x_lps_mm": midline, "lesion_side": "left" if lesion_left else "right",
            "hypoperfused_voxels_left_right": [late_left, late_right], "healthy_cbf": healthy_cbf,
            "tissue_voxels": int(np.count_nonzero(tissue)), "voxel_ml": voxel_ml}
    return masks, info


def triage(masks, voxel_ml, cfg):
    core = np.count_nonzero(masks["core"]) * voxel_ml
    hypo = np.count_nonzero(masks["hypoperfused"]) * voxel_ml
    pen = np.count_nonzero(masks["penumbra"]) * voxel_ml
    mismatch = max(0.0, hypo - core)  # 0 when the core (classed by flow alone) is the larger
    ratio = hypo / core if core > 0 else None
    core_ok = core < cfg["defuse3_core_max_ml"]
    ratio_ok = (ratio >= cfg["defuse3_ratio_min"]) if ratio is not None else hypo > 0
    mismatch_ok = mismatch >= cfg["defuse3_mismatch_min_ml"]
    return {
        "volumes_ml": {"core": core, "hypoperfused": hypo, "penumbra": pen, "mismatch": mismatch},
        "mismatch_ratio": ratio,
        "defuse3": {"eligible": bool(core_ok and ratio_ok and mismatch_ok),
                    "core": {"value_ml": core, "max_ml": cfg["defuse3_core_max_ml"], "met": bool(core_ok)},
                    "ratio": {"value": ratio, "min": cfg["defuse3_ratio_min"], "met": bool(ratio_ok)},
                    "mismatch": {"value_ml": mismatch, "min_ml": cfg["defuse3_mismatch_min_ml"], "met": bool(mismatch_ok)}},
    }


# ---------------------------------------------------------------------------------------------


def write_maps(path, series, brain, brain_index, maps, masks, aif, vof, report):
    tmp = f"{os.path.dirname(os.path.abspath(path))}/.{os.path.basename(path)}.tmp.{os.getpid()}.h5"
    with h5py.File(tmp, "w") as f:
        geometry = {"spacing": series.spacing, "origin": series.origin, "direction": series.direction}
        for name in ("cbf", "cbv", "mtt", "tmax", "ttp"):
            v = np.full(series.shape, np.nan, dtype=np.float32)
            v.ravel()[brain_index] = maps[name]
            d = f.create_dataset(name, data=v, chunks=True)
            d.attrs.update(geometry)
        for name, m in {"brain": brain, **masks}.items():
            if m.shape != series.shape:  # a per-brain-voxel selection
                v = np.zeros(series.shape, dtype=bool)
                v.ravel()[brain_index[m]] = True
                m = v
            d = f.create_dataset(name, data=m.astype(np.uint8), chunks=True)
            d.attrs.update(geometry)
        f["aif"], f["vof"] = aif, vof
        f.attrs["report_json"] = json.dumps(report)
    os.replace(tmp, path)


def run(args, cfg):
    stages = Stages()
    wall0 = time.perf_counter()
    t0 = wall0
    series = Series(args.input, args.study, args.series)
    failures, dt = check_frames(series, cfg)
    if failures:
        raise StudyError("\n".join(f"{series.where}: {f}" for f in failures))
    stages.add("checks", t0)
    sigma_yx = (cfg["smoothing_mm"] / series.spacing[1], cfg["smoothing_mm"] / series.spacing[0])
    brain, baseline, a, g = arrival(series, sigma_yx, cfg, stages)

    curves = Curves(series, baseline, brain, sigma_yx, cfg)
    n = int(sum(len(i) for i in curves.index))
    budget = args.cache_mib << 20
    cache, stats = [], []
    for s in range(len(curves.slabs)):
        c = curves.slab(s, stages)
        t0 = time.perf_counter()
        stats.append(curve_stats(c, series.times, dt))
        t0 = stages.add("stats", t0)
        cache.append(c if sum(x.nbytes for x in cache if x is not None) + c.nbytes <= budget else None)
    stats = tuple(np.concatenate([st[i] for st in stats]) for i in range(4))
    cached = sum(1 for c in cache if c is not None)

    t0 = time.perf_counter()
    aif, vof, inputs = select_inputs(stats, curves, cache, stages, series, dt, cfg, frame_noise(series, brain))
    t0 = stages.add("aif_vof", t0)
    basis = Basis(aif, dt, cfg)
    stages.add("basis", t0)  # the SVD of the L x L matrix

    peak, pos, level = [], [], []
    for s in range(len(curves.slabs)):
        c = cache[s] if cache[s] is not None else curves.slab(s, stages)
        cache[s] = None
        t0 = time.perf_counter()
        p, q, m = deconvolve(c, basis)
        peak.append(p), pos.append(q), level.append(m)
        stages.add("deconvolution", t0)
    t0 = time.perf_counter()
    peak, pos, level = np.concatenate(peak), np.concatenate(pos), np.concatenate(level)
    k = np.float32(cfg["hematocrit_ratio"] / cfg["density"])
    auc, _, ttp, _ = stats
    cbf = np.float32(6000) * k * peak
    cbv = np.float32(100) * k * auc / np.float32(inputs["aif"]["auc_hu_s"])
    with np.errstate(divide="ignore", invalid="ignore"):
        mtt = np.where(cbf > 0, 60 * cbv / cbf, 0).astype(np.float32)
    delay = np.where(pos > basis.L / 2, pos - basis.L, pos) if cfg["deconvolution"] == "osvd" else pos
    maps = {"cbf": cbf, "cbv": cbv, "mtt": mtt, "tmax": (delay * dt).astype(np.float32), "ttp": ttp}
    t0 = stages.add("maps", t0)

    brain_index = np.concatenate(curves.index)
    masks, tissue = tissue_classes(maps, brain_index, series, cfg)
    verdict = triage(masks, tissue["voxel_ml"], cfg)
    stages.add("tissue", t0)

    wall = time.perf_counter() - wall0
    levels = np.bincount(level, minlength=basis.K + 1)
    report = {
        "input": args.input, "study": args.study, "series": args.series,
        "shape_zyx": list(series.shape), "frames": series.frames, "spacing_xyz_mm": series.spacing.tolist(),
        "interval_s": dt, "arrival_frame": a, "brain_mean_enhancement_hu": g.round(3).tolist(),
        "brain_voxels": n, "brain_ml": n * tissue["voxel_ml"],
        "smoothing_sigma_voxels_yx": list(sigma_yx),
        "deconvolution": {"method": cfg["deconvolution"], "length": basis.L, "components": basis.K,
                          "kept_levels_median": float(np.median(level)),
                          "kept_levels_histogram": levels.tolist(), "levels": basis.levels.tolist()},
        **inputs,
        "tissue": tissue,
        "maps_median_brain": {k_: float(np.median(v)) for k_, v in maps.items()},
        **verdict,
        "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "curves_cached_slabs": f"{cached}/{len(cache)}",
        "timing": {"seconds": wall, "voxel_frames_per_second": float(np.prod(series.shape)) * series.frames / wall,
                   **{f"{k_}_s": v for k_, v in stages.seconds.items()}},
    }
    if args.maps:
        t0 = time.perf_counter()
        write_maps(args.maps, series, brain, brain_index, maps, masks, aif, vof, report)
        report["timing"]["write_maps_s"] = time.perf_counter() - t0
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="Vitruvian HDF5 dataset")
    p.add_argument("--study", required=True)
    p.add_argument("--series", default="perfusion")
    p.add_argument("--json", help="write the report here (default: stdout)")
    p.add_argument("--maps", help="also write CBF, CBV, MTT, Tmax, TTP and the masks to this HDF5 file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a perfusion setting, e.g. --set temporal_smoothing=true")
    p.add_argument("--cache-mib", type=int, default=4096,
                   help="memory for keeping the brain's curves between the two passes (default 4096)")
    args = p.parse_args()
    cfg = dict(DEFAULTS)
    for kv in args.set:
        key, _, value = kv.partition("=")
        if key not in cfg:
            sys.exit(f"--set {kv}: unknown setting '{key}'; expected one of {', '.join(cfg)}")
        cfg[key] = json.loads(value)
    try:
        report = run(args, cfg)
    except StudyError as e:
        sys.exit(str(e))
    text = json.dumps(report, indent=1)
    if args.json:
        tmp = f"{args.json}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.json)
    else:
        print(text)


if __name__ == "__main__":
    main()
