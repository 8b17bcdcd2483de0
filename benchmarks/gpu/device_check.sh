#!/usr/bin/env bash
# Everything a lent GPU machine (H100/H200: 16 cores, CUDA, cuDNN, NCCL and PyTorch 2.x, no
# network) must do, in one command that ends within about 8 minutes there:
#
#   benchmarks/gpu/device_check.sh [--dry-run] [--jobs N] [--out DIR] [--torch-dir DIR] [--budget S]
#
#  1. unpack the carried development packages (benchmarks/gpu/make_carry.sh, build-carry/) that
#     the machine lacks into a prefix under build-device/;
#  2. configure a "compute" build (core and models, VITRUVIAN_PARTS=compute) with the CUDA side
#     against PyTorch's own LibTorch (python3 -c 'import torch') and build only what runs (-j16);
#  3. run the *_CUDA tests, kernels_bench at 256³ (CUDA kernels against LibTorch's GPU ops and the
#     device copy bandwidth, in one run), perfusion_study_bench (a whole perfusion study with its
#     deconvolution on the CPU and on the GPU), unet_infer_bench for the MLPerf 3D U-Net shape (fp16 and
#     bf16, channels-last off and on) and the GPU training step against the PyTorch Python loop;
#  4. write every result (JSON + log) and a summary against the targets under OUT ($OUT there):
#     summary.md, device_check.log and results.tar.gz (three files: the device tool returns 8).
#
# --dry-run does every step but the GPU runs on a machine without a GPU (CI's kind), against the
# LibTorch 2.6 CUDA prefix of launch/gpu_build_check.sh when it is there, else the system one;
# it unpacks every carried group (not only the missing ones) to exercise that path.
# The exact device call is in docs/PERFORMANCE.md ("GPU figures").
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dry_run=0
jobs=$(nproc)
out="${OUT:-$root/build-device/out}"
torch_dir=""
budget=460  # seconds after which the remaining runs are skipped (and reported as skipped)
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --jobs) jobs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --torch-dir) torch_dir="$2"; shift 2 ;;
    --budget) budget="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown argument '$1'; expected --dry-run, --jobs N, --out DIR, --torch-dir DIR or --budget S" >&2
       exit 2 ;;
  esac
done

build="$root/build-device"
bin="$build/bin"
prefix="$build/prefix"
results="$build/results"
mkdir -p "$out" "$results" "$prefix"
rm -f "$results"/*
exec > >(tee "$out/device_check.log") 2>&1
started=$(date +%s)
failures=()
step() { echo; echo "== $(date +%T) (+$(($(date +%s) - started)) s) $*"; }
fail() { failures+=("$1"); echo "device_check: FAILED: $1"; }

machine() {
  step "machine"
  uname -srm; nproc; grep -m1 "model name" /proc/cpuinfo || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
  command -v nvcc > /dev/null && nvcc --version | tail -1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.is_available())" 2>&1 || true
}

# Carried groups the machine lacks (all of them in a dry run) are unpacked into the prefix.
unpack_carried() {
  step "carried packages"
  local manifest="$root/build-carry/manifest.txt"
  if [[ ! -f $manifest ]]; then echo "no build-carry/manifest.txt (run benchmarks/gpu/make_carry.sh): using the system's"; return; fi
  local group probe packages p deb
  while read -r group probe packages; do
    if ((dry_run == 0)) && [[ -e /usr/$probe ]]; then echo "$group: the system's"; continue; fi
    for p in $packages; do
      deb=$(compgen -G "$root/build-carry/debs/${p}_*.deb" | head -1)
      [[ -n $deb ]] || { fail "carried package $p missing from build-carry/debs"; continue; }
      dpkg -x "$deb" "$prefix"
    done
    echo "$group: carried ($packages)"
  done < "$manifest"
}

find_torch() {
  if [[ -z $torch_dir ]]; then
    if ((dry_run)) && compgen -G "$root/build-gpu/prefix/usr/lib/*/cmake/Torch" > /dev/null; then
      torch_dir=$(compgen -G "$root/build-gpu/prefix/usr/lib/*/cmake/Torch" | head -1)
    else
      torch_dir="$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)/Torch"
    fi
  fi
  [[ -d $torch_dir ]] || torch_dir=/usr/lib/x86_64-linux-gnu/cmake/Torch
  echo "LibTorch: $torch_dir"
  # The NCCL that PyTorch loads (its wheel), so that our code and LibTorch share one library.
  nccl_home=$(python3 -c 'import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)
  [[ -n $nccl_home ]] && echo "NCCL: $nccl_home"
}

