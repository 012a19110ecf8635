#!/usr/bin/env python3
"""Check `out/<target>/model.qdq.onnx` against qairt's own simulation.

Usage (from anywhere; venv from `scripts/setup-python.sh --test`):

    qdq_check.py <project_dir> <target> [--out-dir DIR] [--optimized] [--golden-dump DIR]
                 [--both-modes]

1. `onnx.checker.check_model(model, full_check=True)` (structure and strict shape inference);
2. runs the model with onnxruntime (CPUExecutionProvider, one thread) on the project's verify
   inputs (`[verify] input_list` of `<project_dir>/qairt.toml`, raw little-endian files in each
   graph input's own element type, as many
   samples as qairt simulated: one per `outputs/Result_N` directory);
3. compares with qairt's `out/<target>/outputs/Result_N/<output>.raw`.

By default onnxruntime runs with graph optimizations disabled, so the QDQ pairs execute as
written (float math with fake quantization, like qairt's simulate); `--optimized` enables all
of onnxruntime's optimizations, which fuse QDQ groups into integer kernels.

`--golden-dump DIR` also writes onnxruntime's value of every tensor of qairt's graph, as its
consumers read it (after its QuantizeLinear/DequantizeLinear, Clip or Cast pair), as
`DIR/Result_N/<sanitized name>.raw` (float32): `[verify] golden = "DIR"` in the project's
qairt.toml then makes `qairt build` compare the simulation with onnxruntime layer by layer, and
the first layer whose SQNR is finite is where the two first disagree.

`--both-modes` also runs the model at the other optimization level and reports its agreement
with qairt (`other_mode_sqnr_db`) and onnxruntime's agreement with itself across the two levels
(`ort_modes_sqnr_db`): the floor any other implementation can be held to. A deep 8-bit net
amplifies one code one step off (a sum in another order lands on the other side of a rounding
tie) into a few tens of dB at its outputs, and onnxruntime's fused integer kernels and its float
ones already differ that way.

Prints one JSON object: {"checker": "ok", "sqnr_db", "max_abs_diff", "top1_agreement",
"samples", "optimization", "outputs", "op_counts" (node count per op type), "element_types"
(element types of the initializers and inferred intermediate tensors)} and exits 0; exits 1 with a message on stderr when the
checker fails or inputs are missing. SQNR is 10*log10(sum(qairt^2) / sum((qairt - ort)^2))
over all samples and outputs (inf when identical).
"""

import argparse
import json
import math
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


# Raw input files are headerless little-endian values in the graph input's own element type.
ORT_TYPES = {
    "tensor(float)": "<f4",
    "tensor(float16)": "<f2",
    "tensor(double)": "<f8",
    "tensor(int8)": "i1",
    "tensor(uint8)": "u1",
    "tensor(int16)": "<i2",
    "tensor(uint16)": "<u2",
    "tensor(int32)": "<i4",
    "tensor(uint32)": "<u4",
    "tensor(int64)": "<i8",
    "tensor(uint64)": "<u8",
    "tensor(bool)": "?",
}


def sanitize(name: str) -> str:
    """qairt's (and the SDK's) file name for a tensor name."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if out[:1].isdigit():
        out = "_" + out
    return out


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"qdq_check: {message}", file=sys.stderr)
    sys.exit(1)


def read_input_list(path: Path) -> list[list[tuple[str | None, Path]]]:
    """The SDK input-list format: one inference per line, a path or `name:=path` pairs,
    relative to the list's directory; blank lines and `#` lines skipped."""
    samples = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entries = []
        for word in line.split():
            name, sep, rel = word.partition(":=")
            entries.append((name, path.parent / rel) if sep else (None, path.parent / word))
        samples.append(entries)
    return samples


# Suffixes of the nodes `model.qdq.onnx` puts after a tensor, in the order they run: the last one
# present holds the value the tensor's consumers read.
ENCODED_SUFFIXES = ["_QuantizeLinear_Input", "_CastToFloat16_Input", "_DequantizeLinear_Output", "_CastToFloat_Output", "_ClipToGrid_Output"]


def with_every_float_tensor_as_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose graph outputs also include every float32 node output."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    present = {o.name for o in copy.graph.output}
    for node in copy.graph.node:
        for name in node.output:
            if name and name not in present and types.get(name) == onnx.TensorProto.FLOAT:
                copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
                present.add(name)
    return copy


def write_golden(directory: Path, values: dict, graph_outputs: list[str]) -> None:
    """Each tensor's value as its consumers read it, under qairt's (sanitized) tensor name (a
    graph output's own name holds its encoded value)."""
    directory.mkdir(parents=True, exist_ok=True)
    best: dict[str, tuple[int, object]] = {}
    for name, value in values.items():
        base, rank = name, len(ENCODED_SUFFIXES) if name in graph_outputs else -1
        for k, suffix in enumerate(ENCODED_SUFFIXES):
            if name.endswith(suffix):
                base, rank = name[: -len(suffix)], k
        if base not in best or best[base][0] < rank:
            best[base] = (rank, value)
    for base, (_, value) in best.items():
        np.asarray(value, dtype="<f4").tofile(directory / f"{sanitize(base)}.raw")


