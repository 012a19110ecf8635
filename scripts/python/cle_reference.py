"""Reference values for cross-layer equalization (`src/passes/cle.rs`).

Builds a small ONNX model with onnx.helper and numpy (fixed seed):

    x[1,3,6,6] -> conv_a Conv(3->4, 3x3, pad 1) -> bn_a -> Clip(0, 6)
               -> conv_b depthwise Conv(4, 3x3, pad 1) -> bn_b -> Relu
               -> conv_c Conv(4->5, 1x1) -> bn_c
               -> conv_d Conv(5->3, 1x1) -> bn_d -> y

conv_a's output channels are scaled by [0.01, 1, 10, 0.1] (unequal ranges) and conv_c's output
channel 2 is all zeros (a dead channel: its scale must be 1). bn_a and bn_b have beta > 3 gamma in some channels, so high-bias absorption moves part of
those biases across the Relus too. CLE sees one triple
(conv_a, conv_b, conv_c) and one pair (conv_c, conv_d) with no activation between, so
high-bias absorption takes the whole beta there.

The expected weights and biases after CLE come from two implementations that must agree:
AIMET's own `aimet_onnx.cross_layer_equalization.equalize_model` (aimet-onnx 2.42.0: BN fold,
Relu6 -> Relu, cross-layer scaling, high-bias fold) and a direct numpy transcription of the
formulas of Nagel et al. 2019 written here (float64). The script asserts they agree to 1e-5
(relative to each tensor's abs-max) and writes:

* ``tests/data/cle/cle_small.onnx`` -- the model (BatchNorms and the Clip kept);
* ``tests/data/cle/reference.json`` -- per Conv (in node order): the weight/bias names in
  the model, the shapes, and the weights and biases after CLE (AIMET's float32 values), plus
  the numpy scales.

Run from the repository root with the AIMET venv (see scripts/setup-python.sh --aimet):

    $QAIRT_AIMET_VENV/bin/python scripts/python/cle_reference.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "cle"
SEED = 31
EPS = 1e-5


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(SEED)
    f32 = np.float32
    inits: list[onnx.TensorProto] = []

    def add(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value.astype(f32), name))
        return name

    def bn_params(prefix: str, c: int, gamma=(0.5, 2.0), beta=(-1.0, 3.0)) -> list[str]:
        return [
            add(f"{prefix}.gamma", rng.uniform(*gamma, c)),
            add(f"{prefix}.beta", rng.uniform(*beta, c)),
            add(f"{prefix}.mean", rng.uniform(-0.5, 0.5, c)),
            add(f"{prefix}.var", rng.uniform(0.5, 2.0, c)),
        ]

    wa = rng.normal(0, 0.5, (4, 3, 3, 3)) * np.array([0.01, 1.0, 10.0, 0.1])[:, None, None, None]
    wb = rng.normal(0, 0.5, (4, 1, 3, 3))
    # Every Conv states group=1: AIMET's ConnectedGraph treats a Conv without the attribute
    # as an unsupported grouped conv.
    wc = rng.normal(0, 0.5, (5, 4, 1, 1))
    wc[2] = 0.0
    wd = rng.normal(0, 0.5, (3, 5, 1, 1))
    nodes = [
        helper.make_node("Conv", ["x", add("conv_a.weight", wa), add("conv_a.bias", rng.normal(0, 0.1, 4))],
                         ["a"], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=1),
        helper.make_node("BatchNormalization", ["a", *bn_params("bn_a", 4, (0.2, 0.8), (0.0, 4.0))], ["a_bn"], name="bn_a", epsilon=EPS),
        # As torch writes ReLU6 (AIMET only recognizes a Clip whose min comes from a Constant).
        helper.make_node("Constant", [], ["clip_min"], name="clip_min",
                         value=numpy_helper.from_array(np.array(0.0, dtype=f32))),
        helper.make_node("Constant", [], ["clip_max"], name="clip_max",
                         value=numpy_helper.from_array(np.array(6.0, dtype=f32))),
        helper.make_node("Clip", ["a_bn", "clip_min", "clip_max"], ["a_act"], name="relu6_a"),
        helper.make_node("Conv", ["a_act", add("conv_b.weight", wb), add("conv_b.bias", rng.normal(0, 0.1, 4))],
                         ["b"], name="conv_b", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        helper.make_node("BatchNormalization", ["b", *bn_params("bn_b", 4, (0.2, 0.8), (0.0, 4.0))], ["b_bn"], name="bn_b", epsilon=EPS),
        helper.make_node("Relu", ["b_bn"], ["b_act"], name="relu_b"),
        helper.make_node("Conv", ["b_act", add("conv_c.weight", wc), add("conv_c.bias", rng.normal(0, 0.1, 5))],
                         ["c"], name="conv_c", kernel_shape=[1, 1], group=1),
        helper.make_node("BatchNormalization", ["c", *bn_params("bn_c", 5)], ["c_bn"], name="bn_c", epsilon=EPS),
        helper.make_node("Conv", ["c_bn", add("conv_d.weight", wd), add("conv_d.bias", rng.normal(0, 0.1, 3))],
                         ["d"], name="conv_d", kernel_shape=[1, 1], group=1),
        helper.make_node("BatchNormalization", ["d", *bn_params("bn_d", 3)], ["y"], name="bn_d", epsilon=EPS),
    ]
    graph = helper.make_graph(
        nodes,
        "cle_small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 6, 6])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


CONVS = ["conv_a", "conv_b", "conv_c", "conv_d"]


def numpy_cle(model: onnx.ModelProto) -> tuple[dict, dict]:
    """BN fold, CLS (triple a-b-c, pair c-d), HBF, in float64, straight from the paper."""
    p = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    w, b, bn = {}, {}, {}
    for conv, bn_name in zip(CONVS, ["bn_a", "bn_b", "bn_c", "bn_d"]):
        gamma, beta, mean, var = (p[f"{bn_name}.{k}"] for k in ["gamma", "beta", "mean", "var"])
        s = gamma / np.sqrt(var + EPS)
        w[conv] = p[f"{conv}.weight"] * s[:, None, None, None]
        b[conv] = (p[f"{conv}.bias"] - mean) * s + beta
        bn[conv] = (gamma, beta)

    def sanitize(s: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(s) & (s > 0), s, 1.0)

    # Triple: r1 = out-channel ranges of a, r2 = per-channel ranges of depthwise b,
    # r3 = in-channel ranges of c; t = cbrt(r1 r2 r3); s12 = r1 / t; s23 = t / r3.
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = np.abs(w["conv_a"]).max(axis=(1, 2, 3))
        r2 = np.abs(w["conv_b"]).max(axis=(1, 2, 3))
        r3 = np.abs(w["conv_c"]).max(axis=(0, 2, 3))
        t = np.cbrt(r1 * r2 * r3)
        s12, s23 = sanitize(r1 / t), sanitize(t / r3)
    w["conv_a"] = w["conv_a"] / s12[:, None, None, None]
    b["conv_a"] = b["conv_a"] / s12
    w["conv_b"] = w["conv_b"] * (s12 / s23)[:, None, None, None]
    b["conv_b"] = b["conv_b"] / s23
    w["conv_c"] = w["conv_c"] * s23[None, :, None, None]
    # Pair c-d: s = r1 / sqrt(r1 r2).
    with np.errstate(divide="ignore", invalid="ignore"):
        q1 = np.abs(w["conv_c"]).max(axis=(1, 2, 3))
        q2 = np.abs(w["conv_d"]).max(axis=(0, 2, 3))
        s34 = sanitize(q1 / np.sqrt(q1 * q2))
    w["conv_c"] = w["conv_c"] / s34[:, None, None, None]
    b["conv_c"] = b["conv_c"] / s34
    w["conv_d"] = w["conv_d"] * s34[None, :, None, None]

    # High-bias absorption, pair by pair: c = max(0, beta/s - 3|gamma/s|) after a Relu,
    # beta/s with no activation; b1 -= c; b2 += (sum of W2 over its taps) @ c.
    absorbed = {}
    for first, second, s, relu in [
        ("conv_a", "conv_b", s12, True),
        ("conv_b", "conv_c", s23, True),
        ("conv_c", "conv_d", s34, False),
    ]:
        gamma, beta = bn[first]
        beta, gamma = beta / s, gamma / s
        c = np.maximum(0.0, beta - 3 * np.abs(gamma)) if relu else beta
        taps = w[second].sum(axis=(2, 3))
        correction = taps[:, 0] * c if taps.shape[1] == 1 else taps @ c
        absorbed[f"{first}->{second}"] = c.tolist()
        b[first] = b[first] - c
        b[second] = b[second] + correction
    scales = {"s12": s12.tolist(), "s23": s23.tolist(), "s34": s34.tolist(), "absorbed": absorbed}
    return {k: (w[k], b[k]) for k in CONVS}, scales


def aimet_cle(model: onnx.ModelProto) -> dict:
    from aimet_onnx.cross_layer_equalization import equalize_model
    from onnxruntime.quantization.onnx_quantizer import ONNXModel

    wrapped = ONNXModel(copy.deepcopy(model))
    equalize_model(wrapped)
    m = wrapped.model
    p = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    ops = [n.op_type for n in m.graph.node]
    assert "BatchNormalization" not in ops and "Clip" not in ops, ops
    assert ops.count("Relu") == 2, ops
    convs = {n.name: n for n in m.graph.node if n.op_type == "Conv"}
    return {k: (p[convs[k].input[1]], p[convs[k].input[2]]) for k in CONVS}


def main() -> None:
    model = build()
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(OUT / "cle_small.onnx"))
    mine, scales = numpy_cle(model)
    aimet = aimet_cle(model)
    for k in CONVS:
        for label, ours, theirs in [("weight", mine[k][0], aimet[k][0]), ("bias", mine[k][1], aimet[k][1])]:
            scale = max(float(np.abs(theirs).max()), 1e-12)
            err = float(np.abs(ours - theirs).max()) / scale
            print(f"{k}.{label}: numpy vs AIMET max rel diff {err:.2e}")
            assert err < 1e-5, (k, label, err)
    reference = {
        "model": "cle_small.onnx",
        "made_by": "scripts/python/cle_reference.py (aimet-onnx 2.42.0 equalize_model; numpy cross-check)",
        "counts": {"pairs_equalized": 3, "relu6_rewritten": 1, "biases_absorbed": 3},
        "scales": scales,
        "convs": [
            {
                "node": k,
                "weight": f"{k}.weight",
                "bias": f"{k}.bias",
                "weight_shape": list(aimet[k][0].shape),
                "weight_after": [float(v) for v in aimet[k][0].astype(np.float32).ravel()],
                "bias_after": [float(v) for v in aimet[k][1].astype(np.float32).ravel()],
            }
            for k in CONVS
        ],
    }
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
