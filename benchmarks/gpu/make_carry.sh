#!/usr/bin/env bash
# Assembles the folder that travels with the device check (benchmarks/gpu/device_check.sh) to a
# lent GPU machine, which has CUDA, cuDNN, NCCL and PyTorch but no network: the Debian packages
# of the development files a "compute" build may find missing there, each group unpacked there
# only when the machine lacks it. Git-ignored (build-*), kept within the device tool's 64 MiB
# together with the working tree.
#
#   benchmarks/gpu/make_carry.sh [--dir build-carry]
#
# Groups (GROUP: header that shows the group present | packages):
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/build-carry"
while (($#)); do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "make_carry.sh: unknown argument '$1'; expected --dir DIR" >&2; exit 2 ;;
  esac
done

# The manifest device_check.sh reads: group, probe header, packages.
manifest=(
  "gtest include/gtest/gtest.h libgtest-dev googletest"
  "benchmark include/benchmark/benchmark.h libbenchmark-dev libbenchmark1debian"
  "spdlog include/spdlog/spdlog.h libspdlog-dev libspdlog1.10 libfmt-dev libfmt9"
  "fmt include/fmt/format.h libfmt-dev libfmt9"
  "yaml-cpp include/yaml-cpp/yaml.h libyaml-cpp-dev libyaml-cpp0.7"
  "png include/png.h libpng-dev libpng16-16 zlib1g-dev"
  "json include/nlohmann/json.hpp nlohmann-json3-dev"
)

mkdir -p "$dir/debs"
printf '%s\n' "${manifest[@]}" > "$dir/manifest.txt.tmp" && mv "$dir/manifest.txt.tmp" "$dir/manifest.txt"
packages=$(printf '%s\n' "${manifest[@]}" | cut -d' ' -f3- | tr ' ' '\n' | sort -u)
missing=()
for p in $packages; do
  compgen -G "$dir/debs/${p}_*.deb" > /dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  (cd "$dir/debs" && apt-get download -q "${missing[@]}" > /dev/null) || {
    echo "make_carry.sh: apt-get download of ${missing[*]} failed (network or package names)" >&2; exit 1; }
fi
size=$(du -sm "$dir" | cut -f1)
tree=$(cd "$root" && git ls-files -z --cached --others --exclude-standard | du -cm --files0-from=- 2>/dev/null | tail -1 | cut -f1)
if ((size + tree > 60)); then
  echo "make_carry.sh: $dir (${size} MiB) and the working tree (${tree} MiB) exceed the device tool's 64 MiB" >&2
  exit 1
fi
[[ ${#missing[@]} -eq 0 ]] || echo "make_carry.sh: $dir ready (${size} MiB; working tree ${tree} MiB)"
