"""Build the `digits` example: a small trained CNN plus its calibration and test data.

What it makes (all paths relative to this file's directory, all committed):

* ``model.onnx`` -- a CNN trained with torch on ``sklearn.datasets.load_digits``
  (8x8 grayscale, pixels / 16 -> [0, 1]), exported with torch's TorchScript exporter
  (opset 13, ``dynamo=False``, static input ``input`` [1,1,8,8], output ``logits`` [1,10]).
  Architecture: Conv(1->8,3x3,pad1)-BN-Relu-Conv(8->16,3x3,pad1)-BN-Relu-MaxPool(2)-
  Flatten-Gemm(256->32)-Relu-Gemm(32->10). BatchNormalization nodes are kept in the graph
  (``training=TrainingMode.PRESERVE`` on an eval-mode model, no constant folding) so that
  BN folding is left to the tool under test.
* ``calib/input_list.txt`` + ``calib/raw/calib_NNN.raw`` -- 100 calibration samples taken
  from the training portion (10 per class).
* ``test/input_list.txt`` + ``test/raw/test_NNN.raw`` + ``test/labels.txt`` -- a stratified
  held-out test set that is never used for training.
* ``test/ort/Result_<N>/logits.raw`` -- onnxruntime (CPUExecutionProvider, graph
  optimizations disabled so the graph runs exactly as written) float32 outputs of
  ``model.onnx`` for line N of the test list, in qnn-net-run's output layout.
* ``summary.json`` -- split sizes, seeds, accuracies and the graph's tensor names.

Raw files are headerless float32 little-endian NCHW [1,1,8,8] (256 bytes). Input list lines
are paths relative to the list's own directory.

Determinism: every random choice is seeded (numpy, torch, the split); torch runs
single-threaded with deterministic algorithms. The data split and raw files are identical on
every machine; trained weights are identical on the same CPU/torch build (floating-point
reduction order can differ across CPUs, so the committed model.onnx is the canonical one).

Re-run from the repository root with the project venv (see scripts/setup-python.sh):

    $QAIRT_VENV/bin/python examples/digits/make_digits.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
SEED = 20240607
TEST_SIZE = 400
CALIB_PER_CLASS = 10
EPOCHS = 60
BATCH = 32
LR = 3e-3


class DigitsNet(nn.Module):
    """Conv-BN-Relu x2, MaxPool, Flatten, Gemm-Relu-Gemm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.flatten(self.pool(x))
        return self.fc2(self.relu3(self.fc1(x)))


def seed_everything() -> None:
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def load_split():
    """Return (x_train, y_train, x_test, y_test, calib_idx) with x as float32 [N,1,8,8]."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=SEED % (2**32)
    )
    rng = np.random.default_rng(SEED)
    calib_idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(y_train == c), CALIB_PER_CLASS, replace=False)
            for c in range(10)
        ]
    )
    rng.shuffle(calib_idx)
    return x_train, y_train, x_test, y_test, calib_idx


def train(model: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
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
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(xt):.4f}")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def write_raw_set(directory: Path, prefix: str, samples: np.ndarray) -> None:
    """Write one float32 LE raw file per sample and an input list of relative paths."""
    if directory.exists():
        shutil.rmtree(directory)
    (directory / "raw").mkdir(parents=True)
    lines = []
    for i, sample in enumerate(samples):
        rel = f"raw/{prefix}_{i:03d}.raw"
        sample.astype("<f4").reshape(1, 1, 8, 8).tofile(directory / rel)
        lines.append(rel)
    (directory / "input_list.txt").write_text("\n".join(lines) + "\n")


def export(model: nn.Module, path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, 1, 8, 8)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        opset_version=13,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )


def check_exported(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    for needed in ["Conv", "BatchNormalization", "Relu", "MaxPool", "Gemm"]:
        assert needed in ops, f"{needed} missing from exported graph: {ops}"
    assert "Flatten" in ops or "Reshape" in ops, ops
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        mean, var = inits[node.input[3]], inits[node.input[4]]
        assert np.abs(mean).max() > 1e-2, f"{node.name}: running mean looks untrained"
        assert np.abs(var - 1.0).max() > 1e-2, f"{node.name}: running var looks untrained"
    return model


def ort_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_ort(sess: ort.InferenceSession, xs: np.ndarray) -> np.ndarray:
    return np.concatenate([sess.run(["logits"], {"input": x[None]})[0] for x in xs])


def activation_ranges(model: onnx.ModelProto, xs: np.ndarray) -> dict:
    """Min/max of every node output over `xs` (onnxruntime, graph optimizations off)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph_outputs = {o.name for o in probe.graph.output}
    names = [n.output[0] for n in model.graph.node]
    for name in names:
        if name not in graph_outputs:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    lo = {k: np.inf for k in names}
    hi = {k: -np.inf for k in names}
    for x in xs:
        for k, v in zip(names, sess.run(names, {"input": x[None]})):
            lo[k] = min(lo[k], float(v.min()))
            hi[k] = max(hi[k], float(v.max()))
    return {k: [round(lo[k], 4), round(hi[k], 4)] for k in names}


