#!/usr/bin/env python3
"""Converts Keras weights of the seed model into a wmae checkpoint (.safetensors).

Usage: keras_to_wmae.py WEIGHTS.h5 OUT.safetensors

Reads the two HDF5 layouts Keras writes:
  - Keras 2 (`model.save_weights("x.h5")` or `model.save("x.h5")`): one group per layer name,
    holding `<layer>/kernel:0` and `<layer>/bias:0` (under `model_weights/` for a whole model);
  - Keras 3 (`model.save_weights("x.weights.h5")`): `layers/<layer>/vars/0` (kernel) and `/1` (bias).
Conv2D kernels are stored HWIO (height, width, in, out) by Keras and OIHW by libtorch, so each
kernel is transposed (3, 2, 0, 1). The seed's layer names are the wmae variable names. The output
carries wmae's metadata (seed layout: 4x4 bits at the top left of 28x28, sigmoid head).
Needs h5py, numpy and safetensors.
"""
import json
import sys

import h5py
import numpy as np
from safetensors.numpy import save_file

LAYERS = [
    "convl1e", "convl2e", "convl3e", "reconstructed_I",
    "convl1d", "convl2d", "convl3d", "decoder_output",
    "conl1w", "convl2w", "conl3w", "reconstructed_W",
]


def find_weights(f, layer):
    """(kernel, bias) of `layer` in either Keras layout, or None."""
    for root in (f, f.get("model_weights")):
        if root is None or layer not in root:
            continue
        group = root[layer]
        if "vars" in group:  # Keras 3
            return np.asarray(group["vars"]["0"]), np.asarray(group["vars"]["1"])
        found = {}

        def collect(name, obj):
            # "convl1e/kernel:0" -> "kernel"; returning None keeps h5py visiting.
            if isinstance(obj, h5py.Dataset):
                found.setdefault(name.split("/")[-1].split(":")[0], obj)

        group.visititems(collect)
        if "kernel" in found and "bias" in found:
            return np.asarray(found["kernel"]), np.asarray(found["bias"])
    layers = f.get("layers")
    if layers is not None and layer in layers and "vars" in layers[layer]:
        v = layers[layer]["vars"]
        return np.asarray(v["0"]), np.asarray(v["1"])
    return None


def convert(src, dst):
    tensors = {}
    with h5py.File(src, "r") as f:
        missing = [layer for layer in LAYERS if find_weights(f, layer) is None]
        if missing:
            sys.exit(f"{src}: no weights for the seed layers {missing}")
        for layer in LAYERS:
            kernel, bias = find_weights(f, layer)
            if kernel.ndim != 4:
                sys.exit(f"{src}: {layer} kernel has shape {kernel.shape}, expected (h, w, in, out)")
            tensors[f"{layer}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
            tensors[f"{layer}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    parameters = int(sum(t.size for t in tensors.values()))
    meta = {
        "format": "wmae-checkpoint-1",
        "architecture": "seed",
        "layout": {"rows": 4, "cols": 4, "top": 0, "left": 0, "height": 28, "width": 28},
        "head": "sigmoid",
        "parameters": parameters,
        "epoch": 0,
        "best_validation_loss": None,
        "config": f"converted from Keras weights {src}",
    }
    save_file(tensors, dst, metadata={"wmae": json.dumps(meta)})
    print(f"converted {len(LAYERS)} Keras layers ({parameters} parameters) from {src} to {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert(sys.argv[1], sys.argv[2])
