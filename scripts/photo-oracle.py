#!/usr/bin/env python3
"""The reading with the geometry given away, as a ceiling for the photo reader's lattice search:
every attacked crop of a scripts/photo_frontier.py run is put back where it was cut, at the
marked photo's scale, on a flat gray canvas of the marked photo's size (flat pixels do not vote),
so `wmae extract OUT --search quick` reads it as embedded, with no lattice to find.

Usage: .venv/bin/python scripts/photo-oracle.py RUN_DIR OUT_DIR
  RUN_DIR: a photo_frontier.py --out folder (its marked/ and attacked/)
Then:   wmae extract OUT_DIR --search quick --jsonl --checkpoint ...
"""
import os
import sys

from PIL import Image

# Attack name: (share of the width kept, of the height, where the box's corner sat in the room
# left over, x and y), as photo_frontier.py cuts them; the screenshot chain also resized its crop.
CROPS = {
    "crop-0.6-offcentre": (0.6, 0.6, 0.2, 0.7),
    "crop-0.9x0.6": (0.9, 0.6, 0.3, 0.4),
    "crop-area-0.5": (0.7071, 0.7071, 0.5, 0.5),
    "screenshot": (0.8, 0.8, 0.5, 0.5),
}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    marked = os.path.join(run, "marked")
    for name in sorted(os.listdir(marked)):
        stem = os.path.splitext(name)[0]
        w, h = Image.open(os.path.join(marked, name)).size
        for attack, (fx, fy, ax, ay) in CROPS.items():
            path = os.path.join(run, "attacked", f"{stem}.{attack}.png")
            if not os.path.exists(path):
                continue
            crop = Image.open(path).convert("RGB")
            cw, ch = round(w * fx), round(h * fy)
            left, top = round((w - cw) * ax), round((h - ch) * ay)
            if crop.size != (cw, ch):
                crop = crop.resize((cw, ch), Image.Resampling.BICUBIC)
            canvas = Image.new("RGB", (w, h), (128, 128, 128))
            canvas.paste(crop, (left, top))
            canvas.save(os.path.join(out, f"{stem}.{attack}.png"))


if __name__ == "__main__":
    main()
