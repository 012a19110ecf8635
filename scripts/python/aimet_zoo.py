"""AIMET's plain min-max QuantSim on model-zoo fixtures: the reference qairt's defaults must match.

For each fixture named on the command line (default: the image classifiers and detectors of
`tests/data/zoo/` whose inputs are float32), runs aimet-onnx 2.42.0 the way its post-training
guide does, with its defaults otherwise:

1. ``fold_all_batch_norms_to_weight`` (AIMET warns that QuantSim on unfolded BatchNormalization
   does not simulate the target);
2. ``QuantizationSimModel`` with ``quant_scheme=min_max`` and ``config_file="default"``
   (``default_config_per_channel.json``: symmetric per-channel int8 weights, asymmetric
   per-tensor activations, biases unquantized, Conv+Relu supergroups), at W8A8 and W8A16
   (``activation_type="int16"``);
3. ``compute_encodings`` over the fixture's calibration list;
4. QuantSim's outputs for the verify list, scored against the fixture's onnxruntime float
   outputs (``reference/``) as ``benches/zoo.py`` scores qairt: SQNR over all samples and outputs.

Writes ``tests/data/zoo/<fixture>/aimet_quant.json`` (versions, config, per-config SQNR and
top-1 agreement with float). ``benches/zoo.py`` puts the figure next to qairt's and
onnxruntime's.

Run from the repository root with the AIMET venv (``scripts/setup-python.sh --aimet``):

    $QAIRT_AIMET_VENV/bin/python scripts/python/aimet_zoo.py [fixture ...]

Deterministic: min-max over a fixed sample list, one onnxruntime thread.
"""

from __future__ import annotations

import json
import math
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
from aimet_onnx.common.defs import QuantScheme
from aimet_onnx.quantsim import QuantizationSimModel

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "tests" / "data" / "zoo"
DEFAULT_FIXTURES = ["mobilenetv3_text_direction", "mobilenetv3_small", "shufflenetv2_x0_5", "efficientnet_b0_w05", "lraspp_mobilenetv3", "dbnet"]
CONFIGS = {"w8a8": "int8", "w8a16": "int16"}


def sanitize(name: str) -> str:
    """qairt's (and the SDK's) file name for a tensor name."""
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return "_" + out if out[:1].isdigit() else out


def read_samples(list_path: Path, inputs: list[dict]) -> list[dict[str, np.ndarray]]:
    """The SDK input-list format with `name:=path` entries, float32 inputs only."""
    samples = []
    for line in list_path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        feed = {}
        for word, spec in zip(line.split(), inputs):
            name, sep, rel = word.partition(":=")
            name, rel = (name, rel) if sep else (spec["name"], word)
            spec = next(i for i in inputs if i["name"] == name)
            if spec["dtype"] != "float32":
                raise SystemExit(f"{list_path}: input {name} is {spec['dtype']}; aimet_zoo.py feeds float32 only")
            feed[name] = np.fromfile(list_path.parent / rel, dtype="<f4").reshape(spec["shape"])
        samples.append(feed)
    return samples


def score(fixture: Path, outputs: list[dict], results: list[list[np.ndarray]]) -> dict:
    """SQNR and top-1 agreement of `results` against the fixture's onnxruntime float outputs."""
    signal = noise = 0.0
    agree = 0
    for n, got in enumerate(results):
        for k, (spec, value) in enumerate(zip(outputs, got)):
            ref = np.fromfile(fixture / "reference" / f"Result_{n}" / f"{sanitize(spec['name'])}.raw", dtype="<f4")
            ref = ref.astype(np.float64)
            value = np.asarray(value, dtype=np.float64).ravel()
            signal += float(np.sum(ref**2))
            noise += float(np.sum((ref - value) ** 2))
            if k == 0:
                agree += int(np.argmax(ref) == np.argmax(value))
    sqnr = math.inf if noise == 0.0 else 10.0 * math.log10(signal / noise)
    return {"sqnr_db": sqnr, "top1_agreement": agree / len(results)}


def run_fixture(name: str) -> dict:
    fixture = ZOO / name
    manifest = json.loads((fixture / "manifest.json").read_text())
    calib = read_samples(fixture / "calib" / "input_list.txt", manifest["inputs"])
    verify = read_samples(fixture / "verify" / "input_list.txt", manifest["inputs"])
    report = {
        "model": name,
        "versions": {p: version(p) for p in ["aimet-onnx", "onnx", "onnxruntime", "torch", "numpy"]},
        "method": "fold_all_batch_norms_to_weight, then QuantizationSimModel(quant_scheme=min_max, "
        "config_file='default' = default_config_per_channel.json: symmetric per-channel int8 weights, "
        "asymmetric per-tensor activations, unquantized biases), compute_encodings on calib/",
        "calibration_samples": len(calib),
        "verify_samples": len(verify),
        "configs": {},
    }
    for config, activation_type in CONFIGS.items():
        model = onnx.load(str(fixture / manifest.get("model_file", "model.onnx")))
        conv_bn, bn_conv = fold_all_batch_norms_to_weight(model)
        sim = QuantizationSimModel(
            model,
            param_type="int8",
            activation_type=activation_type,
            quant_scheme=QuantScheme.min_max,
            config_file="default",
            providers=["CPUExecutionProvider"],
            session_options_kwargs={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
        )
        sim.compute_encodings(calib)
        results = [sim.session.run(None, feed) for feed in verify]
        entry = score(fixture, manifest["outputs"], results)
        entry["batch_norms_folded"] = len(conv_bn) + len(bn_conv)
        report["configs"][config] = entry
        print(f"{name} {config}: {entry}", file=sys.stderr)
    return report


def main() -> None:
    for name in sys.argv[1:] or DEFAULT_FIXTURES:
        report = run_fixture(name)
        (ZOO / name / "aimet_quant.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
