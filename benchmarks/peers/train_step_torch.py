#!/usr/bin/env python3
"""The peer of train_step_bench: the same plain 3D U-Net (nnU-Net style: two 3x3x3 conv +
instance norm + LeakyReLU per stage, strided-conv downsampling, transposed-conv upsampling,
deep-supervision heads), the same Dice + CE loss with deep-supervision weights, SGD with Nesterov
momentum and gradient clipping, trained by a plain PyTorch Python loop (Debian's python3-torch,
the same LibTorch version) on the same synthetic batch, with the same thread count.

    train_step_torch.py --patch 48 48 48 --batch 2 --stages 4 --base 16 --classes 4 --steps 10
        [--device cuda --bf16]   (on a GPU: cuDNN autotuning on, forward passes under bf16 autocast)
Prints one JSON line: voxels_per_s, s_per_step, forward_s, backward_s, optimizer_s.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvNormAct(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride=stride, padding=1)
        self.norm = nn.InstanceNorm3d(cout, affine=True)

    def forward(self, x):
        return F.leaky_relu_(self.norm(self.conv(x)), 0.01)


class Stage(nn.Sequential):
    def __init__(self, cin, cout, stride):
        super().__init__(ConvNormAct(cin, cout, stride), ConvNormAct(cout, cout, 1))


class UNet(nn.Module):
    def __init__(self, cin, classes, stages, base):
        super().__init__()
        f = [min(base << s, 320) for s in range(stages)]
        self.encoder = nn.ModuleList(Stage(cin if s == 0 else f[s - 1], f[s], 1 if s == 0 else 2) for s in range(stages))
        self.up = nn.ModuleList(nn.ConvTranspose3d(f[s + 1], f[s], 2, stride=2, bias=False) for s in range(stages - 2, -1, -1))
        self.decoder = nn.ModuleList(Stage(2 * f[s], f[s], 1) for s in range(stages - 2, -1, -1))
        self.heads = nn.ModuleList(nn.Conv3d(f[s], classes, 1) for s in range(stages - 2, -1, -1))

    def forward(self, x):
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        outputs = []
        for j, (up, dec, head) in enumerate(zip(self.up, self.decoder, self.heads)):
            x = dec(torch.cat([skips[-2 - j], up(x)], 1))
            outputs.append(head(x))
        return outputs[::-1]


def dice_ce(logits, target, smooth=1e-5):
    log_p = F.log_softmax(logits.float(), 1)
    ce = F.nll_loss(log_p, target)
    p = log_p.exp()
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).to(p.dtype)
    dims = (2, 3, 4)
    tp = (p * onehot).sum(dims)
    fp = (p * (1 - onehot)).sum(dims)
    fn = ((1 - p) * onehot).sum(dims)
    dice = (2 * tp + smooth) / (2 * tp + fp + fn + smooth)
    return ce + (1 - dice[:, 1:].mean())


def deep_supervision(outputs, target):
    w = [1 / (1 << i) for i in range(len(outputs))]
    w = [x / sum(w) for x in w]
    total = 0
    for weight, out in zip(w, outputs):
        t = target
        if out.shape[2:] != target.shape[1:]:
            t = F.interpolate(target[:, None].float(), size=out.shape[2:], mode="nearest")[:, 0].long()
        total = total + weight * dice_ce(out, t)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 48, 48])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--stages", type=int, default=4)
    ap.add_argument("--base", type=int, default=16)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for forward passes (CUDA only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    net = UNet(1, args.classes, args.stages, args.base).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    g = torch.Generator().manual_seed(1)
    image = torch.randn(args.batch, 1, *args.patch, generator=g).to(device)
    target = torch.randint(0, args.classes, (args.batch, *args.patch), generator=g).to(device)
    times = {"forward_s": 0.0, "backward_s": 0.0, "optimizer_s": 0.0, "step_s": 0.0}
    for step in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        if cuda and args.bf16:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                outputs = net(image)
        else:
            outputs = net(image)
        loss = deep_supervision(outputs, target)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
        opt.step()
        opt.zero_grad()
        loss.item()
        t3 = time.perf_counter()
        if step >= args.warmup:
            times["forward_s"] += t1 - t0
            times["backward_s"] += t2 - t1
            times["optimizer_s"] += t3 - t2
            times["step_s"] += t3 - t0
    voxels = args.batch * args.patch[0] * args.patch[1] * args.patch[2]
    out = {k: v / args.steps for k, v in times.items()}
    out["voxels_per_s"] = voxels / out["step_s"]
    out["torch"] = torch.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
