#!/usr/bin/env python3
"""Writes tests/fixtures/ssimulacra2/: small PNG pairs (an original and a changed copy: a blotch
pattern of 16-px cells at 0.4, 0.8 and 1.5 levels on a flat sky-like gradient and on texture,
the range a watermark's visibility is judged in) and the SSIMULACRA2 score each pair gets from the independent Python implementation on PyPI
(`ssimulacra2==0.3.0`, a port of Cloudinary's reference), in scores.json. tests/photo_score.rs
holds wmae's scores (the `ssimulacra2` crate) to these.

Usage: python3 -m venv /tmp/ssv && /tmp/ssv/bin/pip install ssimulacra2==0.3.0 pillow numpy
       /tmp/ssv/bin/python scripts/make-ssimulacra2-fixture.py
"""
import json
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image
from ssimulacra2 import compute_ssimulacra2

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ssimulacra2"


def save(a, name):
    Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).save(OUT / name)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    h, w = 160, 224
    y, x = np.mgrid[0:h, 0:w]
    sky = np.stack([40 + 0.1 * y, 90 + 0.15 * y, 170 + 0.1 * x], -1)
    # Texture: ripples of a few pixels' period (compressible, unlike noise: a small fixture).
    ripples = 14 * np.sin(x / 2.3 + 0.7 * np.sin(y / 5.1)) * np.cos(y / 3.1)
    texture = sky + ripples[..., None] * np.array([1.0, 0.9, 0.8])
    cells = np.kron(rng.choice([-1.0, 1.0], (h // 16 + 1, w // 16 + 1)), np.ones((16, 16)))[:h, :w]
    pairs = {}
    for level in (0.4, 0.8, 1.5):
        pairs[f"sky-{level}"] = (sky, sky + level * cells[..., None])
        pairs[f"texture-{level}"] = (texture, texture + level * cells[..., None])
    scores = {}
    for name, (a, b) in pairs.items():
        save(a, f"{name}.orig.png")
        save(b, f"{name}.changed.png")
        scores[name] = compute_ssimulacra2(str(OUT / f"{name}.orig.png"),
                                           str(OUT / f"{name}.changed.png"))
        print(f"{name}: {scores[name]:.4f}")
    (OUT / "scores.json").write_text(json.dumps(
        {"tool": f"ssimulacra2 {metadata.version('ssimulacra2')} (PyPI)", "scores": scores},
        indent=1) + "\n")


if __name__ == "__main__":
    main()
