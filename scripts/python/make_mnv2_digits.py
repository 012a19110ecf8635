#!/usr/bin/env python3
"""A *trained* MobileNetV2-shaped model for qairt's accuracy comparison (benches/accuracy.sh).

The random-weight fixture ``tests/data/models/mobilenetv2_mini`` is fine for op coverage, but
its logits barely depend on the input (their spread over inputs is ~1e-5 of their size), so
top-1 is trivially 100 % and output SQNR only measures how well a near-constant vector is
reproduced. This script trains the same architecture (``MobileNetV2Mini`` from
``make_models.py``: stem, inverted residual blocks with depthwise Convs and ReLU6, a
squeeze-excite block with HardSwish and Sigmoid, GlobalAveragePool, Gemm) on scikit-learn's
handwritten digits, with exactly the split of ``examples/digits`` (``make_digits.load_split``):
the 8x8 images are bilinearly upsampled to 32x32, repeated over 3 channels and mapped to
[-1, 1]. It writes into DIR (not the repository):

* ``model.onnx`` -- exported like make_models.py does (opset 13, TorchScript exporter,
  BatchNormalization kept, no constant folding), input ``input`` [1,3,32,32], output
  ``output`` [1,10];
* ``calib/input_list.txt`` + ``calib/raw/*.raw`` -- the 100 calibration samples of
  examples/digits (10 per class, from the training split), upsampled;
* ``test/input_list.txt`` + ``test/raw/*.raw`` + ``test/labels.txt`` -- the 400 test samples;
* ``summary.json`` -- torch and onnxruntime test accuracy, epochs, seconds.

Seeded and single-threaded with deterministic algorithms: the same files on every run on one
machine (weights may differ in the last bits on another CPU or torch build). ~40 s on 2 cores.

    python scripts/python/make_mnv2_digits.py DIR
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261122
EPOCHS = 12
BATCH = 32
LR = 3e-3


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def upsample(x: np.ndarray) -> np.ndarray:
    """[N,1,8,8] in [0,1] -> [N,3,32,32] in [-1,1] (bilinear, align_corners=False)."""
    t = F.interpolate(torch.from_numpy(x), size=(32, 32), mode="bilinear", align_corners=False)
    return np.ascontiguousarray((t.repeat(1, 3, 1, 1) * 2.0 - 1.0).numpy(), dtype=np.float32)


def write_set(root: Path, prefix: str, x: np.ndarray, labels: np.ndarray | None = None) -> None:
    (root / "raw").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, sample in enumerate(x):
        name = f"raw/{prefix}_{i:03d}.raw"
        sample.astype("<f4").tofile(root / name)
        lines.append(name)
    (root / "input_list.txt").write_text("\n".join(lines) + "\n")
    if labels is not None:
        (root / "labels.txt").write_text("\n".join(str(int(v)) for v in labels) + "\n")


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    digits = load_module("make_digits", ROOT / "examples" / "digits" / "make_digits.py")
    models = load_module("make_models", ROOT / "scripts" / "python" / "make_models.py")
    x_train, y_train, x_test, y_test, calib_idx = digits.load_split()
    x_train, x_test = upsample(x_train), upsample(x_test)

    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = models.MobileNetV2Mini()

    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())

    onnx_path = out / "model.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 32, 32),),
        str(onnx_path),
        opset_version=13,
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    preds = [int(np.argmax(sess.run(None, {"input": x[None]})[0])) for x in x_test]
    ort_acc = float(np.mean(np.array(preds) == y_test))

    write_set(out / "calib", "calib", x_train[calib_idx])
    write_set(out / "test", "test", x_test, y_test)
    summary = {
        "seed": SEED,
        "epochs": EPOCHS,
        "train_samples": len(x_train),
        "test_samples": len(x_test),
        "calib_samples": len(calib_idx),
        "torch_test_accuracy": torch_acc,
        "ort_test_accuracy": ort_acc,
        "seconds": round(time.time() - start, 1),
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
