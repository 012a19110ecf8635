#!/usr/bin/env python3
"""onnxruntime's side of ``cargo bench --bench simulate``: runs an ONNX model on one raw
float32 input with onnxruntime (CPU provider, 1 thread) under its profiler and prints the time
per inference of each kind of node, classified as the simulate bench classifies qairt's steps
(op type; a convolution as depthwise or by kernel). benches/README.md, "Where MobileNetV2's
time goes, layer by layer", compares the two.

    python benches/ort_ops.py MODEL.onnx INPUT.raw [--rounds 100] [--no-optimizations] [--nodes]

``--no-optimizations`` turns graph optimizations off (how benches/scale.py times qairt's
``model.qdq.onnx``); ``--nodes`` lists every node too. Needs onnxruntime and numpy.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort


def kind(args: dict) -> str:
    op = args["op_name"]
    shapes = args.get("input_type_shape", [])
    if op != "Conv" or len(shapes) < 2:
        return op
    weights = next(iter(shapes[1].values()))
    if len(weights) < 3:
        return op
    kernel = "×".join(str(k) for k in weights[2:])
    # onnxruntime's NCHWc convolutions keep the ONNX weight shape in the profile.
    return f"Conv depthwise {kernel}" if weights[1] == 1 else f"Conv {kernel}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--no-optimizations", action="store_true")
    parser.add_argument("--nodes", action="store_true")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="qairt-ort-ops-"), "profile")
    if args.no_optimizations:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    x = np.fromfile(args.input, dtype=np.float32).reshape(model_input.shape)
    session.run(None, {model_input.name: x})  # warm-up, profiled too: subtracted below
    for _ in range(args.rounds):
        session.run(None, {model_input.name: x})
    profile = session.end_profiling()
    with open(profile) as f:
        events = [e for e in json.load(f) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    os.remove(profile)

    runs = args.rounds + 1
    per_kind: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    per_node: dict[str, list] = {}
    for event in events:
        label = kind(event["args"])
        per_kind[label][0] += event["dur"]
        per_kind[label][1] += 1
        node = per_node.setdefault(event["name"], [label, 0.0])
        node[1] += event["dur"]
    total = sum(t for t, _ in per_kind.values())
    optimizations = "off" if args.no_optimizations else "on"
    print(f"{args.model}: onnxruntime {ort.__version__}, 1 thread, graph optimizations {optimizations}; "
          f"{total / runs / 1000:.3f} ms per inference in nodes (profiled, {runs} runs)")
    print(f"{'node kind':<28} {'nodes':>7} {'ms/inference':>12} {'share':>7}")
    for label, (time, count) in sorted(per_kind.items(), key=lambda kv: -kv[1][0]):
        print(f"{label:<28} {count // runs:>7} {time / runs / 1000:>12.3f} {100 * time / total:>6.1f}%")
    if args.nodes:
        for name, (label, time) in per_node.items():
            print(f"{name[: -len('_kernel_time')]:<60} {label:<24} {time / runs / 1000:.4f}")


if __name__ == "__main__":
    main()
