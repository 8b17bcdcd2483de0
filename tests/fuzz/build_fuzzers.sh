#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz in a build tree of their own, with Debian's clang
# (coverage instrumentation, ASan, UBSan): VITRUVIAN_FUZZ=ON, the `fuzzers` target only.
#
#   tests/fuzz/build_fuzzers.sh [--build-dir DIR] [--jobs N]
# The harnesses land in DIR/bin/fuzz_<name> (DIR: build-fuzz by default); run them with
# tests/fuzz/run_fuzzers.sh. Prints one line (OK or FAILED with the first errors); the whole log
# is DIR/build_fuzzers.log. Exit 0 when built, 1 otherwise, 2 on bad usage, 3 when there is no
# clang (launch/setup.sh installs it).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$repo/build-fuzz"
jobs=2
while (($#)); do
  case "$1" in
    --build-dir) build="${2:?--build-dir needs a folder}"; shift 2 ;;
    --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build_fuzzers: unknown argument '$1' (expected --build-dir DIR, --jobs N)" >&2; exit 2 ;;
  esac
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "build_fuzzers: --jobs '$jobs'; expected a positive number" >&2; exit 2; }
for tool in clang clang++; do
  command -v "$tool" >/dev/null || { echo "build_fuzzers: SKIPPED: no $tool (launch/setup.sh installs clang)"; exit 3; }
done
mkdir -p "$build"
build="$(cd "$build" && pwd)"
log="$build/build_fuzzers.log"
: >"$log"

fail() {  # fail <stage> <message>
  echo "build_fuzzers: FAILED at $1: $2 (log: $log)" >&2
  exit 1
}
now() { date +%s; }

# libFuzzer's runtime comes with clang's compiler-rt (libclang-rt-<version>-dev on Debian).
probe="$build/libfuzzer_probe"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' >"$probe.cpp"
clang++ -fsanitize=fuzzer,address,undefined -fuse-ld=lld "$probe.cpp" -o "$probe" >>"$log" 2>&1 ||
  fail probe "clang++ cannot link -fsanitize=fuzzer with lld (libclang-rt-dev or lld missing? launch/setup.sh installs them)"

t0=$(now)
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$repo}"
CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -DVITRUVIAN_FUZZ=ON -DVITRUVIAN_BUILD_TESTS=OFF \
  -DVITRUVIAN_BUILD_BENCHMARKS=OFF -DVITRUVIAN_CUDA=OFF -DCMAKE_BUILD_TYPE=Fuzz >>"$log" 2>&1 || fail configure cmake
t1=$(now)
if ! cmake --build "$build" -j "$jobs" --target fuzzers >>"$log" 2>&1; then
  first="$(grep -m 3 -E 'error:|Error [0-9]|undefined reference' "$log" | sed "s|$repo/||g" | tr '\n' ' ')"
  fail build "${first:-see the log}"
fi
t2=$(now)
harnesses=$(find "$build/bin" -maxdepth 1 -name 'fuzz_*' -type f -perm -u+x | wc -l)
echo "build_fuzzers: OK: $harnesses harnesses in $build/bin (configure $((t1 - t0)) s, build $((t2 - t1)) s, -j$jobs)"
