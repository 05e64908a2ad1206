"""Baseline comparison: invisible-watermark's dwtDct, dwtDctSvd and rivaGan under one attack set.

Run through scripts/compare-imwatermark, which builds the virtual environment this needs. Every
method is a small object with embed(rgb, bits) -> rgb and extract(rgb, n_bits) -> bits on
H x W x 3 uint8 RGB arrays; METHODS lists them, so another one (wmae, through its binary on
files) is a class and a line there. Every method meets the same attacks, from the ATTACKS table.

Measures, per method: PSNR (RGB, 8 bit) and SSIM (scikit-image, on BT.601 luma, Gaussian window
sigma 1.5, Wang et al.'s constants) of the watermarked image against the original, before any
attack; how visible the mark is by eye-model scores on the worst of two 512x512 windows at 100%
(the centre and the original's flattest): SSIMULACRA2 (`wmae score`, the `ssimulacra2` crate;
90 visually lossless, 70 high quality) and butteraugli's max-norm (`butteraugli_main` from
Debian's libjxl-devtools; below 1 invisible, above 2 visible); embed and extract time in ms per megapixel of the image they get (median over images,
extract on the unattacked image). Per method and attack: mean bit accuracy and the share of
images whose payload comes back exactly.
"""
import argparse
import os
import sys

# Threads are fixed before numpy, OpenCV, onnxruntime or torch start their pools (the variables
# are read once, at import), so every method runs on the same number of threads.
parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--photos", default="data/photos/test",
                    help="folder searched recursively for .jpg/.jpeg/.png (default %(default)s)")
parser.add_argument("--demo", action="store_true",
                    help="use the sample photos shipped in scikit-learn and scikit-image instead")
parser.add_argument("--bits", type=int, default=32,
                    help="payload length for methods that take any length (rivaGan: 32 only)")
parser.add_argument("--seed", type=int, default=0, help="seed of payloads and noise")
parser.add_argument("--threads", type=int, default=1,
                    help="threads for numpy/OpenCV/onnxruntime/torch (default 1)")
parser.add_argument("--methods", default=None, help="comma-separated subset of the methods")
parser.add_argument("--attacks", default=None, help="comma-separated subset of the attacks")
parser.add_argument("--limit", type=int, default=0, help="use only the first N photos")
parser.add_argument("--wmae-checkpoint", default="checkpoints/photo.ot",
                    help="the wmae photo model compared (method wmae)")
parser.add_argument("--wmae-strength", type=float, default=1.0,
                    help="wmae embed --strength (below 1: higher PSNR, weaker watermark)")
parser.add_argument("--wmae-binary", default=os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "wmae"),
                    help="the wmae binary (method wmae, and `wmae score` for every method)")
parser.add_argument("--no-visibility", action="store_true",
                    help="skip the SSIMULACRA2 and butteraugli scores (they need target/release/wmae "
                         "and butteraugli_main)")
parser.add_argument("--json", help="write settings, per-image results and the summary here")
parser.add_argument("--csv", help="write the summary, one row per method and attack, here")
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from importlib import metadata, util  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

from photo_butteraugli import visibility  # noqa: E402

cv2.setNumThreads(args.threads)
try:
    # imwatermark's rivaGan module imports torch at load time (it only shuffles arrays with it),
    # so the whole package needs it; the set-up borrows the project's torch from .venv.
    import torch
    from imwatermark import WatermarkDecoder, WatermarkEncoder
    from imwatermark.rivaGan import RivaWatermark
except ImportError as e:
    sys.exit(f"compare_imwatermark: {e}; run it through scripts/compare-imwatermark, which "
             "builds .venv-imwatermark and borrows torch from .venv (scripts/setup-python)")
torch.set_num_threads(args.threads)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- methods -------------------------------------------------------------------------------

