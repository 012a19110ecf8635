#!/usr/bin/env python3
"""Make the scale-benchmark projects of issue 10 (benches/scale.py, benches/README.md "Scale"):
full-size torchvision classifiers with random seeded weights and many real-looking inputs, written
OUTSIDE the repository (the data is hundreds of MB and is never committed).

``OUT/resnet50_224/`` and ``OUT/mobilenetv2_96/`` each get

* ``model.onnx`` -- torchvision ``resnet50(weights=None)`` at 1x3x224x224, or
  ``mobilenet_v2(weights=None, width_mult=1.0)`` at 1x3x96x96 (1000 classes), BatchNorm affine
  parameters given a seeded spread and running statistics from the calibration photos (as the
  model zoo does: ``make_zoo.randomize_norm_affine`` / ``settle_batchnorm``), the classifier's
  bias centred on the calibration photos (``center_classifier``), exported in eval mode
  by torch's TorchScript exporter (``dynamo=False``, opset 17, constant folding: BatchNorm is
  folded into the Conv weights by the exporter). Input ``image``, output ``logits``.
* ``calib/`` (100 samples) and ``verify/`` (``--verify N`` samples; default 1000 for ResNet-50,
  100 for MobileNetV2): ``<k>/image.raw`` float32 little-endian NCHW and ``input_list.txt``
  (``image:=<k>/image.raw`` per line), as ``make_zoo.write_inputs`` writes them. Images are
  ``make_zoo.photo_crops``: random square crops (side 96..427) of scikit-learn's two bundled
  sample photos, bilinearly resized, half mirrored, every one distinct; ImageNet mean/std.
  Calibration and verify images are disjoint draws of one seeded generator, so the first k
  verify samples are the same whatever ``--verify`` is.
* ``labels.txt`` -- one class index per verify sample: the argmax of onnxruntime's float output
  (CPU provider, graph optimizations off, one thread). An independent reference for qairt's
  top-1 accuracy (the weights are random, so there is no ground truth).
* ``overrides.json`` -- an empty AIMET encodings file (0.6.1 dict form) that the ``htp-w8a8``
  target reads, so that ``benches/scale.py`` can time the rebuild after editing one encoding.
* ``qairt.toml`` -- targets ``cpu`` (backend cpu) and ``htp-w8a8`` (backend htp, the model zoo's
  quantization settings: min-max, asymmetric 8-bit activations, symmetric per-channel 8-bit
  weights, int32 bias), the labels, the default metric list written out and a lenient
  ``min_sqnr_db`` threshold (both edited by the benchmark's rebuild figures).
* ``manifest.json`` -- architecture, parameters, op counts, sample counts, seed, versions.

Usage (the venv of ``scripts/setup-python.sh --zoo``; ~5 min on 2 cores for both models):

    ~/.cache/qairt-zoo-venv/bin/python scripts/python/make_scale.py [OUT] [--models resnet50_224,mobilenetv2_96]
        [--verify N]

``OUT`` defaults to ``~/.cache/qairt-scale``. Nothing is downloaded. Deterministic: seeded
weights, crops and BatchNorm statistics (torch deterministic algorithms, one thread).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
# make_zoo sets OMP_NUM_THREADS=1 and the offline switches before torch is imported.
from make_zoo import (  # noqa: E402
    batch_of,
    export,
    imagenet_nchw,
    op_counts,
    photo_crops,
    randomize_norm_affine,
    settle_batchnorm,
    torch_setup,
    versions,
    write_inputs,
)
from ort_baseline import session  # noqa: E402

SEED = 20261210
N_CALIB = 100
BN_BATCH = 25  # calibration photos per train-mode pass when settling BatchNorm statistics

MODELS = {
    "resnet50_224": {
        "size": 224,
        "verify": 1000,
        "seed": SEED,
        "arch": "ResNet-50 (bottleneck residual blocks, BatchNorm folded into Conv by the exporter), 1000 classes",
        "source": "torchvision `resnet50(weights=None)`; random seeded weights",
    },
    "mobilenetv2_96": {
        "size": 96,
        "verify": 100,
        "seed": SEED + 100,
        "arch": "MobileNetV2 width 1.0 (inverted residuals, depthwise Conv, ReLU6 as Clip), 1000 classes",
        "source": "torchvision `mobilenet_v2(weights=None, width_mult=1.0)`; random seeded weights",
    },
}


def torch_model(name: str):
    from torchvision.models import mobilenet_v2, resnet50

    if name == "resnet50_224":
        return resnet50(weights=None)
    return mobilenet_v2(weights=None, width_mult=1.0)


def distinct_crops(count: int, size: int, seed: int) -> list[np.ndarray]:
    """``count`` pairwise different crops: make_zoo.photo_crops draws, duplicates (by content)
    skipped. The draws are sequential from one generator, so a longer list extends a shorter one."""
    extra = 0
    while True:
        crops = photo_crops(count + extra, size, seed)
        seen, out = set(), []
        for c in crops:
            h = hashlib.blake2b(c.tobytes(), digest_size=16).digest()
            if h not in seen:
                seen.add(h)
                out.append(c)
        if len(out) >= count:
            return out[:count]
        extra += count - len(out)


def center_classifier(model, batches: list) -> None:
    """Subtracts from the last Linear layer's bias its mean output over the calibration photos.
    A random classifier on post-ReLU features (all positive, nearly the same mean) otherwise
    gives every photo the same top-1 class (ResNet-50: 1 class for 1000 photos), which would
    make the top-1 labels and accuracy meaningless; centred, the argmax follows each photo."""
    import torch

    fc = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        logits = torch.cat([model(b) for b in batches])
        fc.bias -= logits.mean(dim=0)


def qairt_toml(name: str) -> str:
    return f"""# Scale-benchmark project `{name}`, made by scripts/python/make_scale.py; measured by
