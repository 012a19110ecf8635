"""Independent numpy implementation of the accuracy debugger's verifier catalogue.

Writes tests/data/verifiers/reference.json: small deterministic golden/inference pairs
(identical, noisy, all-zero golden, both zero, negated, NaN/Inf, classifier logits with ties)
and, for each pair, the metric every verifier must report. The Rust unit tests in
src/verify/verifiers.rs compare against these numbers (1e-6 relative).

The definitions follow docs/verifiers.md (itself from the vendor source digest in
of the vendor accuracy checker documentation, section 4.5). Shared rule: every
element-wise metric is computed over the positions where both tensors are finite; the other
positions are counted in `non_finite`. TopK ranks the whole tensor (NaN last).

Usage: $QAIRT_VENV/bin/python scripts/python/verifier_reference.py  (numpy only)
"""

import json
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "verifiers", "reference.json")


def finite_pairs(g, i):
    mask = np.isfinite(g) & np.isfinite(i)
    return g[mask].astype(np.float64), i[mask].astype(np.float64), int((~mask).sum())


def rtolatol(g, i, rtol, atol):
    if g.size == 0:
        return math.nan
    close = np.isclose(i, g, rtol=rtol, atol=atol)  # |i - g| <= atol + rtol * |g|
    return 100.0 * float((~close).sum()) / g.size


def adjusted_rtolatol(g, i, levels_num):
    if g.size == 0:
        return math.nan
    step = (g.max() - g.min()) / 255.0
    return rtolatol(g, i, 0.1, levels_num * step)


def topk(g, i, k, ordered):
    # Descending, stable (ties -> lower index first), NaN last: argsort of the negation.
    gk = np.argsort(-g.astype(np.float64), kind="stable")[:k]
    ik = np.argsort(-i.astype(np.float64), kind="stable")[:k]
    if ordered:
        diff = int((gk != ik).sum())
    else:
        diff = int(sum(1 for x in ik if x not in set(gk.tolist())))
    return 100.0 * diff / min(k, g.size)


def l1error(g, i, multiplier, scale):
    return float(np.abs(g - i).sum()) * multiplier * scale if g.size else math.nan


def mae(g, i):
    return float(np.abs(g - i).mean()) if g.size else math.nan


def mse(g, i):
    return float(((g - i) ** 2).mean()) if g.size else math.nan


def cosine(g, i):
    if g.size == 0:
        return math.nan
    ng, ni = np.linalg.norm(g), np.linalg.norm(i)
    if ng == 0.0 and ni == 0.0:
        return 1.0  # both all-zero: identical
    if ng == 0.0 or ni == 0.0:
        return 0.0  # one side all-zero: no direction in common
    return float(np.dot(g, i) / (ng * ni))


def sqnr(g, i):
    if g.size == 0:
        return math.nan
    err = float(((g - i) ** 2).mean())
    if err == 0.0:
        return math.inf  # the vendor tool prints "SAME"
    signal = float((i**2).mean())  # signal power from the inference tensor, as in the vendor source
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / err)


def scaleddiff(g, i, enc_min, enc_max):
    if g.size == 0:
        return math.nan
    return float(np.abs(i - g).mean()) * 255.0 / (enc_max - enc_min)


def log_softmax(x):
    m = x.max()
    return x - (m + math.log(np.exp(x - m).sum()))


def kld(g, i):
    if g.size == 0:
        return math.nan
    lp, lq = log_softmax(g), log_softmax(i)
    return float((np.exp(lp) * (lp - lq)).sum())


def maxerror(g, i):
    return float(np.abs(g - i).max()) if g.size else math.nan


# (spec, extra) -> function of (g_finite, i_finite, g_full, i_full)
VERIFIERS = [
    ("rtolatol", {}, lambda g, i, G, I: rtolatol(g, i, 0.01, 0.01)),
    ("rtolatol,rtolmargin,0.05,atolmargin,0.1", {}, lambda g, i, G, I: rtolatol(g, i, 0.05, 0.1)),
    ("adjustedrtolatol", {}, lambda g, i, G, I: adjusted_rtolatol(g, i, 4)),
    ("adjustedrtolatol,levels_num,1", {}, lambda g, i, G, I: adjusted_rtolatol(g, i, 1)),
    ("topk", {}, lambda g, i, G, I: topk(G, I, 1, False)),
    ("topk,k,3", {}, lambda g, i, G, I: topk(G, I, 3, False)),
    ("topk,k,3,ordered,true", {}, lambda g, i, G, I: topk(G, I, 3, True)),
    ("l1error", {}, lambda g, i, G, I: l1error(g, i, 1.0, 1.0)),
    ("l1error,multiplier,2,scale,0.5", {}, lambda g, i, G, I: l1error(g, i, 2.0, 0.5)),
    ("mae", {}, lambda g, i, G, I: mae(g, i)),
    ("mse", {}, lambda g, i, G, I: mse(g, i)),
    ("cosinesimilarity", {}, lambda g, i, G, I: cosine(g, i)),
    ("sqnr", {}, lambda g, i, G, I: sqnr(g, i)),
    ("scaleddiff", {"encoding_min": -4.0, "encoding_max": 4.0}, lambda g, i, G, I: scaleddiff(g, i, -4.0, 4.0)),
    ("kld", {}, lambda g, i, G, I: kld(g, i)),
    ("maxerror", {}, lambda g, i, G, I: maxerror(g, i)),
]


