#!/usr/bin/env python3
"""Alpha-beta model of data-parallel training steps (docs/SCALING.md).

Fits alpha (per-call latency) and beta (bandwidth) to the measured MPI allreduce figures of
docs/PERFORMANCE.md, checks the fit against them, then projects a step of the standard nnU-Net
network (6 stages, 31.2 M parameters, 955 GFLOP forward per 128^3 patch: `vitruvian info --model
unet --stages 6 --patch 128,128,128`) to 8, 64 and 512 GPUs with the interconnect figures given
below, bucketed gradients overlapped with backward as GradientReducer does.

    benchmarks/scaling_model.py [--efficiency 0.3] [--batch 2]
"""
import argparse

# Measured on the reference machine (2 ranks, shared memory), docs/PERFORMANCE.md: allreduce
# float32, median microseconds, Vitruvian's communicator.
MEASURED = {8: 1.08, 1024: 1.85, 65536: 23.86, 1048576: 185.93, 4194304: 1015.58, 16777216: 2688.41}


def fit(points):
    """alpha: the smallest message's time; beta: bytes over time beyond alpha for messages of
    1 MiB and more (least squares through alpha)."""
    alpha = points[min(points)] * 1e-6
    large = [(n, points[n] * 1e-6 - alpha) for n in points if n >= 1 << 20]
    beta = sum(n * n for n, _ in large) / sum(n * t for n, t in large)
    return alpha, beta


def ring(n, p, alpha, busbw):
    """Ring allreduce of n bytes over p ranks: 2(p-1) steps; busbw as nccl-tests defines it."""
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * alpha + n * 2 * (p - 1) / p / busbw


def hierarchical(n, gpus, per_node, nvlink, nic, alpha_nv, alpha_nic):
    """Reduce-scatter + allgather inside a node (NVLink), allreduce of 1/per_node across nodes
    (one NIC per GPU, per_node rings in parallel)."""
    inside = ring(n, min(gpus, per_node), alpha_nv, nvlink)
    nodes = max(1, gpus // per_node)
    return inside + ring(n / per_node, nodes, alpha_nic, nic)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--efficiency", type=float, default=0.30, help="share of H100 bf16 dense peak the step reaches")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--params", type=float, default=31.196404e6)
    ap.add_argument("--forward-gflop", type=float, default=954.73, help="per 128^3 patch")
    ap.add_argument("--nvlink", type=float, default=370e9, help="busbw inside a node, bytes/s")
    ap.add_argument("--nic", type=float, default=48e9, help="busbw per 400 Gb/s NIC across nodes, bytes/s")
    ap.add_argument("--alpha-nvlink", type=float, default=5e-6)
    ap.add_argument("--alpha-nic", type=float, default=12e-6)
    args = ap.parse_args()

    alpha, beta = fit(MEASURED)
    print(f"## Fit to the measured 2-rank MPI allreduce: alpha = {alpha * 1e6:.2f} us, beta = {beta / 1e9:.2f} GB/s\n")
    print("| bytes | measured (us) | model (us) |\n|---|---|---|")
    for n, t in MEASURED.items():
        print(f"| {n} | {t:.2f} | {(alpha + n / beta) * 1e6:.2f} |")

    grad_bytes = args.params * 4  # float32 gradients, as the reducer averages them
    compute = 3 * args.forward_gflop * 1e9 * args.batch / (args.efficiency * 989e12)  # fwd + 2x for backward
    backward = compute * 2 / 3
    buckets = [1 << 20] + [25 << 20] * int((grad_bytes - (1 << 20)) // (25 << 20))
    rest = grad_bytes - sum(buckets)
    if rest > 0:
        buckets.append(rest)
    print(f"\n## Projection: nnU-Net 6 stages, batch {args.batch} x 128^3 per GPU, {grad_bytes / 1e6:.0f} MB of gradients "
          f"in {len(buckets)} buckets; compute {compute * 1e3:.1f} ms/step at {args.efficiency:.0%} of H100 bf16 peak\n")
    print("| GPUs | nodes | allreduce of all buckets (ms) | exposed (ms) | step (ms) | scaling efficiency | samples/s |")
    print("|---|---|---|---|---|---|---|")
    for gpus in (1, 8, 64, 512):
        comm = sum(hierarchical(b, gpus, 8, args.nvlink, args.nic, args.alpha_nvlink, args.alpha_nic) for b in buckets)
        # Buckets go out while backward runs; the last one (the first layers') cannot hide.
        last = hierarchical(buckets[-1], gpus, 8, args.nvlink, args.nic, args.alpha_nvlink, args.alpha_nic)
        exposed = max(last, comm - backward) if gpus > 1 else 0.0
        step = compute + exposed
        print(f"| {gpus} | {max(1, gpus // 8)} | {comm * 1e3:.2f} | {exposed * 1e3:.2f} | {step * 1e3:.1f} | "
              f"{compute / step:.1%} | {gpus * args.batch / step:.0f} |")


if __name__ == "__main__":
    main()
