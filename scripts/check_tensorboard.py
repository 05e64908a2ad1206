#!/usr/bin/env python3
"""Reads a wmae run's TensorBoard events with TensorBoard's own event reader and checks that
every scalar equals the matching metrics.csv column (to float32 precision).

Usage: check_tensorboard.py RUN_DIR      (exit 0 and a one-line summary when they agree)
"""
import csv
import glob
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run_dir):
    files = glob.glob(f"{run_dir}/tensorboard/events.out.tfevents.*")
    if not files:
        sys.exit(f"no event file in {run_dir}/tensorboard")
    acc = EventAccumulator(f"{run_dir}/tensorboard")
    acc.Reload()
    tags = acc.Tags()["scalars"]
    with open(f"{run_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    checked = 0
    for tag in tags:
        column = tag.replace("/", "_")
        events = acc.Scalars(tag)
        if len(events) != len(rows):
            sys.exit(f"{tag}: {len(events)} events, metrics.csv has {len(rows)} epochs")
        for event, row in zip(events, rows):
            if event.step != int(row["epoch"]):
                sys.exit(f"{tag}: step {event.step} where metrics.csv has epoch {row['epoch']}")
            want = float(row[column])
            if not math.isclose(event.value, want, rel_tol=1e-6, abs_tol=1e-6):
                sys.exit(f"{tag} at step {event.step}: {event.value} in TensorBoard, {want} in metrics.csv")
            checked += 1
    if "train/bit_accuracy" not in tags or "val/psnr" not in tags:
        sys.exit(f"expected scalars missing; TensorBoard sees {sorted(tags)}")
    print(f"tensorboard ok: {len(tags)} scalar tags, {checked} values equal to metrics.csv")


if __name__ == "__main__":
    main(sys.argv[1])
