#!/usr/bin/env python3
"""Writes images that carry no watermark, for measuring the detector's false alarms: flat black,
gray and white, uniform noise, and checkerboards of periods 1, 2, 4 and 7 pixels, 28x28 uint8,
COUNT of each kind (noise differs per image; the others repeat), as one .npy array.

Usage: clean-images.py OUT.npy [COUNT]      (numpy; the .venv of scripts/setup-python has it)
"""
import sys

import numpy as np

out = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
rng = np.random.default_rng(0)
r, c = np.indices((28, 28))
images = []
for _ in range(count):
    images += [np.full((28, 28), v, np.uint8) for v in (0, 128, 255)]
    images.append(rng.integers(0, 256, (28, 28), dtype=np.uint8))
    images += [(((r // p + c // p) % 2) * 255).astype(np.uint8) for p in (1, 2, 4, 7)]
np.save(out, np.stack(images))
print(f"wrote {len(images)} clean 28x28 images to {out}")
