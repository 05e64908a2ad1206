"""End-to-end throughput of wmae and invisible-watermark's dwtDct on 1920x1080 JPEG photos.

Run through scripts/bench-throughput, which builds the virtual environment this needs. Both
methods get the same files and the same thread budget T, and every figure covers the whole path
from file to file: read, decode, watermark, encode, write (embed) or read, decode, search
(extract).

  wmae     one process, `wmae --threads T embed|extract ... --jsonl`; wall time around the process
           (start-up and model loading included, and reported on their own from a 1-image run),
           peak RSS and CPU time of that process, stage times from its JSON lines.
  dwtDct   T worker processes (multiprocessing, spawned), each single-threaded: cv2.imread ->
           WatermarkEncoder('dwtDct', 32 bits) -> cv2.imwrite (JPEG quality 95), and cv2.imread
           -> WatermarkDecoder('bytes', 32).decode('dwtDct'); wall time from starting the pool to
           its end (worker start-up included), peak RSS summed over the workers, stage times
           measured inside the workers.

The inputs are made once (runs/bench-1080p/input-N, reused while the plan is unchanged) from
the photo data set: a 16:9 crop resized with Lanczos to 1920x1080, saved as JPEG quality 90.
"""
import os
import sys

# One thread per dwtDct worker. The variables are read once, when numpy's and OpenCV's thread
# pools start, so they are set before those imports; wmae's process gets the environment as it
# was (ORIGINAL_ENV): its --threads sets its own pool.
ORIGINAL_ENV = dict(os.environ)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

# imwatermark's package import loads its rivaGan module, which imports torch at the top and uses it
# only inside RivaWatermark. dwtDct never reaches that code, so an empty stand-in module keeps
# torch's import time and its few hundred MB of resident memory out of dwtDct's figures.
sys.modules.setdefault("torch", types.ModuleType("torch"))
from imwatermark import WatermarkDecoder, WatermarkEncoder  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
INPUT_QUALITY = 90  # JPEG quality of the generated inputs
OUTPUT_QUALITY = 95  # JPEG quality both methods write (wmae's --jpeg-quality default)
GENERATOR_VERSION = 1  # bump when the way inputs are made changes: the folder is then rebuilt
PAYLOAD_TEXT = "bench"  # wmae: --payload text:bench
DWT_PAYLOAD = PAYLOAD_TEXT.encode()[:4]  # dwtDct: 32 bits, so the first four bytes of the same text
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")

# Stage names as printed, in order; wmae's come from its JSON lines (any others it reports are
# added after these).
WMAE_STAGES = {"embed": ["read", "decode", "model", "apply", "encode", "verify", "write"],
               "extract": ["read", "decode", "search"]}
DWT_STAGES = {"embed": ["read+decode", "embed", "encode+write"],
              "extract": ["read+decode", "decode watermark"]}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- inputs --------------------------------------------------------------------------------

def oriented_size(path):
    """Width and height as the photo is shown, i.e. after its EXIF orientation (header only)."""
    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
            w, h = h, w
    return w, h


def full_crop(w, h):
    """The largest 16:9 window of a w x h image: its width and height."""
    if w * HEIGHT <= h * WIDTH:  # relatively taller than 16:9: full width
        return w, w * HEIGHT / WIDTH
    return h * WIDTH / HEIGHT, h