def conv_channel_report(model: onnx.ModelProto) -> dict:
    """Per-output-channel weight abs-max of each Conv, raw and with its BatchNorm folded in."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers = {n.input[0]: n for n in model.graph.node}
    report = {}
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        w = inits[conv.input[1]]
        absmax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        bn = consumers[conv.output[0]]
        assert bn.op_type == "BatchNormalization", bn.op_type
        eps = next(a.f for a in bn.attribute if a.name == "epsilon")
        gamma, var = inits[bn.input[1]], inits[bn.input[4]]
        folded = absmax * np.abs(gamma) / np.sqrt(var + eps)
        report[conv.name] = {
            "weight": conv.input[1],
            "weight_absmax_per_channel": [round(float(v), 4) for v in absmax],
            "weight_absmax_ratio": round(float(absmax.max() / absmax.min()), 2),
            "folded_weight_absmax_per_channel": [round(float(v), 4) for v in folded],
            "folded_weight_absmax_ratio": round(float(folded.max() / folded.min()), 2),
        }
    return report


def main() -> None:
    seed_everything()
    x_train, y_train, x_test, y_test, calib_idx = load_split()
    print(f"train {len(x_train)}  test {len(x_test)}  calib {len(calib_idx)} (from train)")

    model = DigitsNet()
    train(model, x_train, y_train)
    model.eval()
    with torch.no_grad():
        torch_test_acc = accuracy(model(torch.from_numpy(x_test)).numpy(), y_test)
        torch_train_acc = accuracy(model(torch.from_numpy(x_train)).numpy(), y_train)
    print(f"torch accuracy: train {torch_train_acc:.4f}  test {torch_test_acc:.4f}")

    model_path = HERE / "model.onnx"
    export(model, model_path)
    onnx_model = check_exported(model_path)

    write_raw_set(HERE / "calib", "calib", x_train[calib_idx])
    write_raw_set(HERE / "test", "test", x_test)
    (HERE / "test" / "labels.txt").write_text("".join(f"{int(c)}\n" for c in y_test))

    sess = ort_session(model_path)
    ort_logits = run_ort(sess, x_test)
    ort_dir = HERE / "test" / "ort"
    for i, logits in enumerate(ort_logits):
        out = ort_dir / f"Result_{i}"
        out.mkdir(parents=True)
        logits.astype("<f4").tofile(out / "logits.raw")
    ort_acc = accuracy(ort_logits, y_test)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_test)).numpy()
    max_diff = float(np.abs(ort_logits - torch_logits).max())
    print(f"onnxruntime accuracy on test: {ort_acc:.4f}  (max |ort - torch| = {max_diff:.3g})")
    assert ort_acc >= 0.95, f"accuracy {ort_acc} below 0.95"

    channels = conv_channel_report(onnx_model)
    for name, rep in channels.items():
        print(
            f"{name}: per-channel weight abs-max ratio {rep['weight_absmax_ratio']} "
            f"(BN-folded {rep['folded_weight_absmax_ratio']})"
        )
    ranges = activation_ranges(onnx_model, x_train[calib_idx])
    for name, (lo, hi) in ranges.items():
        print(f"  calibration range {name:34s} [{lo:9.4f}, {hi:9.4f}]")

    summary = {
        "seed": SEED,
        "train_samples": int(len(x_train)),
        "test_samples": int(len(x_test)),
        "calib_samples": int(len(calib_idx)),
        "torch_train_accuracy": round(torch_train_acc, 4),
        "torch_test_accuracy": round(torch_test_acc, 4),
        "ort_test_accuracy": round(ort_acc, 4),
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
        "inputs": [i.name for i in onnx_model.graph.input],
        "outputs": [o.name for o in onnx_model.graph.output],
        "nodes": [
            {"name": n.name, "op_type": n.op_type, "inputs": list(n.input), "outputs": list(n.output)}
            for n in onnx_model.graph.node
        ],
        "conv_channels": channels,
        "calibration_ranges": ranges,
    }
    (HERE / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
