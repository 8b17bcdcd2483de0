#!/usr/bin/env bash
# Builds Vitruvian's GPU side on a machine without a GPU: every translation unit that only a
# CUDA LibTorch compiles (the NCCL backend on LibTorch's streams, the kernels' dispatch on CUDA
# streams, CUDA autocast, LibTorch's GPU ops in kernels_bench, the *_CUDA tests) against
# Debian trixie's LibTorch 2.6 built with CUDA, linked with nvcc/NCCL from /usr/local/cuda.
#
# The LibTorch packages (libtorch-cuda-dev and libtorch-cuda-2.6, ~480 MB download, 1.5 GB
# unpacked) are fetched with apt-get from a private apt state under the build tree and unpacked
# there with dpkg -x, never installed: the first run fetches them, later runs reuse them. The
# programs are linked but not run: the libraries LibTorch's CUDA build needs at run time
# (CUDA 12's cuBLAS/cuDNN, trixie's libstdc++, oneDNN 3.6, ...) are not on this machine, so the
# link allows symbols left undefined in shared libraries (-Wl,--allow-shlib-undefined).
#
#   launch/gpu_build_check.sh [--jobs N] [--build-dir DIR] [--target T]...
# Prints one line (OK or FAILED with the first errors); the whole log is DIR/gpu_build_check.log.
# Exit 0 when everything builds, 1 otherwise, 2 on bad usage or a missing prerequisite, 3 when
# the packages could not be fetched (no network, or the mirror lacks them).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$repo/build-gpu"
jobs=2
targets=()
while (($#)); do
  case "$1" in
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    --jobs=*) jobs="${1#*=}"; shift ;;
    --build-dir) build="${2:?--build-dir needs a folder}"; shift 2 ;;
    --target) targets+=(--target "${2:?--target needs a name}"); shift 2 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_build_check: unknown argument '$1' (expected --jobs N, --build-dir DIR, --target T)" >&2; exit 2 ;;
  esac
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_build_check: --jobs '$jobs'; expected a positive number" >&2; exit 2; }
mkdir -p "$build"
build="$(cd "$build" && pwd)"

suite="trixie"
packages=(libtorch-cuda-dev libtorch-cuda-2.6)
prefix="$build/prefix"
apt_dir="$build/apt"
log="$build/gpu_build_check.log"
: >"$log"
stamp="$build/.gpu_build_check.start"
touch "$stamp"

fail() {  # fail <stage> <message>: one line (and CMake's first error), then exit 1 (3: fetch failed)
  echo "gpu_build_check: FAILED at $1: $2 (log: $log)" >&2
  grep -m1 -A4 "^CMake Error" "$log" >&2 || true
  [[ $1 == fetch ]] && exit 3
  exit 1
}
now() { date +%s; }

nvcc="${CUDACXX:-/usr/local/cuda/bin/nvcc}"
[[ -x "$nvcc" ]] || { echo "gpu_build_check: no nvcc at '$nvcc' (set CUDACXX)" >&2; exit 2; }
for tool in apt-get dpkg cmake; do
  command -v "$tool" >/dev/null || { echo "gpu_build_check: '$tool' not found" >&2; exit 2; }
done

# 1. LibTorch (CUDA) from trixie, once: a private apt state (no root, the system's apt untouched).
t0=$(now)
if [[ ! -f "$prefix/.complete" ]]; then
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
  echo "deb http://deb.debian.org/debian $suite main contrib non-free" >"$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
            -o Dir::State::status=/dev/null -o APT::Sandbox::User=root -o Debug::NoLocking=1)
  apt-get "${apt_opts[@]}" update >>"$log" 2>&1 || fail fetch "apt-get update for $suite"
  (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "${packages[@]}") >>"$log" 2>&1 ||
    fail fetch "apt-get download ${packages[*]}"
  rm -rf "$prefix"
  mkdir -p "$prefix"
  for deb in "$apt_dir"/debs/*.deb; do
    dpkg -x "$deb" "$prefix" >>"$log" 2>&1 || fail fetch "dpkg -x $deb"
  done
  dpkg-deb -f "$(ls "$apt_dir"/debs/libtorch-cuda-dev_*.deb)" Version >"$prefix/.complete"
  rm -rf "$apt_dir/debs" "$apt_dir/cache"  # the unpacked prefix is the cache
fi
torch_dir="$(dirname "$(find "$prefix/usr/lib" -path '*/cmake/Torch/TorchConfig.cmake' | head -1)")"
[[ -f "$torch_dir/TorchConfig.cmake" ]] || fail fetch "no cmake/Torch/TorchConfig.cmake under $prefix"
t1=$(now)

# 2. Configure: VITRUVIAN_CUDA=ON with this LibTorch must come out as "LibTorch CUDA ON".
# The toolkit is named to both of CMake's CUDA modules: LibTorch's Caffe2Config still uses the old
# FindCUDA, which otherwise finds it only through PATH or CUDA_HOME (unset on a bare machine).
cuda_root="$(dirname "$(dirname "$nvcc")")"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$repo}" CUDACXX="$nvcc"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DVITRUVIAN_CUDA=ON -DTorch_DIR="$torch_dir" \
  -DCUDAToolkit_ROOT="$cuda_root" -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,--allow-shlib-undefined" >>"$log" 2>&1 || fail configure "cmake"
grep -q "CUDA side ON, LibTorch CUDA ON" "$log" ||
  fail configure "the CUDA side or LibTorch's CUDA build was not found ($(grep -o 'CUDA side [A-Z]*, LibTorch CUDA [A-Z]*' "$log" | tail -1))"
t2=$(now)

# 3. Build everything (or the --target ones).
if ! cmake --build "$build" -j "$jobs" "${targets[@]}" >>"$log" 2>&1; then
  first="$(grep -m 3 -E 'error:|Error [0-9]|undefined reference' "$log" | sed "s|$repo/||g" | tr '\n' ' ')"
  fail build "${first:-see the log}"
fi
t3=$(now)
objects=$(find "$build" \( -path "$prefix" -o -path "$build/CMakeFiles" -o -path '*/CMakeFiles/CMake*' \) -prune -o -name '*.o' -newer "$stamp" -print | wc -l)
echo "gpu_build_check: OK: LibTorch $(cat "$prefix/.complete") (CUDA) with nvcc" \
  "$("$nvcc" --version | grep -o 'release [0-9.]*' | cut -d' ' -f2); fetch $((t1 - t0)) s," \
  "configure $((t2 - t1)) s, build $((t3 - t2)) s (-j$jobs, $objects objects compiled)"
