#!/usr/bin/env bash
# Patch reads, Vitruvian (C++) and h5py on the same files, one after the other, then the
# per-case ratio. Usage: benchmarks/patch_read_side_by_side.sh [BUILD_DIR] [DATA_DIR] [SIZE]
set -euo pipefail
build=${1:-build}
dir=${2:-/tmp/vitruvian_patch_bench}
size=${3:-256}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
"$build/bin/patch_read_bench" --dir "$dir" --size "$size" --benchmark_filter='memcpy|patch_read|whole_volume' \
  --benchmark_out="$out/vit.json" --benchmark_out_format=json >/dev/null
/usr/bin/python3 "$here/peers/patch_read_h5py.py" --dir "$dir" --size "$size" >"$out/h5py.txt"
/usr/bin/python3 - "$out/vit.json" "$out/h5py.txt" <<'PY'
import json, re, sys
vit = json.load(open(sys.argv[1]))["benchmarks"]
memcpy = next(b["MBps"] for b in vit if b["name"].startswith("memcpy"))
layouts = ["contiguous", "chunked", "compressed", "lz4"]
ours = {}
for b in vit:
    parts = b["name"].split("/")
    if parts[0] == "patch_read":
        layout, edge, cache = layouts[int(parts[1])], int(parts[2]), int(parts[3]) or 1
        ours[("patch_read", layout, edge, cache)] = b["MBps"]
    elif parts[0] == "whole_volume":
        ours[("whole_volume", layouts[int(parts[1])], 0, 1)] = b["MBps"]
print(f"memcpy {memcpy:.0f} MB/s (same run)")
print(f"{'case':58s} {'vitruvian MB/s':>14s} {'of memcpy':>9s} {'h5py MB/s':>10s} {'vit/h5py':>8s}")
for line in open(sys.argv[2]):
    m = re.match(r"h5py (\w+) (\w+)(?: edge=(\d+) cache=(\d+)MiB)? .*MBps=([\d.]+)", line)
    kind, layout, edge, cache, mbps = m.group(1), m.group(2), int(m.group(3) or 0), int(m.group(4) or 1), float(m.group(5))
    key = (kind, layout, edge, cache)
    if key not in ours:
        continue
    cache_text = "none (h5py: HDF5's 1MiB)" if cache == 1 else f"{cache}MiB"
    name = f"{kind} {layout}" + (f" {edge}^3 cache {cache_text}" if edge else "")
    print(f"{name:58s} {ours[key]:14.0f} {ours[key] / memcpy:9.2f} {mbps:10.0f} {ours[key] / mbps:8.2f}")
PY
rm -rf "$out"
