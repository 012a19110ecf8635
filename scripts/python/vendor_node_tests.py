"""Copy a float32 subset of the ONNX backend node tests into tests/data/onnx-node/.

Source: the test data shipped in the onnx 1.22.0 wheel
(``site-packages/onnx/backend/test/data/``). Each test is a directory with ``model.onnx`` and
``test_data_set_0/input_<i>.pb`` / ``output_<i>.pb`` (serialized ``onnx.TensorProto``), copied
unchanged to ``tests/data/onnx-node/<test_name>/``.

Selection (``node/``): tests of Conv, Gemm, MatMul, Add, Sub, Mul, Div, Relu, Clip, Sigmoid, Tanh,
HardSigmoid, HardSwish, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization, Flatten,
Reshape, Transpose, Concat, Softmax, Squeeze, Unsqueeze, Identity, Dropout, Constant, Pad where

* every graph input and output is a tensor, every output is float32, and every input is float32
  or int64 (shapes, axes, pads);
* the test is not a function expansion (``*_expanded*``) or a training-mode test;
* the test is not one of the large 3-D pooling cases (listed in ``SKIP_LARGE``; ~2 MB together).

The edge/reflect/wrap Pad node tests use int32 data and are therefore not included (reflect
padding is covered by tests/data/models/misc_ops).

The node tests have no grouped or depthwise Conv, so the grouped/depthwise/dilated Conv2d cases
of ``pytorch-converted/`` are added too. Those were exported at opset 6 (IR version 3, weights
as initializers that are also listed as graph inputs); this script upgrades them to opset 13
with ``onnx.version_converter`` (Conv's semantics are the same in both opsets), sets IR version
7, keeps the initializer-as-input form, and checks with onnxruntime that the upgraded model still
reproduces the unchanged expected outputs (max abs error <= 1e-5).

Writes ``manifest.txt`` (one test directory name per line, sorted), ``README.md`` and the ONNX
``LICENSE`` / ``NOTICE`` (Apache-2.0). Re-run from the repository root with the project venv
(onnx must be exactly 1.22.0):

    $QAIRT_VENV/bin/python scripts/python/vendor_node_tests.py
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper, version_converter

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "onnx-node"
ONNX_DIR = Path(onnx.__file__).resolve().parent
DATA = ONNX_DIR / "backend" / "test" / "data"
DIST_INFO = ONNX_DIR.parent / f"onnx-{onnx.__version__}.dist-info" / "licenses"
MAX_TOTAL = 3_000_000

NODE_PATTERN = re.compile(
    r"^test_(conv_|basic_conv|gemm_|matmul_|add|sub|mul|div|relu$|clip|sigmoid|tanh|hardsigmoid|"
    r"hardswish|maxpool_|averagepool_|globalaveragepool|batchnorm_|flatten_|reshape_|transpose_|"
    r"concat_|softmax_|squeeze|unsqueeze_|identity|dropout_|constant$|constant_pad|edge_pad|"
    r"reflect_pad|wrap_pad)"
)
SKIP_LARGE = {
    "test_averagepool_3d_default",
    "test_maxpool_3d_default",
    "test_maxpool_3d_dilations_use_ref_impl_large",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True",
}
PYTORCH_CONV = [
    "test_Conv2d_groups",
    "test_Conv2d_depthwise",
    "test_Conv2d_depthwise_padded",
    "test_Conv2d_depthwise_strided",
    "test_Conv2d_depthwise_with_multiplier",
    "test_Conv2d_dilated",
]


def float_only(model: onnx.ModelProto) -> bool:
    f32, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    for vi in model.graph.input:
        if not vi.type.HasField("tensor_type") or vi.type.tensor_type.elem_type not in (f32, i64):
            return False
    for vi in model.graph.output:
        if not vi.type.HasField("tensor_type") or vi.type.tensor_type.elem_type != f32:
            return False
    return True


def select_node_tests() -> list[str]:
    chosen = []
    for d in sorted((DATA / "node").iterdir()):
        name = d.name
        if not NODE_PATTERN.match(name) or "expanded" in name or "training" in name or name in SKIP_LARGE:
            continue
        if float_only(onnx.load(str(d / "model.onnx"))):
            chosen.append(name)
    return chosen


def load_pb(path: Path) -> np.ndarray:
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def upgrade_pytorch_conv(src: Path, dst: Path) -> onnx.ModelProto:
    model = version_converter.convert_version(onnx.load(str(src / "model.onnx")), 13)
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    dst.mkdir(parents=True)
    onnx.save_model(model, str(dst / "model.onnx"))
    shutil.copytree(src / "test_data_set_0", dst / "test_data_set_0")

    # The upgraded model must still produce the stored outputs. Only the first graph input
    # has a data file; the other inputs are initializers.
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # initializers listed as inputs are intended here
    sess = ort.InferenceSession(str(dst / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i, vi in enumerate(model.graph.input):
        p = dst / "test_data_set_0" / f"input_{i}.pb"
        if p.exists():
            feeds[vi.name] = load_pb(p)
    got = sess.run(None, feeds)
    for i, value in enumerate(got):
        want = load_pb(dst / "test_data_set_0" / f"output_{i}.pb")
        err = float(np.abs(value - want).max())
        assert err <= 1e-5, f"{dst.name}: output {i} differs by {err}"
    return model


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    assert onnx.__version__ == "1.22.0", f"need onnx 1.22.0, have {onnx.__version__}"
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    rows = []
    for name in select_node_tests():
        src = DATA / "node" / name
        shutil.copytree(src, OUT / name)
        m = onnx.load(str(src / "model.onnx"))
        ops = ",".join(sorted({n.op_type for n in m.graph.node}))
        rows.append((name, ops, m.opset_import[0].version, "node"))
    for name in PYTORCH_CONV:
        m = upgrade_pytorch_conv(DATA / "pytorch-converted" / name, OUT / name)
        group = next(a.i for a in m.graph.node[0].attribute if a.name == "group")
        rows.append((name, f"Conv (group={group})", 13, "pytorch-converted, upgraded from opset 6"))

    rows.sort()
    (OUT / "manifest.txt").write_text("".join(f"{r[0]}\n" for r in rows))
    for lic in ["LICENSE", "NOTICE"]:
        if (DIST_INFO / lic).exists():
            shutil.copy(DIST_INFO / lic, OUT / lic)

    table = "\n".join(f"| `{n}` | {ops} | {opset} | {origin} |" for n, ops, opset, origin in rows)
    (OUT / "README.md").write_text(
        f"""# ONNX backend node tests (vendored subset)

