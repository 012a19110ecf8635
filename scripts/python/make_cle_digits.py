"""Build the `cle_digits` fixture: a MobileNet-shaped CNN with unequal channel ranges.

It measures what cross-layer equalization (``algorithms = ["cle"]``) buys. What it makes
(under ``tests/data/models/cle_digits/``, all committed):

* ``model.onnx`` -- trained with torch on ``sklearn.datasets.load_digits`` (the same split,
  calibration and test samples as ``examples/digits``; the script checks that the raw files
  there are bit-identical to its own split), exported with BatchNormalization kept (opset 13,
  ReLU6 written as ``Clip(0, 6)``). Architecture, MobileNet-like on 8x8 inputs:
  ``stem`` Conv(1->16, 3x3, pad 1)-BN-ReLU6, ``dw1`` depthwise Conv(16, 3x3, pad 1)-BN-ReLU6,
  ``pw1`` Conv(16->32, 1x1)-BN-ReLU6, MaxPool(2), ``dw2`` depthwise Conv(32, 3x3, pad 1)-BN-
  ReLU6, ``pw2`` Conv(32->32, 1x1)-BN-ReLU6, GlobalAveragePool, Flatten, Gemm(32->10).
  **Unequal channel ranges on purpose:** the stem's BatchNorm scales (gamma) are fixed, not
  trained, at 16 log-spaced values from 0.02 to 2 (a 100x spread), so after BatchNorm folding
  the stem's output channels span two decades -- the situation CLE exists for (Nagel et al.
  2019 saw it in MobileNetV2's depthwise layers). The depthwise layers add their own, natural
  spread.
* ``ort_logits.raw`` -- onnxruntime's float32 logits for the 400 test samples, [400, 10] row
  major (graph optimizations off, one thread).
* ``summary.json`` -- accuracies, seeds, the BN-folded per-output-channel weight abs-max of
  every Conv (with max/min ratio), versions.

Re-run from the repository root with the project venv (deterministic, ~20 s on 2 cores):

    $QAIRT_VENV/bin/python scripts/python/make_cle_digits.py
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "models" / "cle_digits"
DIGITS = ROOT / "examples" / "digits"
SEED = 20261122
EPOCHS = 60
BATCH = 32
LR = 3e-3
STEM_GAMMAS = np.geomspace(0.02, 2.0, 16).astype(np.float32)


def load_digits_module():
    spec = importlib.util.spec_from_file_location("make_digits", DIGITS / "make_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conv_bn(cin: int, cout: int, k: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups), nn.BatchNorm2d(cout), nn.ReLU6()]


class CleDigitsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, 16, 3))
        self.dw1 = nn.Sequential(*conv_bn(16, 16, 3, groups=16))
        self.pw1 = nn.Sequential(*conv_bn(16, 32, 1))
        self.pool = nn.MaxPool2d(2)
        self.dw2 = nn.Sequential(*conv_bn(32, 32, 3, groups=32))
        self.pw2 = nn.Sequential(*conv_bn(32, 32, 1))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32, 10)
        stem_bn = self.stem[1]
        with torch.no_grad():
            stem_bn.weight.copy_(torch.from_numpy(STEM_GAMMAS))
        stem_bn.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw1(self.dw1(self.stem(x)))
        x = self.pw2(self.dw2(self.pool(x)))
        return self.fc(self.flatten(self.gap(x)))


def train(model: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    gen = torch.Generator().manual_seed(SEED)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(xt), BATCH):
            idx = perm[start : start + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(xt):.4f}")


def read_raw_list(directory: Path) -> np.ndarray:
    lines = (directory / "input_list.txt").read_text().split()
    return np.stack([np.fromfile(directory / line, dtype="<f4").reshape(1, 8, 8) for line in lines])


def folded_channel_ranges(model: onnx.ModelProto) -> dict:
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    readers = {n.input[0]: n for n in model.graph.node if n.input}
    report = {}
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        w = inits[conv.input[1]]
        bn = readers[conv.output[0]]
        assert bn.op_type == "BatchNormalization", bn.op_type
        eps = next(a.f for a in bn.attribute if a.name == "epsilon")
        scale = inits[bn.input[1]] / np.sqrt(inits[bn.input[4]] + eps)
        folded = np.abs(w.reshape(w.shape[0], -1) * scale[:, None]).max(axis=1)
        report[conv.name] = {
            "weight": conv.input[1],
            "folded_absmax_per_channel": [round(float(v), 5) for v in folded],
            "folded_absmax_ratio": round(float(folded.max() / folded.min()), 2),
        }
    return report


def main() -> None:
    digits = load_digits_module()
    digits.seed_everything()
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    x_train, y_train, x_test, y_test, calib_idx = digits.load_split()
    assert np.array_equal(read_raw_list(DIGITS / "calib"), x_train[calib_idx]), "calib split differs"
    assert np.array_equal(read_raw_list(DIGITS / "test"), x_test), "test split differs"
    labels = np.array([int(v) for v in (DIGITS / "test" / "labels.txt").read_text().split()])
    assert np.array_equal(labels, y_test)

    model = CleDigitsNet()
    train(model, x_train, y_train)
    model.eval()
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_test)).numpy()
    assert np.array_equal(model.stem[1].weight.detach().numpy(), STEM_GAMMAS), "stem gammas moved"

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "model.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        str(path),
        opset_version=13,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )
    onnx_model = onnx.load(str(path))
    onnx.checker.check_model(onnx_model, full_check=True)
    ops = [n.op_type for n in onnx_model.graph.node]
    assert ops.count("BatchNormalization") == 5 and ops.count("Clip") == 5, ops

    sess = digits.ort_session(path)
    ort_logits = digits.run_ort(sess, x_test)
    ort_logits.astype("<f4").tofile(OUT / "ort_logits.raw")
    ort_acc = digits.accuracy(ort_logits, y_test)
    print(f"accuracy: torch {digits.accuracy(torch_logits, y_test):.4f}  onnxruntime {ort_acc:.4f}")
    assert ort_acc >= 0.9, ort_acc

    ranges = folded_channel_ranges(onnx_model)
    for name, rep in ranges.items():
        print(f"{name:24s} BN-folded per-channel abs-max ratio {rep['folded_absmax_ratio']}")
    summary = {
        "seed": SEED,
        "stem_gammas": [float(v) for v in STEM_GAMMAS],
        "ort_test_accuracy": round(ort_acc, 4),
        "max_abs_ort_minus_torch": float(np.abs(ort_logits - torch_logits).max()),
        "data": "examples/digits/calib (100 samples) and examples/digits/test (400 samples, labels.txt)",
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "ops": ops,
        "conv_channels": ranges,
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