def plan_inputs(photo_dirs, n, seed, min_crop_height):
    """What each of the n inputs is made of: a source photo, a crop box and a flip.

    Photos whose 16:9 window is under min_crop_height pixels tall are left out, so no input is
    upscaled more than 1080 / min_crop_height times (2x at the default 540; photos between that
    and 1080 are upscaled). The first pass over the photos takes each one's full centred window;
    later passes zoom in (to at most the same upscale limit), move the window and flip at
    random, so that every file differs."""
    sources = []
    for folder in photo_dirs:
        for root, _, files in os.walk(folder):
            for name in files:
                if name.lower().endswith(PHOTO_EXTENSIONS):
                    path = os.path.join(root, name)
                    w, h = oriented_size(path)
                    sources.append({"path": path, "bytes": os.path.getsize(path), "w": w, "h": h})
    sources.sort(key=lambda s: s["path"])
    eligible = [s for s in sources if full_crop(s["w"], s["h"])[1] >= min_crop_height]
    if not eligible:
        sys.exit(f"bench_throughput: no photo in {photo_dirs} has a 16:9 window at least "
                 f"{min_crop_height} px tall (run scripts/fetch-data photos)")
    rng = random.Random(seed)
    rng.shuffle(eligible)
    items = []
    for i in range(n):
        src = eligible[i % len(eligible)]
        w, h = src["w"], src["h"]
        cw, ch = full_crop(w, h)
        # Always draw the four numbers, so that item i does not depend on which pass it is in.
        lowest_zoom = max(0.7, min_crop_height / ch)
        zoom, fx, fy, flip = rng.uniform(lowest_zoom, 1.0), rng.random(), rng.random(), rng.random() < 0.5
        if i < len(eligible):
            zoom, fx, fy, flip = 1.0, 0.5, 0.5, False
        cw, ch = cw * zoom, ch * zoom
        x, y = fx * (w - cw), fy * (h - ch)
        items.append({"file": f"{i:04d}.jpg", "source": src["path"],
                      "box": [round(v, 3) for v in (x, y, x + cw, y + ch)], "flip": flip})
    return {"version": GENERATOR_VERSION, "seed": seed, "images": n,
            "min_crop_height": min_crop_height, "size": [WIDTH, HEIGHT],
            "quality": INPUT_QUALITY, "photos_found": len(sources),
            "photos_used": len(eligible), "sources": eligible, "items": items}


def make_inputs_from_one_photo(job):
    """Writes all inputs cut from one source photo (one decode of it for all)."""
    source, items, folder = job
    with Image.open(source) as im:
        photo = ImageOps.exif_transpose(im).convert("RGB")
    for item in items:
        out = photo.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS, box=tuple(item["box"]))
        if item["flip"]:
            out = ImageOps.mirror(out)
        out.save(os.path.join(folder, item["file"]), quality=INPUT_QUALITY)
    return len(items)


def ensure_inputs(work, photo_dirs, n, seed, min_crop_height, jobs):
    """The input folder for this plan: reused when its manifest matches and every file is
    there, otherwise made again in a scratch folder and renamed into place when complete."""
    plan = plan_inputs(photo_dirs, n, seed, min_crop_height)
    folder = os.path.join(work, f"input-{n}")
    manifest = os.path.join(folder, "manifest.json")
    try:
        with open(manifest) as f:
            if json.load(f) == plan and all(
                    os.path.isfile(os.path.join(folder, it["file"])) for it in plan["items"]):
                return folder, plan
    except (OSError, ValueError):
        pass
    log(f"bench_throughput: making {n} inputs ({WIDTH}x{HEIGHT}, JPEG quality {INPUT_QUALITY}) "
        f"from {plan['photos_used']} of {plan['photos_found']} photos in {folder}")
    scratch = folder + ".tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    by_source = {}
    for item in plan["items"]:
        by_source.setdefault(item["source"], []).append(item)
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        pool.map(make_inputs_from_one_photo,
                 [(src, items, scratch) for src, items in by_source.items()], chunksize=1)
    # The manifest goes in last: a folder without it is never taken for a finished one.
    with open(os.path.join(scratch, "manifest.json"), "w") as f:
        json.dump(plan, f, indent=1)
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(scratch, folder)
    log(f"bench_throughput: inputs made in {time.perf_counter() - started:.1f} s")
    return folder, plan


def jpeg_files(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))


# ---- wmae ----------------------------------------------------------------------------------

def run_measured(cmd, stdout_path, stderr_path, env):
    """Runs cmd to the end with stdout and stderr into files. Returns the exit code, the wall
    time around it, and the process's own peak RSS (MB) and CPU time (user + system, s) from
    wait4, the call /usr/bin/time -v reports the same figures from."""
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return proc.returncode, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def parse_jsonl(text):
    """wmae's JSON lines: one object per input. Lines that are not JSON objects are counted and
    skipped, so a stray message on stdout does not end the benchmark."""
    records, junk = [], 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            junk += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            junk += 1
    return records, junk


