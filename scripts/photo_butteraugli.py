#!/usr/bin/env python3
"""A second eye model beside SSIMULACRA2: butteraugli's max-norm (< 1 invisible, > 2 visible;
`butteraugli_main` from Debian's libjxl-devtools) on the windows `wmae score` judges, the centre and
the original's flattest 512x512 window at 100%, the larger counting.

Usage: .venv/bin/python scripts/photo_butteraugli.py ORIGINALS MARKED [--wmae target/release/wmae]
Scores every photo of the folder MARKED against the photo of the same name in ORIGINALS and prints
a line each (SSIMULACRA2 of `wmae score`, butteraugli), then the means and the worst.
`scripts/compare_imwatermark.py` scores every method with `visibility` below.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image


def visibility(rgb, marked, scratch, wmae):
    """SSIMULACRA2 (worst of the centre and flattest 512x512 windows, from `wmae score`) and
    butteraugli's max-norm on the same two windows (the larger counts), for two RGB arrays."""
    a, b = os.path.join(scratch, "vis-a.png"), os.path.join(scratch, "vis-b.png")
    Image.fromarray(rgb).save(a)
    Image.fromarray(marked).save(b)
    done = subprocess.run([wmae, "score", a, b, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wmae score: {done.stderr.strip()}")
    score = json.loads(done.stdout)
    fx, fy, ww, wh = score["flattest_window"]
    h, w = rgb.shape[:2]
    worst = 0.0
    for x, y in {((w - ww) // 2, (h - wh) // 2), (fx, fy)}:
        Image.fromarray(rgb[y:y + wh, x:x + ww]).save(a)
        Image.fromarray(marked[y:y + wh, x:x + ww]).save(b)
        done = subprocess.run(["butteraugli_main", a, b], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"butteraugli_main: {done.stderr.strip()[-200:]}")
        worst = max(worst, float(done.stdout.split()[0]))
    return score["ssimulacra2"], worst


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("originals")
    p.add_argument("marked")
    p.add_argument("--wmae", default="target/release/wmae")
    a = p.parse_args()
    if shutil.which("butteraugli_main") is None:
        sys.exit("butteraugli_main not found: apt-get install libjxl-devtools (Debian)")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in sorted(os.listdir(a.marked)):
            original = os.path.join(a.originals, name)
            if not os.path.isfile(original):
                sys.exit(f"{original}: no original for {os.path.join(a.marked, name)}")
            load = lambda path: np.asarray(Image.open(path).convert("RGB"))  # noqa: E731
            s2, ba = visibility(load(original), load(os.path.join(a.marked, name)), scratch,
                                a.wmae)
            rows.append((name, s2, ba))
            print(f"{name}: SSIMULACRA2 {s2:.2f}, butteraugli {ba:.2f}", flush=True)
    if not rows:
        sys.exit(f"{a.marked}: no photos")
    s2 = [r[1] for r in rows]
    ba = [r[2] for r in rows]
    print(f"{len(rows)} photos: SSIMULACRA2 mean {sum(s2) / len(s2):.2f} (min {min(s2):.2f}), "
          f"butteraugli mean {sum(ba) / len(ba):.2f} (max {max(ba):.2f}), "
          f"<= 2.0: {sum(x <= 2.0 for x in ba)}")


if __name__ == "__main__":
    main()