configure_and_build() {
  step "configure (compute parts, CUDA side on)"
  find_torch
  local generator=()
  command -v ninja > /dev/null && generator=(-G Ninja)
  local launcher=()
  command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  # A cache made with another generator or another LibTorch starts afresh (LibTorch's own
  # library paths are cached and would otherwise mix two versions).
  if [[ -f $build/CMakeCache.txt ]] &&
     { ! grep -qx "CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}" "$build/CMakeCache.txt" ||
       [[ $(grep -m1 '^Torch_DIR:' "$build/CMakeCache.txt" | cut -d= -f2-) != "$torch_dir" ]]; }; then
    rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
  fi
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # A LibTorch whose own libraries need what this machine lacks (trixie's, built for CUDA 12 and
  # cuDNN, in a dry run) links with their symbols left to load time, as gpu_build_check.sh does.
  local link=()
  [[ $torch_dir == "$root"/build-gpu/* ]] && link=(-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined)
  # CMAKE_POLICY_VERSION_MINIMUM: CMake 4 refuses package files written for CMake < 3.5.
  if ! cmake "${generator[@]}" -S "$root" -B "$build" "${launcher[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DVITRUVIAN_PARTS=compute -DVITRUVIAN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DTORCH_CUDA_ARCH_LIST=9.0 \
      -DTorch_DIR="$torch_dir" ${nccl_home:+-DNCCL_HOME="$nccl_home"} -DCMAKE_PREFIX_PATH="$prefix/usr" \
      -DCMAKE_POLICY_VERSION_MINIMUM=3.5 "${link[@]}" \
      > "$results/configure.log" 2>&1; then
    tail -40 "$results/configure.log"; fail "configure"; return 1
  fi
  grep -E "Vitruvian|CUDA side|LibTorch" "$results/configure.log"
  step "build (-j$jobs)"
  local targets=(test_core_kernels_CUDA test_core_comm_nccl_communicator_CUDA test_data_perfusion_device_CUDA kernels_bench
                 perfusion_study_bench unet_infer_bench train_step_bench)
  # Keep going past a broken target: whatever builds still runs and reports.
  local keep_going=(-k)
  [[ ${generator[1]:-} == Ninja ]] && keep_going=(-k 0)
  # The build too ends inside the budget (leaving the summary its time): a cut build still reports.
  local left=$((budget - ($(date +%s) - started) - 20))
  if ! timeout "$left" cmake --build "$build" -j "$jobs" --target "${targets[@]}" -- "${keep_going[@]}" \
      > "$results/build.log" 2>&1; then
    grep -E "error|Error" "$results/build.log" | head -40; fail "build"
  fi
  grep -cE "warning:" "$results/build.log" | sed 's/^/compiler warnings: /'
}

# run NAME SECONDS COMMAND...: one timed step, its output in results/NAME.log.
run() {
  local name=$1 seconds=$2; shift 2
  if [[ ! -x $1 && $1 != python3 && $1 != ctest ]]; then fail "$name (not built)"; return; fi
  # Each step ends inside the budget, so that the summary and results.tar.gz are always written.
  local left=$((budget - ($(date +%s) - started)))
  if ((left < 15)); then fail "$name (skipped: past the ${budget} s budget)"; return; fi
  ((seconds > left)) && seconds=$left
  step "$name: $* (at most $seconds s)"
  if ! timeout "$seconds" "$@" > "$results/$name.log" 2>&1; then fail "$name (exit $?)"; fi
  tail -25 "$results/$name.log"
}

gpu_runs() {
  run ctest_cuda 120 ctest --test-dir "$build" -R "_CUDA" --output-on-failure --output-junit "$results/ctest_cuda.xml"
  run kernels 150 "$bin/kernels_bench" --size 256 --window 128 --benchmark_filter='/(cuda|torch_cuda)' \
    --benchmark_repetitions=3 --benchmark_out="$results/kernels.json" --benchmark_out_format=json
  [[ -f $results/kernels.json ]] && python3 "$root/benchmarks/kernels_report.py" "$results/kernels.json" > "$results/kernels_table.md" 2>&1
  # A whole perfusion study (80 x 256 x 256 x 30, in memory), oSVD and the model fit, the
  # deconvolution on the CPU and on the GPU; the rest on 2 threads, as on the 2-core figures.
  run perfusion_study 150 "$bin/perfusion_study_bench" --threads 2 \
    --benchmark_out="$results/perfusion_study.json" --benchmark_out_format=json
  # The training step and its peer first (one ratio, taken in one run), then the inference shapes.
  local shape=(--batch 2 --stages 5 --base 32)
  run train_step 120 "$bin/train_step_bench" --device cuda --patch 128 "${shape[@]}" --steps 20 \
    --benchmark_out="$results/train_step.json" --benchmark_out_format=json
  run train_step_torch 90 python3 "$root/benchmarks/peers/train_step_torch.py" --device cuda --bf16 \
    --patch 128 128 128 "${shape[@]}" --steps 20
  local precision layout
  for layout in --channels-last ""; do
    for precision in bf16 fp16; do
      run "unet_${precision}${layout:+_cl}" 90 "$bin/unet_infer_bench" --device cuda --precision "$precision" $layout \
        --iterations 5 --benchmark_out="$results/unet_${precision}${layout:+_cl}.json" --benchmark_out_format=json
    done
  done
}

dry_runs() {
  step "dry run: the programs start and refuse what needs a GPU"
  local missing
  missing=$(ldd "$bin/kernels_bench" 2>/dev/null | awk '/=> not found/ {print $1}' | sort -u | tr '\n' ' ')
  if [[ -n $missing ]]; then
    echo "built against $torch_dir, whose libraries need what this machine lacks: ${missing}"
    echo "the programs are linked but cannot start here; the runs are left to the device"
    echo "not runnable here: ${missing}" > "$results/dry_run_skipped.log"
    return
  fi
  run ctest_cuda 120 ctest --test-dir "$build" -R "_CUDA" --output-on-failure
  run unet_dry 60 "$bin/unet_infer_bench" --device cpu --size 40 --window 32 --stages 3 --base 4 --max 8 --iterations 1
  run train_step_dry 120 "$bin/train_step_bench" --device cpu --patch 16 --stages 3 --base 4 --steps 2
  run kernels_dry 120 "$bin/kernels_bench" --size 24 --window 16 --classes 3 --benchmark_min_time=0.01 \
    --benchmark_filter='/(cuda|torch_cuda)'
  run perfusion_dry 120 "$bin/perfusion_study_bench" --shape 40,80,80 --benchmark_filter=osvd
}

machine
unpack_carried
configure_and_build
if ((dry_run)); then dry_runs; else gpu_runs; fi
step "summary"
python3 "$root/benchmarks/gpu/device_summary.py" "$results" $( ((dry_run)) && echo --dry-run) > "$out/summary.md" 2>&1 ||
  fail "summary"
cp "$results/configure.log" "$results/build.log" "$out/" 2>/dev/null
tar -C "$build" -czf "$out/results.tar.gz" results
cat "$out/summary.md"
echo "device_check: $(($(date +%s) - started)) s; ${#failures[@]} failure(s)${failures:+: ${failures[*]}}"
((${#failures[@]} == 0))