def status_of(rec):
    """'ok', 'skipped' or 'failed'; a record without a status is ok unless it carries an error."""
    return rec.get("status") or ("failed" if rec.get("error") else "ok")


def stage_sums(records, order):
    """Each stage's milliseconds summed over the records that have it, in `order` and then any
    stage names wmae reports besides."""
    sums = {}
    for rec in records:
        stages = rec.get("stages")
        if not isinstance(stages, dict):
            continue
        for name, ms in stages.items():
            if isinstance(ms, (int, float)):
                sums[name] = sums.get(name, 0.0) + float(ms)
    ordered = {k: sums[k] for k in order if k in sums}
    ordered.update({k: v for k, v in sums.items() if k not in ordered})
    return ordered


def expected_hex(length):
    """The hex wmae reports for text:bench in a payload of `length` hex digits: text fills the
    payload from the left and zero bytes pad it (src/message/payload.rs)."""
    return PAYLOAD_TEXT.encode().hex().ljust(length, "0")


def carries_payload(rec):
    """Whether an extract record found the benchmark's payload."""
    if status_of(rec) != "ok" or rec.get("watermark") is False:
        return False
    if rec.get("text") == PAYLOAD_TEXT:
        return True
    payload = rec.get("payload")
    return isinstance(payload, str) and payload.lower() == expected_hex(len(payload))


def summarise_wmae(operation, records, n_inputs):
    """Counts and stage sums from one run's JSON lines."""
    statuses = [status_of(r) for r in records]
    summary = {
        "records": len(records),
        "ok": statuses.count("ok"),
        "skipped": statuses.count("skipped"),
        "failed": statuses.count("failed"),
        "image_ms_sum": sum(float(r["ms"]) for r in records
                            if isinstance(r.get("ms"), (int, float))),
        "stage_ms": stage_sums(records, WMAE_STAGES[operation]),
        "errors": sorted({str(r["error"]) for r in records if r.get("error")})[:5],
    }
    if operation == "embed":
        # Correct: written, and with the payload wmae says it embedded.
        summary["correct"] = sum(
            1 for r in records if status_of(r) == "ok" and (
                not isinstance(r.get("payload"), str)
                or r["payload"].lower() == expected_hex(len(r["payload"]))))
    else:
        summary["correct"] = sum(1 for r in records if carries_payload(r))
    summary["correct_of"] = n_inputs
    return summary


