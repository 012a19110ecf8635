"""Generate QDQ-quantized digits models with onnxruntime, for qairt's QDQ-input tests.

onnxruntime's own static quantizer (``onnxruntime.quantization.quantize_static``, QDQ format,
MinMax calibration on the 100-sample digits calibration set ``examples/digits/calib``) is run on
``examples/digits/model.onnx`` after ``quant_pre_process`` (shape inference plus onnxruntime's
graph optimizations, which fold each BatchNormalization into its Conv). Two variants:

* ``per_tensor``  -- uint8 activations (asymmetric), int8 weights (symmetric, one scale per
  tensor), int32 biases;
* ``per_channel`` -- the same with one int8 weight scale per output channel (Conv and Gemm);
* ``a16_per_channel`` -- ``per_channel`` with uint16 activations (onnxruntime upgrades the
  model to opset 21 for the 16-bit QuantizeLinear/DequantizeLinear);
* ``w4_per_channel`` -- ``per_channel`` with int4 weights (onnxruntime keeps opset 13 and puts
  the QuantizeLinear/DequantizeLinear nodes in its ``com.microsoft`` domain).

Both keep the Relu nodes (``QDQKeepRemovableActivations``): without it onnxruntime deletes every
Relu whose output encoding already clamps at zero, and the float model left after stripping the
QDQ pairs would compute something else than the original.

Writes ``tests/data/models/digits_qdq/``:

* ``model_<variant>.onnx``
* ``manifest.json``: for every variant, the encodings onnxruntime chose, read from the QDQ
  model's own initializers -- ``activations`` keyed by the float tensor a QuantizeLinear reads
  (or, for a pair ending in a graph output, that output's name) and ``params`` keyed by the
  quantized initializer's name without onnxruntime's ``_quantized`` suffix (qairt's documented
  naming for folded constants). Each entry has onnxruntime's ``scale``/``zero_point`` lists,
  the integer ``dtype``, the ``axis`` (per-channel) and the same encoding in the AIMET/QNN
  convention ``x = (q + offset) * scale`` on the unsigned grid: ``offset = -zero_point`` for
  unsigned types, ``-(zero_point + 2^(bw-1))`` for signed ones, computed here with numpy;
  params also carry ``dequantized_head``, the first 8 values of ``(q - zero_point) * scale``
  (numpy, float32);
* ``inputs/<k>/input.raw`` for the first 5 samples of ``examples/digits/test`` and
  ``outputs/<variant>/<k>/logits.raw``: onnxruntime's (CPU, one thread) outputs of the QDQ
  model on them.

Re-run from the repository root (main venv):

    $QAIRT_VENV/bin/python scripts/python/make_qdq_models.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"
OUT = ROOT / "tests" / "data" / "models" / "digits_qdq"
TEST_SAMPLES = 5
SHAPE = (1, 1, 8, 8)

SIGNED = {onnx.TensorProto.INT4: True, onnx.TensorProto.UINT4: False, onnx.TensorProto.INT8: True, onnx.TensorProto.INT16: True, onnx.TensorProto.INT32: True,
          onnx.TensorProto.UINT8: False, onnx.TensorProto.UINT16: False}
BITS = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4, onnx.TensorProto.INT8: 8, onnx.TensorProto.UINT8: 8, onnx.TensorProto.INT16: 16,
        onnx.TensorProto.UINT16: 16, onnx.TensorProto.INT32: 32}


def read_list(directory: Path) -> list[np.ndarray]:
    names = (directory / "input_list.txt").read_text().split()
    return [np.fromfile(directory / n, dtype="<f4").reshape(SHAPE) for n in names]


class DigitsCalibration(CalibrationDataReader):
    def __init__(self) -> None:
        self.samples = iter([{"input": x} for x in read_list(DIGITS / "calib")])

    def get_next(self):
        return next(self.samples, None)


def encoding_entry(model: onnx.ModelProto, scale_name: str, zp_name: str, axis: int | None) -> dict:
    inits = {t.name: t for t in model.graph.initializer}
    scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32).reshape(-1)
    zp_t = inits[zp_name]
    zp = numpy_helper.to_array(zp_t).astype(np.int64).reshape(-1)
    bits, signed = BITS[zp_t.data_type], SIGNED[zp_t.data_type]
    shift = (1 << (bits - 1)) if signed else 0
    offset = -(zp + shift)
    middle = 0 if signed else (1 << (bits - 1))
    return {
        "dtype": onnx.TensorProto.DataType.Name(zp_t.data_type).lower(),
        "bitwidth": bits,
        "axis": axis if scale.size > 1 else None,
        "scale": [float(s) for s in scale],
        "zero_point": [int(z) for z in zp],
        "aimet": {
            "scale": [float(s) for s in scale],
            "offset": [int(o) for o in offset],
            "is_symmetric": bool(np.all(zp == middle)),
        },
    }


def dequantized_head(model: onnx.ModelProto, q_name: str, scale_name: str, zp_name: str, axis: int) -> list[float]:
    """The first 8 values of DequantizeLinear(q), computed with numpy: (q - zp) * scale in f32."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q = inits[q_name].astype(np.int64)
    scale = inits[scale_name].astype(np.float32).reshape(-1)
    zp = inits[zp_name].astype(np.int64).reshape(-1)
    if scale.size > 1:
        bshape = [1] * q.ndim
        bshape[axis] = scale.size
        scale, zp = scale.reshape(bshape), zp.reshape(bshape)
    values = (q - zp).astype(np.float32) * scale
    return [float(v) for v in values.reshape(-1)[:8]]