class ImWatermark:
    """One of invisible-watermark's methods. The package works on OpenCV's BGR arrays, refuses
    images under 256*256 pixels of area (RuntimeError), and decodes 'bits' to a bool (dwt) or
    uint8 (rivaGan) array; this wrapper hides all three behind RGB in, 0/1 uint8 bits out."""

    def __init__(self, method, fixed_bits=None):
        self.name, self.fixed_bits = method, fixed_bits

    def n_bits(self, requested):
        return self.fixed_bits or requested

    def embed(self, rgb, bits):
        enc = WatermarkEncoder()
        enc.set_watermark("bits", [int(b) for b in bits])
        bgr = enc.encode(np.ascontiguousarray(rgb[:, :, ::-1]), self.name)
        out = bgr[:, :, ::-1]
        if out.shape != rgb.shape:
            # rivaGan's network drops the last column or row for some sizes (641 wide comes back
            # 640): keep the original pixels there so that the image keeps its size.
            full = rgb.copy()
            full[:out.shape[0], :out.shape[1]] = out
            out = full
        return np.ascontiguousarray(out)

    def extract(self, rgb, n_bits):
        bits = WatermarkDecoder("bits", n_bits).decode(np.ascontiguousarray(rgb[:, :, ::-1]),
                                                       self.name)
        return np.asarray(bits).astype(np.uint8).reshape(-1)


def load_rivagan():
    # WatermarkEncoder.loadModel() opens the package's ONNX files with onnxruntime's default of
    # one thread per core; opening them here with our thread count first makes loadModel() keep
    # ours (it returns early when both sessions exist).
    folder = os.path.dirname(util.find_spec("imwatermark").origin)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    for attr, name in (("encoder", "rivagan_encoder.onnx"), ("decoder", "rivagan_decoder.onnx")):
        setattr(RivaWatermark, attr, onnxruntime.InferenceSession(
            os.path.join(folder, name), opts, providers=["CPUExecutionProvider"]))
    WatermarkEncoder.loadModel()


class Wmae:
    """wmae's photo model through its binary, on PNG files in a scratch folder: `embed
    --payload hex:...` and `extract --json`. Its payload has a fixed size (64 data bits for
    checkpoints/photo.ot), BCH-coded; a photo it answers "no watermark" for has no bits to
    compare, so extract returns None and the photo counts as read at chance (0.5) and not exact.
    Its timings are the ones wmae reports per photo (reading, decoding, watermarking or reading,
    encoding and writing the file), without starting the process and loading the model, which a
    folder pays once; `last_ms` hands them to the runner."""

    name = "wmae"

    def __init__(self, payload_bits=64):
        self.payload_bits = payload_bits
        self.binary = args.wmae_binary
        self.scratch = tempfile.mkdtemp(prefix="compare-wmae-")

    def n_bits(self, requested):
        return self.payload_bits

    def run(self, *argv):
        cmd = [self.binary, "--threads", str(args.threads), *argv, "--checkpoint", args.wmae_checkpoint]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
        return done.stdout

    def embed(self, rgb, bits):
        src = os.path.join(self.scratch, "in.png")
        Image.fromarray(rgb).save(src)
        hexdigits = "".join(f"{int(''.join(map(str, bits[i:i + 8])), 2):02x}"
                            for i in range(0, len(bits), 8))
        out = os.path.join(self.scratch, "out")
        # Scored by this script like every method (--no-score); a photo whose payload does not
        # read back is still written and attacked (--keep-unread), so it counts against wmae.
        printed = self.run("embed", src, "--payload", f"hex:{hexdigits}", "--out", out,
                           "--strength", str(args.wmae_strength), "--no-score", "--keep-unread")
        self.last_ms = float(printed.split(" ms, PSNR")[0].rsplit(", ", 1)[1])
        return load_rgb(os.path.join(out, "in.png"))

    def extract(self, rgb, n_bits):
        src = os.path.join(self.scratch, "read.png")
        Image.fromarray(rgb).save(src)
        line = json.loads(self.run("extract", src, "--json").strip().splitlines()[-1])
        self.last_ms = line["ms"]
        if not line["watermark"]:
            return None
        value = int(line["payload"], 16)
        return np.array([(value >> (n_bits - 1 - i)) & 1 for i in range(n_bits)], np.uint8)


METHODS = [ImWatermark("dwtDct"), ImWatermark("dwtDctSvd"), ImWatermark("rivaGan", fixed_bits=32),
           Wmae()]


# ---- attacks: RGB uint8 array in, RGB uint8 array out; rng is seeded per image -------------

def pil(fn):
    return lambda a, rng: np.asarray(fn(Image.fromarray(a)).convert("RGB"))