Copied from the ONNX {onnx.__version__} Python wheel
(`onnx/backend/test/data/node/` and, for grouped/depthwise Conv, `pytorch-converted/`) by
`scripts/python/vendor_node_tests.py` (see its docstring for the selection rules). Do not edit
by hand; re-run the script.

Each `<test_name>/` holds `model.onnx` and `test_data_set_0/input_<i>.pb`, `output_<i>.pb`
(serialized `onnx.TensorProto`; inputs in graph-input order, outputs in graph-output order).
`manifest.txt` lists the test names, one a line.

Only tests whose outputs are all float32 and whose inputs are float32 or int64 are included.
The node tests' models use the newest opset of each op at the time ONNX {onnx.__version__} was
released (up to 25); the `test_Conv2d_*` cases were upgraded from opset 6 to 13 (their
expected outputs are unchanged and were re-checked with onnxruntime). Those upgraded models
keep the old IR-3 habit of listing weights as graph inputs that also have initializers; only
`input_0.pb` exists for them, the other inputs take their initializer values.

## License

These files are part of ONNX, Copyright (c) ONNX Project Contributors, licensed under the
Apache License 2.0; see `LICENSE` and `NOTICE` in this directory.

## Tests ({len(rows)})

| test | ops | opset | origin |
|---|---|---|---|
{table}
"""
    )
    total = dir_size(OUT)
    print(f"{len(rows)} tests, {total} bytes")
    assert total < MAX_TOTAL, total


if __name__ == "__main__":
    main()
