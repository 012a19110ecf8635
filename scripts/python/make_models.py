"""Generate the op-coverage models in tests/data/models/ with onnxruntime reference outputs.

Models (random but seeded weights; each file well under 1.5 MB):

* ``mobilenetv2_mini`` -- MobileNetV2-shaped: Conv3x3/2-BN-ReLU6 stem, inverted residual
  blocks (1x1 expand Conv-BN-ReLU6, depthwise 3x3 Conv-BN-ReLU6 with group=channels, 1x1
  project Conv-BN, residual Add when shapes allow), one squeeze-excite block
  (GlobalAveragePool - 1x1 Conv - HardSwish - 1x1 Conv - Sigmoid - Mul), 1x1 Conv-BN-ReLU6,
  GlobalAveragePool, Flatten, Gemm. Input ``input`` [1,3,32,32], output ``output`` [1,10].
  Exported by torch (opset 13, TorchScript exporter, BatchNormalization preserved) and saved
  with all weights in one external data file ``mobilenetv2_mini.data``, as AIMET's export
  writes models. At opset 13 torch writes ReLU6 as ``Clip(x, 0, 6)`` and HardSwish as
  ``x * HardSigmoid(x; alpha=1/6, beta=0.5)`` (the HardSwish op only exists from opset 14).
* ``resnet18_mini`` -- ResNet-18-shaped: Conv7x7/2-BN-Relu-MaxPool3x3/2(pad 1) stem, four
  stages of two BasicBlocks (widths 8/16/32/64, residual Add, 1x1/2 Conv-BN downsample),
  GlobalAveragePool, Flatten, Gemm. Input ``input`` [1,3,32,32], output ``output`` [1,10].
  Exported like the above, saved as a single file.
* ``misc_ops`` -- built with onnx.helper (opset 13): Pad (constant and reflect), AveragePool,
  MaxPool(ceil_mode=1), Clip with min/max inputs, Reshape with a Constant shape, Transpose,
  MatMul, Sub, Div, Softmax, Dropout, Identity, Unsqueeze, Concat, Squeeze, Constant. Inputs
  ``x`` [1,3,8,8] and ``y`` [1,3,5]; outputs ``out`` [2,16,5] and ``pooled`` [1,3,4,4].

For each model, ``tests/data/models/<name>/`` holds:

* ``<name>.onnx`` (and ``<name>.data`` for external data)
* ``inputs/<k>/<input_name>.raw`` for k = 0, 1, 2: float32 little-endian, standard normal,
  from ``numpy.random.default_rng(seed)``
* ``outputs/<k>/<output_name>.raw``: onnxruntime (CPUExecutionProvider, graph optimizations
  disabled, one thread) float32 outputs for those inputs
* ``manifest.json``: model file, external data file, opset, op types, inputs and outputs with
  shapes and dtypes, sample count, seeds, tool versions

BatchNormalization running statistics and affine parameters are randomized (seeded) so that
BN folding is not a no-op. Every random draw is seeded; torch runs single-threaded.

Re-run from the repository root:

    $QAIRT_VENV/bin/python scripts/python/make_models.py
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
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "models"
SAMPLES = 3
MAX_BYTES = 1_500_000


# ---------------------------------------------------------------------------------------------
# torch models


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += conv_bn(cin, hidden, 1) + [nn.ReLU6()]
        layers += conv_bn(hidden, hidden, 3, stride, groups=hidden) + [nn.ReLU6()]
        layers += conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.Hardswish()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * s


class MobileNetV2Mini(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16, 3, 2), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 8, 1, 1),
            InvertedResidual(8, 16, 2, 6),
            InvertedResidual(16, 16, 1, 6),
            SqueezeExcite(16, 8),
            InvertedResidual(16, 24, 2, 6),
            InvertedResidual(24, 24, 1, 6),
        )
        self.head = nn.Sequential(*conv_bn(24, 64, 1), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.head(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + identity)


class ResNet18Mini(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages = []
        cin = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize_batchnorms(model: nn.Module, gen: torch.Generator) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)


def export_torch(model: nn.Module, shape: list[int], seed: int) -> onnx.ModelProto:
    torch.manual_seed(seed)
    randomize_batchnorms(model, torch.Generator().manual_seed(seed + 1))
    model.eval()
    tmp = OUT / ".export.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(*shape),),
        str(tmp),
        opset_version=13,
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )
    proto = onnx.load(str(tmp))
    tmp.unlink()
    assert "BatchNormalization" in {n.op_type for n in proto.graph.node}, "BN was folded by the exporter"
    return proto


# ---------------------------------------------------------------------------------------------
# hand-built model


def make_misc_ops(seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)

    def const(name: str, value: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], name=f"{name}_const", value=numpy_helper.from_array(value, name))

    inits = [
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "pad_value"),
        numpy_helper.from_array(np.array(0.75, dtype=np.float32), "clip_max"),
        numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "sub_bias"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "div_by"),
    ]
    nodes = [
        helper.make_node("Pad", ["x", "pads", "pad_value"], ["padded_const"], name="pad_constant", mode="constant"),
        helper.make_node(
            "AveragePool", ["padded_const"], ["avg"], name="avgpool",
            kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0,
        ),
        helper.make_node("Pad", ["avg", "pads"], ["padded_reflect"], name="pad_reflect", mode="reflect"),
        helper.make_node(
            "MaxPool", ["padded_reflect"], ["maxpooled"], name="maxpool_ceil",
            kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
        ),
        const("clip_min", np.array(-0.5, dtype=np.float32)),
        helper.make_node("Clip", ["maxpooled", "clip_min", "clip_max"], ["clipped"], name="clip"),
        helper.make_node("Identity", ["clipped"], ["pooled"], name="identity_pooled"),
        const("reshape_shape", np.array([1, 3, 16], dtype=np.int64)),
        helper.make_node("Reshape", ["clipped", "reshape_shape"], ["flat"], name="reshape"),
        helper.make_node("Transpose", ["flat"], ["flat_t"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["flat_t", "y"], ["mm"], name="matmul"),
        helper.make_node("Sub", ["mm", "sub_bias"], ["centered"], name="sub"),
        helper.make_node("Div", ["centered", "div_by"], ["scaled"], name="div"),
        helper.make_node("Softmax", ["scaled"], ["probs"], name="softmax", axis=-1),
        helper.make_node("Dropout", ["probs"], ["probs_d"], name="dropout"),
        const("axes_1", np.array([1], dtype=np.int64)),
        helper.make_node("Unsqueeze", ["probs_d", "axes_1"], ["probs_4d"], name="unsqueeze_probs"),
        helper.make_node("Identity", ["scaled"], ["scaled_id"], name="identity_scaled"),
        helper.make_node("Unsqueeze", ["scaled_id", "axes_1"], ["scaled_4d"], name="unsqueeze_scaled"),
        helper.make_node("Concat", ["probs_4d", "scaled_4d"], ["joined"], name="concat", axis=1),
        const("axes_0", np.array([0], dtype=np.int64)),
        helper.make_node("Squeeze", ["joined", "axes_0"], ["out"], name="squeeze"),
    ]
    graph = helper.make_graph(
        nodes,
        "misc_ops",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5]),
        ],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 16, 5]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 3, 4, 4]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qairt-make_models")
    model.ir_version = 8
    return model


# ---------------------------------------------------------------------------------------------
# writing


def dims(value_info: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def save(name: str, model: onnx.ModelProto, seed: int, external: bool, notes: str) -> None:
    onnx.checker.check_model(model, full_check=True)
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model_path = d / f"{name}.onnx"
    data_file = f"{name}.data" if external else None
    if external:
        onnx.save_model(
            model, str(model_path), save_as_external_data=True, all_tensors_to_one_file=True,
            location=data_file, size_threshold=0,
        )
    else:
        onnx.save_model(model, str(model_path))
    onnx.checker.check_model(str(model_path), full_check=True)
    size = sum(p.stat().st_size for p in d.iterdir())
    assert size < MAX_BYTES, f"{name}: {size} bytes"

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    inputs = [(i.name, dims(i)) for i in model.graph.input]
    outputs = [(o.name, dims(o)) for o in model.graph.output]
    rng = np.random.default_rng(seed)
    for k in range(SAMPLES):
        feed = {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs}
        result = sess.run([n for n, _ in outputs], feed)
        (d / "inputs" / str(k)).mkdir(parents=True)
        (d / "outputs" / str(k)).mkdir(parents=True)
        for n, v in feed.items():
            v.astype("<f4").tofile(d / "inputs" / str(k) / f"{n}.raw")
        for (n, s), v in zip(outputs, result):
            assert list(v.shape) == s, (name, n, v.shape, s)
            assert np.isfinite(v).all() and np.abs(v).max() > 1e-3, (name, n)
            v.astype("<f4").tofile(d / "outputs" / str(k) / f"{n}.raw")

    manifest = {
        "model": model_path.name,
        "external_data": data_file,
        "opset": 13,
        "op_types": sorted({n.op_type for n in model.graph.node}),
        "nodes": len(model.graph.node),
        "inputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in inputs],
        "outputs": [{"name": n, "shape": s, "dtype": "float32"} for n, s in outputs],
        "samples": SAMPLES,
        "input_seed": seed,
        "input_distribution": "standard normal, numpy.random.default_rng(input_seed), inputs drawn in graph-input order per sample",
        "reference": f"onnxruntime {ort.__version__} CPUExecutionProvider, ORT_DISABLE_ALL, 1 thread",
        "generator": "scripts/python/make_models.py",
        "notes": notes,
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{name}: {size} bytes, ops {manifest['op_types']}")


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(101)
    mnv2 = export_torch(MobileNetV2Mini(), [1, 3, 32, 32], 101)
    save(
        "mobilenetv2_mini", mnv2, 1001, external=True,
        notes="torch export, opset 13: ReLU6 -> Clip(0,6); HardSwish -> HardSigmoid(alpha=1/6,beta=0.5)*x; "
        "BatchNormalization preserved; all initializers in mobilenetv2_mini.data",
    )
    torch.manual_seed(202)
    resnet = export_torch(ResNet18Mini(), [1, 3, 32, 32], 202)
    save("resnet18_mini", resnet, 2002, external=False, notes="torch export, opset 13, BatchNormalization preserved")
    save(
        "misc_ops", make_misc_ops(303), 3003, external=False,
        notes="onnx.helper, opset 13; Pad constant(0.5)+reflect, AveragePool count_include_pad=0, MaxPool ceil_mode=1",
    )


if __name__ == "__main__":
    main()
