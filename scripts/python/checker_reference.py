"""Independent numpy implementation of the quantization checker's algorithms.

Writes tests/data/checker/reference.json: a handful of deterministic tensors (per-channel
weights, an asymmetric tensor with large skew, NaN/Inf, all zeros, an exactly representable
tensor (sqnr inf), a 4-bit tensor that fails sqnr, clustered fractional values, an int32
bias, activations against their encoding range) with their encodings (scale, offset,
bitwidth, axis), the dequantized values and, per algorithm, the expected pass flag, measured
number and detail numbers. The Rust test in src/verify/checker/tests.rs re-runs the checker on
the same inputs and compares (1e-6 relative).

Formulas from the digest of the vendor accuracy checker documentation, section
1.4 (the SDK's qnn-quantization-checker), written independently here and documented in
docs/checker.md: nan_to_num first; minmax |min(u)-min(d)|, |max(u)-max(d)| (activations: d is
the encoding range [offset*scale, (2^bw-1+offset)*scale]); maxdiff max|u-d|; sqnr
10 log10(mean(u^2)/mean((d-u)^2)) (inf when mse == 0); stats skew mean(((x-mean)/std)^3);
data_range count(unique(int(x))) and max-min against 2^bw; data_distribution: np.histogram of
the values with a fractional part, bins max(int(max-min+1), 256), (max bin - 1)/N against 0.6.
Everything is computed in float64 from the float32 inputs. Quantization: q = clamp(
round_half_even(x / scale) - offset, 0, 2^bw-1) in float32 (float64 for bw > 24),
dequantized = (q + offset) * scale.

Usage: $QAIRT_VENV/bin/python scripts/python/checker_reference.py  (numpy only)
"""

import json
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "checker", "reference.json")

DEFAULTS = {"minmax": 10.0, "maxdiff": 10.0, "sqnr": 26.0, "stats": 2.0, "data_distribution_analyzer": 0.6}