def manifest_of(model: onnx.ModelProto) -> dict:
    producers = {o: n for n in model.graph.node for o in n.output}
    outputs = {o.name for o in model.graph.output}
    inits = {t.name for t in model.graph.initializer}
    activations, params = {}, {}
    for n in model.graph.node:
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            name = n.input[0].removesuffix("_quantized")
            params[name] = encoding_entry(model, n.input[1], n.input[2], axis)
            params[name]["dequantized_head"] = dequantized_head(model, n.input[0], n.input[1], n.input[2], axis)
        elif n.op_type == "DequantizeLinear":
            q = producers[n.input[0]]
            assert q.op_type == "QuantizeLinear"
            name = n.output[0] if n.output[0] in outputs else q.input[0]
            activations[name] = encoding_entry(model, n.input[1], n.input[2], None)
    return {"activations": activations, "params": params}


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "inputs").mkdir(parents=True)
    tests = read_list(DIGITS / "test")[:TEST_SAMPLES]
    for k, x in enumerate(tests):
        (OUT / "inputs" / str(k)).mkdir()
        x.astype("<f4").tofile(OUT / "inputs" / str(k) / "input.raw")

    manifest = {
        "source_model": "examples/digits/model.onnx",
        "calibration": "examples/digits/calib/input_list.txt",
        "tool": "onnxruntime.quantization.quantize_static (QuantFormat.QDQ, CalibrationMethod.MinMax, "
        "activation QUInt8 or QUInt16, weight QInt8 or QInt4, QDQKeepRemovableActivations) after quant_pre_process",
        "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
        "inputs": ["input"],
        "outputs": ["logits"],
        "test_samples": TEST_SAMPLES,
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(DIGITS / "model.onnx"), str(pre))
        for variant, per_channel, activation_type, weight_type in [
            ("per_tensor", False, QuantType.QUInt8, QuantType.QInt8),
            ("per_channel", True, QuantType.QUInt8, QuantType.QInt8),
            ("a16_per_channel", True, QuantType.QUInt16, QuantType.QInt8),
            ("w4_per_channel", True, QuantType.QUInt8, QuantType.QInt4),
        ]:
            path = OUT / f"model_{variant}.onnx"
            quantize_static(
                str(pre),
                str(path),
                DigitsCalibration(),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=activation_type,
                weight_type=weight_type,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"QDQKeepRemovableActivations": True},
            )
            model = onnx.load(str(path))
            entry = manifest_of(model)
            entry["model"] = path.name
            entry["opset"] = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
            entry["qdq_domains"] = sorted({n.domain for n in model.graph.node if "QuantizeLinear" in n.op_type})
            entry["op_types"] = sorted({n.op_type for n in model.graph.node})
            manifest["variants"][variant] = entry

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            for k, x in enumerate(tests):
                (y,) = sess.run(["logits"], {"input": x})
                d = OUT / "outputs" / variant / str(k)
                d.mkdir(parents=True)
                y.astype("<f4").tofile(d / "logits.raw")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
