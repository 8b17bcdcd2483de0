#!/usr/bin/env python3
"""The peer of `vitruvian infer`: the same exported model run by a plain PyTorch Python
sliding-window loop (Debian's python3-torch, the same LibTorch version), as MONAI's and nnU-Net's
predictors do it: windows evenly spaced with the same overlap, batched, Gaussian importance
weights (sigma = 1/8 of the window, scaled to a maximum of 1, floored at 1e-3), logits and
weights accumulated over the whole volume in fp32, then argmax.

    infer_sliding_window_torch.py --model runs/quickstart/model --dataset phantoms.h5 \
        [--studies a,b] [--overlap 0.5] [--batch 2] [--threads 1] [--precision fp32|bf16] [--labels-out labels.npz]
--precision bf16 runs the forward passes under torch.autocast("cpu", dtype=torch.bfloat16), the
way a PyTorch user asks for bf16 on the CPU (accumulation stays fp32).
Prints one JSON line: voxels, predict_s (image loaded and normalised -> labels), voxels_per_s.
"""
import argparse
import json
import math
import os
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step_torch import UNet  # noqa: E402  the same network, Python modules


def load(model_dir):
    card = json.load(open(os.path.join(model_dir, "model.json")))
    m = card["model"]
    if m["name"] != "unet" or m["strides"] or m["kernels"] or m["convs_per_stage"] != 2:
        raise SystemExit(f"{model_dir}: the peer runs plain default U-Nets only")
    net = UNet(card["in_channels"], len(card["class_names"]), m["stages"], m["base_features"])
    archive = dict(torch.jit.load(os.path.join(model_dir, "model.pt"), map_location="cpu").named_parameters())
    # Vitruvian's parameter names -> the Python module's.
    state = {}
    for name, value in archive.items():
        p = name.split(".")
        if p[0] in ("encoder", "decoder"):
            key = f"{p[0]}.{p[1]}.{p[2][-1]}.{p[3]}.{p[4]}"
        elif p[0] == "upsample":
            key = f"up.{p[1]}.{p[3]}"
        elif p[0] == "heads":
            key = f"heads.{p[1]}.{p[3]}"
        else:
            raise SystemExit(f"unexpected parameter {name}")
        state[key] = value.detach()
    net.load_state_dict(state, strict=True)
    return net.eval(), card


def starts(size, window, overlap):
    if size <= window:
        return [0]
    step = window * (1 - overlap)
    n = math.ceil((size - window) / step) + 1
    spacing = (size - window) / (n - 1)
    return [int(math.floor(spacing * i + 0.5)) for i in range(n)]  # halves away from zero, as llround


def gaussian(window, sigma_scale=1 / 8):
    axes = []
    for w in window:
        x = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
        s = sigma_scale * w
        axes.append(torch.exp(-x * x / (2 * s * s)))
    g = axes[0].view(-1, 1, 1) * axes[1].view(1, -1, 1) * axes[2].view(1, 1, -1)
    return (g / g.max()).clamp_min(1e-3).float()


def predict(net, image, classes, window, overlap, batch, bf16=False):
    """image [C, D, H, W] float32 -> labels [D, H, W] uint8."""
    size = image.shape[1:]
    pad = []
    for a in (2, 1, 0):
        pad += [0, max(0, window[a] - size[a])]
    padded = F.pad(image, pad)
    full = padded.shape[1:]
    importance = gaussian(window)
    logits = torch.zeros((classes, *full))
    weight = torch.zeros(full)
    origins = [(z, y, x) for z in starts(full[0], window[0], overlap) for y in starts(full[1], window[1], overlap)
               for x in starts(full[2], window[2], overlap)]
    with torch.inference_mode():
        for first in range(0, len(origins), batch):
            chunk = origins[first:first + batch]
            windows = torch.stack([padded[:, z:z + window[0], y:y + window[1], x:x + window[2]] for z, y, x in chunk])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = net(windows)[0].float()
            for i, (z, y, x) in enumerate(chunk):
                logits[:, z:z + window[0], y:y + window[1], x:x + window[2]] += out[i] * importance
                weight[z:z + window[0], y:y + window[1], x:x + window[2]] += importance
    logits /= weight
    return logits[:, :size[0], :size[1], :size[2]].argmax(0).to(torch.uint8)


def normalise(raw, mode, stats):
    x = torch.from_numpy(raw.astype(np.float32))
    if mode == "ct":
        lower, upper, mean, std = stats
        return (x.clamp(lower, upper) - mean) / max(std, 1e-8)
    if mode == "zscore":
        return (x - x.mean()) / max(float(x.std(unbiased=False)), 1e-8)
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--studies", default="")
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--labels-out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net, card = load(args.model)
    classes = len(card["class_names"])
    total_voxels, total_s, saved = 0, 0.0, {}
    with h5py.File(args.dataset, "r") as f:
        ids = args.studies.split(",") if args.studies else sorted(f["studies"])
        for sid in ids:
            channels = [normalise(f[f"studies/{sid}/series/{c}/image"][()], n, s)
                        for c, n, s in zip(card["channels"], card["normalization"], card["ct_stats"])]
            image = torch.stack(channels)
            t = time.perf_counter()
            labels = predict(net, image, classes, card["patch"], args.overlap, args.batch, args.precision == "bf16")
            total_s += time.perf_counter() - t
            total_voxels += labels.numel()
            if args.labels_out:
                saved[sid] = labels.numpy()
    if args.labels_out:
        np.savez_compressed(args.labels_out, **saved)
    print(json.dumps({"voxels": total_voxels, "predict_s": total_s, "voxels_per_s": total_voxels / total_s,
                      "studies": len(ids), "precision": args.precision, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
