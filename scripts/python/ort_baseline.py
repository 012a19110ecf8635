#!/usr/bin/env python3
"""onnxruntime's side of qairt's accuracy comparison (benches/accuracy.sh).

Two subcommands:

``make-mnv2-data DIR``
    Writes a calibration set and a verify set for the MobileNetV2-shaped fixture
    ``tests/data/models/mobilenetv2_mini`` (input [1,3,32,32], random weights) from real photos:
    random square crops of scikit-learn's two bundled sample images
    (``sklearn.datasets.load_sample_images()``: china.jpg and flower.jpg, 427x640 RGB), box-resized
    to 32x32, scaled to [0, 1] and normalized with the ImageNet mean/std. ``DIR/calib`` and
    ``DIR/verify`` each get ``raw/sample_NNN.raw`` (float32 little-endian NCHW) and an
    ``input_list.txt``. Seeded, so the same files come out on every run. No labels: the model's
    weights are random, so only agreement with the float model means anything.

``run``
    Quantizes a float ONNX model with ``onnxruntime.quantization.quantize_static`` (QDQ format,
    MinMax calibration over the given calibration input list) for each requested configuration,
    runs the float model and every quantized model with onnxruntime's CPU provider on the verify
    input list, and prints one JSON object: per configuration the output SQNR against the float
    model, top-1 agreement with the float model and (with ``--labels``) top-1 accuracy.

    SQNR is computed as qairt's verify stage does (src/verify/metrics.rs):
    ``10 log10(sum r^2 / sum (q - r)^2)`` with sums in float64 over every element of every
    output of every sample (``r`` the float model's output, ``q`` the quantized model's).

    Before quantizing, the model goes through ``onnxruntime.quantization.shape_inference
    .quant_pre_process`` (symbolic shape inference + onnxruntime's basic graph optimizations, which
    fold BatchNormalization into Conv), as onnxruntime's quantization guide recommends; without it
    every BatchNormalization would stay a separate float op between two QDQ pairs. qairt folds
    BatchNormalization itself, so both sides quantize the same folded graph.

    With ``--qairt-out DIR`` the script also rescores qairt's own outputs
    (``DIR/<target>/outputs/Result_<N>/<output>.raw``) against onnxruntime's float run, and
    measures how far qairt's float reference (``DIR/<target>/reference``) is from onnxruntime's
    float run, so that the two columns of the table are known to share one reference.

Usage (from the repository root, with the venv made by scripts/setup-python.sh):

    python scripts/python/ort_baseline.py make-mnv2-data /tmp/mnv2
    python scripts/python/ort_baseline.py run --model examples/digits/model.onnx \\
        --calib examples/digits/calib/input_list.txt --verify examples/digits/test/input_list.txt \\
        --labels examples/digits/test/labels.txt --configs w8a8-pt,w8a8-pc,w8a16-pc,w4a8-pc
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

# Configurations: name -> (per_channel, activation type, weight type). Activations are
# asymmetric (ort's default ActivationSymmetric=False), weights symmetric (WeightSymmetric=True).
CONFIGS = {
    "w8a8-pt": (False, "QUInt8", "QInt8"),
    "w8a8-pc": (True, "QUInt8", "QInt8"),
    "w8a16-pt": (False, "QUInt16", "QInt8"),
    "w8a16-pc": (True, "QUInt16", "QInt8"),
    "w4a8-pt": (False, "QUInt8", "QInt4"),
    "w4a8-pc": (True, "QUInt8", "QInt4"),
}


# ----------------------------------------------------------------------------- input lists


def read_input_list(path: Path, input_names: list[str]) -> list[dict[str, Path]]:
    """The SDK's input_list format: one line per inference, whitespace-separated entries that are
    either a path (inputs in graph order) or ``name:=path``; paths relative to the list's
    directory; lines starting with '#' or '%' are skipped."""
    samples = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("%"):
            continue
        sample = {}
        for i, entry in enumerate(line.split()):
            if ":=" in entry:
                name, file = entry.split(":=", 1)
            else:
                if i >= len(input_names):
                    raise SystemExit(f"{path}: line has more entries than the model has inputs: {line}")
                name, file = input_names[i], entry
            p = Path(file)
            sample[name] = p if p.is_absolute() else path.parent / p
        samples.append(sample)
    return samples


def load_sample(sample: dict[str, Path], shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    feed = {}
    for name, file in sample.items():
        data = np.fromfile(file, dtype="<f4")
        shape = shapes[name]
        if data.size != int(np.prod(shape)):
            raise SystemExit(f"{file}: {data.size} floats, input {name} has shape {shape}")
        feed[name] = data.reshape(shape)
    return feed


def model_inputs(model_path: Path) -> tuple[list[str], dict[str, list[int]]]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    names, shapes = [], {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        names.append(vi.name)
        shapes[vi.name] = dims
    return names, shapes


# ----------------------------------------------------------------------------- metrics


class Score:
    """Float64 running sums for SQNR plus top-1 counts (argmax of the flattened first output,
    first maximum wins, as numpy and qairt's verify do)."""

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0
        self.samples = 0
        self.agree = 0
        self.labeled = 0
        self.correct = 0

    def add(self, ref: list[np.ndarray], act: list[np.ndarray], label: int | None) -> None:
        for r, a in zip(ref, act):
            r64 = r.astype(np.float64).ravel()
            a64 = a.astype(np.float64).ravel()
            self.signal += float(np.sum(r64 * r64))
            self.noise += float(np.sum((a64 - r64) ** 2))
        top_ref = int(np.argmax(ref[0].ravel()))
        top_act = int(np.argmax(act[0].ravel()))
        self.samples += 1
        self.agree += int(top_ref == top_act)
        if label is not None:
            self.labeled += 1
            self.correct += int(top_act == label)

    def result(self) -> dict:
        if self.noise == 0.0:
            sqnr = float("inf")
        elif self.signal == 0.0:
            sqnr = float("-inf")
        else:
            sqnr = 10.0 * np.log10(self.signal / self.noise)
        out = {"sqnr_db": sqnr, "top1_agreement": self.agree / max(self.samples, 1), "samples": self.samples}
        if self.labeled:
            out["accuracy"] = self.correct / self.labeled
        return out


# ----------------------------------------------------------------------------- onnxruntime


def session(model_path: str, optimize: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def run_all(sess, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    return [sess.run(None, feed) for feed in feeds]


def quantize(pre: Path, out: Path, calib_feeds: list[dict[str, np.ndarray]], config: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static

    per_channel, act, weight = CONFIGS[config]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib_feeds)

        def get_next(self):
            return next(self.it, None)

        def rewind(self) -> None:
            self.it = iter(calib_feeds)

    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=getattr(QuantType, act),
        weight_type=getattr(QuantType, weight),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )


def restrict_int4_symmetric_range() -> None:
    """Make onnxruntime's symmetric int4 weights use scale = absmax / 7 (qairt's and the SDK's
    rule) instead of its default full grid [-8, 7] with scale = 2 absmax / 15: onnxruntime has
    a restricted symmetric range for int8 ([-127, 127]) and int16 but none for int4. For the
    explanation in docs/accuracy.md, not for the table."""
    from onnx import TensorProto
    from onnxruntime.quantization import quant_utils

    quant_utils.ONNX_INT_TYPE_SYMMETRIC_RANGE[TensorProto.INT4] = (
        np.array(-7, dtype=quant_utils.int4),
        np.array(7, dtype=quant_utils.int4),
    )


def sanitize(name: str) -> str:
    """The SDK's output file naming (as qairt writes them): every character that is not
    alphanumeric or '_' becomes '_'; a leading digit gets a '_' prefix."""
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return "_" + s if s[:1].isdigit() else s


def read_results(root: Path, output_names: list[str], ref: list[list[np.ndarray]]) -> list[list[np.ndarray]] | None:
    results = []
    for n, ref_outs in enumerate(ref):
        outs = []
        for name, r in zip(output_names, ref_outs):
            file = root / f"Result_{n}" / f"{sanitize(name)}.raw"
            if not file.exists():
                file = root / f"Result_{n}" / f"{name}.raw"
            if not file.exists():
                return None
            outs.append(np.fromfile(file, dtype="<f4").reshape(r.shape))
        results.append(outs)
    return results


def cmd_run(args: argparse.Namespace) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if args.int4_restricted:
        restrict_int4_symmetric_range()
    model = Path(args.model)
    names, shapes = model_inputs(model)
    calib = [load_sample(s, shapes) for s in read_input_list(Path(args.calib), names)]
    verify = [load_sample(s, shapes) for s in read_input_list(Path(args.verify), names)]
    labels = None
    if args.labels:
        labels = [int(x) for x in Path(args.labels).read_text().split()]
        if len(labels) != len(verify):
            raise SystemExit(f"{args.labels}: {len(labels)} labels for {len(verify)} verify samples")

    float_sess = session(str(model), optimize=False)
    output_names = [o.name for o in float_sess.get_outputs()]
    ref = run_all(float_sess, verify)
    float_score = Score()
    for n, r in enumerate(ref):
        float_score.add(r, r, labels[n] if labels else None)

    report: dict = {
        "onnxruntime": ort.__version__,
        "model": str(model),
        "calibration_samples": len(calib),
        "verify_samples": len(verify),
        "float": {k: v for k, v in float_score.result().items() if k != "sqnr_db"},
        "configs": {},
    }

    with tempfile.TemporaryDirectory(prefix="ort-baseline-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=False)
        for config in args.configs.split(","):
            if config not in CONFIGS:
                raise SystemExit(f"unknown config {config}; known: {', '.join(CONFIGS)}")
            qpath = Path(tmp) / f"{config}.onnx"
            entry: dict = {
                "per_channel": CONFIGS[config][0],
                "activation_type": CONFIGS[config][1],
                "weight_type": CONFIGS[config][2],
            }
            try:
                quantize(pre, qpath, calib, config)
                qsess = session(str(qpath), optimize=True)
                score = Score()
                for n, (r, feed) in enumerate(zip(ref, verify)):
                    score.add(r, qsess.run(None, feed), labels[n] if labels else None)
                entry.update(score.result())
            except Exception as e:  # report the failure in the table rather than abort the run
                entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            report["configs"][config] = entry

    if args.qairt_out:
        qairt = {}
        out = Path(args.qairt_out)
        for target_dir in sorted(p for p in out.iterdir() if (p / "outputs").is_dir()):
            entry = {}
            outs = read_results(target_dir / "outputs", output_names, ref)
            if outs is not None:
                score = Score()
                for n, (r, a) in enumerate(zip(ref, outs)):
                    score.add(r, a, labels[n] if labels else None)
                entry["vs_ort_float"] = score.result()
            refs = read_results(target_dir / "reference", output_names, ref)
            if refs is not None:
                entry["reference_max_abs_diff"] = max(
                    float(np.max(np.abs(a - r))) for ro, ao in zip(ref, refs) for r, a in zip(ro, ao)
                )
            qairt[target_dir.name] = entry
        report["qairt_rescored"] = qairt

    json.dump(report, sys.stdout, indent=1, allow_nan=True)
    sys.stdout.write("\n")


# ----------------------------------------------------------------------------- MobileNetV2 data


def cmd_make_mnv2_data(args: argparse.Namespace) -> None:
    from sklearn.datasets import load_sample_images

    images = [np.asarray(img, dtype=np.float32) / 255.0 for img in load_sample_images().images]
    rng = np.random.default_rng(args.seed)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    size = 32

    def crop() -> np.ndarray:
        img = images[int(rng.integers(len(images)))]
        h, w, _ = img.shape
        # Square crop with a side that is a multiple of 32 (box resize by block averaging).
        factor = int(rng.integers(2, min(h, w) // size + 1))
        side = factor * size
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        patch = img[y : y + side, x : x + side]
        if rng.integers(2):
            patch = patch[:, ::-1]
        small = patch.reshape(size, factor, size, factor, 3).mean(axis=(1, 3))
        chw = ((small - mean) / std).transpose(2, 0, 1)
        return np.ascontiguousarray(chw[None], dtype="<f4")

    root = Path(args.dir)
    for part, count in (("calib", args.calib), ("verify", args.verify)):
        raw = root / part / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            name = f"raw/sample_{i:03d}.raw"
            crop().tofile(root / part / name)
            lines.append(name)
        (root / part / "input_list.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.calib} calibration and {args.verify} verify samples under {root}")


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    mk = sub.add_parser("make-mnv2-data", help="calibration/verify crops for mobilenetv2_mini")
    mk.add_argument("dir")
    mk.add_argument("--calib", type=int, default=64)
    mk.add_argument("--verify", type=int, default=64)
    mk.add_argument("--seed", type=int, default=20261122)

    run = sub.add_parser("run", help="quantize_static baselines; prints JSON")
    run.add_argument("--model", required=True)
    run.add_argument("--calib", required=True, help="calibration input list")
    run.add_argument("--verify", required=True, help="verify input list")
    run.add_argument("--labels", help="one class index per verify line")
    run.add_argument("--configs", default="w8a8-pt,w8a8-pc,w8a16-pt,w8a16-pc,w4a8-pt,w4a8-pc")
    run.add_argument("--qairt-out", help="qairt out/ dir whose targets to rescore against ort's float run")
    run.add_argument(
        "--int4-restricted",
        action="store_true",
        help="symmetric int4 weights with scale absmax/7 (qairt's rule) instead of ort's 2*absmax/15",
    )

    args = parser.parse_args()
    {"make-mnv2-data": cmd_make_mnv2_data, "run": cmd_run}[args.command](args)


if __name__ == "__main__":
    main()