def wmae_run(args, operation, folder, out_dir, logs, tag):
    """One wmae process over a folder; returns the measured figures and the parsed lines."""
    cmd = [args.wmae, "--threads", str(args.threads), "--device", args.device, operation, folder]
    if operation == "embed":
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd += ["--payload", f"text:{PAYLOAD_TEXT}", "--out", out_dir]
        if args.no_verify:
            cmd.append("--no-verify")
    cmd.append("--jsonl")
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    stdout_path = os.path.join(logs, f"wmae-{tag}.jsonl")
    stderr_path = os.path.join(logs, f"wmae-{tag}.stderr")
    log(f"bench_throughput: {' '.join(cmd)}")
    rc, wall, rss, cpu = run_measured(cmd, stdout_path, stderr_path, ORIGINAL_ENV)
    with open(stdout_path) as f:
        records, junk = parse_jsonl(f.read())
    result = {"command": cmd, "rc": rc, "wall_s": wall, "peak_rss_mb": rss, "cpu_s": cpu,
              "junk_lines": junk, "per_image": records}
    # 0: all done; 3: done, some inputs failed (counted from the lines). Anything else: no run.
    if rc not in (0, 3):
        with open(stderr_path, errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
        # clap and anyhow start their message with "error"; otherwise the last line says most.
        said = next((ln for ln in lines if ln.lower().startswith("error")), lines[-1] if lines else "")
        result["error"] = f"exit code {rc}: {said}"
        log(f"bench_throughput: wmae {operation} failed, {result['error']}")
    return result


def bench_wmae(args, inputs, n, work):
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    runs, startup = [], {}

    # Start-up: the same commands on a folder of one image. What the run took beyond that
    # image's own time (its "ms") is the process's start-up: loading libtorch and the model.
    one = os.path.join(work, "startup", "input")
    os.makedirs(one, exist_ok=True)
    first = jpeg_files(inputs)[0]
    if not os.path.isfile(os.path.join(one, first)):
        shutil.copyfile(os.path.join(inputs, first), os.path.join(one, first))
    one_out = os.path.join(work, "startup", "wmae")
    for operation, folder in (("embed", one), ("extract", one_out)):
        r = wmae_run(args, operation, folder, one_out, logs, f"startup-{operation}")
        if "error" in r:
            # The full runs would fail the same way: report this one for both and stop here.
            return [{"method": "wmae", "operation": op, "error": r["error"]}
                    for op in ("embed", "extract")], {}
        image_ms = sum(float(x["ms"]) for x in r["per_image"] if isinstance(x.get("ms"), (int, float)))
        startup[operation] = {"wall_s": r["wall_s"], "image_ms": image_ms,
                              "startup_s": r["wall_s"] - image_ms / 1000, "rc": r["rc"],
                              "peak_rss_mb": r["peak_rss_mb"]}

    out_dir = os.path.join(work, f"out-{n}", "wmae")
    for operation, folder in (("embed", inputs), ("extract", out_dir)):
        r = wmae_run(args, operation, folder, out_dir, logs, operation)
        r.update(method="wmae", operation=operation, images=n)
        if "error" not in r:
            r.update(summarise_wmae(operation, r["per_image"], n))
        runs.append(r)
    return runs, startup


# ---- dwtDct --------------------------------------------------------------------------------

def dwt_worker_init():
    cv2.setNumThreads(1)


def usage_now():
    """This worker's pid, peak RSS (MB) and CPU time (s) so far."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return os.getpid(), u.ru_maxrss / 1024, u.ru_utime + u.ru_stime


def dwt_embed_one(job):
    src, dst = job
    t0 = time.perf_counter()
    bgr = cv2.imread(src, cv2.IMREAD_COLOR)
    t1 = time.perf_counter()
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", DWT_PAYLOAD)
    marked = encoder.encode(bgr, "dwtDct")
    t2 = time.perf_counter()
    ok = cv2.imwrite(dst, marked, [cv2.IMWRITE_JPEG_QUALITY, OUTPUT_QUALITY])
    t3 = time.perf_counter()
    ms = {"read+decode": (t1 - t0) * 1e3, "embed": (t2 - t1) * 1e3, "encode+write": (t3 - t2) * 1e3}
    return {"input": src, "output": dst, "ok": bool(ok), "ms": (t3 - t0) * 1e3, "stages": ms,
            "usage": usage_now()}


def dwt_extract_one(path):
    t0 = time.perf_counter()
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    t1 = time.perf_counter()
    found = WatermarkDecoder("bytes", 8 * len(DWT_PAYLOAD)).decode(bgr, "dwtDct")
    t2 = time.perf_counter()
    ms = {"read+decode": (t1 - t0) * 1e3, "decode watermark": (t2 - t1) * 1e3}
    return {"input": path, "ok": bgr is not None, "correct": found == DWT_PAYLOAD,
            "payload": found.hex(), "ms": (t2 - t0) * 1e3, "stages": ms, "usage": usage_now()}


def dwt_pool_run(workers, func, jobs):
    """Runs func over jobs on a fresh pool of spawned single-threaded workers. Spawned rather
    than forked, so that each worker loads its own libraries as a separate dwtDct process would
    (and its RSS holds nothing of this process). Every result carries its worker's usage so far;
    a worker's last one is its total, since it does nothing after its last image."""
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers, initializer=dwt_worker_init) as pool:
        results = list(pool.imap_unordered(func, jobs, chunksize=1))
    wall = time.perf_counter() - started
    last = {}
    for r in results:
        pid, rss, cpu = r.pop("usage")
        prev = last.get(pid, (0.0, 0.0))
        last[pid] = (max(prev[0], rss), max(prev[1], cpu))
    return results, {"wall_s": wall, "workers_used": len(last),
                     "peak_rss_mb": sum(v[0] for v in last.values()),
                     "peak_rss_mb_per_worker": max((v[0] for v in last.values()), default=0.0),
                     "cpu_s": sum(v[1] for v in last.values())}


