"""Run AIMET's QuantSim (aimet-onnx) with blockwise and LPBQ weights on the digits model.

The per-block counterpart of ``make_aimet.py``: the same BN-folded model and calibration, with
the weight quantizers of the Conv and Gemm layers switched to

* ``blockwise/``: ``set_blockwise_quantization_for_weights(sim, ("Conv", "Gemm"), bitwidth=4,
  symmetric=True, block_size=4)`` -- every output channel split into blocks of 4 input
  channels, each block with its own symmetric 4-bit scale;
* ``lpbq/``: ``set_lpbq_for_params(sim, bitwidth=4, block_size=4, op_types={"Conv", "Gemm"})``
  -- low-power blockwise quantization: 4-bit codes whose per-block scales are 4-bit integers
  times one float scale per output channel.

``conv1.weight`` (``[8, 1, 3, 3]``: one input channel, which a block of 4 does not divide)
keeps AIMET's default per-channel 8-bit encoding (``strict=False``), so each file mixes the
two. Activations stay 8-bit, as in ``make_aimet.py``.

Writes, under ``aimet/blockwise/`` and ``aimet/lpbq/``:

* ``encodings_v2.0.0.json`` -- ``sim.export(..., encoding_version="2.0.0")``
* ``encodings_v1.0.0.json`` -- ``sim.export(..., encoding_version="1.0.0")``
* ``quantsim/Result_<N>/logits.raw`` -- float32 LE QuantSim outputs for test line N
* ``summary.json`` -- versions, settings, accuracy and agreement with the float model

The model the encodings belong to is ``aimet/digits_bnfolded.onnx`` (``make_aimet.py``; the
fold is deterministic, so this script folds ``model.onnx`` itself rather than reading it back).
Existing files under ``aimet/`` are left alone: only the two folders above are rewritten.

Needs the AIMET venv (``scripts/setup-python.sh --aimet``). From the repository root:

    $QAIRT_AIMET_VENV/bin/python examples/digits/make_aimet_blocks.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
from aimet_onnx.common.defs import QuantScheme
from aimet_onnx.quantsim import (
    QuantizationSimModel,
    set_blockwise_quantization_for_weights,
    set_lpbq_for_params,
)
from make_aimet import HERE, float_logits, read_list, sqnr_db

OUT = HERE / "aimet"
BITWIDTH = 4
BLOCK_SIZE = 4
OP_TYPES = ("Conv", "Gemm")


def blockwise(sim: QuantizationSimModel) -> None:
    set_blockwise_quantization_for_weights(
        sim, OP_TYPES, bitwidth=BITWIDTH, symmetric=True, block_size=BLOCK_SIZE, strict=False
    )


def lpbq(sim: QuantizationSimModel) -> None:
    set_lpbq_for_params(sim, bitwidth=BITWIDTH, block_size=BLOCK_SIZE, op_types=set(OP_TYPES))


def run(name: str, configure, calib, test, f_logits, labels) -> dict:
    model = onnx.load(str(HERE / "model.onnx"))
    fold_all_batch_norms_to_weight(model)
    sim = QuantizationSimModel(
        model,
        param_type="int8",
        activation_type="int8",
        quant_scheme=QuantScheme.min_max,
        config_file="default",
        providers=["CPUExecutionProvider"],
        session_options_kwargs={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
    )
    configure(sim)
    sim.compute_encodings([{"input": x} for x in calib])

    out = OUT / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        for enc_version in ("1.0.0", "2.0.0"):
            sim.export(tmp, enc_version, export_model=False, encoding_version=enc_version)
            shutil.copy(Path(tmp) / f"{enc_version}.encodings", out / f"encodings_v{enc_version}.json")

    q_logits = np.concatenate([sim.session.run(None, {"input": x})[0] for x in test])
    for i, row in enumerate(q_logits):
        d = out / "quantsim" / f"Result_{i}"
        d.mkdir(parents=True)
        row.astype("<f4").tofile(d / "logits.raw")

    summary = {
        "versions": {p: version(p) for p in ["aimet-onnx", "onnx", "onnxruntime", "torch", "numpy"]},
        "weights": {
            "api": configure.__name__,
            "op_types": list(OP_TYPES),
            "bitwidth": BITWIDTH,
            "block_size": BLOCK_SIZE,
        },
        "quantsim": {
            "param_type": "int8 (where the blocks do not apply)",
            "activation_type": "int8",
            "quant_scheme": "min_max",
            "config_file": "default (default_config_per_channel.json)",
            "calibration": "calib/input_list.txt (100 samples)",
        },
        "test_samples": len(test),
        "quantsim_top1_accuracy": float((q_logits.argmax(1) == labels).mean()),
        "quantsim_vs_float_top1_agreement": float((q_logits.argmax(1) == f_logits.argmax(1)).mean()),
        "quantsim_vs_float_sqnr_db": round(sqnr_db(f_logits, q_logits), 3),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    calib = read_list(HERE / "calib" / "input_list.txt")
    test = read_list(HERE / "test" / "input_list.txt")
    labels = np.array([int(s) for s in (HERE / "test" / "labels.txt").read_text().split()])
    f_logits = float_logits(HERE / "model.onnx", test)
    for name, configure in (("blockwise", blockwise), ("lpbq", lpbq)):
        print(name, json.dumps(run(name, configure, calib, test, f_logits, labels), indent=1))


if __name__ == "__main__":
    main()
