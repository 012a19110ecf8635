"""Copy every ONNX backend node test into tests/data/onnx-node/.

Source: the test data shipped in the onnx 1.22.0 wheel
(``site-packages/onnx/backend/test/data/``). Each test is a directory with ``model.onnx`` and
``test_data_set_0/input_<i>.pb`` / ``output_<i>.pb`` (serialized ``onnx.TensorProto``, or
``SequenceProto`` / ``OptionalProto`` for the sequence and optional tests), copied unchanged to
``tests/data/onnx-node/<test_name>/``.

Every test of ``node/`` is copied (1,765 in onnx 1.22.0, ~26 MB). They are split the way the
project counts them:

* ``single``: the model has exactly one node (1,383: the 1,325 tests without ``expanded`` in
  their name, plus 58 ``*_expanded*`` tests whose function body is a single node);
* ``expanded``: the model has more than one node (382, all of them ``*_expanded*`` function
  expansions).

The node tests have no grouped or depthwise Conv, so the grouped/depthwise/dilated Conv2d cases
of ``pytorch-converted/`` are added too (group ``pytorch-converted``). Those were exported at
opset 6 (IR version 3, weights as initializers that are also listed as graph inputs); this
script upgrades them to opset 13 with ``onnx.version_converter`` (Conv's semantics are the same
in both opsets), sets IR version 7, keeps the initializer-as-input form, and checks with
onnxruntime that the upgraded model still reproduces the unchanged expected outputs (max abs
error <= 1e-5).

Writes:

* ``corpus.tsv``: every vendored test, ``name<TAB>group<TAB>op types`` (group ``single``,
  ``expanded`` or ``pytorch-converted``; op types of the top-level graph's nodes, sorted,
  comma-separated); read by ``tests/node_tests.rs``. A test listed in ``NOT_VENDORED`` would be
  listed with the group suffixed ``:not-vendored`` and no directory (none today).
* ``manifest.txt``: the float32 subset that ``tests/conformance.rs`` and the ``onnx`` unit
  tests run through the importer and interpreter directly (selection rules below, unchanged
  from earlier versions of this script).
* ``README.md`` and the ONNX ``LICENSE`` / ``NOTICE`` (Apache-2.0).

Conformance subset (``manifest.txt``): tests of Conv, Gemm, MatMul, Add, Sub, Mul, Div, Relu,
Clip, Sigmoid, Tanh, HardSigmoid, HardSwish, MaxPool, AveragePool, GlobalAveragePool,
BatchNormalization, Flatten, Reshape, Transpose, Concat, Softmax, Squeeze, Unsqueeze, Identity,
Dropout, Constant, Pad where every graph input and output is a tensor, every output is float32
and every input is float32 or int64; not a function expansion or a training-mode test; not one
of the large 3-D pooling cases (``SKIP_LARGE``); plus the six pytorch-converted Conv2d cases.

Re-run from the repository root with the test venv (``scripts/setup-python.sh --test``; onnx
must be exactly 1.22.0):

    ~/.cache/qairt-test-venv/bin/python scripts/python/vendor_node_tests.py
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
MAX_TOTAL = 60_000_000
# Tests left out to keep the corpus under MAX_TOTAL (none: all of node/ is ~26 MB). The harness
# counts a listed test as "not vendored".
NOT_VENDORED: set[str] = set()
# Files the harness keeps next to the tests (not written by this script, kept across re-runs).
KEEP = {"status.txt"}

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


def select_conformance_tests() -> list[str]:
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


def op_types(model: onnx.ModelProto) -> str:
    return ",".join(sorted({n.op_type for n in model.graph.node}))


README = """# ONNX backend node tests (vendored)

Every backend node test of the ONNX {version} Python wheel (`onnx/backend/test/data/node/`),
plus six grouped/depthwise/dilated Conv cases from its `pytorch-converted/` set, copied by
`scripts/python/vendor_node_tests.py` (see its docstring). Do not edit by hand; re-run the
script (it keeps `status.txt`).

Each `<test_name>/` holds `model.onnx` and `test_data_set_0/input_<i>.pb`, `output_<i>.pb`
(serialized `onnx.TensorProto`, or `SequenceProto`/`OptionalProto` for sequence and optional
values; inputs in graph-input order, outputs in graph-output order), unchanged from the wheel.
The `test_Conv2d_*` cases were upgraded from opset 6 to 13 (their expected outputs are
unchanged and were re-checked with onnxruntime); they keep the old IR-3 habit of listing
weights as graph inputs that also have initializers, so only `input_0.pb` exists for them.

## Counts ({total_bytes} bytes in all)

| group | tests | meaning |
|---|---|---|
| `single` | {single} | the model has one node ({single_plain} plain tests and {single_expanded} `*_expanded*` tests whose function body is a single node) |
| `expanded` | {expanded} | the model has several nodes (`*_expanded*` function expansions) |
| `pytorch-converted` | {pytorch} | the Conv2d cases above |

Not vendored (too large): {not_vendored}.

## Files

