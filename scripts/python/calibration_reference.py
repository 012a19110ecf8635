"""Reference ranges for qairt's search calibrations (mse, sqnr, entropy), computed with numpy.

Writes tests/data/calibration/reference.json: small deterministic inputs (histograms on the
power-of-two grid of src/quant/stats.rs, or raw parameter values that this script bins the
same way) and the (min, max) each method chooses by the definitions in docs/quantization.md.
The implementation here is deliberately naive (explicit candidate loops, P/Q arrays built in
full, KL summed directly) so that it checks the Rust code (prefix sums) independently.

Run from the repository root: $QAIRT_VENV/bin/python scripts/python/calibration_reference.py
(only numpy is needed).
"""

import json
import math
from pathlib import Path

import numpy as np

HISTOGRAM_BINS = 2048
MIN_BIN_EXPONENT = -40
MIN_RANGE = 0.0001
RANGE_STEPS = 100
SQNR_CLIP_WEIGHT = 3.0

OUT = Path("tests/data/calibration/reference.json")


def f32(x):
    return float(np.float32(x))


def round_half_away(x):
    return math.copysign(math.floor(abs(x) + 0.5), x)


def encoding(lo, hi, bw, schema):
    """(grid min, grid max, scale) of the SDK encoding of [lo, hi] (docs/quantization.md)."""
    steps = 2**bw - 1
    lo, hi = float(lo), float(hi)
    hi = max(hi, lo + MIN_RANGE)
    if schema == "symmetric":
        scale = f32(max(abs(lo), abs(hi)) / (2 ** (bw - 1) - 1))
        offset = -(2 ** (bw - 1))
    else:
        if lo >= 0:
            lo = 0.0
        elif hi <= 0:
            hi = 0.0
        else:
            scale = (hi - lo) / steps
            zero = min(max(round_half_away(-lo / scale), 0.0), steps)
            shifted = -zero * scale
            hi = shifted + (hi - lo)
            lo = shifted
        scale = (hi - lo) / steps
        offset = min(max(round_half_away(lo / scale), -steps), 0.0)
        scale = f32(scale)
    return f32(offset * scale), f32((offset + steps) * scale), scale


def points(h):
    n = len(h["counts"])
    centers = (h["first_bin"] + np.arange(n) + 0.5) * 2.0 ** h["exponent"]
    centers = np.clip(centers, h["min"], h["max"])
    counts = np.array(h["counts"], dtype=np.float64)
    keep = counts > 0
    return centers[keep], counts[keep]


def candidates(h, schema):
    mag = max(abs(h["min"]), abs(h["max"]))
    for k in range(RANGE_STEPS, 0, -1):
        f = k / RANGE_STEPS
        if schema == "symmetric":
            yield f32(-mag * f), f32(mag * f)
        else:
            yield f32(h["min"] * f), f32(h["max"] * f)


def least_noise(h, bw, schema, gamma):
    x, n = points(h)
    best, best_noise = None, math.inf
    for lo, hi in candidates(h, schema):
        a, b, s = encoding(lo, hi, bw, schema)
        inside = (x >= a) & (x <= b)
        clip = np.where(x < a, a - x, x - b)
        per_value = np.where(inside, s * s / 12.0, gamma * clip * clip)
        noise = float(np.sum(n * per_value))
        if noise < best_noise:  # candidates come widest first: ties keep the widest
            best, best_noise = (lo, hi), noise
    return best


def kl_divergence(bins, i, levels):
    kept = bins[:i].astype(np.float64)
    p = kept.copy()
    p[i - 1] += bins[i:].sum()
    group = (np.arange(i) * levels) // i
    group_total = np.bincount(group, weights=kept, minlength=levels)
    group_nonempty = np.bincount(group, weights=(kept > 0).astype(np.float64), minlength=levels)
    q = np.zeros(i)
    nz = kept > 0
    q[nz] = group_total[group[nz]] / group_nonempty[group[nz]]
    if q.sum() == 0:
        return math.inf
    p /= p.sum()
    q /= q.sum()
    m = p > 0
    if np.any(q[m] == 0):
        return math.inf
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def entropy(h, bw, schema):
    w = 2.0 ** h["exponent"]
    counts = np.array(h["counts"], dtype=np.int64)
    mag = max(abs(h["min"]), abs(h["max"]))
    if schema == "symmetric":
        g = h["first_bin"] + np.arange(len(counts))
        idx = np.where(g >= 0, g, -g - 1)
        bins = np.zeros(idx.max() + 1, dtype=np.int64)
        np.add.at(bins, idx, counts)
        bins = np.trim_zeros(bins, "b")
        levels = 2 ** (bw - 1)
        zero = 0
    else:
        bins = counts.copy()
        levels = 2**bw - 1
        zero = -h["first_bin"]
    # The bin of exact zeros counts as its upper neighbour (pytorch-quantization's
    # bins[0] = bins[1]).
    if 0 <= zero < len(bins) - 1:
        bins[zero] = bins[zero + 1]
    n = len(bins)
    best_i = n
    if n > levels:
        best_kl = math.inf
        for i in range(n, levels - 1, -1):
            kl = kl_divergence(bins, i, levels)
            if kl < best_kl:
                best_i, best_kl = i, kl
    if schema == "symmetric":
        t = min(best_i * w, mag)
        return f32(-t), f32(t)
    return f32(h["min"]), f32(min((h["first_bin"] + best_i) * w, h["max"]))


