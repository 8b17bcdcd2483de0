#!/usr/bin/env bash
# The PACS round trip's cost: the same campaign on 2 ranks (a quickstart-sized network: 4 stages,
# 16 features, 48^3 windows) over the same chest phantoms, read from an HDF5 dataset and writing
# HDF5 label maps, against reading them from a local Orthanc (C-FIND + C-GET, or QIDO-RS + WADO-RS)
# and sending DICOM SEG + SR back into it (C-STORE, or STOW-RS), alternated ROUNDS times.
#   benchmarks/pacs_side_by_side.sh [BUILD_DIR] [ROUNDS] [STUDIES] [SHAPE] [PROTOCOL]
# PROTOCOL: dimse (default) or dicomweb. Prints studies/h per round (whole command: start-up,
# query, retrieval, prediction, writing, sending), the PACS run's share of the HDF5 run's
# throughput, and per study the prediction time beside the SEG and SR writing times.
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
studies=${3:-8}
shape=${4:-64}
protocol=${5:-dimse}
root=$(cd "$(dirname "$0")/.." && pwd)
vit=$(cd "$build" && pwd)/bin/vitruvian
mpirun=("$root/launch/mpirun.sh" -np 2)
work=$(mktemp -d /tmp/vitruvian_pacs_bench.XXXXXX)
source "$root/tests/tools/orthanc.sh"
trap 'rm -rf "$work"' EXIT
cd "$work"

"$vit" phantom --kind chest-cardiac --studies "$studies" --shape "$shape" --out bench.h5 --dicom dicom --threads 2 >/dev/null 2>&1
source "$root/benchmarks/quickstart_sized_model.sh"
train_quickstart_sized "$vit" "$shape" ct

orthanc_start "$work/orthanc"
trap 'orthanc_stop; rm -rf "$work"' EXIT  # orthanc_start's own trap stops Orthanc only
storescu -aet "$ORTHANC_SCU_AET" -aec "$ORTHANC_AET" +sd +r 127.0.0.1 "$ORTHANC_DICOM_PORT" dicom >/dev/null 2>&1
if [[ $protocol == dimse ]]; then
  pacs="{protocol: dimse, host: 127.0.0.1, port: $ORTHANC_DICOM_PORT, aet: $ORTHANC_SCU_AET, called_aet: $ORTHANC_AET}"
else
  pacs="{protocol: dicomweb, url: '$ORTHANC_URL'}"
fi
cat > hdf5.yaml <<YAML
input: bench.h5
outputs: [hdf5]
routes: [{name: organs, model: run/model, modality: CT}]
YAML
cat > pacs.yaml <<YAML
source: {pacs: ${pacs%\}}, query: {modality: CT}}}
store_to: $pacs
outputs: [hdf5, dicom_seg, dicom_sr]
routes: [{name: organs, model: run/model, modality: CT}]
YAML

run() {  # run CONFIG OUT: seconds of the whole command
  local t0 t1
  t0=$(date +%s.%N)
  "${mpirun[@]}" "$vit" --threads 1 infer --campaign "$1" --out "$2" --force >"$2.log" 2>&1 || { cat "$2.log"; exit 1; }
  t1=$(date +%s.%N)
  /usr/bin/python3 -c "print($t1 - $t0)"
}
h=() p=()
for ((r = 0; r < rounds; ++r)); do
  h+=("$(run hdf5.yaml "h$r")")
  p+=("$(run pacs.yaml "p$r")")
done
/usr/bin/python3 - "${h[*]}" "${p[*]}" "$studies" "$shape" "$protocol" "$((rounds - 1))" <<'PY'
import glob, json, statistics, sys
h = [float(x) for x in sys.argv[1].split()]
p = [float(x) for x in sys.argv[2].split()]
n, shape, protocol, last = int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
rate = lambda s: n * 3600 / s
print(f"# {n} chest phantoms of {shape}^3, 2 ranks, 1 thread each, quickstart-sized network; studies/h per round (whole command)")
print("hdf5 in, hdf5 out          " + " ".join(f"{rate(s):8.0f}" for s in h) + f"   median {rate(statistics.median(h)):8.0f}")
print(f"pacs ({protocol:8s}) in, SEG+SR back " + " ".join(f"{rate(s):8.0f}" for s in p) + f"   median {rate(statistics.median(p)):8.0f}")
share = statistics.median(h) / statistics.median(p)
print(f"PACS round trip: {100 * share:.1f} % of the HDF5 campaign's throughput, cost {100 * (1 - share):.1f} % (target <= 20 %: {'met' if 1 - share <= 0.20 else 'NOT met'})")
t = {"predict": [], "dicom_seg": [], "dicom_sr": [], "read": []}
for f in glob.glob(f"p{last}/studies/*/report.json"):
    r = json.load(open(f))["timing"]
    t["predict"].append(r["routes"]["organs"]["predict_s"])
    t["read"].append(r["read_s"])
    for k in ("dicom_seg", "dicom_sr"):
        t[k].append(r["outputs_s"][k])
print("per study (median, last PACS round): " + ", ".join(f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in t.items()))
PY
