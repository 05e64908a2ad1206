#!/usr/bin/env python3
"""Converts Keras weights of the seed model into a wmae checkpoint (.safetensors).

Usage: keras_to_wmae.py WEIGHTS.h5 OUT.safetensors

Reads the HDF5 layouts Keras writes (tests/fixtures/keras/ holds files Keras 3.15.1 and tf_keras
2.21.0 wrote in them):
  - Keras 3 `model.save_weights("x.weights.h5")`: `layers/conv2d`, `layers/conv2d_1`, ...
    `layers/conv2d_11`, each with `vars/0` (kernel) and `vars/1` (bias). Groups are named after
    the layer class and the layer's place in the model, not after the layer, so the Conv2D layers
    are taken in that order (conv2d_2 before conv2d_10) as the seed's twelve. Recent Keras 3 also
    stores the layer name as the `name` attribute of `vars`; where it is one of the seed's names
    it must be the one expected at that place.
  - Keras 2 / tf_keras `save_weights("x.h5")`, and `save("x.h5")` of Keras 2, tf_keras or Keras 3
    (under `model_weights/`): one group per layer name, listing its datasets in the
    `weight_names` attribute (`convl1e/kernel:0`, `convl1e/bias:0`; Keras 3 drops the `:0`).
    The weighted layers are taken in the model's order (the `layer_names` attribute); a seed
    name must again sit at its own place.
A file whose weighted layers are not the seed's twelve Conv2D layers, in the seed's order and
shapes, is refused (exit status 1). Keras stores Conv2D kernels HWIO (height, width, in, out),
libtorch OIHW, so each kernel is transposed (3, 2, 0, 1). The seed's layer names are the wmae
variable names. The output carries wmae's metadata (seed layout: 4x4 bits at the top left of
28x28, sigmoid head). Needs h5py, numpy and safetensors.
"""
import json
import re
import sys

import h5py
import numpy as np
from safetensors.numpy import save_file

# The seed's Conv2D layers in model order, with their Keras (HWIO) kernel shapes.
SEED = [
    ("convl1e", (3, 3, 1, 16)), ("convl2e", (3, 3, 16, 32)),
    ("convl3e", (3, 3, 32, 8)), ("reconstructed_I", (3, 3, 8, 1)),
    ("convl1d", (3, 3, 1, 16)), ("convl2d", (3, 3, 16, 32)),
    ("convl3d", (3, 3, 32, 8)), ("decoder_output", (3, 3, 8, 1)),
    ("conl1w", (3, 3, 1, 16)), ("convl2w", (3, 3, 16, 32)),
    ("conl3w", (3, 3, 32, 8)), ("reconstructed_W", (1, 1, 8, 1)),
]
LAYERS = [name for name, _ in SEED]


class Refused(Exception):
    """The file is not the seed's weights; the message says why."""


def shape(a):
    return "x".join(map(str, a.shape)) or "scalar"


def datasets(group):
    """Paths of all datasets under `group`, to tell weighted layers from others."""
    found = []

    def visit(name, obj):  # returns None, so h5py keeps visiting
        if isinstance(obj, h5py.Dataset):
            found.append(name)

    group.visititems(visit)
    return found


def keras3_layers(f):
    """[(group path, stored layer name or None, [arrays])] of the Conv2D layers, in model order."""
    convs, others = [], []
    for key, group in f["layers"].items():
        m = re.fullmatch(r"conv2d(?:_(\d+))?", key)
        if m:
            convs.append((int(m.group(1) or 0), key, group))
        elif datasets(group):
            others.append(f"layers/{key}")
    if others:
        raise Refused(f"{', '.join(others)} hold weights, but the seed's only weighted layers are "
                      f"its 12 Conv2D layers")
    out = []
    for _, key, group in sorted(convs):  # numeric order: conv2d_2 before conv2d_10
        v = group.get("vars")
        if (v is None or not all(k.isdigit() for k in v)
                or set(datasets(group)) - {f"vars/{k}" for k in v}):
            raise Refused(f"layers/{key} is not laid out as Keras 3 writes a Conv2D "
                          f"(vars/0, vars/1)")
        name = v.attrs.get("name")
        name = name.decode() if isinstance(name, bytes) else name
        out.append((f"layers/{key}", name, [np.asarray(v[k]) for k in sorted(v, key=int)]))
    return out


def legacy_layers(f):
    """[(group path, layer name, [arrays])] of the weighted layers, in model order (the
    `layer_names` attribute), from a Keras 2 / tf_keras / legacy Keras 3 HDF5 file."""
    root = f["model_weights"] if "model_weights" in f else f
    prefix = "model_weights/" if root is not f else ""
    out = []
    for name in root.attrs.get("layer_names", []):
        name = name.decode() if isinstance(name, bytes) else str(name)
        group = root.get(name)
        if group is None:
            raise Refused(f"layer {name} is listed in layer_names but has no group {prefix}{name}")
        paths = [p.decode() if isinstance(p, bytes) else str(p)
                 for p in group.attrs.get("weight_names", [])]
        if paths:
            out.append((prefix + name, name, [np.asarray(group[p]) for p in paths]))
    return out


def seed_weights(f):
    """{seed layer: (kernel HWIO, bias)}, or Refused."""
    if "model_weights" in f or "layer_names" in f.attrs:
        layers = legacy_layers(f)
    elif "layers" in f:
        layers = keras3_layers(f)
    else:
        raise Refused(f"not a Keras weights file (top-level groups: {', '.join(f) or 'none'}; "
                      f"expected layers/ (Keras 3 .weights.h5), model_weights/ or layer_names)")
    if len(layers) != len(SEED):
        where = "; ".join(f"{path} {' and '.join(shape(a) for a in arrays)}"
                          for path, _, arrays in layers)
        raise Refused(f"found {len(layers)} layers with weights ({where or 'none'}), but the seed "
                      f"has {len(SEED)}, its Conv2D layers {', '.join(LAYERS)}")
    out = {}
    for (path, name, arrays), (layer, kernel_shape) in zip(layers, SEED):
        if name in LAYERS and name != layer:
            raise Refused(f"{path} is {name}, but the seed has {layer} at that place "
                          f"(seed order: {', '.join(LAYERS)})")
        if (len(arrays) != 2 or arrays[0].shape != kernel_shape
                or arrays[1].shape != (kernel_shape[-1],)):
            found = " and ".join(shape(a) for a in arrays)
            raise Refused(f"{path} (the seed's {layer}) holds weights of shapes {found}, "
                          f"expected kernel {'x'.join(map(str, kernel_shape))} and bias "
                          f"{kernel_shape[-1]}: these are not the seed's weights")
        out[layer] = arrays[0], arrays[1]
    return out


def convert(src, dst):
    try:
        with h5py.File(src, "r") as f:
            weights = seed_weights(f)
    except OSError as e:  # missing, unreadable or not HDF5: say so without a traceback
        sys.exit(f"{src}: cannot read it as a Keras HDF5 weights file ({e})")
    except Refused as e:
        sys.exit(f"{src}: {e}")
    tensors = {}
    for layer in LAYERS:
        kernel, bias = weights[layer]
        tensors[f"{layer}.weight"] = np.ascontiguousarray(
            kernel.transpose(3, 2, 0, 1), dtype=np.float32)
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