def jpeg(quality):
    def attack(img):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)  # Pillow's default 4:2:0 chroma subsampling
        return Image.open(buf)
    return pil(attack)


def centre_crop(side):
    # Keeps `side` of each side (0.71: about half the area), not resized back.
    def attack(a, rng):
        h, w = a.shape[:2]
        ch, cw = round(h * side), round(w * side)
        top, left = (h - ch) // 2, (w - cw) // 2
        return a[top:top + ch, left:left + cw].copy()
    return attack


def gaussian_blur(sigma):
    # A true separable Gaussian (kernel to 3 sigma, edges reflected); Pillow's GaussianBlur is a
    # box-filter approximation.
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()

    def attack(a, rng):
        x = np.pad(a.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
        x = sum(k[i] * x[i:i + a.shape[0]] for i in range(2 * r + 1))
        x = sum(k[i] * x[:, i:i + a.shape[1]] for i in range(2 * r + 1))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return attack


def gaussian_noise(std):
    def attack(a, rng):
        return np.clip(np.rint(a + rng.normal(0.0, std, a.shape)), 0, 255).astype(np.uint8)
    return attack


def chain(*names):
    def attack(a, rng):
        for name in names:
            a = ATTACKS[name](a, rng)
        return a
    return attack


def crop(fx, fy, cx=0.5, cy=0.5):
    # Keeps fx of the width and fy of the height, the kept box's corner at (cx, cy) of the room
    # left over (0.5, 0.5: centred); not resized back.
    def attack(a, rng):
        h, w = a.shape[:2]
        ch, cw = round(h * fy), round(w * fx)
        top, left = round((h - ch) * cy), round((w - cw) * cx)
        return a[top:top + ch, left:left + cw].copy()
    return attack


def resize_to_width(width):
    return pil(lambda im: im.resize((width, max(1, round(im.height * width / im.width))),
                                    Image.Resampling.BILINEAR))


def longest_side(n):
    def fn(im):
        f = n / max(im.size)
        return im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                         Image.Resampling.BILINEAR) if f < 1 else im
    return pil(fn)


def rotate(degrees):
    # Counter-clockwise, same size, black corners.
    return pil(lambda im: im.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=False,
                                    fillcolor=(0, 0, 0)))


ATTACKS = {
    "none": lambda a, rng: a,
    "jpeg-80": jpeg(80),
    "jpeg-50": jpeg(50),
    "crop-0.71": centre_crop(0.71),
    "crop-0.5": centre_crop(0.5),
    # Bilinear with Pillow's antialiasing, decoded at the smaller size.
    "resize-0.5": pil(lambda im: im.resize((max(1, round(im.width * 0.5)),
                                            max(1, round(im.height * 0.5))),
                                           Image.Resampling.BILINEAR)),
    "blur": gaussian_blur(1.0),
    "noise": gaussian_noise(0.02 * 255),  # sigma 5.1 on 0..255, i.e. 0.02 on 0..1
    "brightness-1.5": pil(lambda im: ImageEnhance.Brightness(im).enhance(1.5)),
    "contrast-1.5": pil(lambda im: ImageEnhance.Contrast(im).enhance(1.5)),
    # Counter-clockwise, same size, black corners.
    "rotate-10": pil(lambda im: im.rotate(10, resample=Image.Resampling.BILINEAR, expand=False,
                                          fillcolor=(0, 0, 0))),
    "hflip": lambda a, rng: np.ascontiguousarray(a[:, ::-1]),
}
ATTACKS.update({
    "crop-0.95": centre_crop(0.95), "crop-0.9": centre_crop(0.9), "crop-0.8": centre_crop(0.8),
    "crop-0.75": centre_crop(0.75),
    "crop-0.6-offcentre": crop(0.6, 0.6, 0.2, 0.7),
    "rotate-3": rotate(3), "rotate-7": rotate(7), "rotate-13": rotate(-13),
    "brightness-1.3": pil(lambda im: ImageEnhance.Brightness(im).enhance(1.3)),
    "width-800": resize_to_width(800), "longest-1080": longest_side(1080),
    "jpeg-70": jpeg(70), "jpeg-75": jpeg(75), "jpeg-85": jpeg(85),
})
# Applied left to right: edit, then save as JPEG, as a shared photo would be.
ATTACKS["crop-0.71+brightness-1.5+jpeg-80"] = chain("crop-0.71", "brightness-1.5", "jpeg-80")
# A screenshot of part of a photo: 80% of each side, shown 800 px wide, saved as JPEG 70.
ATTACKS["screenshot"] = chain("crop-0.8", "width-800", "jpeg-70")
# A social network's chain: the longest side down to 1080, JPEG 75, then re-shared at JPEG 85.
ATTACKS["social"] = chain("longest-1080", "jpeg-75", "jpeg-85")
# Helpers of the chains, not attacks of their own in the table.
HELPERS = ("width-800", "longest-1080", "jpeg-70", "jpeg-75", "jpeg-85")

