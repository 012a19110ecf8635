"""Writes fixture_shapes.json: every tensor shape of the fixture models according to ONNX's
own shape inference (onnx.shape_inference), an expectation independent of qairt's importer.

Run from the repository root with the project's Python venv:
    python src/onnx/testdata/fixture_shapes.py
"""
import glob
import json

import onnx
from onnx import shape_inference

paths = ["examples/digits/model.onnx"] + sorted(glob.glob("tests/data/models/*/*.onnx"))
out = {}
for path in paths:
    model = shape_inference.infer_shapes(onnx.load(path), strict_mode=True)
    g = model.graph
    shapes = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    out[path] = dict(sorted(shapes.items()))
with open("src/onnx/testdata/fixture_shapes.json", "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
    f.write("\n")
