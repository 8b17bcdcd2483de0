#!/usr/bin/env python3
"""The table of docs/PERFORMANCE.md from a kernels_bench JSON file (--benchmark_out):

    benchmarks/kernels_report.py kernels.json

Per kernel: GB/s of our CPU kernel and of the LibTorch op sequence on the CPU, their ratio; on a
GPU, the same for CUDA plus each kernel's share of the device-to-device copy bandwidth measured
in the same run, against the targets (>= 70 % of the copy bandwidth for the memory-bound
kernels, >= 2x the LibTorch ops)."""
import json
import sys

KERNELS = ["accumulate", "normalize", "resample", "softmax_argmax", "label_stats", "components"]
# Connected components make several passes with scattered reads: not held to the bandwidth target.
MEMORY_BOUND = {"accumulate", "normalize", "resample", "softmax_argmax", "label_stats"}
# Perfusion's per-curve kernels (7, 8, 9), measured in curves (rows) per second at each argument:
# frames for the deconvolution, dictionary entries for the model fit's two.
PER_CURVE = ["deconvolve", "dictionary_means", "best_mixture_scores"]


def main(path):
    runs = {}
    with open(path) as f:
        data = json.load(f)
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            continue
        # With --benchmark_repetitions: the median aggregate (it replaces single runs).
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"]).replace("/manual_time", "")
        if b.get("run_type") == "aggregate" or name not in runs:
            runs[name] = b
    copy = runs.get("copy/cuda", {}).get("bytes_per_second")
    print(f"# {data['context'].get('host_name', '?')}, {data['context'].get('num_cpus', '?')} CPUs, {data['context'].get('date', '')}")
    if copy:
        print(f"# device-to-device copy: {copy / 1e9:.1f} GB/s (read + write)")
    print("| kernel | CPU GB/s | LibTorch CPU GB/s | CPU ratio | CUDA GB/s | of copy bandwidth | LibTorch CUDA GB/s | CUDA ratio |")
    print("|---|---|---|---|---|---|---|---|")
    failed = []
    for k in KERNELS:
        def rate(impl):
            r = runs.get(f"{k}/{impl}")
            return r["bytes_per_second"] if r else None

        cpu, tcpu, cuda, tcuda = rate("cpu"), rate("torch_cpu"), rate("cuda"), rate("torch_cuda")
        cells = [k]
        cells.append(f"{cpu / 1e9:.2f}" if cpu else "-")
        cells.append(f"{tcpu / 1e9:.2f}" if tcpu else "-")
        cells.append(f"{cpu / tcpu:.2f}x" if cpu and tcpu else "-")
        cells.append(f"{cuda / 1e9:.1f}" if cuda else "not measured")
        if cuda and copy:
            share = cuda / copy
            cells.append(f"{100 * share:.0f} %")
            if k in MEMORY_BOUND and share < 0.7:
                failed.append(f"{k}: {100 * share:.0f} % of the copy bandwidth (target 70 %)")
        else:
            cells.append("-")
        cells.append(f"{tcuda / 1e9:.1f}" if tcuda else "-")
        if cuda and tcuda:
            cells.append(f"{cuda / tcuda:.2f}x")
            if cuda / tcuda < 2:
                failed.append(f"{k}: {cuda / tcuda:.2f}x the LibTorch ops on CUDA (target 2x)")
        else:
            cells.append("-")
        print("| " + " | ".join(cells) + " |")
    if not any(runs.get(f"{k}/cuda") for k in KERNELS):
        print("\nCUDA: not measured in this run (no device).")
    per_curve_table(runs)
    for f in failed:
        print(f"target not met: {f}")


def per_curve_table(runs):
    """Perfusion's kernels in curves/s: ours on the CPU, LibTorch's ops on the CPU, ours on CUDA."""
    rows = []
    for k in PER_CURVE:
        args = sorted({name.split("/")[2] for name in runs if name.startswith(k + "/") and name.count("/") >= 2},
                      key=lambda a: int(a) if a.isdigit() else 0)
        for a in args:
            rate = {impl: runs.get(f"{k}/{impl}/{a}", {}).get("curves_per_s") for impl in ("cpu", "torch_cpu", "cuda")}
            cells = [f"{k} ({a})"] + [f"{rate[i] / 1e6:.3g} M" if rate[i] else "-" for i in ("cpu", "torch_cpu", "cuda")]
            rows.append("| " + " | ".join(cells) + " |")
    if rows:
        # No CUDA / CPU ratio: the device check runs the /cuda cases alone, so one run holds either
        # side, never both (docs/PERFORMANCE.md compares ratios taken in one run only).
        print("\n| perfusion kernel (frames or entries) | CPU curves/s | LibTorch CPU curves/s | CUDA curves/s |")
        print("|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: kernels_report.py KERNELS_JSON")
    main(sys.argv[1])
