"""AIMET's view of what CLE buys on `tests/data/models/cle_digits` (an independent measurement).

Runs aimet-onnx 2.42.0 QuantSim W8A8 with **per-tensor** weights (AIMET's
``default_config.json``: symmetric per-tensor weights, asymmetric per-tensor activations,
biases unquantized, Conv+Relu/Clip supergroups), ``quant_scheme=min_max``, calibrated on the
100 samples of ``examples/digits/calib``, twice:

1. BN folded (``fold_all_batch_norms_to_weight``), no CLE;
2. ``equalize_model`` (BN fold, Relu6 -> Relu, cross-layer scaling, high-bias fold).

and measures the logits of the 400 ``examples/digits/test`` samples against the float model's
(``ort_logits.raw``): SQNR in dB and top-1 accuracy against ``labels.txt``. Also records the
per-channel weight spreads after AIMET's CLE. Writes
``tests/data/models/cle_digits/aimet_summary.json``.

Run from the repository root with the AIMET venv (~30 s):

    $QAIRT_AIMET_VENV/bin/python scripts/python/make_cle_aimet.py
"""

from __future__ import annotations

import copy
import json
from importlib.metadata import version
from pathlib import Path

import aimet_onnx
import numpy as np
import onnx
from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
from aimet_onnx.common.defs import QuantScheme
from aimet_onnx.cross_layer_equalization import equalize_model
from aimet_onnx.quantsim import QuantizationSimModel
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "tests" / "data" / "models" / "cle_digits"
DIGITS = ROOT / "examples" / "digits"
PER_TENSOR_CONFIG = Path(aimet_onnx.__file__).parent / "common" / "quantsim_config" / "default_config.json"


def read_list(directory: Path) -> list[np.ndarray]:
    lines = (directory / "input_list.txt").read_text().split()
    return [np.fromfile(directory / ln, dtype="<f4").reshape(1, 1, 8, 8) for ln in lines]


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    return float(10.0 * np.log10(np.sum(ref**2) / np.sum((ref - test) ** 2)))


def spreads(model: onnx.ModelProto) -> list[float]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = []
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        w = inits[conv.input[1]]
        m = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        out.append(round(float(m.max() / m.min()), 3))
    return out


def quantsim_logits(model: onnx.ModelProto, calib, test) -> np.ndarray:
    sim = QuantizationSimModel(
        model,
        param_type="int8",
        activation_type="int8",
        quant_scheme=QuantScheme.min_max,
        config_file=str(PER_TENSOR_CONFIG),
        providers=["CPUExecutionProvider"],
        session_options_kwargs={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
    )
    sim.compute_encodings([{"input": x} for x in calib])
    return np.concatenate([sim.session.run(None, {"input": x})[0] for x in test])


def main() -> None:
    calib, test = read_list(DIGITS / "calib"), read_list(DIGITS / "test")
    labels = np.array([int(s) for s in (DIGITS / "test" / "labels.txt").read_text().split()])
    float_logits = np.fromfile(DIR / "ort_logits.raw", dtype="<f4").reshape(-1, 10)
    model = onnx.load(str(DIR / "model.onnx"))

    folded = copy.deepcopy(model)
    fold_all_batch_norms_to_weight(folded)
    equalized = copy.deepcopy(model)
    equalize_model(equalized)

    results = {}
    for name, m in [("bn_folded", folded), ("cle", equalized)]:
        logits = quantsim_logits(m, calib, test)
        results[name] = {
            "conv_channel_spreads": spreads(m),
            "w8a8_per_tensor_sqnr_db": round(sqnr_db(float_logits, logits), 2),
            "w8a8_per_tensor_top1": float((logits.argmax(1) == labels).mean()),
            "ops": [n.op_type for n in m.graph.node],
        }
        print(name, {k: v for k, v in results[name].items() if k != "ops"})
    summary = {
        "made_by": "scripts/python/make_cle_aimet.py",
        "versions": {p: version(p) for p in ["aimet-onnx", "onnx", "onnxruntime", "numpy"]},
        "quantsim": "int8 weights and activations, min_max, default_config.json (per-tensor)",
        "float_top1": float((float_logits.argmax(1) == labels).mean()),
        **results,
    }
    (DIR / "aimet_summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
