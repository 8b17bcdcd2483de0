#!/usr/bin/env python3
"""The summary of benchmarks/gpu/device_check.sh, against the GPU targets of docs/PERFORMANCE.md:

    benchmarks/gpu/device_summary.py RESULTS_DIR [--dry-run]

Reads what the check left in RESULTS_DIR (ctest_cuda.log, kernels_table.md, perfusion_study.json,
unet_*.json, train_step.json, train_step_torch.log) and prints a Markdown summary; a missing result is
reported as missing, never filled in."""
import glob
import json
import os
import re
import sys

UNET_TARGET = 6.4  # volumes/s: one GPU's share of the 8 x H100 MLPerf Inference 3D U-Net figure
TRAIN_TARGET = 1.2  # our GPU training step's voxels/s over the PyTorch Python loop's


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def benchmarks(path):
    text = read(path)
    if text is None:
        return []
    try:
        return [b for b in json.loads(text)["benchmarks"] if not b.get("error_occurred")]
    except (ValueError, KeyError):
        return []


def seconds(b):
    """A Google Benchmark entry's real time in seconds."""
    return b["real_time"] / {"ms": 1e3, "us": 1e6, "ns": 1e9, "s": 1.0}[b.get("time_unit", "ns")]


def tests(results):
    log = read(os.path.join(results, "ctest_cuda.log"))
    if log is None:
        return "CUDA tests: not run"
    # ctest says "100% tests passed out of 3", or "66% tests passed, 1 tests failed out of 3".
    m = re.search(r"(\d+)% tests passed(?:, (\d+) tests failed)? out of (\d+)", log)
    skipped = re.findall(r"Test +#\d+: (\S+) \.+\*+Skipped", log)
    failed = re.findall(r"Test +#\d+: (\S+) \.+\*+(?:Failed|Timeout|Exception)", log)
    head = f"CUDA tests: {m.group(3)} run, {m.group(2) or 0} failed" if m else "CUDA tests: no ctest summary"
    if skipped:
        head += f", skipped: {', '.join(skipped)}"
    if failed:
        head += f", failed: {', '.join(failed)}"
    return head


def unet(results):
    rows = []
    for path in sorted(glob.glob(os.path.join(results, "unet_*.json"))):
        name = os.path.basename(path)[5:-5]
        for b in benchmarks(path):
            v = b.get("volumes_per_s")
            if v is None:
                continue
            verdict = "met" if v >= UNET_TARGET else "not met"
            rows.append(f"| {name} | {v:.2f} | {b.get('windows_per_s', 0):.1f} | {verdict} | {b.get('label', '')} |")
    if not rows:
        return ["MLPerf-shape U-Net inference: no result"]
    return ["| run | volumes/s | windows/s | >= 6.4 volumes/s | setting |", "|---|---|---|---|---|"] + rows


def train(results):
    ours = [b for b in benchmarks(os.path.join(results, "train_step.json")) if "voxels_per_s" in b]
    peer = None
    log = read(os.path.join(results, "train_step_torch.log")) or ""
    for line in log.splitlines():
        if line.startswith("{"):
            peer = json.loads(line)
    if not ours or peer is None:
        return ["GPU training step: " + ("the PyTorch loop's result missing" if ours else "our result missing")]
    mine = ours[0]
    step_s = seconds(mine)
    ratio = mine["voxels_per_s"] / peer["voxels_per_s"]
    verdict = "met" if ratio >= TRAIN_TARGET else "not met"
    return [
        "| training step (bf16 autocast) | voxels/s | step s | forward s | backward s | optimiser s |",
        "|---|---|---|---|---|---|",
        f"| Vitruvian train_step_bench | {mine['voxels_per_s']:.3g} | {step_s:.4f} | {mine.get('forward_s', 0):.4f} "
        f"| {mine.get('backward_s', 0):.4f} | {mine.get('optimizer_s', 0):.4f} |",
        f"| PyTorch {peer.get('torch', '')} Python loop | {peer['voxels_per_s']:.3g} | {peer['step_s']:.4f} "
        f"| {peer['forward_s']:.4f} | {peer['backward_s']:.4f} | {peer['optimizer_s']:.4f} |",
        "",
        f"Ratio {ratio:.2f}x (target >= {TRAIN_TARGET}x: {verdict}).",
    ]


def perfusion(results):
    rows = []
    for b in benchmarks(os.path.join(results, "perfusion_study.json")):
        rows.append(f"| {b['name']} | {b.get('label', '')} | {seconds(b):.2f} | {b.get('deconvolution_s', 0):.3f} "
                    f"| {b.get('core_ml', 0):.1f} | {b.get('penumbra_ml', 0):.1f} |")
    if not rows:
        return ["perfusion study: no result"]
    return ["| case | device | s per study | deconvolution s | core mL | penumbra mL |",
            "|---|---|---|---|---|---|"] + rows


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: device_summary.py RESULTS_DIR [--dry-run]")
    results = sys.argv[1]
    dry = "--dry-run" in sys.argv[2:]
    print("# Device check" + (" (dry run: no GPU figures)" if dry else ""))
    print()
    print(tests(results))
    if dry:
        skipped = read(os.path.join(results, "dry_run_skipped.log"))
        if skipped:
            print(f"- program runs left to the device: {skipped.strip()}")
            return
        for name in ("unet_dry", "train_step_dry", "kernels_dry", "perfusion_dry"):
            log = read(os.path.join(results, name + ".log"))
            if log is None:
                state = "missing"
            elif "ERROR OCCURRED: 'no CUDA device'" in log:
                state = "ran; its CUDA cases report no CUDA device"
            else:
                state = "ran" if "ERROR OCCURRED" not in log else "errors"
            print(f"- {name}: {state}")
        return
    print()
    print("## Kernels (256^3)")
    print(read(os.path.join(results, "kernels_table.md")) or "no kernels table")
    print("## Perfusion study, 80 x 256 x 256 x 30 in memory, 2 CPU threads")
    print("\n".join(perfusion(results)))
    print()
    print("## MLPerf 3D U-Net shape, 256^3 volume, 128^3 windows, overlap 0.5")
    print("\n".join(unet(results)))
    print()
    print("## GPU training step, patch 128^3, batch 2, 5 stages, base 32")
    print("\n".join(train(results)))


if __name__ == "__main__":
    main()
