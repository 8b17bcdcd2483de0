#!/usr/bin/env bash
# Checks that includes follow the layers: core includes none of ours above it; data and models
# include only core; nothing includes launch/ except launch/, tests/ and benchmarks/; the
# PACS library (launch/pacs) includes only core; the campaign library (launch/campaign) does not
# include the jobs above it.
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/../.." && pwd)}"
status=0
check() {  # folder, forbidden include prefixes...
  local folder=$1; shift
  for prefix in "$@"; do
    if hits=$(grep -rnE "#include [\"<]${prefix}/" "$root/$folder" --include='*.h' --include='*.cpp' --include='*.cu' --include='*.cuh'); then
      echo "layering: $folder/ must not include $prefix/:"; echo "$hits"; status=1
    fi
  done
}
check core data models launch
check data models launch
check models data launch
check launch/pacs data models launch/campaign launch/jobs
check launch/campaign launch/jobs
[[ $status -eq 0 ]] && echo "layering ok: core <- data, models, launch/pacs <- launch/campaign <- launch/jobs"
exit $status