def num(x):
    """JSON-safe float: non-finite values as strings."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def fake_quant(x, scale, offset, bw):
    steps = 2.0**bw - 1
    if bw <= 24:
        r = np.rint(x.astype(np.float32) / np.float32(scale)).astype(np.float64)
    else:
        r = np.rint(x.astype(np.float64) / np.float64(np.float32(scale)))
    q = np.nan_to_num(np.clip(r - offset, 0.0, steps), nan=0.0)  # NaN quantizes to grid value 0
    if bw <= 24:
        return ((q + offset).astype(np.float32) * np.float32(scale)).astype(np.float32)
    return ((q + offset) * np.float64(np.float32(scale))).astype(np.float32)


def dequantize(u, encs, axis):
    """Per-tensor (one encoding) or per-channel along `axis`."""
    if axis is None:
        s, o, bw = encs[0]
        return fake_quant(u, s, o, bw)
    out = np.empty_like(u)
    for c, (s, o, bw) in enumerate(encs):
        idx = [slice(None)] * u.ndim
        idx[axis] = c
        out[tuple(idx)] = fake_quant(u[tuple(idx)], s, o, bw)
    return out


def judged(name, measured, threshold, **detail):
    fails = measured < threshold if name == "sqnr" else measured > threshold
    return {"algorithm": name, "pass": not fails, "measured": num(measured), "threshold": num(threshold),
            "detail": {k: num(v) for k, v in detail.items()}}


def alg_minmax(u, dmin, dmax, thr):
    a, b = abs(u.min() - dmin), abs(u.max() - dmax)
    return judged("minmax", max(a, b), thr, min=a, max=b)


def alg_maxdiff(u, d, thr):
    return judged("maxdiff", np.abs(u - d).max(), thr)


def alg_sqnr(u, d, thr):
    mse = np.mean((d - u) ** 2)
    if mse == 0:
        return judged("sqnr", math.inf, thr)
    with np.errstate(divide="ignore"):
        return judged("sqnr", 10 * np.log10(np.mean(u**2) / mse), thr)


def alg_stats(u, thr):
    mean, std = np.mean(u), np.std(u)
    skew = 0.0 if std == 0 else np.mean(((u - mean) / std) ** 3)
    vals, counts = np.unique(u, return_counts=True)
    return judged("stats", abs(skew), thr, skew=skew, min=u.min(), max=u.max(), median=np.median(u),
                  mean=mean, variance=np.var(u), std_dev=std, mode=vals[np.argmax(counts)])


def alg_data_range(u, bw):
    thr = 2.0**bw
    uniques = len(np.unique(np.trunc(u)))  # int(x) truncates toward zero
    rng = u.max() - u.min()
    return judged("data_range_analyzer", max(uniques, rng), thr, uniques=uniques, range=rng)


def alg_data_distribution(u, thr):
    frac = u[u != np.trunc(u)]
    ratio = 0.0
    if frac.size:
        bins = max(int(frac.max() - frac.min() + 1), 256)
        hist, _ = np.histogram(frac, bins=bins)
        hist = np.where(hist > 0, hist - 1, hist)
        ratio = float(np.max(hist / frac.size))
    return judged("data_distribution_analyzer", ratio, thr)


def check(cls, u32, d32, bw, act_range=None):
    """All algorithms that apply to the class (the Rust test enables the same set)."""
    u = np.nan_to_num(u32).astype(np.float64)
    out = [alg_stats(u, DEFAULTS["stats"])]
    if bw is not None:
        out.append(alg_data_range(u, bw))
    out.append(alg_data_distribution(u, DEFAULTS["data_distribution_analyzer"]))
    if cls in ("weight", "bias"):
        d = np.nan_to_num(d32).astype(np.float64)
        out.append(alg_minmax(u, d.min(), d.max(), DEFAULTS["minmax"]))
        out.append(alg_maxdiff(u, d, DEFAULTS["maxdiff"]))
        out.append(alg_sqnr(u, d, DEFAULTS["sqnr"]))
    elif cls == "activation":
        out.append(alg_minmax(u, act_range[0], act_range[1], DEFAULTS["minmax"]))
    return out


def asym_encoding(lo, hi, bw):
    """TF-style asymmetric encoding (digest: zero exactly representable)."""
    steps = 2**bw - 1
    lo, hi = min(lo, 0.0), max(hi, 0.0, lo + 1e-4)
    scale = (hi - lo) / steps
    offset = int(round(lo / scale))
    return float(np.float32(scale)), max(-steps, min(0, offset)), bw


def sym_encoding(lo, hi, bw):
    m = max(abs(lo), abs(hi), 1e-4)
    return float(np.float32(m / (2 ** (bw - 1) - 1))), -(2 ** (bw - 1)), bw


def case(name, cls, values, shape, encs, axis=None):
    u = np.asarray(values, dtype=np.float32).reshape(shape)
    entry = {"name": name, "class": cls, "shape": list(shape), "values": [num(x) for x in u.ravel()],
             "encodings": [{"scale": s, "offset": o, "bitwidth": bw} for s, o, bw in encs], "axis": axis}
    bw = encs[0][2]
    if cls in ("weight", "bias"):
        d = dequantize(u, encs, axis)
        entry["dequantized"] = [num(x) for x in d.ravel()]
        entry["expected"] = check(cls, u.ravel(), d.ravel(), bw)
    else:
        s, o, bw = encs[0]
        s64 = float(np.float32(s))
        entry["expected"] = check(cls, u.ravel(), None, bw, act_range=(o * s64, (2.0**bw - 1 + o) * s64))
    return entry


def main():
    rng = np.random.default_rng(20240611)
    cases = []

    # Per-channel weights [3, 4] along axis 0, symmetric 8 bit per channel.
    w = (rng.standard_normal((3, 4)) * np.array([[0.1], [1.0], [5.0]])).astype(np.float32)
    encs = [sym_encoding(float(r.min()), float(r.max()), 8) for r in w]
    cases.append(case("per_channel_weight", "weight", w, w.shape, encs, axis=0))

    # Per-channel along axis 1 of [2, 3].
    w = np.array([[0.3, -1.2, 7.5], [0.31, 2.4, -7.0]], dtype=np.float32)
    encs = [sym_encoding(float(w[:, c].min()), float(w[:, c].max()), 8) for c in range(3)]
    cases.append(case("per_channel_axis1", "weight", w, w.shape, encs, axis=1))

    # Asymmetric, strongly right-skewed (exponential plus outliers): stats fails.
    x = np.concatenate([rng.exponential(0.05, 200), [3.0, 4.5, 6.0]]).astype(np.float32)
    cases.append(case("skewed_asymmetric", "weight", x, x.shape, [asym_encoding(float(x.min()), float(x.max()), 8)]))

    # NaN and infinities (nan_to_num first: NaN -> 0, inf -> float32 max).
    # (One infinity per tensor: +inf and -inf together cancel to a mean of rounding noise.)
    x = np.array([0.5, np.nan, -0.25, np.inf, 1.0, 0.75], dtype=np.float32)
    cases.append(case("nan_inf", "weight", x, x.shape, [asym_encoding(-0.25, 1.0, 8)]))
    x = np.array([np.nan, -np.inf, 2.5, 0.125], dtype=np.float32)
    cases.append(case("nan_neg_inf", "bias", x, x.shape, [asym_encoding(0.0, 2.5, 8)]))

    # All zeros: std 0 -> skew 0; mse 0 -> sqnr inf.
    x = np.zeros(6, dtype=np.float32)
    cases.append(case("all_zero", "bias", x, x.shape, [asym_encoding(0.0, 0.0, 8)]))

    # On the grid exactly (scale 0.5, symmetric offset -128): sqnr inf.
    x = np.array([-3.0, -0.5, 0.0, 1.5, 2.0, 63.5], dtype=np.float32)
    cases.append(case("exact_grid", "weight", x, x.shape, [(0.5, -128, 8)]))

    # 4-bit normal data: sqnr below 26 dB.
    x = rng.standard_normal(500).astype(np.float32)
    cases.append(case("normal_4bit", "weight", x, x.shape, [asym_encoding(float(x.min()), float(x.max()), 4)]))

    # 8-bit normal data: passes everything.
    x = rng.standard_normal(1000).astype(np.float32)
    cases.append(case("normal_8bit", "weight", x, x.shape, [asym_encoding(float(x.min()), float(x.max()), 8)]))

    # Wide integer-heavy data: data_range fails (range 999 > 256, 1000 unique ints), and the
    # fractional values cluster in one bin: data_distribution fails; minmax/maxdiff fail too.
    x = np.concatenate([np.arange(1000.0), np.full(50, 500.25), [500.5]]).astype(np.float32)
    cases.append(case("wide_clustered", "weight", x, x.shape, [asym_encoding(0.0, 999.0, 8)]))

    # Values on (and one ulp around) the histogram's bin edges: the edge corrections matter.
    edges = 0.1 + np.arange(0, 300, 3) * (np.float32(7.3) - np.float32(0.1)) / 299
    x = np.concatenate([edges, np.nextafter(edges, 0), [0.1, 0.1, 7.3, 7.3, 7.3]]).astype(np.float32)
    cases.append(case("bin_edges", "weight", x, x.shape, [asym_encoding(float(x.min()), float(x.max()), 8)]))

    # int32 bias (symmetric, offset -2^31, scale in*w).
    x = np.array([0.0123, -0.5, 1.75, 3.3e-3], dtype=np.float32)
    cases.append(case("int32_bias", "bias", x, x.shape, [(float(np.float32(1e-4)), -(2**31), 32)]))

    # Activations: values over samples vs the encoding range.
    x = (rng.standard_normal(300) * 2 + 1).astype(np.float32)
    cases.append(case("activation_in_range", "activation", x, x.shape, [asym_encoding(float(x.min()), float(x.max()), 8)]))
    x = np.concatenate([rng.uniform(0, 1, 100), [40.0]]).astype(np.float32)
    cases.append(case("activation_clipped", "activation", x, x.shape, [asym_encoding(0.0, 1.0, 8)]))
    x = rng.uniform(-1, 1, 64).astype(np.float32)
    cases.append(case("activation_16bit", "activation", x, x.shape, [asym_encoding(-1.0, 1.0, 16)]))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "scripts/python/checker_reference.py", "numpy": np.__version__, "cases": cases}, f,
                  indent=1, allow_nan=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