def db(signal: float, noise: float) -> float:
    """10 log10(signal / noise); inf when the noise is zero."""
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def json_db(value: float) -> float | str:
    """JSON has no infinity: "inf" / "-inf" as strings."""
    return value if math.isfinite(value) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path, help="project directory (holds qairt.toml)")
    parser.add_argument("target", help="target name")
    parser.add_argument("--out-dir", type=Path, help="qairt's out directory (default: <project>/out)")
    parser.add_argument("--optimized", action="store_true", help="let onnxruntime optimize the graph")
    parser.add_argument("--golden-dump", type=Path, help="write every tensor's onnxruntime value here")
    parser.add_argument("--both-modes", action="store_true", help="also run at the other optimization level")
    args = parser.parse_args()

    config_path = args.project / "qairt.toml"
    try:
        config = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        fail(f"cannot read {config_path}: {e}")
    out_dir = args.out_dir or args.project / config.get("project", {}).get("out_dir", "out")
    target_dir = out_dir / args.target
    model_path = target_dir / "model.qdq.onnx"
    if not model_path.is_file():
        fail(f"{model_path} does not exist (is {args.target!r} a quantized target that was built?)")

    model = onnx.load(str(model_path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        fail(f"onnx.checker rejects {model_path}: {e}")

    verify_list = config.get("verify", {}).get("input_list")
    if verify_list is None:
        fail(f"{config_path} has no [verify] input_list")
    samples = read_input_list(args.project / verify_list)
    results = sorted(
        (int(p.name.removeprefix("Result_")) for p in (target_dir / "outputs").glob("Result_*")),
    )
    if not results or results != list(range(len(results))):
        fail(f"{target_dir / 'outputs'} holds no Result_0..Result_N directories")
    if len(results) > len(samples):
        fail(f"qairt simulated {len(results)} samples but the input list has {len(samples)}")

    def make_session(run_model: onnx.ModelProto, optimized: bool) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        return ort.InferenceSession(run_model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    run_model = model
    if args.golden_dump is not None:
        run_model = with_every_float_tensor_as_output(model)
    session = make_session(run_model, args.optimized)
    other = make_session(model, not args.optimized) if args.both_modes else None
    # Sums of squares for (qairt vs the other level) and (this level vs the other level).
    other_sums = {"qairt": [0.0, 0.0], "ort": [0.0, 0.0]}
    inputs = session.get_inputs()
    outputs = [o.name for o in model.graph.output]
    fetched = [o.name for o in session.get_outputs()]

    signal = noise = 0.0
    max_abs = 0.0
    agree = 0
    for n in results:
        feed = {}
        for position, (name, path) in enumerate(samples[n]):
            spec = inputs[position] if name is None else next((i for i in inputs if i.name == name), None)
            if spec is None:
                fail(f"sample {n}: the model has no input {name!r}")
            dtype = ORT_TYPES.get(spec.type)
            if dtype is None:
                fail(f"input {spec.name!r} has element type {spec.type}, which qdq_check cannot read")
            data = np.fromfile(path, dtype=dtype)
            if data.size != math.prod(spec.shape):
                fail(f"{path}: {data.size} values of {dtype}, input {spec.name!r} has shape {spec.shape}")
            feed[spec.name] = data.reshape(spec.shape)
        values = dict(zip(fetched, session.run(fetched, feed)))
        got = [values[name] for name in outputs]
        other_got = other.run(outputs, feed) if other is not None else None
        if args.golden_dump is not None:
            write_golden(args.golden_dump / f"Result_{n}", values, outputs)
        for k, (name, ours) in enumerate(zip(outputs, got)):
            raw = target_dir / "outputs" / f"Result_{n}" / f"{sanitize(name)}.raw"
            if not raw.is_file():
                fail(f"{raw} does not exist")
            qairt = np.fromfile(raw, dtype="<f4").astype(np.float64)
            ours = np.asarray(ours, dtype=np.float64).ravel()
            if qairt.size != ours.size:
                fail(f"{raw}: {qairt.size} values, onnxruntime gives {ours.size}")
            signal += float(np.sum(qairt**2))
            noise += float(np.sum((qairt - ours) ** 2))
            if other_got is not None:
                theirs = np.asarray(other_got[k], dtype=np.float64).ravel()
                for key, reference in (("qairt", qairt), ("ort", ours)):
                    other_sums[key][0] += float(np.sum(reference**2))
                    other_sums[key][1] += float(np.sum((reference - theirs) ** 2))
            max_abs = max(max_abs, float(np.max(np.abs(qairt - ours), initial=0.0)))
            if k == 0:
                agree += int(np.argmax(qairt) == np.argmax(ours))
    sqnr = db(signal, noise)
    op_counts: dict[str, int] = {}
    for node in model.graph.node:
        op_counts[node.op_type] = op_counts.get(node.op_type, 0) + 1
    stored_types = sorted(
        {onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer}
        | {
            onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)
            for v in onnx.shape_inference.infer_shapes(model).graph.value_info
        }
    )
    report = {
        "checker": "ok",
        "sqnr_db": json_db(sqnr),
        "max_abs_diff": max_abs,
        "top1_agreement": agree / len(results),
        "samples": len(results),
        "optimization": "all" if args.optimized else "disabled",
        "outputs": outputs,
        "op_counts": dict(sorted(op_counts.items())),
        "element_types": stored_types,
    }
    if other is not None:
        report["other_mode_sqnr_db"] = json_db(db(*other_sums["qairt"]))
        report["ort_modes_sqnr_db"] = json_db(db(*other_sums["ort"]))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
