#!/usr/bin/env python3
"""Write the external-golden fixtures of tests/data/goldens/ with onnxruntime.

qairt compares the per-layer tensors of its *optimized* graph (BatchNormalization folded into
the Conv before it, Identity removed); a surviving node keeps its ONNX output name, and a
folded Conv keeps its own output name, which then holds the post-BN values (AIMET's
`fold_all_batch_norms` does the same). To make a dump whose names and values line up with
that graph, this script:

1. loads examples/digits/model.onnx and folds every Conv -> BatchNormalization pair with the
   textbook formula (s = gamma / sqrt(var + eps); W' = W * s per output channel;
   b' = (b - mean) * s + beta), rewiring the BN's readers to the Conv output;
2. checks the folded model against the original with onnxruntime (logits agree to 1e-5);
3. makes every node output a graph output (shapes from onnx.shape_inference) and runs
   onnxruntime (CPUExecutionProvider, graph optimizations disabled) on the first 8 lines of
   examples/digits/test/input_list.txt;
4. writes tests/data/goldens/digits_ort/Result_<N>/<sanitized name>.raw (float32 LE) plus an
   input_list.txt and a README.md, and the mapping variant tests/data/goldens/digits_renamed/.

Run from the repository root:  $QAIRT_VENV/bin/python scripts/python/dump_goldens.py
"""

import os
import re
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper, shape_inference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "examples/digits/model.onnx")
INPUT_LIST = os.path.join(ROOT, "examples/digits/test/input_list.txt")
OUT = os.path.join(ROOT, "tests/data/goldens")
SAMPLES = 8

# The renamed variant: one sample, flat layout, names the mapping file must resolve.
RENAMED_PREFIX = "golden__"
RENAMED_DROPPED = "/pool/MaxPool_output_0"  # no file written: stays an unmatched tensor
RENAMED_EXTRA = "golden__debug_probe"  # a file that matches no tensor


def sanitize(name):
    """The SDK's file-name rule (qairt's quant::aimet::sanitize_name): every character other
    than an ASCII letter, digit or '_' becomes '_', and a leading digit gets a '_' prefix."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if out[:1].isdigit():
        out = "_" + out
    return out


def fold_batchnorms(model):
    """Folds each BatchNormalization fed by a Conv read by nothing else. Returns the count."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    readers = {}
    for node in graph.node:
        for i in node.input:
            readers.setdefault(i, []).append(node)
    producer = {o: n for n in graph.node for o in n.output}
    graph_outputs = {o.name for o in graph.output}
    folded = 0
    for bn in [n for n in graph.node if n.op_type == "BatchNormalization"]:
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(readers[bn.input[0]]) != 1:
            continue
        if bn.output[0] in graph_outputs:
            continue  # qairt would let the Conv write the graph output; not needed here
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        w_init = inits[conv.input[1]]
        w = numpy_helper.to_array(w_init).astype(np.float64)
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 else np.zeros(w.shape[0])
        s = gamma / np.sqrt(var + eps)
        w_folded = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        b_folded = (b - mean) * s + beta
        w_init.CopyFrom(numpy_helper.from_array(w_folded.astype(np.float32), w_init.name))
        if len(conv.input) > 2:
            b_init = inits[conv.input[2]]
            b_init.CopyFrom(numpy_helper.from_array(b_folded.astype(np.float32), b_init.name))
        else:
            name = bn.name + ".folded_bias"
            graph.initializer.append(numpy_helper.from_array(b_folded.astype(np.float32), name))
            conv.input.append(name)
        for reader in readers.get(bn.output[0], []):
            for k, i in enumerate(reader.input):
                if i == bn.output[0]:
                    reader.input[k] = conv.output[0]
        graph.node.remove(bn)
        folded += 1
    used = {i for n in graph.node for i in n.input}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    return folded


def expose_node_outputs(model):
    """Every node output becomes a graph output, in node order. Returns the names."""
    inferred = shape_inference.infer_shapes(model)
    infos = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    existing = {o.name for o in model.graph.output}
    names = []
    for node in model.graph.node:
        for out in node.output:
            names.append(out)
            if out not in existing:
                model.graph.output.append(infos[out])
    return names