ATTACK_NOTES = {
    "jpeg-80": "Pillow JPEG quality 80, 4:2:0", "jpeg-50": "Pillow JPEG quality 50, 4:2:0",
    "crop-0.71": "centre crop keeping 71% of each side (~50% area), not resized",
    "crop-0.5": "centre crop keeping 50% of each side (25% area), not resized",
    "resize-0.5": "each side x0.5, Pillow bilinear (antialiased), not resized back",
    "blur": "Gaussian sigma 1 px, kernel to 3 sigma, reflected edges",
    "noise": "Gaussian, sigma 0.02*255 = 5.1, rounded and clipped",
    "brightness-1.5": "Pillow ImageEnhance.Brightness 1.5",
    "contrast-1.5": "Pillow ImageEnhance.Contrast 1.5",
    "rotate-10": "10 degrees counter-clockwise, bilinear, same size, black corners",
    "hflip": "horizontal flip",
    "crop-0.95": "centre crop keeping 95% of each side", "crop-0.9": "centre, 90% of each side",
    "crop-0.8": "centre, 80% of each side", "crop-0.75": "centre, 75% of each side",
    "crop-0.6-offcentre": "60% x 60% box at 20% across and 70% down the room left over",
    "rotate-3": "3 degrees counter-clockwise, bilinear, same size, black corners",
    "rotate-7": "7 degrees counter-clockwise", "rotate-13": "13 degrees clockwise",
    "brightness-1.3": "Pillow ImageEnhance.Brightness 1.3",
    "screenshot": "centre crop 80% of each side, resized to 800 px wide, Pillow JPEG 70",
    "social": "longest side to 1080 (if larger), Pillow JPEG 75, then JPEG 85",
    "crop-0.71+brightness-1.5+jpeg-80": "applied in that order",
}


# ---- photos and measures -------------------------------------------------------------------

def demo_photos(folder):
    """Copies the photos that ship inside the scikit-learn and scikit-image wheels."""
    import skimage
    import sklearn
    sk = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
    si = os.path.join(os.path.dirname(skimage.__file__), "data")
    files = [os.path.join(sk, f) for f in ("china.jpg", "flower.jpg")]
    files += [os.path.join(si, f) for f in ("astronaut.png", "coffee.png", "chelsea.png",
                                            "rocket.jpg")]
    for f in files:
        shutil.copy(f, folder)


def list_photos(folder):
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.join(root, n) for n in names
                  if n.lower().endswith((".jpg", ".jpeg", ".png"))]
    return sorted(found)


