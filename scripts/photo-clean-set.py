#!/usr/bin/env python3
"""Writes the clean set wmae's photo reader is checked for false alarms on: every photo under
IN_DIR as it is, its mirror image and its six crops (scripts/photo-crops.py), and the attacks of
scripts/photo_frontier.py applied to the unmarked photos under TEST_DIR. All PNG (lossless).
Then `wmae extract OUT_DIR --checkpoint ...` must find no watermark in any of them.

Usage: scripts/photo-clean-set.py IN_DIR TEST_DIR OUT_DIR    (.venv/bin/python: Pillow)
"""
import importlib.util
import sys
from pathlib import Path

from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = None  # the data set's largest photo is trusted package content
HERE = Path(__file__).parent


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def photos(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def main():
    src, test, dst = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    crops, attacks = load("crops", "photo-crops.py").crops, load("frontier", "photo_frontier.py").ATTACKS
    dst.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in photos(src):
        im = Image.open(path)
        im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
        im.save(dst / f"{path.stem}.png")
        ImageOps.mirror(im).save(dst / f"{path.stem}.mirror.png")
        for name, box in crops(*im.size):
            im.crop(box).save(dst / f"{path.stem}.{name}.png")
        count += 8
    for path in photos(test):
        im = Image.open(path).convert("RGB")
        for name, attack in attacks.items():
            if name != "none":
                attack(im).save(dst / f"{path.stem}.clean-{name}.png")
                count += 1
    print(f"photo-clean-set: {count} clean images in {dst}")


if __name__ == "__main__":
    main()
