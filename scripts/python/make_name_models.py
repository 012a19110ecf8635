"""Generate tests/data/models/colliding_outputs/: a model whose output names sanitize to one
file name (the SDK replaces every character other than a letter, digit or `_` with `_`), with
onnxruntime reference outputs.

Built with onnx.helper (opset 13): input ``x`` [1,3,8,8], a seeded 3x3 Conv to 4 channels, and
six graph outputs computed from it by different ops, so a wrong file shows as a wrong value:

    a/b = Relu(c)     a.b = Sigmoid(c)     a_b = Tanh(c)     a-b = c + 1
    Y   = c * 0.5     y   = Abs(c)          (one file on case-insensitive file systems)

The directory holds ``colliding_outputs.onnx``, ``inputs/<k>/x.raw`` (standard normal,
``numpy.random.default_rng(seed)``), ``outputs/<k>/<i>.raw`` (onnxruntime, CPU, graph
optimizations off, one thread; ``i`` is the output's index, since the names are not file names)
and ``manifest.json`` (each output's name and reference file).

Re-run from the repository root (only numpy, onnx and onnxruntime are needed):

    $QAIRT_VENV/bin/python scripts/python/make_name_models.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "models" / "colliding_outputs"
SAMPLES = 3
SEED = 11


def make_model() -> onnx.ModelProto:
    rng = np.random.default_rng(SEED)
    weight = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    bias = (rng.standard_normal(4) * 0.1).astype(np.float32)
    heads = [
        ("a/b", "Relu", []),
        ("a.b", "Sigmoid", []),
        ("a_b", "Tanh", []),
        ("a-b", "Add", ["one"]),
        ("Y", "Mul", ["half"]),
        ("y", "Abs", []),
    ]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    for i, (name, op, extra) in enumerate(heads):
        nodes.append(helper.make_node(op, ["c", *extra], [name], name=f"head{i}"))
    initializers = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    graph = helper.make_graph(
        nodes,
        "colliding_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4, 8, 8]) for name, _, _ in heads],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_name_models.py")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    model = make_model()
    onnx.save_model(model, str(OUT / "colliding_outputs.onnx"))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(OUT / "colliding_outputs.onnx"), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    rng = np.random.default_rng(SEED + 1)
    for k in range(SAMPLES):
        x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
        (OUT / "inputs" / str(k)).mkdir(parents=True)
        (OUT / "outputs" / str(k)).mkdir(parents=True)
        x.astype("<f4").tofile(OUT / "inputs" / str(k) / "x.raw")
        for i, value in enumerate(sess.run(names, {"x": x})):
            value.astype("<f4").tofile(OUT / "outputs" / str(k) / f"{i}.raw")
    manifest = {
        "model": "colliding_outputs.onnx",
        "inputs": [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}],
        "outputs": [
            {"name": n, "shape": [1, 4, 8, 8], "dtype": "float32", "reference": f"{i}.raw"} for i, n in enumerate(names)
        ],
        "samples": SAMPLES,
        "reference": f"onnxruntime {ort.__version__} CPUExecutionProvider, ORT_DISABLE_ALL, 1 thread",
        "generator": "scripts/python/make_name_models.py",
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