def load_rgb(path):
    with Image.open(path) as im:
        # Photos from cameras are often stored sideways with an EXIF orientation tag.
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def luma(a):
    return a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def ssim(a, b):
    return float(structural_similarity(luma(a), luma(b), data_range=255.0, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def rng_for(seed, rel, *more):
    # Seeded by the photo's path, not its position, so a payload does not change when photos are
    # added; every method gets the same payload (for the same length) and the same noise.
    return np.random.default_rng([seed, zlib.crc32(rel.encode()), *more])


def short_error(e):
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]


# ---- the run -------------------------------------------------------------------------------

def run(photos, root, methods, attacks):
    records = []  # one per photo and method
    scratch = tempfile.mkdtemp(prefix="compare-visibility-")
    for method in methods:
        if method.name == "rivaGan":
            load_rivagan()
        warmed = False
        for path in photos:
            rel = os.path.relpath(path, root)
            rgb = load_rgb(path)
            h, w = rgb.shape[:2]
            mp = h * w / 1e6
            n = method.n_bits(args.bits)
            bits = rng_for(args.seed, rel, n).integers(0, 2, n).astype(np.uint8)
            rec = {"method": method.name, "photo": rel, "width": w, "height": h, "bits": n}
            records.append(rec)
            try:
                if not warmed:  # the first call pays for allocations and caches: untimed
                    method.extract(method.embed(rgb, bits), n)
                    warmed = True
                t = time.perf_counter()
                marked = method.embed(rgb, bits)
                ms = getattr(method, "last_ms", None) or (time.perf_counter() - t) * 1e3
                rec["embed_ms_per_mp"] = ms / mp
            except Exception as e:
                rec["refused"] = short_error(e)
                log(f"{method.name} {rel}: refused: {rec['refused']}")
                continue
            rec["psnr"], rec["ssim"] = psnr(rgb, marked), ssim(rgb, marked)
            if not args.no_visibility:
                rec["ssimulacra2"], rec["butteraugli"] = visibility(rgb, marked, scratch,
                                                                       args.wmae_binary)
            rec["attacks"] = {}
            for i, (name, attack) in enumerate(attacks.items()):
                out = {}
                try:
                    attacked = attack(marked, rng_for(args.seed, rel, 1_000 + i))
                    t = time.perf_counter()
                    got = method.extract(attacked, n)
                    if name == "none":
                        ms = getattr(method, "last_ms", None) or (time.perf_counter() - t) * 1e3
                        rec["extract_ms_per_mp"] = ms / mp
                    if got is None:  # the method says "no watermark": a guess at chance
                        out.update(bit_acc=0.5, exact=False, no_watermark=True)
                        rec["attacks"][name] = out
                        continue
                    if got.shape != bits.shape:
                        raise ValueError(f"decoded {got.shape[0]} bits, wanted {n}")
                    out["bit_acc"] = float(np.mean(got == bits))
                    out["exact"] = bool(np.all(got == bits))
                except Exception as e:
                    out["error"] = short_error(e)
                rec["attacks"][name] = out
            log(f"{method.name} {rel} {w}x{h}: PSNR {rec['psnr']:.2f} dB, bit accuracy "
                + ", ".join(f"{k} {v['bit_acc']:.2f}" if "bit_acc" in v else f"{k} refused"
                            for k, v in rec["attacks"].items()))
    return records


def mean(xs):
    return statistics.fmean(xs) if xs else None


def median(xs):
    return statistics.median(xs) if xs else None


def summarise(records, methods, attacks):
    rows = []
    for method in methods:
        recs = [r for r in records if r["method"] == method.name]
        ok = [r for r in recs if "refused" not in r]
        base = {
            "method": method.name,
            "bits": method.n_bits(args.bits),
            "photos": len(recs),
            "refused": len(recs) - len(ok),
            "psnr_db": mean([r["psnr"] for r in ok]),
            "ssim": mean([r["ssim"] for r in ok]),
            "ssimulacra2": mean([r["ssimulacra2"] for r in ok if "ssimulacra2" in r]),
            "ssimulacra2_min": min([r["ssimulacra2"] for r in ok if "ssimulacra2" in r],
                                   default=None),
            "ssimulacra2_80": sum(r["ssimulacra2"] >= 80 for r in ok if "ssimulacra2" in r),
            "butteraugli": mean([r["butteraugli"] for r in ok if "butteraugli" in r]),
            "butteraugli_max": max([r["butteraugli"] for r in ok if "butteraugli" in r],
                                   default=None),
            "embed_ms_per_mp": median([r["embed_ms_per_mp"] for r in ok]),
            "extract_ms_per_mp": median([r["extract_ms_per_mp"] for r in ok
                                         if "extract_ms_per_mp" in r]),
        }
        for name in attacks:
            res = [r["attacks"][name] for r in ok]
            good = [x for x in res if "error" not in x]
            rows.append({**base, "attack": name, "decoded": len(good),
                         "decode_errors": len(res) - len(good),
                         "bit_acc": mean([x["bit_acc"] for x in good]),
                         "exact_rate": mean([float(x["exact"]) for x in good])})
    return rows


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def markdown(rows, records, methods, attacks, n_photos):
    names = [m.name for m in methods]
    first = {r["method"]: r for r in rows if r["attack"] == next(iter(attacks))}
    out = [f"Photos: {n_photos}; threads: {args.threads}; seed {args.seed}.", "",
           "| method | bits | embedded | refused | PSNR dB | SSIM (luma) | SSIMULACRA2 mean (min) "
           "| photos >= 80 | butteraugli mean (max) | embed ms/MP | extract ms/MP |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        r = first[name]
        out.append(f"| {name} | {r['bits']} | {r['photos'] - r['refused']} | {r['refused']} "
                   f"| {fmt(r['psnr_db'], '.2f')} | {fmt(r['ssim'], '.4f')} "
                   f"| {fmt(r['ssimulacra2'], '.1f')} ({fmt(r['ssimulacra2_min'], '.1f')}) "
                   f"| {r['ssimulacra2_80']} "
                   f"| {fmt(r['butteraugli'], '.2f')} ({fmt(r['butteraugli_max'], '.2f')}) "
                   f"| {fmt(r['embed_ms_per_mp'], '.0f')} | {fmt(r['extract_ms_per_mp'], '.0f')} |")
    refused = [f"{r['method']} {r['photo']} ({r['refused']})" for r in records if "refused" in r]
    if refused:
        out += ["", "Refused: " + "; ".join(refused)]
    out += ["", "Bit accuracy (share of photos decoded exactly); [k] = k photos the decoder "
            "refused after the attack, left out of both numbers.", "",
            "| attack | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    by = {(r["method"], r["attack"]): r for r in rows}
    for attack in attacks:
        cells = []
        for name in names:
            r = by[(name, attack)]
            cell = ("-" if r["bit_acc"] is None
                    else f"{r['bit_acc']:.3f} ({100 * r['exact_rate']:.0f}%)")
            if r["decode_errors"]:
                cell += f" [{r['decode_errors']}]"
            cells.append(cell)
        out.append(f"| {attack} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def versions():
    out = {"python": sys.version.split()[0]}
    for dist in ("invisible-watermark", "onnxruntime", "opencv-python-headless", "numpy",
                 "pillow", "PyWavelets", "scikit-image"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["torch"] = torch.__version__
    return out


def pick(table, wanted, what):
    if not wanted:
        return table
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [w for w in names if w not in table]
    if unknown:
        sys.exit(f"compare_imwatermark: unknown {what} {unknown}; known: {list(table)}")
    return {w: table[w] for w in names}


def main():
    methods = list(pick({m.name: m for m in METHODS}, args.methods, "method").values())
    attacks = pick({k: v for k, v in ATTACKS.items() if k not in HELPERS}, args.attacks, "attack")
    if args.bits < 1:
        sys.exit("compare_imwatermark: --bits must be at least 1")
    tmp = None
    try:
        if args.demo:
            tmp = tempfile.mkdtemp(prefix="compare-imwatermark-")
            demo_photos(tmp)
            root = tmp
        else:
            root = args.photos
            if not os.path.isdir(root):
                sys.exit(f"compare_imwatermark: no photo folder {root!r}; make it with "
                         "`scripts/fetch-data photos`, pass --photos DIR, or try --demo")
        photos = list_photos(root)
        if args.limit:
            photos = photos[:args.limit]
        if not photos:
            sys.exit(f"compare_imwatermark: no .jpg/.jpeg/.png under {root!r}")
        log(f"compare_imwatermark: {len(photos)} photos, methods {[m.name for m in methods]}, "
            f"{len(attacks)} attacks, {args.threads} thread(s)")
        started = time.perf_counter()
        records = run(photos, root, methods, attacks)
        elapsed = time.perf_counter() - started
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = summarise(records, methods, attacks)
    print(markdown(rows, records, methods, attacks, len(photos)))
    log(f"compare_imwatermark: done in {elapsed:.0f} s")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "csv")}
        settings["photos"] = "(demo)" if args.demo else root
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "versions": versions(), "seconds": elapsed,
                       "ssim": "skimage.metrics.structural_similarity on BT.601 luma, Gaussian "
                               "window sigma 1.5, population covariance, data range 255",
                       "attacks": {a: ATTACK_NOTES.get(a, a) for a in attacks},
                       "summary": rows, "per_photo": records}, f, indent=1)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