def make_cases():
    rng = np.random.default_rng(20261122)
    base = rng.normal(0.0, 1.5, 24).astype(np.float32)
    noise = rng.normal(0.0, 0.05, 24).astype(np.float32)
    small = rng.uniform(-0.02, 0.02, 24).astype(np.float32)
    cases = [
        ("identical", base, base.copy()),
        ("noisy", base, (base + noise).astype(np.float32)),
        ("all_zero_golden", np.zeros(24, np.float32), small),
        ("both_zero", np.zeros(24, np.float32), np.zeros(24, np.float32)),
        ("inference_zero", base, np.zeros(24, np.float32)),
        ("negated", base, (-base).astype(np.float32)),
    ]
    g = base.copy()
    i = (base + noise).astype(np.float32)
    g[3] = np.inf
    i[7] = np.nan
    i[11] = -np.inf
    cases.append(("nan_inf", g, i))
    # Classifier logits with a tie (indices 2 and 5) so tie-breaking matters for TopK.
    lg = np.array([0.1, 2.0, 3.5, -1.0, 0.7, 3.5, 1.9, -0.3, 0.0, 2.9], np.float32)
    li = np.array([0.2, 2.1, 3.4, -1.1, 0.6, 3.6, 2.95, -0.2, 0.1, 2.8], np.float32)
    cases.append(("logits_tie", lg, li))
    return cases


def enc(x):
    """JSON has no NaN/Inf: write them as strings."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def box_iou(a, b):
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, y1 - y0) * max(0.0, x1 - x0)
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    if union <= 0.0:
        return 1.0 if list(a) == list(b) else 0.0
    return inter / union


def mean_iou(gb, gc, ib, ic, background):
    gc = np.rint(gc).astype(np.int64)
    ic = np.rint(ic).astype(np.int64)
    bg = int(np.rint(background))
    ious = []
    for c in sorted(set(gc.tolist()) | set(ic.tolist())):
        gi = [n for n in range(len(gc)) if gc[n] == c]
        ii = [n for n in range(len(ic)) if ic[n] == c]
        for j in range(max(len(gi), len(ii))):
            if j < len(gi) and j < len(ii):
                if c == bg:
                    continue  # true-negative background pair
                ious.append(box_iou(gb[gi[j]], ib[ii[j]]))
            else:
                ious.append(0.0)  # present on one side only
    if not ious:
        return 100.0
    return 100.0 * float(np.mean(ious))


def detection_cases():
    gb = np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8], [0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.9]], np.float32)
    gc = np.array([3.0, 1.0, 7.0, 3.0], np.float32)
    ib = np.array([[0.12, 0.1, 0.5, 0.52], [0.2, 0.3, 0.85, 0.8], [0.6, 0.6, 0.8, 0.8], [0.5, 0.45, 0.7, 0.9]], np.float32)
    ic = np.array([3.2, 0.9, 2.0, 2.9], np.float32)
    out = [
        ("identical", gb, gc, gb.copy(), gc.copy(), 1.0),
        ("shifted_and_unmatched", gb, gc, ib, ic, 1.0),
        ("no_background", gb, gc, ib, ic, 0.0),
        ("disjoint", gb[:1], gc[:1], np.array([[0.6, 0.6, 0.9, 0.9]], np.float32), gc[:1].copy(), 1.0),
    ]
    rows = []
    for name, a, b, c, d, bgc in out:
        rows.append({
            "name": name,
            "golden_boxes": a.astype(np.float64).ravel().tolist(),
            "golden_classes": b.astype(np.float64).tolist(),
            "inference_boxes": c.astype(np.float64).ravel().tolist(),
            "inference_classes": d.astype(np.float64).tolist(),
            "spec": f"meaniou,background_classification,{bgc}",
            "metric": mean_iou(a.astype(np.float64), b, c.astype(np.float64), d, bgc),
        })
    return rows


def main():
    cases = []
    for name, g, i in make_cases():
        gf, inf, non_finite = finite_pairs(g, i)
        results = []
        for spec, extra, fn in VERIFIERS:
            row = {"spec": spec, "metric": enc(fn(gf, inf, g, i)), "non_finite": non_finite}
            row.update(extra)
            results.append(row)
        cases.append({
            "name": name,
            "golden": [enc(float(x)) for x in g.astype(np.float64)],
            "inference": [enc(float(x)) for x in i.astype(np.float64)],
            "results": results,
        })
    doc = {
        "generator": "scripts/python/verifier_reference.py (numpy " + np.__version__ + ")",
        "cases": cases,
        "detections": detection_cases(),
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)}: {len(cases)} cases x {len(VERIFIERS)} verifiers, {len(doc['detections'])} detection cases")


if __name__ == "__main__":
    main()
