#!/usr/bin/env bash
# Runs collectives_bench several times and reports, per (op, size), the median over runs of the
# vitruvian/raw-MPI speed ratio — one run on a noisy machine can dip where the next does not.
#
#   benchmarks/collectives_repeat.sh [-n RUNS] [-r RANKS] [-b BUILD_DIR] [-- bench args...]
#   e.g. benchmarks/collectives_repeat.sh -n 3 -- --min-bytes 1M --max-bytes 256M --min-iters 30
#
# Each run's full table is kept in $OUT_DIR (default: a fresh temporary directory, printed).
set -euo pipefail

runs=3 ranks=2 build=build
while getopts "n:r:b:" opt; do
  case "$opt" in
    n) runs="$OPTARG" ;;
    r) ranks="$OPTARG" ;;
    b) build="$OPTARG" ;;
    *) echo "usage: $0 [-n RUNS] [-r RANKS] [-b BUILD_DIR] [-- bench args...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$build/bin/collectives_bench"
if [[ ! -x "$bench" ]]; then
  echo "collectives_repeat.sh: $bench not found; build with -DVITRUVIAN_BUILD_BENCHMARKS=ON" >&2
  exit 2
fi
out="${OUT_DIR:-$(mktemp -d -t vitruvian-collectives.XXXXXX)}"
mkdir -p "$out"
echo "# $runs runs of: $bench $* (ranks=$ranks); tables in $out"

for ((i = 1; i <= runs; i++)); do
  "$here/../launch/mpirun.sh" -np "$ranks" "$bench" "$@" >"$out/run$i.txt" 2>&1
  grep -E '^# target' "$out/run$i.txt" | sed "s/^/# run $i: /" || true
done

# Summary lines look like: "  allreduce  1048576  262144  raw  vit  algbw  busbw  ratio  wrong"
/usr/bin/python3 - "$out"/run*.txt <<'PY'
import re, statistics, sys
ratios, wrong = {}, {}
for name in sys.argv[1:]:
    for line in open(name):
        m = re.match(r"^  ([a-z_]+) +(\d+) +\S+ +\S+ +\S+ +\S+ +\S+ +(\S+) +(\d+)", line)
        if m:
            key = (m.group(1), int(m.group(2)))
            ratios.setdefault(key, []).append(float(m.group(3)))
            wrong[key] = wrong.get(key, 0) + int(m.group(4))
print(f"# {'op':14s} {'size(B)':>12s} {'median':>8s}   vit/raw per run")
worst = None
for key in sorted(ratios):
    med = statistics.median(ratios[key])
    runs = " ".join(f"{r:.3f}" for r in ratios[key])
    print(f"  {key[0]:14s} {key[1]:12d} {med:8.3f}   {runs}{'  WRONG RESULTS' if wrong[key] else ''}")
    if key[1] >= 1 << 20 and (worst is None or med < worst[0]):
        worst = (med, key)
if worst:
    verdict = "met" if worst[0] >= 0.9 else "NOT met"
    print(f"# target: median vitruvian >= 0.9 x raw MPI at >= 1 MiB: {verdict} "
          f"(lowest median {worst[0]:.3f}, {worst[1][0]} {worst[1][1]} B)")
PY