def dwt_summary(operation, results, figures, n):
    stage_ms = {}
    for name in DWT_STAGES[operation]:
        stage_ms[name] = sum(r["stages"][name] for r in results)
    ok = sum(1 for r in results if r["ok"])
    correct = ok if operation == "embed" else sum(1 for r in results if r.get("correct"))
    return dict(figures, method="dwtDct", operation=operation, images=n, rc=0, ok=ok,
                failed=len(results) - ok, correct=correct, correct_of=n,
                image_ms_sum=sum(r["ms"] for r in results), stage_ms=stage_ms,
                per_image=sorted(results, key=lambda r: r["input"]))


def python_startup():
    """Wall time of a fresh interpreter that imports what a dwtDct worker needs (torch stubbed,
    as here)."""
    code = ("import sys, types; sys.modules['torch'] = types.ModuleType('torch'); "
            "import cv2, numpy, imwatermark")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def bench_dwtdct(args, inputs, n, work):
    out_dir = os.path.join(work, f"out-{n}", "dwtdct")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    names = jpeg_files(inputs)
    runs = []
    log(f"bench_throughput: dwtDct embed, {args.threads} workers")
    results, figures = dwt_pool_run(
        args.threads, dwt_embed_one,
        [(os.path.join(inputs, f), os.path.join(out_dir, f)) for f in names])
    runs.append(dwt_summary("embed", results, figures, n))
    log(f"bench_throughput: dwtDct extract, {args.threads} workers")
    results, figures = dwt_pool_run(args.threads, dwt_extract_one,
                                    [os.path.join(out_dir, f) for f in names])
    runs.append(dwt_summary("extract", results, figures, n))
    return runs, {"python_imports_s": python_startup()}


# ---- report --------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def shares(stage_ms):
    total = sum(stage_ms.values())
    if not total:
        return "-"
    return ", ".join(f"{name} {100 * ms / total:.0f}%" for name, ms in stage_ms.items())


