#!/usr/bin/env python3
"""Best case for a binarize-then-vote watermark on black pixels under Gaussian noise.

Why: on MNIST about 80% of the pixels are 0, and a watermarked image must stay in [0, 255], so a
black pixel can only carry its map value as "raised by d levels" (1) or "left at 0" (0): on-off
keying, whatever the model. This script assumes the most favourable case: every pixel black, every
pixel carrying one of 16 bits (49 pixels per bit, half of them "on", as the spread layout does),
a reader that knows the original is black and puts its per-pixel threshold at the best place,
then the majority vote of wmae's reader. It prints, for each raise d (in 8-bit levels, as stored),
the PSNR of such a watermark and the bit accuracy after `noise-10` (sigma 10/255, clipped,
rounded to 8 bits). No model can do better with this reading; real digits (strokes at 255 can
only go down, grey edges hide the signal) do worse.

Usage: scripts/noise-bound.py [SIGMA]        (default 10, in 8-bit levels)
"""
import math
import sys

PIXELS_PER_BIT = 49


def gaussian_tail(x):
    """P(N(0,1) >= x)."""
    return 0.5 * math.erfc(x / math.sqrt(2))


def pixel_error(d, sigma):
    """Error of the best threshold t between a pixel stored at 0 and one stored at d, after noise,
    clipping and rounding: it reads "on" when the stored level is >= t, i.e. when x + noise >= t - 0.5."""
    best = 1.0
    for t in range(1, d + 1):
        false_on = gaussian_tail((t - 0.5) / sigma)
        false_off = 1.0 - gaussian_tail((t - 0.5 - d) / sigma)
        best = min(best, (false_on + false_off) / 2)
    return best


def majority_error(p, n):
    """P(more than half of n independent pixels wrong), n odd."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n // 2 + 1, n + 1))


def main():
    sigma = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    print(f"noise sigma {sigma}/255, {PIXELS_PER_BIT} pixels per bit, half of them raised by d")
    print("   d  PSNR dB  pixel error  bit accuracy")
    for d in range(2, 13):
        psnr = 10 * math.log10(255**2 / (d * d / 2))
        p = pixel_error(d, sigma)
        accuracy = 1 - majority_error(p, PIXELS_PER_BIT)
        print(f"  {d:2d}  {psnr:7.2f}  {p:11.3f}  {100 * accuracy:11.2f}%")


if __name__ == "__main__":
    main()
