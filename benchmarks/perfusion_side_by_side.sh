#!/usr/bin/env bash
# CT perfusion, Vitruvian (`vitruvian perfusion`: data/perfusion/ and kernel 7) against a NumPy/SciPy
# peer of the same method (benchmarks/peers/perfusion_osvd_numpy.py: Debian's python3-numpy,
# python3-scipy and python3-h5py on OpenBLAS) on the same head-neck phantom study, alternated
# ROUNDS times, 1 rank and 2 threads each (OMP_NUM_THREADS/OPENBLAS_NUM_THREADS=2 for both, and
# `--threads 2` for Vitruvian). Prints the median seconds per study of each, their ratio, the
# peer's stages, both sides' volumes and verdict, and both extrapolated to a 512×512×320×30 study.
#   benchmarks/perfusion_side_by_side.sh [BUILD_DIR] [ROUNDS] [SHAPE] [FRAMES]
# SHAPE is Z,Y,X (default 80,256,256) and FRAMES the time points (default 30). The default study
# is a clinical acquisition scaled down: the in-plane matrix halved (256² over the phantom's
# 240 mm field of view, 0.94 mm pixels, against 512² at about 0.47 mm) and 80 slices over the
# phantom's 310 mm (3.9 mm) instead of 320 thin slices; 30 frames as acquired. The cost is
# reported per voxel-frame (seconds / (Z·Y·X·FRAMES)) and multiplied by 512·512·320·30 for the
# extrapolation. It is a first-order estimate: the deconvolution's share scales with the brain
# voxels (here about 6 % of the grid: the phantom's field of view includes the neck; a
# perfusion acquisition centred on the brain holds more), and the in-plane Gaussian's kernel
# (σ = smoothing_mm, 3 mm by default on both sides) is twice as wide in voxels at 0.47 mm pixels.
# SHAPE 320,512,512 measures the clinical size itself (an 8 GB study file in the work folder).
# Seconds per study are each program's own measure, from opening the study to the verdict
# (Vitruvian: the perfusion route's seconds in report.json, which include reading the series and
# building the five map volumes on the series' grid for the outputs, its stage `maps`; the peer:
# its timing.seconds, reading included, map volumes built only when written, after its clock);
# whole commands (start-up, imports, writing outputs) are shown beside them. PEER_ONLY=1 runs the peer alone.
# Run it on an otherwise idle machine: with other processes on its cores, OpenMP's spin-waiting
# barriers make the peer's many small OpenBLAS calls crawl (the 60×60 SVD alone took 0.5–1.5 s
# on a 2-core machine under load, a few ms on an idle one), and the medians mean little.
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
shape=${3:-80,256,256}
frames=${4:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
vit=$(cd "$build" && pwd)/bin/vitruvian
peer=$root/benchmarks/peers/perfusion_osvd_numpy.py
if [[ -z ${PEER_ONLY:-} ]] && ! "$vit" --help 2>/dev/null | grep -qE '^ +perfusion( |$)'; then
  echo "perfusion_side_by_side: $vit has no 'perfusion' command (build one with the perfusion analysis, or PEER_ONLY=1 to time the peer alone)" >&2
  exit 1
fi
work=$(mktemp -d /tmp/vitruvian_perfusion_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$vit" phantom --kind head-neck --studies 1 --shape "$shape" --frames "$frames" --seed 3 --out bench.h5 --threads 2 >phantom.log 2>&1 ||
  { cat phantom.log; exit 1; }
study=$(/usr/bin/python3 -c "import h5py; print(next(iter(h5py.File('bench.h5')['studies'])))")
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2

now() { date +%s.%N; }
vit_wall=() peer_wall=()
for ((r = 0; r < rounds; ++r)); do
  if [[ -z ${PEER_ONLY:-} ]]; then
    t0=$(now)
    "$vit" --threads 2 perfusion bench.h5 --study "$study" -o "v$r" >"v$r.log" 2>&1 || { cat "v$r.log"; exit 1; }
    t1=$(now)
    vit_wall+=("$(/usr/bin/python3 -c "print($t1 - $t0)")")
  fi
  t0=$(now)
  /usr/bin/python3 "$peer" --input bench.h5 --study "$study" --json "p$r.json" >"p$r.log" 2>&1 || { cat "p$r.log"; exit 1; }
  t1=$(now)
  peer_wall+=("$(/usr/bin/python3 -c "print($t1 - $t0)")")
done

/usr/bin/python3 - "$rounds" "$study" "$shape" "$frames" "${vit_wall[*]:-}" "${peer_wall[*]}" <<'PY'
import json, os, platform, statistics, subprocess, sys
import numpy, scipy
rounds, study, shape, frames = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
vit_wall = [float(x) for x in sys.argv[5].split()]
peer_wall = [float(x) for x in sys.argv[6].split()]
z, y, x = (int(v) for v in shape.split(","))
voxel_frames = z * y * x * frames
clinical = 512 * 512 * 320 * 30
med = statistics.median

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 2**20
blas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
print(f"# machine: {cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB; python {platform.python_version()}, numpy {numpy.__version__}, "
      f"scipy {scipy.__version__}, BLAS {blas}")
peer = [json.load(open(f"p{r}.json")) for r in range(rounds)]
p0 = peer[0]
print(f"# head-neck phantom {z}x{y}x{x} voxels (z,y,x; {' x '.join(f'{s:.2f}' for s in p0['spacing_xyz_mm'])} mm), "
      f"{frames} frames every {p0['interval_s']:.2f} s; brain {p0['brain_voxels']} voxels ({100 * p0['brain_voxels'] / (z * y * x):.1f} %), "
      f"1 rank, 2 threads; seconds per study, {rounds} alternated rounds")

def row(name, values, wall):
    print(f"{name:24s}" + " ".join(f"{v:8.2f}" for v in values) + f"   median {med(values):8.2f}"
          f"   (whole command {med(wall):.2f} s)")
    return med(values)

peer_s = [p["timing"]["seconds"] for p in peer]
vit = []
def vit_report(r):
    """The study's report.json (campaign layout OUT/studies/<id>/, or OUT/<id>/) and its seconds:
    the perfusion route's, which include reading the series (a route reads its series on first
    use), as the peer's seconds include its reading. The study's read_s counts the same read."""
    path = next(p for p in (f"v{r}/studies/{study}/report.json", f"v{r}/{study}/report.json") if os.path.exists(p))
    report = json.load(open(path))
    timing = report.get("timing", {})
    route = next(v for v in timing["routes"].values() if "seconds" in v)
    return report["perfusion"], route, route["seconds"]

if vit_wall:
    vit, vit_route, vit_s = zip(*(vit_report(r) for r in range(rounds)))
    v_med = row("vitruvian", vit_s, vit_wall)
p_med = row("numpy/scipy peer", peer_s, peer_wall)
if vit:
    ratio = p_med / v_med
    print(f"vitruvian / numpy-scipy peer speed: {ratio:.2f}x  (target >= 5: {'met' if ratio >= 5 else 'NOT met'})")
    # The route's stages: the first frame and the box (region), reading the box (read), then the
    # analysis's own.
    keys = [k for k in ("region_s", "read_s", "baseline_s", "curves_s", "deconvolution_s", "tmax_deconvolution_s",
                        "maps_s", "tissue_s") if k in vit_route[0]]
    timing = {k: med([v[k] for v in vit_route]) for k in keys}
    if timing:
        print("vitruvian stages (median s): " + ", ".join(f"{k.removesuffix('_s')} {s:.3f}" for k, s in timing.items()))
    if "maps_s" in vit_route[0]:
        # The peer's clock stops at the verdict; it builds its map volumes only when it writes them.
        # Ours counts building the five maps on the series' grid (maps_s): shown without them too.
        bare = med([s - v["maps_s"] for s, v in zip(vit_s, vit_route)])
        print(f"vitruvian without building the map volumes (the peer builds its after its clock): {bare:.2f} s, "
              f"{p_med / bare:.2f}x")
    if "voxels_read" in vit_route[0]:
        print(f"vitruvian read {100 * vit_route[0]['voxels_read'] / vit_route[0]['voxels']:.0f} % of the series' voxels "
              "(the box around the brain and skull; the peer reads it whole)")
stages = [k for k in p0["timing"] if k.endswith("_s")]
print("peer stages (median s):      " + ", ".join(f"{k[:-2]} {med([p['timing'][k] for p in peer]):.3f}" for k in stages))

print(f"per voxel-frame: " + (f"vitruvian {1e9 * v_med / voxel_frames:.2f} ns, " if vit else "")
      + f"peer {1e9 * p_med / voxel_frames:.2f} ns; extrapolated to 512x512x320x30: "
      + (f"vitruvian {v_med * clinical / voxel_frames:.1f} s, " if vit else "")
      + f"peer {p_med * clinical / voxel_frames:.1f} s")

def summary(r):
    v = r["volumes_ml"]
    return [v["core"], v["hypoperfused"], v["penumbra"], v["mismatch"], r["mismatch_ratio"], r["defuse3"]["eligible"]]

fmt = lambda x: "none" if x is None else (str(x) if isinstance(x, bool) else f"{x:.2f}")
print(f"{'volumes (mL), last round':24s} {'core':>8s} {'hypoperf':>8s} {'penumbra':>8s} {'mismatch':>8s} {'ratio':>8s} {'DEFUSE-3':>8s}")
for name, r in ([("vitruvian", vit[-1])] if vit else []) + [("numpy/scipy peer", peer[-1])]:
    print(f"{name:24s} " + " ".join(f"{fmt(s):>8s}" for s in summary(r)))
if vit:
    a, b = summary(vit[-1]), summary(peer[-1])
    diff = max(abs(u - w) for u, w in zip(a[:4], b[:4]))
    print(f"largest volume difference {diff:.2f} mL; verdicts {'agree' if a[5] == b[5] else 'DIFFER'}")
PY
