#!/usr/bin/env python3
"""The measurements of `wmae bench`, for the same seed model in PyTorch eager mode
(scripts/reference_model.py), with the same libtorch version and thread count.

Usage: bench-reference.py [--device cpu|cuda] [--threads N] [--steps 10] [--warmup 3]
                          [--repeats 3] [--train-batch 128] [--infer-batch 128,1000]
                          [--channels-last] [--json]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import SeedModel  # noqa: E402


def sync(device):
    # CUDA kernels run asynchronously: time only work that has finished.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(batch, args, device, step):
    for _ in range(args.warmup):
        step()
    sync(device)
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync(device)
        runs.append(args.steps * batch / (time.perf_counter() - start))
    return runs


def describe(device):
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-batch", default="128")
    p.add_argument("--infer-batch", default="128,1000")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = SeedModel().to(device)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    mse = torch.nn.functional.mse_loss

    def batch_of(n):
        images = torch.rand(n, 1, 28, 28, device=device)
        bits = torch.randint(0, 2, (n, 1, 4, 4), device=device).float()
        return images, torch.nn.functional.pad(bits, (0, 24, 0, 24))

    figures = []
    for batch in map(int, args.train_batch.split(",")):
        images, wmap = batch_of(batch)
        model.train()

        def train_step():
            watermarked, extracted = model(images, wmap)
            loss = mse(watermarked, images) + mse(extracted, wmap)
            opt.zero_grad()
            loss.backward()
            opt.step()

        runs = measure(batch, args, device, train_step)
        figures.append({"what": "train", "batch": batch, "images_per_s": statistics.median(runs), "runs": runs})
    model.eval()
    for batch in map(int, args.infer_batch.split(",")):
        images, wmap = batch_of(batch)

        def infer_step():
            with torch.no_grad():
                model(images, wmap)

        runs = measure(batch, args, device, infer_step)
        figures.append({"what": "infer", "batch": batch, "images_per_s": statistics.median(runs), "runs": runs})
    if args.json:
        print(json.dumps({"tool": f"pytorch {torch.__version__} eager", "device": describe(device),
                          "threads": torch.get_num_threads(), "figures": figures}))
    else:
        for f in figures:
            print(f"{f['what']:<6} batch {f['batch']:>5}: {f['images_per_s']:9.1f} images/s")


if __name__ == "__main__":
    main()
