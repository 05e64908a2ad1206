#!/usr/bin/env python3
"""Writes crops of every photo under a folder, for measuring how often wmae calls a clean photo
(or a crop of one) watermarked: the centre keeping 71% and 50% of each side, and the four
corners keeping 50% of each side, as PNG files (lossless, so nothing but the crop changes).

Usage: scripts/photo-crops.py IN_DIR OUT_DIR        (Pillow needed: .venv/bin/python has it)
"""
import sys
from pathlib import Path

from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # the data set's largest photo is trusted package content


def crops(w, h):
    """(name, box) of the six crops of a w x h photo."""
    out = []
    for f in (0.71, 0.5):
        cw, ch = round(w * f), round(h * f)
        left, top = (w - cw) // 2, (h - ch) // 2
        out.append((f"centre{f}", (left, top, left + cw, top + ch)))
    cw, ch = round(w * 0.5), round(h * 0.5)
    for name, (left, top) in {"tl": (0, 0), "tr": (w - cw, 0), "bl": (0, h - ch),
                              "br": (w - cw, h - ch)}.items():
        out.append((f"corner-{name}", (left, top, left + cw, top + ch)))
    return out


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        im = Image.open(path)
        im = im.convert("RGB") if im.mode not in ("L", "RGB") else im
        for name, box in crops(*im.size):
            im.crop(box).save(dst / f"{path.stem}.{name}.png")
            count += 1
    print(f"photo-crops: {count} crops of the photos under {src} in {dst}")


if __name__ == "__main__":
    main()