# benches/scale.py (benches/README.md, "Scale"). Quantization settings of the model zoo's
# fixtures (min-max, asymmetric activations, symmetric per-channel int8 weights, int32 bias).

[project]
name = "scale-{name}"

[model]
path = "model.onnx"

[calibration]
input_list = "calib/input_list.txt"

[quantization]
act_bitwidth = 8
weight_bitwidth = 8
bias_bitwidth = 32
act_calibration = "min-max"
param_calibration = "min-max"
act_schema = "asymmetric"
param_schema = "symmetric"
per_channel = true
per_row = true

[[target]]
name = "cpu"
backend = "cpu"

[[target]]
name = "htp-w8a8"
backend = "htp"
# Empty at first; benches/scale.py writes one encoding of the last layer into it.
overrides = "overrides.json"

[verify]
input_list = "verify/input_list.txt"
# onnxruntime float argmax of each verify sample (random weights: no ground truth).
labels = "labels.txt"
metrics = ["sqnr", "cosinesimilarity", "mse", "maxerror"]

[verify.thresholds]
# Lenient: the benchmark measures time and memory, and edits this value for a rebuild figure.
min_sqnr_db = 0.0
"""


def build_one(out: Path, name: str, n_verify: int) -> None:
    info = MODELS[name]
    size, seed = info["size"], info["seed"]
    d = out / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    print(f"== {name}: {N_CALIB} calibration + {n_verify} verify samples at {size}x{size}", flush=True)

    torch = torch_setup()
    model = torch_model(name)
    crops = distinct_crops(N_CALIB + n_verify, size, seed)
    arrays = [imagenet_nchw(c) for c in crops]
    del crops
    calib, verify = arrays[:N_CALIB], arrays[N_CALIB:]
    randomize_norm_affine(model, seed + 1)
    batches = [batch_of(calib[i : i + BN_BATCH]) for i in range(0, N_CALIB, BN_BATCH)]
    settle_batchnorm(model, batches)
    center_classifier(model, batches)
    model_path = d / "model.onnx"
    export(model, (torch.from_numpy(calib[0]),), model_path, ["image"], ["logits"])
    del model

    proto = onnx.load(str(model_path))
    onnx.checker.check_model(proto, full_check=True)
    ops = op_counts(proto.graph)
    if "BatchNormalization" in ops:
        raise SystemExit(f"{name}: the exporter left {ops['BatchNormalization']} BatchNormalization nodes")
    blob = model_path.read_bytes()
    for bad in {str(Path(__file__).resolve().parents[2]).encode(), str(Path.home()).encode()}:
        if bad in blob:
            raise SystemExit(f"{name}: model.onnx contains an absolute path ({bad!r})")

    write_inputs(d, "calib", ["image"], [{"image": a} for a in calib])
    write_inputs(d, "verify", ["image"], [{"image": a} for a in verify])

    fsess = session(str(model_path), optimize=False)
    labels = []
    for k, a in enumerate(verify):
        labels.append(int(np.argmax(fsess.run(None, {"image": a})[0])))
        if (k + 1) % 100 == 0:
            print(f"   labels {k + 1}/{n_verify}", flush=True)
    (d / "labels.txt").write_text("".join(f"{l}\n" for l in labels))
    (d / "overrides.json").write_text(
        json.dumps({"version": "0.6.1", "activation_encodings": {}, "param_encodings": {}}, indent=2) + "\n")
    (d / "qairt.toml").write_text(qairt_toml(name))

    params = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    manifest = {
        "name": name,
        "arch": info["arch"],
        "source": info["source"],
        "input": [1, 3, size, size],
        "params": params,
        "model_bytes": model_path.stat().st_size,
        "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "op_counts": ops,
        "calibration_samples": N_CALIB,
        "verify_samples": n_verify,
        "distinct_labels": len(set(labels)),
        "data": f"make_zoo.photo_crops of scikit-learn's sample photos, {size}x{size}, ImageNet mean/std",
        "labels": "onnxruntime float argmax (graph optimizations off, one thread)",
        "seed": seed,
        "versions": versions(),
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"   {manifest['model_bytes'] / 1e6:.1f} MB, {params:,} params, {len(set(labels))} distinct labels, "
          f"ops {ops}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path.home() / ".cache" / "qairt-scale",
                        help="where the projects go (default ~/.cache/qairt-scale; never the repository)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    parser.add_argument("--verify", type=int, help="verify samples (default 1000 for resnet50_224, 100 for mobilenetv2_96)")
    args = parser.parse_args()
    out = args.out.expanduser().resolve()
    repo = Path(__file__).resolve().parents[2]
    if out == repo or repo in out.parents:
        raise SystemExit(f"{out} is inside the repository: the scale data is hundreds of MB, write it elsewhere")
    names = [m for m in args.models.split(",") if m]
    for name in names:
        if name not in MODELS:
            raise SystemExit(f"unknown model {name}; known: {', '.join(MODELS)}")
    if args.verify is not None and args.verify < 1:
        raise SystemExit("--verify must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        build_one(out, name, args.verify or MODELS[name]["verify"])
    print(f"wrote {', '.join(names)} to {out}")


if __name__ == "__main__":
    main()