def session(model):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def write_raw(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.ascontiguousarray(array, dtype="<f4").tofile(path)


def main():
    original = onnx.load(MODEL)
    (input_info,) = original.graph.input
    shape = [d.dim_value for d in input_info.type.tensor_type.shape.dim]
    assert shape == [1, 1, 8, 8], shape

    folded = onnx.load(MODEL)
    n_folded = fold_batchnorms(folded)
    assert n_folded == 2, n_folded
    onnx.checker.check_model(folded)
    names = expose_node_outputs(folded)

    list_dir = os.path.dirname(INPUT_LIST)
    with open(INPUT_LIST) as f:
        lines = [line.strip() for line in f if line.strip()][:SAMPLES]
    inputs = [np.fromfile(os.path.join(list_dir, line), dtype="<f4").reshape(shape) for line in lines]

    reference = session(original)
    dumping = session(folded)
    out_names = [o.name for o in dumping.get_outputs()]
    worst = 0.0
    results = []
    for x in inputs:
        values = dict(zip(out_names, dumping.run(None, {input_info.name: x})))
        (logits,) = reference.run(["logits"], {input_info.name: x})
        worst = max(worst, float(np.max(np.abs(values["logits"] - logits)) / np.max(np.abs(logits))))
        results.append(values)
    assert worst < 1e-5, worst

    # digits_ort: Result_<N>/<sanitized>.raw for every node output of the folded graph.
    ort_dir = os.path.join(OUT, "digits_ort")
    shutil.rmtree(ort_dir, ignore_errors=True)
    for n, values in enumerate(results):
        for name in names:
            write_raw(os.path.join(ort_dir, f"Result_{n}", sanitize(name) + ".raw"), values[name])
    with open(os.path.join(ort_dir, "input_list.txt"), "w") as f:
        for line in lines:
            f.write("../../../../examples/digits/test/" + line + "\n")

    # digits_renamed: flat (one sample = line 0), every file prefixed, one tensor dropped,
    # one extra file, and mapping.json from graph names to the golden names.
    renamed_dir = os.path.join(OUT, "digits_renamed")
    shutil.rmtree(renamed_dir, ignore_errors=True)
    os.makedirs(renamed_dir)
    mapping = {}
    for name in names:
        golden = RENAMED_PREFIX + sanitize(name).lstrip("_")
        mapping[name] = golden
        if name != RENAMED_DROPPED:
            write_raw(os.path.join(renamed_dir, golden + ".raw"), results[0][name])
    write_raw(os.path.join(renamed_dir, RENAMED_EXTRA + ".raw"), np.zeros(4, dtype=np.float32))
    with open(os.path.join(renamed_dir, "mapping.json"), "w") as f:
        f.write("{\n")
        f.write(",\n".join(f'  "{k}": "{v}"' for k, v in mapping.items()))
        f.write("\n}\n")

    shapes = {name: list(results[0][name].shape) for name in names}
    write_readme(ort_dir, renamed_dir, names, shapes, lines, worst, mapping)
    print(f"folded {n_folded} BatchNormalization; {len(names)} tensors x {len(results)} samples; "
          f"max relative |folded - original| logits {worst:.2e}")


def write_readme(ort_dir, renamed_dir, names, shapes, lines, worst, mapping):
    table = "\n".join(
        f"| `{name}` | `{sanitize(name)}.raw` | `{RENAMED_PREFIX + sanitize(name).lstrip('_')}.raw` | {shapes[name]} |"
        for name in names
    )
    text = f"""# External-golden fixtures (made by onnxruntime)

Made by `scripts/python/dump_goldens.py` (run `$QAIRT_VENV/bin/python scripts/python/dump_goldens.py`
from the repository root) with Python {sys.version.split()[0]}, onnx {onnx.__version__},
onnxruntime {ort.__version__} (CPUExecutionProvider, graph optimizations disabled) and
numpy {np.__version__}. Nothing here is written by qairt.

## The graph that was run

`examples/digits/model.onnx` with its two BatchNormalization nodes folded into the Conv before
each (s = gamma / sqrt(var + eps), W' = W * s per output channel, b' = (b - mean) * s + beta;
folded in float64, stored float32) and the BN readers rewired to the Conv output. That is the
graph qairt compares (its optimizer folds the same way and keeps the Conv's output name, as
AIMET's `fold_all_batch_norms` does), so `/conv1/Conv_output_0` here holds the *post-BN*
values. Every node output was made a graph output (shapes from onnx shape inference). The
folded model's logits agree with the original model's to {worst:.1e} (max |folded - original|
/ max |original| over the samples).

## `digits_ort/`: the SDK layout

* `input_list.txt`: the first {len(lines)} lines of `examples/digits/test/input_list.txt`, as
  paths relative to this directory.
* `Result_<N>/` for line N (0-based): one headerless float32 little-endian `.raw` file per
  node output, named with the SDK's sanitization (every character other than `[A-Za-z0-9_]`
  becomes `_`, a leading digit gets a `_` prefix).

| tensor | `digits_ort` file | `digits_renamed` file | shape |
|---|---|---|---|
{table}

## `digits_renamed/`: flat layout, needs `mapping.json`

One sample (line 0 of `input_list.txt`), flat (no `Result_N` directory). Every file is named
`{RENAMED_PREFIX}` + the sanitized name without its leading `_`, so neither the exact nor the
sanitized name finds it; `mapping.json` maps each graph tensor name to its golden name
({len(mapping)} entries). On purpose:

* `{RENAMED_DROPPED}` has a mapping entry but no file: it must be reported as an unmatched tensor;
* `{RENAMED_EXTRA}.raw` (4 zeros, 16 bytes) matches no tensor: it must be reported as an
  unmatched file.
"""
    with open(os.path.join(ort_dir, "README.md"), "w") as f:
        f.write(text)
    with open(os.path.join(renamed_dir, "README.md"), "w") as f:
        f.write("See ../digits_ort/README.md (made by the same script, same run).\n")


if __name__ == "__main__":
    main()
