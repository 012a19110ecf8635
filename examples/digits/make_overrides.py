"""Write ``overrides.json``: a hand-made AIMET-format (0.6.1 dict form) overrides file.

It holds activation encodings for three real tensors of ``model.onnx``:

* ``input``                 8-bit   (the graph input)
* ``/fc1/Gemm_output_0``    8-bit   (the first fully connected layer's output, mixed-sign
                                     range; a Conv output would change meaning when the
                                     BatchNormalization after it is folded)
* ``/relu1/Relu_output_0`` 16-bit   (deliberately not the default 8 bits, so a tool that
                                     ignores the override is caught)

and no parameter encodings (``param_encodings`` is present and empty, which the format allows).

Each encoding is computed with numpy from the 100 calibration samples (``calib/``), with the
float model run by onnxruntime (graph optimizations off), using the SDK's TF-style min-max rule
(the SDK's Converters documentation, quantization section):

1. ``mn, mx`` = data min and max (float64).
2. Minimum range: ``mx = max(mx, mn + 0.0001)``.
3. Zero exactly representable: all >= 0 -> ``mn = 0``; all <= 0 -> ``mx = 0``; mixed signs ->
   ``scale = (mx - mn) / (2^bw - 1)``, ``offset = round(mn / scale)``, ``mn = offset * scale``,
   ``mx = mn + scale * (2^bw - 1)`` (zero lands on the integer ``-offset``).
4. ``scale = (mx - mn) / (2^bw - 1)``; ``offset = round(mn / scale)`` (<= 0, AIMET/QNN sign:
   ``x = (q + offset) * scale``).

The script checks the rule against the SDK guide's worked example ([-1.8, -1.0, 0, 0.5] ->
min -1.803922, max 0.496078, offset -200, q = [0, 89, 200, 255]) before using it.

Re-run from the repository root (after make_digits.py):

    $QAIRT_VENV/bin/python examples/digits/make_overrides.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
TENSORS = [("input", 8), ("/fc1/Gemm_output_0", 8), ("/relu1/Relu_output_0", 16)]


def tf_encoding(data_min: float, data_max: float, bw: int) -> dict:
    """SDK/AIMET asymmetric min-max encoding (float64 arithmetic)."""
    steps = float(2**bw - 1)
    mn, mx = float(data_min), float(data_max)
    mx = max(mx, mn + 0.0001)
    if mn >= 0.0:
        mn = 0.0
    elif mx <= 0.0:
        mx = 0.0
    else:
        scale = (mx - mn) / steps
        offset = round(mn / scale)
        mn = offset * scale
        mx = mn + scale * steps
    scale = (mx - mn) / steps
    offset = int(round(mn / scale))
    return {
        "bitwidth": bw,
        "dtype": "int",
        "is_symmetric": "False",
        "max": mx,
        "min": mn,
        "offset": offset,
        "scale": scale,
    }


def quantize(x: np.ndarray, enc: dict) -> np.ndarray:
    steps = 2 ** enc["bitwidth"] - 1
    return np.clip(np.round(x / enc["scale"]) - enc["offset"], 0, steps)


def self_check() -> None:
    x = np.array([-1.8, -1.0, 0.0, 0.5])
    enc = tf_encoding(x.min(), x.max(), 8)
    assert abs(enc["min"] - -1.803922) < 1e-6, enc
    assert abs(enc["max"] - 0.496078) < 1e-6, enc
    assert enc["offset"] == -200, enc
    assert quantize(x, enc).tolist() == [0, 89, 200, 255], quantize(x, enc)


def calibration_inputs() -> list[np.ndarray]:
    calib = HERE / "calib"
    lines = [ln.strip() for ln in (calib / "input_list.txt").read_text().splitlines() if ln.strip()]
    return [np.fromfile(calib / ln, dtype="<f4").reshape(1, 1, 8, 8) for ln in lines]


def tensor_ranges(names: list[str], xs: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    model = onnx.load(str(HERE / "model.onnx"))
    produced = {out for n in model.graph.node for out in n.output}
    for name in names:
        if name in produced:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    fetch = [n for n in names if n in produced]
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for x in xs:
        if "input" in values:
            values["input"].append(x)
        for name, v in zip(fetch, sess.run(fetch, {"input": x})):
            values[name].append(v)
    out = {}
    for name, vs in values.items():
        assert vs, f"tensor {name} not found in model.onnx"
        allv = np.concatenate([v.ravel() for v in vs]).astype(np.float64)
        out[name] = (float(allv.min()), float(allv.max()))
    return out


def main() -> None:
    self_check()
    xs = calibration_inputs()
    ranges = tensor_ranges([n for n, _ in TENSORS], xs)
    activation = {}
    for name, bw in TENSORS:
        lo, hi = ranges[name]
        activation[name] = [tf_encoding(lo, hi, bw)]
        e = activation[name][0]
        print(f"{name:24s} data [{lo:.6f}, {hi:.6f}] -> bw {bw} min {e['min']:.6f} max {e['max']:.6f} "
              f"scale {e['scale']:.8g} offset {e['offset']}")
    doc = {"version": "0.6.1", "activation_encodings": activation, "param_encodings": {}}
    (HERE / "overrides.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
