#!/usr/bin/env python3
"""Where a training or inference step of the seed model spends its time, per libtorch operator
and input shape (torch.profiler over PyTorch eager, which runs the same libtorch kernels as wmae).

Usage: profile-reference.py [train|infer] [--batch 128] [--threads N] [--channels-last]
                            [--steps 3] [--rows 16]

Run it under wmae's allocator settings to see the kernels rather than page faults:
  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 .venv/bin/python scripts/profile-reference.py
"""
import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_model import SeedModel  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", nargs="?", default="train", choices=["train", "infer"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rows", type=int, default=16)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SeedModel()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    images = torch.rand(args.batch, 1, 28, 28)
    bits = torch.randint(0, 2, (args.batch, 1, 4, 4)).float()
    wmap = torch.nn.functional.pad(bits, (0, 24, 0, 24))
    mse = torch.nn.functional.mse_loss

    def step():
        if args.mode == "train":
            model.train()
            watermarked, extracted = model(images, wmap)
            loss = mse(watermarked, images) + mse(extracted, wmap)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad():
                model(images, wmap)

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            step()
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events) / 1000 / args.steps
    layout = "channels-last" if args.channels_last else "NCHW"
    print(f"{args.mode}, batch {args.batch}, {layout}, {args.threads} threads: "
          f"{total:.1f} ms of operator time per step")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
        ms = e.self_cpu_time_total / 1000 / args.steps
        shapes = ", ".join(str(s) for s in e.input_shapes if s)
        print(f"{ms:8.2f} ms {100 * ms / total:5.1f}%  {e.count // args.steps:3d} calls  {e.key:<28} {shapes[:70]}")


if __name__ == "__main__":
    main()
