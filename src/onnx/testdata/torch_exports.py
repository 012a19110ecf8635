"""Writes torch_export_opset11.onnx and torch_export_dynbatch.onnx: a small CNN exported by
torch's TorchScript-based exporter (dynamo=False), whose graphs are full of the integer shape
arithmetic qairt evaluates at import (F.pad's pads as ConstantOfShape/Concat/Reshape/Slice/
Transpose/Cast; x.view(x.size(0), -1) as Shape/Gather/Unsqueeze/Concat). Prints the output
shapes onnxruntime computes, which tests in ../tests.rs expect.

Run from the repository root with the project's Python venv:
    python src/onnx/testdata/torch_exports.py
"""
import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)
        self.c2 = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4 * 5 * 5, 10)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.avg = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = F.relu6(self.c1(x))                                # 16x16
        x = F.hardswish(self.dw(x))                            # 8x8
        x = self.pool(F.pad(x, (1, 0, 1, 0), mode="reflect"))  # 9x9 -> 5x5
        x = self.c2(x)
        x = x * torch.sigmoid(self.avg(x))
        y = x.view(x.size(0), -1)
        z = self.fc(y).reshape(x.shape[0], 2, 5).transpose(1, 2)
        return F.softmax(z, dim=-1), torch.cat([x.flatten(1), y], 1)


torch.manual_seed(0)
model = Net().eval()
x = torch.randn(1, 3, 16, 16)
torch.onnx.export(model, (x,), "src/onnx/testdata/torch_export_opset11.onnx", opset_version=11, dynamo=False,
                  input_names=["x"], output_names=["probs", "features"])
torch.onnx.export(model, (x,), "src/onnx/testdata/torch_export_dynbatch.onnx", opset_version=13, dynamo=False,
                  input_names=["x"], output_names=["probs", "features"], dynamic_axes={"x": {0: "batch"}})
for name, batch in [("opset11", 1), ("dynbatch", 1), ("dynbatch", 3)]:
    sess = ort.InferenceSession(f"src/onnx/testdata/torch_export_{name}.onnx")
    outs = sess.run(None, {"x": np.zeros((batch, 3, 16, 16), np.float32)})
    print(name, "batch", batch, [o.shape for o in outs])