* `corpus.tsv`: every test, `name<TAB>group<TAB>op types` (the top-level graph's node op
  types). `tests/node_tests.rs` runs these.
* `status.txt`: the ratchet of `tests/node_tests.rs`, `name<TAB>pass|diagnostic` per test.
* `manifest.txt`: the float32 subset ({conformance} tests) that `tests/conformance.rs` and the
  `onnx` unit tests run through the importer and the reference interpreter directly.

## The CLI harness (`cargo test --test node_tests`)

For each test of `corpus.tsv` the harness makes a temporary project: `model.onnx`, each graph
input's test data as a raw file in the input's own element type (little-endian; bool one byte;
float16/bfloat16 two bytes; sub-byte types packed as ONNX stores them), an input list
(`name:=file` pairs on one line) as `[verify] input_list`, and a `qairt.toml` with one `cpu`
target. It runs `qairt build <dir> --message-format json` and reads
`out/cpu/outputs/Result_0/<sanitized output name>.raw` in each output's own element type:
float types must be within `1e-7 + 1e-3 * |expected|` (NaN matches NaN, infinities exactly),
every other type exactly. A float32 file for an output of another type is a wrong answer.

Each test is one of: `pass`; `diagnostic` (exit 1 with a diagnostic; its reason class, e.g.
`unsupported op Foo`, is recorded); `wrong` (exit 0 with a wrong or missing output); `panic`;
`crash` (killed by a signal, or an exit code without a diagnostic); `hang` (no exit within
300 s); `not vendored`. The test fails on any `wrong`, `panic`, `crash` or `hang`, and on any
difference from `status.txt`: a test expected to pass that does not, and a test that newly
passes. After making tests pass, update the ratchet with

    QAIRT_UPDATE_NODE_STATUS=1 cargo test --test node_tests

and commit `status.txt`. The harness prints one line per non-passing test class and a total
(`node tests: single N/{single} passed, expanded M/{expanded} passed`), and writes a JSON
summary (per test, per op type passed/total for single and expanded tests, the reason
histogram) to `target/tmp/node_tests/summary.json` (or `$QAIRT_NODE_SUMMARY`).

## License

These files are part of ONNX, Copyright (c) ONNX Project Contributors, licensed under the
Apache License 2.0; see `LICENSE` and `NOTICE` in this directory.
"""


def main() -> None:
    assert onnx.__version__ == "1.22.0", f"need onnx 1.22.0, have {onnx.__version__}"
    kept = {name: (OUT / name).read_bytes() for name in KEEP if (OUT / name).exists()}
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name, data in kept.items():
        (OUT / name).write_bytes(data)

    rows = []  # (name, group, ops)
    single_expanded = 0
    for d in sorted((DATA / "node").iterdir()):
        m = onnx.load(str(d / "model.onnx"))
        group = "single" if len(m.graph.node) == 1 else "expanded"
        if group == "single" and "expanded" in d.name:
            single_expanded += 1
        if d.name in NOT_VENDORED:
            group += ":not-vendored"
        else:
            shutil.copytree(d, OUT / d.name)
        rows.append((d.name, group, op_types(m)))
    for name in PYTORCH_CONV:
        m = upgrade_pytorch_conv(DATA / "pytorch-converted" / name, OUT / name)
        rows.append((name, "pytorch-converted", op_types(m)))
    rows.sort()
    (OUT / "corpus.tsv").write_text("".join(f"{n}\t{g}\t{ops}\n" for n, g, ops in rows))

    conformance = sorted(select_conformance_tests() + PYTORCH_CONV)
    (OUT / "manifest.txt").write_text("".join(f"{n}\n" for n in conformance))
    for lic in ["LICENSE", "NOTICE"]:
        if (DIST_INFO / lic).exists():
            shutil.copy(DIST_INFO / lic, OUT / lic)

    count = lambda g: sum(1 for r in rows if r[1].split(":")[0] == g)  # noqa: E731
    sizes = {r[0]: dir_size(DATA / "node" / r[0]) for r in rows if r[0] in NOT_VENDORED}
    not_vendored = ", ".join(f"`{n}` ({s} bytes)" for n, s in sorted(sizes.items())) or "none"
    readme = README.format(
        version=onnx.__version__,
        single=count("single"),
        single_plain=count("single") - single_expanded,
        single_expanded=single_expanded,
        expanded=count("expanded"),
        pytorch=count("pytorch-converted"),
        conformance=len(conformance),
        not_vendored=not_vendored,
        total_bytes="{total_bytes}",
    )
    (OUT / "README.md").write_text(readme)
    total = dir_size(OUT)
    (OUT / "README.md").write_text(readme.replace("{total_bytes}", f"{total:,}"))
    total = dir_size(OUT)
    print(
        f"{len(rows)} tests (single {count('single')}, expanded {count('expanded')}, "
        f"pytorch-converted {count('pytorch-converted')}), {total} bytes"
    )
    assert total < MAX_TOTAL, total


if __name__ == "__main__":
    main()
