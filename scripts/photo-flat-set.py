#!/usr/bin/env python3
"""Flat-area photos cut from the held-out test photos, for judging visibility where the eye sees a
watermark first: a panorama (a full-width strip 4.5 times as wide as it is high, at the photo's
flattest band of rows: sky, sea, sand) and a close-up of its flattest square (768 px, or the
shorter side: a plain background). Real pixels of photos wmae never trained on, saved as PNG so
that the only change a marked copy shows is wmae's.

Usage: .venv/bin/python scripts/photo-flat-set.py [data/photos/test] OUT
Then e.g. scripts/photo_frontier.py --photos OUT.
"""
import os
import sys

from PIL import Image, ImageFilter

PANORAMA_ASPECT = 4.5
MIN_SHORTER = 256
CLOSE_UP = 768


def gradient(im):
    """Per-pixel luma gradient magnitude (Pillow's FIND_EDGES), as a list of rows."""
    edges = im.convert("L").filter(ImageFilter.FIND_EDGES)
    w, h = edges.size
    data = edges.tobytes()
    return [data[y * w:(y + 1) * w] for y in range(h)], w, h


def flattest(sums, span):
    """Start of the window of `span` consecutive entries with the lowest total."""
    best, total = 0, sum(sums[:span])
    best_total = total
    for start in range(1, len(sums) - span + 1):
        total += sums[start + span - 1] - sums[start - 1]
        if total < best_total:
            best, best_total = start, total
    return best


def main():
    args = sys.argv[1:]
    src, out = (args if len(args) == 2 else ["data/photos/test", *args])
    os.makedirs(out, exist_ok=True)
    made = 0
    for name in sorted(os.listdir(src)):
        with Image.open(os.path.join(src, name)) as im:
            im = im.convert("RGB")
        rows, w, h = gradient(im)
        stem = os.path.splitext(name)[0]
        band = round(w / PANORAMA_ASPECT)
        if MIN_SHORTER <= band <= h:
            top = flattest([sum(r) for r in rows], band)
            im.crop((0, top, w, top + band)).save(os.path.join(out, f"{stem}.panorama.png"))
            made += 1
        side = min(CLOSE_UP, w, h)
        if side >= MIN_SHORTER:
            # The flattest square: flattest band of rows, then the flattest columns in it.
            top = flattest([sum(r) for r in rows], side)
            columns = [sum(rows[y][x] for y in range(top, top + side, 4)) for x in range(w)]
            left = flattest(columns, side)
            im.crop((left, top, left + side, top + side)).save(
                os.path.join(out, f"{stem}.flat.png"))
            made += 1
    print(f"{made} photos in {out}")


if __name__ == "__main__":
    main()
