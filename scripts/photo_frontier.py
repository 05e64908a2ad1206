#!/usr/bin/env python3
"""One point of the visibility/robustness frontier of a wmae photo model, through the wmae binary:
embeds a payload into every photo of a folder (the default read-back check on), reports the
eye-model score `embed` measures (SSIMULACRA2, worst of the centre and flattest 512x512 windows)
and PSNR, then applies the attacks of issue 17 with Pillow and counts the photos whose exact
payload `extract` reads back (full search).

Usage: .venv/bin/python scripts/photo_frontier.py --checkpoint checkpoints/photo.ot \
           [--strength 1] [--visibility SCORE] [--flat-weight W] [--photos data/photos/test]
           [--out runs/frontier]
           [--threads 2]
Prints a Markdown line per attack and writes OUT/summary.json.
"""
import argparse
import io
import json
import os
import subprocess
import sys

from PIL import Image, ImageEnhance

PAYLOAD = "0123456789abcdef"


def crop(im, fx, fy, ax=0.5, ay=0.5):
    w, h = im.size
    cw, ch = round(w * fx), round(h * fy)
    left, top = round((w - cw) * ax), round((h - ch) * ay)
    return im.crop((left, top, left + cw, top + ch))


def jpeg(im, quality):
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)  # Pillow's default 4:2:0
    return Image.open(buf).convert("RGB")


def resize(im, f):
    return im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                     Image.Resampling.BILINEAR)


def turn(im, degrees):
    # Counter-clockwise, same size, black corners.
    return im.rotate(degrees, resample=Image.Resampling.BILINEAR)


ATTACKS = {
    "none": lambda im: im,
    "jpeg-50": lambda im: jpeg(im, 50),
    "resize-0.5": lambda im: resize(im, 0.5),
    "crop-area-0.5": lambda im: crop(im, 0.7071, 0.7071),
    "crop-0.95": lambda im: crop(im, 0.95, 0.95),
    "crop-0.9": lambda im: crop(im, 0.9, 0.9),
    "crop-0.8": lambda im: crop(im, 0.8, 0.8),
    "crop-0.75": lambda im: crop(im, 0.75, 0.75),
    "crop-0.6-offcentre": lambda im: crop(im, 0.6, 0.6, 0.2, 0.7),
    "crop-0.9x0.6": lambda im: crop(im, 0.9, 0.6, 0.3, 0.4),
    "rotate-3": lambda im: turn(im, 3),
    "rotate-7": lambda im: turn(im, 7),
    "rotate-13": lambda im: turn(im, -13),
    "brightness-1.3": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast-1.5": lambda im: ImageEnhance.Contrast(im).enhance(1.5),
    "screenshot": lambda im: jpeg(resize(crop(im, 0.8, 0.8), 800 / (im.width * 0.8)), 70),
    "social": lambda im: jpeg(jpeg(resize(im, min(1.0, 1080 / max(im.size))), 75), 85),
}


def run(wmae, *argv):
    done = subprocess.run([wmae, *argv], capture_output=True, text=True)
    if done.returncode not in (0, 3):
        sys.exit(f"photo_frontier: wmae {' '.join(argv[:2])}: {done.stderr.strip()[-400:]}")
    return [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="checkpoints/photo.ot")
    p.add_argument("--strength", default="1")
    p.add_argument("--photos", default="data/photos/test")
    p.add_argument("--out", default="runs/frontier")
    p.add_argument("--threads", default="2")
    p.add_argument("--wmae", default="target/release/wmae")
    p.add_argument("--visibility", help="embed --visibility SCORE instead of one strength")
    p.add_argument("--flat-weight", help="embed --flat-weight W (default: the model's)")
    a = p.parse_args()
    marked, attacked = os.path.join(a.out, "marked"), os.path.join(a.out, "attacked")
    os.makedirs(attacked, exist_ok=True)
    common = ["--threads", a.threads]
    extra = ["--visibility", a.visibility] if a.visibility else []
    extra += ["--flat-weight", a.flat_weight] if a.flat_weight else []
    embedded = run(a.wmae, *common, "embed", a.photos, "--payload", f"hex:{PAYLOAD}", "--out",
                   marked, "--checkpoint", a.checkpoint, "--strength", a.strength, "--jsonl",
                   *extra)
    ok = [r for r in embedded if r["status"] == "ok"]
    names = {}
    for r in ok:
        with Image.open(r["output"]) as im:
            im = im.convert("RGB")
            base = os.path.splitext(os.path.basename(r["output"]))[0]
            for attack, fn in ATTACKS.items():
                path = os.path.join(attacked, f"{base}.{attack}.png")
                fn(im).save(path)
                names[os.path.abspath(path)] = attack
    read = run(a.wmae, *common, "extract", attacked, "--checkpoint", a.checkpoint, "--jsonl")
    counts = {k: 0 for k in ATTACKS}
    for r in read:
        if r.get("payload") == PAYLOAD:
            counts[names[os.path.abspath(r["input"])]] += 1
    s2 = [r["ssimulacra2"] for r in ok]
    summary = {
        "checkpoint": a.checkpoint, "strength": float(a.strength), "photos": len(embedded),
        "embedded": len(ok), "failed": len(embedded) - len(ok),
        "ssimulacra2_mean": sum(s2) / len(s2), "ssimulacra2_min": min(s2),
        "ssimulacra2_at_least_80": sum(x >= 80 for x in s2),
        "ssimulacra2_at_least_85": sum(x >= 85 for x in s2),
        "psnr_mean": sum(r["psnr"] for r in ok) / len(ok),
        "visibility": a.visibility, "flat_weight": a.flat_weight,
        "raised": sum(r["strength"] > r.get("visibility_strength", float(a.strength))
                      for r in ok),
        "read": counts, "per_photo": embedded,
    }
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    how = f"--visibility {a.visibility}" if a.visibility else f"--strength {a.strength}"
    print(f"{a.checkpoint} {how}: {len(ok)} of {len(embedded)} embedded, "
          f"SSIMULACRA2 mean {summary['ssimulacra2_mean']:.1f} (min "
          f"{summary['ssimulacra2_min']:.1f}), >= 80: {summary['ssimulacra2_at_least_80']}, "
          f">= 85: {summary['ssimulacra2_at_least_85']}, PSNR {summary['psnr_mean']:.2f} dB, "
          f"strength raised on {summary['raised']}")
    for attack, n in counts.items():
        print(f"| {attack} | {n}/{len(ok)} |")


if __name__ == "__main__":
    main()
