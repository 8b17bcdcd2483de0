#!/usr/bin/env bash
# Runs libFuzzer harnesses (built by tests/fuzz/build_fuzzers.sh) for a bounded time each, one
# after another, on a scratch copy of their committed corpus (tests/fuzz/corpus/<name>) with
# their dictionary (tests/fuzz/dict/<name>.dict, when there is one). Nothing is written into the
# source tree: each run works in DIR/runs/<name>.
#
#   tests/fuzz/run_fuzzers.sh [--build-dir DIR] [--seconds S | --minutes M] [--merge-into OUT] [NAME...]
#     --build-dir DIR   the fuzz build tree (build-fuzz by default)
#     --seconds S       time per harness (default 30); --minutes M the same in minutes
#     --merge-into OUT  afterwards, merge the inputs that add coverage into OUT/<name>/ (created;
#                       OUT = tests/fuzz/corpus grows the committed corpus)
#     NAME...           harnesses to run (default: all, tests/fuzz/harnesses.cmake)
# One line per harness: OK with executions, coverage (libFuzzer's cov: edges and ft: features)
# and corpus size, or FAILED with the finding and the input that reproduces it (saved under
# DIR/runs/<name>/artifacts/; run DIR/bin/fuzz_<name> on it to see it again). Exit 0 when every
# harness ran clean, 1 on any finding (crash, leak, sanitizer report, timeout, out of memory),
# 2 on bad usage, 3 when a harness is not built and there is no clang to build it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build="$repo/build-fuzz"
seconds=30
merge_into=""
names=()
while (($#)); do
  case "$1" in
    --build-dir) build="${2:?--build-dir needs a folder}"; shift 2 ;;
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --minutes) seconds="$((${2:?--minutes needs a number} * 60))"; shift 2 ;;
    --merge-into) merge_into="${2:?--merge-into needs a folder}"; shift 2 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run_fuzzers: unknown option '$1'" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "run_fuzzers: time '$seconds'; expected a positive number" >&2; exit 2; }
all=$(sed -n '/VITRUVIAN_FUZZ_HARNESSES/,/)/p' "$here/harnesses.cmake" | tr -d '()' | sed 's/set//; s/VITRUVIAN_FUZZ_HARNESSES//')
((${#names[@]})) || read -r -a names <<<"$(echo $all)"
for name in "${names[@]}"; do
  [[ " $(echo $all) " == *" $name "* ]] || { echo "run_fuzzers: no harness '$name'; expected one of: $(echo $all)" >&2; exit 2; }
done
if [[ -n "$merge_into" ]]; then
  mkdir -p "$merge_into"
  merge_into="$(cd "$merge_into" && pwd)"
fi

status=0
for name in "${names[@]}"; do
  binary="$build/bin/fuzz_$name"
  if [[ ! -x "$binary" ]]; then
    if ! command -v clang++ >/dev/null; then
      echo "fuzz $name: SKIPPED: not built and no clang++ (launch/setup.sh installs it)"
      exit 3
    fi
    echo "fuzz $name: FAILED: $binary is not built (tests/fuzz/build_fuzzers.sh --build-dir $build)"
    status=1
    continue
  fi
  work="$build/runs/$name"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp"
  if [[ -d "$here/corpus/$name" ]]; then cp -R "$here/corpus/$name/." "$work/corpus/"; fi
  # DCMTK reading a data set from a stream allocates an element's declared length (up to 4 GiB)
  # before reading its value, and gives up cleanly when that allocation fails: for the C-FIND
  # harness, allocations above 64 MiB fail, as they may on a real system (docs/RELIABILITY.md).
  asan="detect_leaks=1:symbolize=1"
  [[ $name == cfind_identifier ]] && asan+=":allocator_may_return_null=1:max_allocation_size_mb=64"
  options=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=2048
           -print_final_stats=1 -artifact_prefix="$work/artifacts/")
  [[ -f "$here/dict/$name.dict" ]] && options+=(-dict="$here/dict/$name.dict")
  log="$work/fuzz.log"
  set +e
  TMPDIR="$work/tmp" ASAN_OPTIONS="$asan" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" "$binary" "${options[@]}" "$work/corpus" >"$log" 2>&1
  code=$?
  set -e
  stats="$(grep -E '^#[0-9]+' "$log" | tail -1)"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$stats")"
  ft="$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$stats")"
  inputs="$(find "$work/corpus" -type f | wc -l)"
  artifact="$(find "$work/artifacts" -type f | head -1)"
  if ((code == 0)) && [[ -z "$artifact" ]]; then
    echo "fuzz $name: OK: ${runs:-?} runs in $seconds s, cov ${cov:-?}, ft ${ft:-?}, corpus $inputs inputs (log: $log)"
  else
    what="$(grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY|runtime error|fuzz finding|ERROR: libFuzzer|deadly signal' "$log" || true)"
    echo "fuzz $name: FAILED (exit $code): ${what:-see the log}"
    echo "fuzz $name: reproducer: ${artifact:-none saved}; again: $binary ${artifact:-INPUT}; log: $log"
    tail -n 40 "$log" | sed "s/^/  | /"
    status=1
  fi
  if [[ -n "$merge_into" ]]; then
    mkdir -p "$merge_into/$name"
    TMPDIR="$work/tmp" ASAN_OPTIONS="$asan" "$binary" -merge=1 -timeout=20 -rss_limit_mb=2560 "$merge_into/$name" "$work/corpus" \
      >"$work/merge.log" 2>&1 || { echo "fuzz $name: merge into $merge_into/$name failed (log: $work/merge.log)"; status=1; }
    echo "fuzz $name: $(find "$merge_into/$name" -type f | wc -l) inputs in $merge_into/$name"
  fi
done
exit $status
