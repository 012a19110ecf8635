"""Run AIMET's QuantSim (aimet-onnx) on the digits model and keep its encodings and outputs.

This is the reference for qairt's numerics contract ("given the same model and the same
encodings file, the quantized simulation must agree with AIMET's QuantSim").

Flow (AIMET's recommended post-training flow, with AIMET defaults otherwise):

1. ``model.onnx`` -> ``aimet_onnx.batch_norm_fold.fold_all_batch_norms_to_weight`` (AIMET warns
   that QuantSim on unfolded BatchNormalization does not simulate the target accurately). The
   fold keeps every remaining tensor name: each Conv keeps its weight/bias names (now holding
   folded values) and its output name; the BatchNormalization nodes disappear.
2. ``QuantizationSimModel`` W8A8, ``quant_scheme=min_max``, ``config_file="default"`` (AIMET's
   ``default_config_per_channel.json``: symmetric per-channel weights for Conv/Gemm/MatMul,
   asymmetric per-tensor activations, biases not quantized, Conv+Relu / Gemm+Relu supergroups
   so only the Relu output is quantized, graph input quantized).
3. ``compute_encodings`` over the 100 calibration samples (``calib/input_list.txt``).
4. Export: encodings in the 2.0.0 form (aligned with ONNX QuantizeLinear; AIMET's defaults for
   it, so int32 bias encodings and unsigned activations), the 1.0.0 list form and the legacy
   0.6.1 dict form, plus the BN-folded float model AIMET exports (ONNX with external data).
5. QuantSim's outputs (onnxruntime with AIMET's quantize-dequantize custom op, CPU) for every
   line of ``test/input_list.txt``.

Writes, under ``aimet/``:

* ``encodings_v2.0.0.json``  -- ``sim.export(..., encoding_version="2.0.0")``
* ``encodings_v1.0.0.json``  -- ``sim.export(..., encoding_version="1.0.0")``
* ``encodings_v0.6.1.json``  -- ``sim.export(..., encoding_version="0.6.1")``
* ``digits_bnfolded.onnx`` + ``digits_bnfolded.data`` -- the model AIMET exports (float,
  BN folded, weights in one external data file)
* ``quantsim/Result_<N>/logits.raw`` -- float32 LE QuantSim outputs for test line N
* ``summary.json`` -- versions, QuantSim top-1 accuracy, agreement with the float model
* ``unfolded/`` -- the same flow on ``model.onnx`` with its BatchNorms left in (what a user gets
  who skips step 1; AIMET warns that this does not simulate the target accurately):
  ``encodings_v1.0.0.json``, ``encodings_v2.0.0.json`` (encodings on the Conv outputs, the
  BatchNormalization outputs and their ``gamma``, besides the tensors above) and
  ``quantsim/Result_<N>/logits.raw``; the model is ``model.onnx`` itself

Needs the separate AIMET venv (aimet-onnx pins its own onnx/torch); create it with
``scripts/setup-python.sh --aimet``. Re-run from the repository root (after make_digits.py):

    $QAIRT_AIMET_VENV/bin/python examples/digits/make_aimet.py

Everything is deterministic: min-max calibration over a fixed sample list, no randomness.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
from aimet_onnx.common.defs import QuantScheme
from aimet_onnx.quantsim import QuantizationSimModel

HERE = Path(__file__).resolve().parent
OUT = HERE / "aimet"
PREFIX = "digits_bnfolded"


def read_list(list_path: Path) -> list[np.ndarray]:
    lines = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
    return [np.fromfile(list_path.parent / ln, dtype="<f4").reshape(1, 1, 8, 8) for ln in lines]


def float_logits(model_path: Path, xs: list[np.ndarray]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["logits"], {"input": x})[0] for x in xs])


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    noise = np.sum((ref.astype(np.float64) - test) ** 2)
    return float(10.0 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise))


def quantsim(model: onnx.ModelProto, calib: list[np.ndarray]) -> QuantizationSimModel:
    sim = QuantizationSimModel(
        model,
        param_type="int8",
        activation_type="int8",
        quant_scheme=QuantScheme.min_max,
        config_file="default",
        providers=["CPUExecutionProvider"],
        session_options_kwargs={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
    )
    sim.compute_encodings([{"input": x} for x in calib])
    return sim


def export_unfolded(calib: list[np.ndarray], test: list[np.ndarray]) -> np.ndarray:
    """QuantSim on model.onnx as it is (BatchNorms not folded): its encodings and outputs."""
    sim = quantsim(onnx.load(str(HERE / "model.onnx")), calib)
    out = OUT / "unfolded"
    out.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        for version in ("1.0.0", "2.0.0"):
            sim.export(tmp, version, export_model=False, encoding_version=version)
            shutil.copy(Path(tmp) / f"{version}.encodings", out / f"encodings_v{version}.json")
    logits = np.concatenate([sim.session.run(None, {"input": x})[0] for x in test])
    for i, row in enumerate(logits):
        d = out / "quantsim" / f"Result_{i}"
        d.mkdir(parents=True)
        row.astype("<f4").tofile(d / "logits.raw")
    return logits


def main() -> None:
    calib = read_list(HERE / "calib" / "input_list.txt")
    test = read_list(HERE / "test" / "input_list.txt")
    labels = np.array([int(s) for s in (HERE / "test" / "labels.txt").read_text().split()])

    model = onnx.load(str(HERE / "model.onnx"))
    bn_after = {n.input[0]: n.name for n in model.graph.node if n.op_type == "BatchNormalization"}
    conv_bn, bn_conv = fold_all_batch_norms_to_weight(model)
    folded = [(conv.name, bn_after.get(conv.output[0], "?")) for conv, _ in conv_bn]
    print(f"folded {len(folded)} BatchNorms: {folded}; BN-before-conv folds: {len(bn_conv)}")

    sim = quantsim(model, calib)

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        v2, v1, v061 = Path(tmp) / "v2", Path(tmp) / "v1", Path(tmp) / "v061"
        for d in (v2, v1, v061):
            d.mkdir()
        sim.export(str(v1), PREFIX, export_model=True, encoding_version="1.0.0")
        sim.export(str(v061), PREFIX, export_model=False, encoding_version="0.6.1")
        sim.export(str(v2), PREFIX, export_model=False, encoding_version="2.0.0")
        shutil.copy(v2 / f"{PREFIX}.encodings", OUT / "encodings_v2.0.0.json")
        shutil.copy(v1 / f"{PREFIX}.encodings", OUT / "encodings_v1.0.0.json")
        shutil.copy(v061 / f"{PREFIX}.encodings", OUT / "encodings_v0.6.1.json")
        shutil.copy(v1 / f"{PREFIX}.onnx", OUT / f"{PREFIX}.onnx")
        shutil.copy(v1 / f"{PREFIX}.data", OUT / f"{PREFIX}.data")

    exported = onnx.load(str(OUT / f"{PREFIX}.onnx"))
    onnx.checker.check_model(exported)
    assert "BatchNormalization" not in {n.op_type for n in exported.graph.node}

    q_logits = np.concatenate([sim.session.run(None, {"input": x})[0] for x in test])
    for i, logits in enumerate(q_logits):
        d = OUT / "quantsim" / f"Result_{i}"
        d.mkdir(parents=True)
        logits.astype("<f4").tofile(d / "logits.raw")

    unfolded_logits = export_unfolded(calib, test)

    f_logits = float_logits(HERE / "model.onnx", test)
    folded_logits = float_logits(OUT / f"{PREFIX}.onnx", test)
    summary = {
        "versions": {p: version(p) for p in ["aimet-onnx", "onnx", "onnxruntime", "torch", "numpy"]},
        "bn_folded": folded,
        "quantsim": {
            "param_type": "int8",
            "activation_type": "int8",
            "quant_scheme": "min_max",
            "config_file": "default (default_config_per_channel.json)",
            "calibration": "calib/input_list.txt (100 samples)",
        },
        "test_samples": len(test),
        "float_top1_accuracy": float((f_logits.argmax(1) == labels).mean()),
        "quantsim_top1_accuracy": float((q_logits.argmax(1) == labels).mean()),
        "quantsim_vs_float_top1_agreement": float((q_logits.argmax(1) == f_logits.argmax(1)).mean()),
        "quantsim_vs_float_sqnr_db": round(sqnr_db(f_logits, q_logits), 3),
        "bnfolded_vs_float_max_abs_diff": float(np.abs(folded_logits - f_logits).max()),
        "unfolded_quantsim_top1_accuracy": float((unfolded_logits.argmax(1) == labels).mean()),
        "unfolded_quantsim_vs_float_sqnr_db": round(sqnr_db(f_logits, unfolded_logits), 3),
        "unfolded_vs_folded_quantsim_sqnr_db": round(sqnr_db(q_logits, unfolded_logits), 3),
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