def table(runs):
    rows = ["| method | operation | images | wall s | images/s | ms/image | CPU ms/image | peak RSS MB "
            "| payload right | stage shares |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        if "error" in r:
            why = r["error"].replace("|", "/")[:100]
            rows.append(f"| {r['method']} | {r['operation']} | - | - | - | - | - | - | - "
                        f"| failed: {why} |")
            continue
        rows.append(
            f"| {r['method']} | {r['operation']} | {r['images']} | {r['wall_s']:.2f} "
            f"| {r['images_per_s']:.2f} | {r['ms_per_image']:.1f} | {1000 * r['cpu_s'] / r['images']:.0f} "
            f"| {r['peak_rss_mb']:.0f} | {r['correct']}/{r['correct_of']} "
            f"| {shares(r['stage_ms'])} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200, help="number of inputs (default 200)")
    parser.add_argument("--threads", type=int, default=2,
                        help="thread budget: wmae --threads and dwtDct workers (default 2)")
    parser.add_argument("--wmae", default="target/release/wmae", help="the wmae binary")
    parser.add_argument("--checkpoint", help="passed to wmae (default: its own, photo.ot)")
    parser.add_argument("--device", default="cpu", help="wmae --device (default cpu)")
    parser.add_argument("--no-verify", action="store_true",
                        help="wmae embed --no-verify: outputs not read back before writing")
    parser.add_argument("--skip-dwtdct", action="store_true", help="measure wmae only")
    parser.add_argument("--skip-wmae", action="store_true", help="measure dwtDct only")
    parser.add_argument("--photos", nargs="+", default=["data/photos/train", "data/photos/test"],
                        help="folders of source photos (default: %(default)s)")
    parser.add_argument("--min-crop-height", type=int, default=540,
                        help="leave out photos whose 16:9 window is shorter (default 540: "
                             "upscaled 2x at most)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops and flips")
    parser.add_argument("--work", default="runs/bench-1080p",
                        help="folder for inputs, outputs and logs (default %(default)s)")
    parser.add_argument("--json", help="write settings, every figure and per-image results here")
    args = parser.parse_args()
    if args.images < 1 or args.threads < 1:
        parser.error("--images and --threads must be positive")
    if not args.skip_wmae and not os.access(args.wmae, os.X_OK):
        sys.exit(f"bench_throughput: no wmae binary at {args.wmae} (cargo build --release, or "
                 "--wmae PATH, or --skip-wmae)")

    # Anything else running on the cores skews every figure here; the load average (1 minute)
    # before this script does any work, and after the measurements, shows it.
    load_before = os.getloadavg()
    os.makedirs(args.work, exist_ok=True)
    inputs, plan = ensure_inputs(args.work, args.photos, args.images, args.seed,
                                 args.min_crop_height, os.cpu_count() or 1)
    n = len(plan["items"])

    runs, startup = [], {}
    if not args.skip_wmae:
        wmae_runs, startup["wmae"] = bench_wmae(args, inputs, n, args.work)
        runs += wmae_runs
    if not args.skip_dwtdct:
        dwt_runs, startup["dwtDct"] = bench_dwtdct(args, inputs, n, args.work)
        runs += dwt_runs
    for r in runs:
        if "error" not in r:
            r["images_per_s"] = r["images"] / r["wall_s"]
            r["ms_per_image"] = 1000 * r["wall_s"] / r["images"]

    def rate(method, operation):
        for r in runs:
            if r["method"] == method and r["operation"] == operation and "error" not in r:
                return r["images_per_s"]
        return None

    ratios = {}
    for operation in ("embed", "extract"):
        a, b = rate("wmae", operation), rate("dwtDct", operation)
        if a and b:
            ratios[operation] = a / b

    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_before": load_before,
               "load_after": os.getloadavg(),
               "cores_allowed": len(os.sched_getaffinity(0)),
               "avx512f": " avx512f " in flags, "avx512_bf16": " avx512_bf16 " in flags}

    print(f"CPU: {machine['cpu']} ({machine['cores_allowed']} cores usable"
          f"{', AVX-512' if machine['avx512f'] else ''}"
          f"{', avx512_bf16' if machine['avx512_bf16'] else ''}); "
          f"thread budget {args.threads}; load average {machine['load_before'][0]:.2f} before, "
          f"{machine['load_after'][0]:.2f} after")
    print(f"Inputs: {n} x {WIDTH}x{HEIGHT} JPEG q{INPUT_QUALITY} in {inputs}, cut from "
          f"{plan['photos_used']} of {plan['photos_found']} photos (16:9 window at least "
          f"{args.min_crop_height} px tall; smaller windows upscaled with Lanczos); both "
          f"methods write JPEG q{OUTPUT_QUALITY}")
    print()
    print(table(runs))
    print()
    for operation, ratio in ratios.items():
        print(f"wmae / dwtDct images/s, {operation}: {ratio:.2f}")
    if startup.get("wmae"):
        s = startup["wmae"]
        print("wmae start-up (1-image run minus the image's own ms): "
              + ", ".join(f"{op} {v['startup_s']:.2f} s" for op, v in s.items()))
    if "dwtDct" in startup:
        print(f"dwtDct worker start-up (fresh Python importing cv2, numpy, imwatermark): "
              f"{startup['dwtDct']['python_imports_s']:.2f} s")
    if machine["load_before"][0] > 0.5:
        print(f"Warning: the load average was {machine['load_before'][0]:.2f} before the "
              "measurements: other work shared the cores, so the wall times (and images/s) suffer; "
              "CPU ms/image much less.")
    print("Wall times include process start-up; stage shares are of the summed per-image stage "
          "times" + ("" if args.skip_dwtdct else
                     f"; dwtDct's peak RSS is the sum over its {args.threads} workers") + ".")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "machine": machine, "inputs": inputs,
                       "input_plan": {k: v for k, v in plan.items() if k != "items"},
                       "startup": startup, "ratios": ratios, "runs": runs}, f, indent=1)
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