def pow2_histogram(values):
    """src/quant/stats.rs's histogram of a set of float32 values."""
    v = np.asarray(values, dtype=np.float32).astype(np.float64)
    lo, hi = v.min(), v.max()
    e = MIN_BIN_EXPONENT
    while math.floor(hi / 2.0**e) - math.floor(lo / 2.0**e) >= HISTOGRAM_BINS:
        e += 1
    g = np.floor(v / 2.0**e).astype(np.int64)
    first = int(g.min())
    counts = np.bincount(g - first)
    return {"first_bin": first, "exponent": e, "counts": [int(c) for c in counts], "min": lo, "max": hi}


def histogram_input(first_bin, exponent, counts):
    counts = [int(c) for c in counts]
    w = 2.0**exponent
    last = first_bin + len(counts) - 1
    # Observed extremes inside the first and last bins (exact in f32).
    return {
        "first_bin": first_bin,
        "exponent": exponent,
        "counts": counts,
        "min": f32((first_bin + 0.25) * w),
        "max": f32((last + 0.75) * w),
    }


def inputs():
    rng = np.random.RandomState(20261122)
    out = {}
    # A normal bulk in [-4.7, 4.7] (bins of 2^-6) and 3 values far out at ~23.4.
    j = np.arange(600)
    bulk = np.round(20000 * np.exp(-0.5 * ((j - 300) / 60.0) ** 2))
    counts = np.concatenate([bulk, np.zeros(899), [3]])
    counts = counts[np.nonzero(counts)[0][0] :]
    first = int(np.nonzero(np.concatenate([bulk, np.zeros(899), [3]]))[0][0]) - 300
    out["normal_with_outlier"] = histogram_input(first, -6, counts)
    # A Relu output: half-normal from 0 (bins of 2^-8), long thin tail.
    j = np.arange(1800)
    half = np.round(50000 * np.exp(-0.5 * (j / 250.0) ** 2)) + (j % 97 == 0) * 2
    out["relu_half_normal"] = histogram_input(0, -8, half)
    # A Relu output with most values exactly 0 (the zero bin holds 60% of them).
    relu0 = half.copy()
    relu0[0] = 1.5 * relu0.sum()
    out["relu_mostly_zeros"] = histogram_input(0, -8, relu0)
    # Laplace, signed, skewed (more mass on the positive side).
    j = np.arange(-700, 1300)
    lap = np.round(30000 * np.exp(-np.abs(j) / np.where(j < 0, 60.0, 150.0)))
    lap = lap[np.nonzero(lap)[0][0] : np.nonzero(lap)[0][-1] + 1]
    out["skewed_laplace"] = histogram_input(int(j[np.nonzero(np.round(30000 * np.exp(-np.abs(j) / np.where(j < 0, 60.0, 150.0))))[0][0]]), -7, lap)
    # Uniform: nothing to clip.
    out["uniform"] = histogram_input(-512, -9, np.full(1024, 40))
    # Parameter values (binned by pow2_histogram, as qairt does for parameters).
    w = (rng.standard_normal(700) * 0.05).astype(np.float32)
    w[[3, 400]] = [0.61, -0.38]
    out["weights_normal"] = {"values": [float(x) for x in w]}
    out["weights_uniform"] = {"values": [float(x) for x in rng.uniform(-0.3, 0.2, 300).astype(np.float32)]}
    return out


def main():
    methods = {
        "mse": lambda h, bw, s: least_noise(h, bw, s, 1.0),
        "sqnr": lambda h, bw, s: least_noise(h, bw, s, SQNR_CLIP_WEIGHT),
        "entropy": entropy,
    }
    cases = []
    all_inputs = inputs()
    for name, inp in all_inputs.items():
        h = pow2_histogram(inp["values"]) if "values" in inp else inp
        bitwidths = [4, 8] if "values" in inp else [8, 16]
        for method, fn in methods.items():
            for schema in ["asymmetric", "symmetric"]:
                for bw in bitwidths:
                    lo, hi = fn(h, bw, schema)
                    cases.append(
                        {"input": name, "method": method, "schema": schema, "bitwidth": bw, "range": [lo, hi]}
                    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {"generator": "scripts/python/calibration_reference.py", "inputs": all_inputs, "cases": cases}
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases")
    for c in cases:
        print(c["input"], c["method"], c["schema"], c["bitwidth"], c["range"])


if __name__ == "__main__":
    main()
