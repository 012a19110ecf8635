#!/usr/bin/env python3
"""Make the model zoo in tests/data/zoo/: real architectures (random or quickly trained weights),
real-looking inputs, onnxruntime float references and onnxruntime ``quantize_static`` baselines.

Every model directory ``tests/data/zoo/<name>/`` gets:

* ``model.onnx`` -- exported by torch's TorchScript exporter (``dynamo=False``, opset 17), or by
  the model family's own exporter (YOLOv8n: ultralytics ``model.export(format="onnx")``).
* ``calib/`` (16 samples) and ``verify/`` (8 samples): ``<k>/<input>.raw`` in each input's own
  element type, little-endian, and ``input_list.txt`` in the SDK's format (one line per
  inference, ``name:=path`` pairs, paths relative to the list).
* ``reference/Result_<N>/<output>.raw`` -- onnxruntime float outputs (CPU provider, graph
  optimizations off, one thread) for verify line N, in the output's own element type; file names
  sanitized as the SDK does (``ort_baseline.sanitize``).
* ``ort_quant.json`` -- onnxruntime ``quant_pre_process`` + ``quantize_static`` (QDQ, MinMax,
  per-channel weights, symmetric QInt8 weights, asymmetric activations, the 16 calibration
  samples) at W8A8 (QUInt8 activations) and W8A16 (QUInt16 activations): SQNR against the float
  run per output and over all outputs (qairt's definition, float64 sums over the 8 verify
  samples). ``ort_quant/<config>/Result_<N>/`` holds the quantized outputs where they are small.
* ``manifest.json`` -- architecture, source, parameter count, size, inputs/outputs (dtype and
  shape, symbolic dims by name, anonymous dims as -1), opset, op-type counts, tool versions.
* ``qairt.toml`` -- targets ``cpu``, ``htp-w8a8``, ``htp-w8a16``, the two input lists and
  ``define_symbols`` for named symbolic dims.

Usage (from the repository root; the venv from ``scripts/setup-python.sh --zoo``):

    ~/.cache/qairt-zoo-venv/bin/python scripts/python/make_zoo.py            # every model
    ~/.cache/qairt-zoo-venv/bin/python scripts/python/make_zoo.py bert vit   # some
    ~/.cache/qairt-zoo-venv/bin/python scripts/python/make_zoo.py --readme   # only the tables

Nothing is downloaded: weights are random (seeded) or trained here on scikit-learn's bundled
digits, images come from ``sklearn.datasets.load_sample_images()``, text from the docstrings of
Python's standard library, audio is synthesized.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import importlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

# Before torch / ultralytics / transformers are imported: no network, no telemetry.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_baseline import quantize as ort_quantize  # noqa: E402
from ort_baseline import sanitize, session  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "tests" / "data" / "zoo"
OPSET = 17
N_CALIB = 16
N_VERIFY = 8
TEXT_DIRECTION_VERIFY = 64
SEED = 20261205
QUANT_CONFIGS = {"w8a8": "w8a8-pc", "w8a16": "w8a16-pc"}  # ort_baseline.CONFIGS keys
MAX_QUANT_OUTPUT_BYTES = 300_000  # keep ort_quant/<config>/ outputs only below this per config
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def torch_setup():
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    return torch


# ============================================================================ input data


def photo_crops(count: int, size: int, seed: int) -> list[np.ndarray]:
    """Random square crops (side 96..min(h, w)) of scikit-learn's two sample photos (china.jpg,
    flower.jpg, 427x640), bilinearly resized to size x size, half of them mirrored: uint8 HWC."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        img = images[int(rng.integers(len(images)))]
        h, w, _ = img.shape
        side = int(rng.integers(96, min(h, w) + 1))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        patch = Image.fromarray(img[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)
        arr = np.asarray(patch, dtype=np.uint8)
        if rng.integers(2):
            arr = arr[:, ::-1]
        out.append(np.ascontiguousarray(arr))
    return out


def imagenet_nchw(u8: np.ndarray) -> np.ndarray:
    x = (u8.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def unit_nchw(u8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((u8.astype(np.float32) / 255.0).transpose(2, 0, 1)[None], dtype=np.float32)


def image_sets(size: int, seed: int, convert) -> tuple[list[np.ndarray], list[np.ndarray]]:
    crops = photo_crops(N_CALIB + N_VERIFY, size, seed)
    arrays = [convert(c) for c in crops]
    return arrays[:N_CALIB], arrays[N_CALIB:]


_SENTENCES: dict[str, list[str]] = {}

CORPUS_MODULES = [
    "json", "collections", "os", "pathlib", "re", "string", "textwrap", "argparse", "logging",
    "subprocess", "itertools", "functools", "shutil", "tempfile", "datetime", "random", "csv",
    "heapq", "bisect", "typing", "dataclasses", "enum", "inspect", "threading", "socket", "zipfile",
    "tarfile", "io", "struct", "codecs", "unittest", "doctest", "pickle", "copy", "pprint",
]
SENTENCE_MODULES = ["statistics", "fractions", "decimal", "urllib.parse", "email.message", "http.client",
                    "calendar", "difflib", "sqlite3", "base64", "hashlib", "queue", "sched", "glob"]


def docstrings(modules: list[str]) -> list[str]:
    """Docstrings of the modules and their public classes/functions/methods (Python 3.11.7's
    standard library; another Python version gives other text)."""
    texts = []
    for name in modules:
        mod = importlib.import_module(name)
        if mod.__doc__:
            texts.append(inspect.cleandoc(mod.__doc__))
        for attr in sorted(dir(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr, None)
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            if obj.__doc__:
                texts.append(inspect.cleandoc(obj.__doc__))
            if inspect.isclass(obj):
                for m in sorted(vars(obj)):
                    f = vars(obj)[m]
                    if not m.startswith("_") and callable(f) and getattr(f, "__doc__", None):
                        texts.append(inspect.cleandoc(f.__doc__))
    return texts


def sentences(modules: list[str], min_words=4, max_words=30) -> list[str]:
    key = ",".join(modules)
    if key not in _SENTENCES:
        seen, out = set(), []
        for text in docstrings(modules):
            flat = re.sub(r"\s+", " ", text)
            for s in re.split(r"(?<=[.!?])\s+", flat):
                s = s.strip()
                words = s.split()
                if not (min_words <= len(words) <= max_words) or not s.isascii() or s in seen:
                    continue
                if not re.match(r"^[A-Z][A-Za-z ,;:'()\-]+[.!?]$", s):
                    continue
                seen.add(s)
                out.append(s)
        _SENTENCES[key] = out
    return _SENTENCES[key]


def render_text(text: str, width: int, height: int, font_size: int, fg: int, bg: int):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    img = Image.new("L", (width, height), bg)
    draw = ImageDraw.Draw(img)
    draw.text((2, (height - font_size) // 2 - 1), text, fill=fg, font=font)
    return np.asarray(img, dtype=np.uint8)


# ============================================================================ torch helpers


def settle_batchnorm(model, batches: list) -> None:
    """Random-weight nets: replace BatchNorm's running statistics by the statistics of the
    calibration inputs (train-mode forward passes, cumulative average; Dropout and stochastic
    depth off), so the eval network neither collapses nor explodes. Then eval().

    (Tried and dropped: a layer-wide variance instead of per-channel -- less chaotic on
    ShuffleNetV2/EfficientNet but it broke MobileNetV3; a 120-step self-supervised rotation
    training of the classifiers -- they collapsed to a constant output, which makes SQNR
    meaningless.)"""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout) or type(m).__name__ == "StochasticDepth":
            m.eval()
    with torch.no_grad():
        for b in batches:
            model(*b) if isinstance(b, tuple) else model(b)
    model.eval()


def randomize_norm_affine(model, seed: int) -> None:
    """Give BatchNorm/LayerNorm affine parameters a seeded spread (gamma 0.5..1.5, beta +-0.2),
    as a trained net has, instead of the constant 1 / 0 of a fresh one."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.4 * torch.rand(m.bias.shape, generator=g) - 0.2)


def export(model, args: tuple, path: Path, input_names, output_names, dynamic_axes=None) -> None:
    import torch

    model.eval()
    torch.onnx.export(
        model, args, str(path), opset_version=OPSET, input_names=input_names, output_names=output_names,
        dynamic_axes=dynamic_axes, do_constant_folding=True, dynamo=False,
    )


def batch_of(arrays: list[np.ndarray]):
    import torch

    return torch.from_numpy(np.concatenate(arrays, axis=0))


# ============================================================================ models


def make_yolov8n(d: Path) -> dict:
    """ultralytics YOLOv8n from its yaml (random weights), BN statistics from the calibration
    photos, exported with ultralytics' own exporter (no onnxslim, static 1x3x128x128)."""
    torch = torch_setup()
    calib, verify = image_sets(128, SEED + 1, unit_nchw)
    work = Path(tempfile.mkdtemp(prefix="zoo-yolo-"))
    os.environ["YOLO_CONFIG_DIR"] = str(work / "cfg")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        from ultralytics import YOLO

        yolo = YOLO("yolov8n.yaml")
        randomize_norm_affine(yolo.model, SEED + 2)
        settle_batchnorm(yolo.model, [batch_of(calib)])
        exported = yolo.export(format="onnx", imgsz=128, opset=OPSET, simplify=False, dynamic=False, half=False)
        model = onnx.load(exported)
    finally:
        os.chdir(cwd)
    # ultralytics writes the export time into the metadata: drop it so re-runs are identical.
    keep = [p for p in model.metadata_props if p.key != "date"]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.save(model, str(d / "model.onnx"))
    shutil.rmtree(work, ignore_errors=True)
    import ultralytics

    return {
        "arch": "YOLOv8n detector (CSPDarknet/C2f backbone, PAN neck, anchor-free decoupled head with DFL; "
                "output [1, 84, 336] = 4 box coords + 80 class scores per anchor point)",
        "source": f"ultralytics {ultralytics.__version__} `YOLO(\"yolov8n.yaml\")`, random weights, "
                  "exported by `model.export(format=\"onnx\", imgsz=128, opset=17, simplify=False)`",
        "inputs": {"images": (calib, verify)},
        "data": "crops of scikit-learn's sample photos, 128x128 RGB in [0, 1] (ultralytics' preprocessing, no mean/std)",
    }


def make_lraspp(d: Path) -> dict:
    torch = torch_setup()
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf
    from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

    settings, last = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=0.5, dilated=True)
    net = _lraspp_mobilenetv3(MobileNetV3(settings, last), num_classes=8)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x)["out"]

    model = Wrap(net)
    calib, verify = image_sets(128, SEED + 3, imagenet_nchw)
    randomize_norm_affine(model, SEED + 4)
    settle_batchnorm(model, [batch_of(calib)])
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["image"], ["out"])
    return {
        "arch": "LR-ASPP semantic segmentation on a dilated MobileNetV3-Large backbone (width 0.5), 8 classes; "
                "bilinear Resize to the input size",
        "source": "torchvision `MobileNetV3(*_mobilenet_v3_conf(\"mobilenet_v3_large\", width_mult=0.5, dilated=True))` "
                  "+ `segmentation.lraspp._lraspp_mobilenetv3(..., num_classes=8)` (what "
                  "`lraspp_mobilenet_v3_large(weights=None, weights_backbone=None)` builds, at half width)",
        "inputs": {"image": (calib, verify)},
        "data": "crops of scikit-learn's sample photos, 128x128, ImageNet mean/std",
    }


def _dbnet_class():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def cbr(cin, cout, k=3, s=1):
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.a = cbr(c, c)
            self.b = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

        def forward(self, x):
            return F.relu(x + self.b(self.a(x)))

    class Head(nn.Module):
        def __init__(self, c):
            super().__init__()
            q = c // 4
            self.body = nn.Sequential(
                cbr(c, q),
                nn.ConvTranspose2d(q, q, 2, 2), nn.BatchNorm2d(q), nn.ReLU(inplace=True),
                nn.ConvTranspose2d(q, 1, 2, 2),
            )

        def forward(self, x):
            return torch.sigmoid(self.body(x))

    class DBNet(nn.Module):
        """DBNet-shaped (Liao et al. 2020): ResNet-like backbone (1/4..1/32), FPN with nearest
        top-down upsampling to the lateral's size, the four levels upsampled to 1/4 and
        concatenated, probability and threshold heads with two stride-2 ConvTranspose each."""

        def __init__(self, widths=(16, 32, 64, 128), inner=64):
            super().__init__()
            w = widths
            self.stem = nn.Sequential(cbr(3, w[0], 3, 2), cbr(w[0], w[0], 3, 2), Res(w[0]))
            self.stages = nn.ModuleList(nn.Sequential(cbr(w[i - 1], w[i], 3, 2), Res(w[i])) for i in range(1, 4))
            self.lateral = nn.ModuleList(nn.Conv2d(c, inner, 1, bias=False) for c in w)
            self.smooth = nn.ModuleList(nn.Conv2d(inner, inner // 4, 3, 1, 1, bias=False) for _ in w)
            self.prob = Head(inner)
            self.thresh = Head(inner)

        def forward(self, x):
            feats = [self.stem(x)]
            for s in self.stages:
                feats.append(s(feats[-1]))
            lat = [l(f) for l, f in zip(self.lateral, feats)]
            p = [lat[3]]
            for i in (2, 1, 0):
                p.insert(0, lat[i] + F.interpolate(p[0], size=lat[i].shape[2:], mode="nearest"))
            size = p[0].shape[2:]
            outs = [F.interpolate(s(t), size=size, mode="nearest") if i else s(t)
                    for i, (s, t) in enumerate(zip(self.smooth, p))]
            fused = torch.cat(outs[::-1], dim=1)
            return self.prob(fused), self.thresh(fused)

    return DBNet


def text_scene_images(count: int, size: int, seed: int) -> list[np.ndarray]:
    """Photo crops with 2-4 lines of rendered standard-library sentences pasted on them (dark or
    light text on a semi-opaque box), for the text detector: uint8 HWC."""
    crops = photo_crops(count, size, seed)
    rng = np.random.default_rng(seed + 1)
    lines = sentences(SENTENCE_MODULES)
    out = []
    for c in crops:
        img = c.astype(np.float32)
        for _ in range(int(rng.integers(2, 5))):
            text = lines[int(rng.integers(len(lines)))]
            h = int(rng.integers(12, 22))
            w = int(rng.integers(size // 2, size))
            dark = bool(rng.integers(2))
            glyphs = render_text(text, w, h, h - 4, 255, 0).astype(np.float32) / 255.0
            y = int(rng.integers(0, size - h))
            x = int(rng.integers(0, size - w + 1))
            box = img[y : y + h, x : x + w]
            bg = 230.0 if dark else 30.0
            fg = 20.0 if dark else 240.0
            box[:] = 0.3 * box + 0.7 * bg
            box[:] = box * (1 - glyphs[..., None]) + fg * glyphs[..., None]
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def make_dbnet(d: Path) -> dict:
    torch = torch_setup()
    model = _dbnet_class()()
    crops = text_scene_images(N_CALIB + N_VERIFY, 128, SEED + 5)
    arrays = [imagenet_nchw(c) for c in crops]
    calib, verify = arrays[:N_CALIB], arrays[N_CALIB:]
    randomize_norm_affine(model, SEED + 6)
    settle_batchnorm(model, [batch_of(calib)])
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["image"], ["prob_map", "thresh_map"])
    return {
        "arch": "DBNet-style text detector: ResNet-like backbone, FPN (nearest Resize to the lateral's size, Add, "
                "Concat of 4 levels at 1/4), probability and threshold heads with 2x ConvTranspose(2, stride 2) + Sigmoid",
        "source": "defined in make_zoo.py (`_dbnet_class`), random weights",
        "inputs": {"image": (calib, verify)},
        "data": "128x128 crops of scikit-learn's sample photos with 2-4 rendered text lines pasted on, ImageNet mean/std",
    }


def make_dbnet_sharedhw(d: Path) -> dict:
    """The shared-symbol variant: H and W are both the symbol `side` (dynamic_axes), so every
    Resize size comes from a Shape subgraph."""
    torch = torch_setup()
    model = _dbnet_class()(widths=(8, 16, 32, 64), inner=32)
    crops = text_scene_images(N_CALIB + N_VERIFY, 96, SEED + 7)
    arrays = [imagenet_nchw(c) for c in crops]
    calib, verify = arrays[:N_CALIB], arrays[N_CALIB:]
    randomize_norm_affine(model, SEED + 8)
    settle_batchnorm(model, [batch_of(calib)])
    axes = {"image": {2: "side", 3: "side"}, "prob_map": {2: "side", 3: "side"}, "thresh_map": {2: "side", 3: "side"}}
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["image"], ["prob_map", "thresh_map"], axes)
    return {
        "arch": "the DBNet-style detector at half width with input [1, 3, side, side]: H and W share ONE symbol; "
                "Resize sizes computed from Shape at run time",
        "source": "defined in make_zoo.py (`_dbnet_class(widths=(8, 16, 32, 64), inner=32)`), random weights, "
                  "torch dynamic_axes {2: 'side', 3: 'side'}",
        "inputs": {"image": (calib, verify)},
        "define_symbols": {"side": 96},
        "data": "96x96 photo crops with rendered text lines, ImageNet mean/std",
    }


CHARSET = " abcdefghijklmnopqrstuvwxyz0123456789.,;:'()-"


def make_crnn(d: Path) -> dict:
    torch = torch_setup()
    import torch.nn as nn

    def cbr(cin, cout):
        return [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    class CRNN(nn.Module):
        """CRNN (Shi et al. 2015): VGG-style conv stack (H 32 -> 1, W 128 -> 32), bidirectional
        2-layer LSTM over the 32 columns, per-column Linear + Softmax over blank + 45 characters."""

        def __init__(self, classes):
            super().__init__()
            self.cnn = nn.Sequential(
                *cbr(1, 32), nn.MaxPool2d(2), *cbr(32, 64), nn.MaxPool2d(2), *cbr(64, 128), *cbr(128, 128),
                nn.MaxPool2d((2, 1)), *cbr(128, 128), nn.MaxPool2d((2, 1)),
                nn.Conv2d(128, 128, (2, 1)), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            )
            self.rnn = nn.LSTM(128, 96, num_layers=2, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(192, classes)

        def forward(self, x):
            f = self.cnn(x).squeeze(2).permute(0, 2, 1)  # [B, W/4, C]
            y, _ = self.rnn(f)
            return torch.softmax(self.fc(y), dim=-1)

    model = CRNN(len(CHARSET) + 1)
    rng = np.random.default_rng(SEED + 9)
    lines = sentences(SENTENCE_MODULES)
    arrays = []
    for _ in range(N_CALIB + N_VERIFY):
        words = lines[int(rng.integers(len(lines)))].lower().split()
        start = int(rng.integers(len(words)))
        text = " ".join(words[start : start + int(rng.integers(1, 4))])
        dark = bool(rng.integers(2))
        img = render_text(text, 128, 32, int(rng.integers(14, 20)), 20 if dark else 235, 235 if dark else 20)
        noise = rng.normal(0, 6, img.shape)
        x = (np.clip(img + noise, 0, 255) / 255.0 - 0.5) / 0.5
        arrays.append(x.astype(np.float32)[None, None])
    calib, verify = arrays[:N_CALIB], arrays[N_CALIB:]
    randomize_norm_affine(model, SEED + 10)
    settle_batchnorm(model, [batch_of(calib)])
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["image"], ["probs"])
    return {
        "arch": "CRNN text recognizer: 7-conv VGG-style stack (BN, ReLU, MaxPool), 2-layer bidirectional LSTM "
                "(hidden 96), Linear + Softmax over 46 classes (CTC blank + 45 characters) per column",
        "source": "defined in make_zoo.py (`make_crnn`), random weights",
        "inputs": {"image": (calib, verify)},
        "data": "1-3 words of standard-library docstring sentences rendered (Pillow's default font, 14-19 px, "
                "dark on light or light on dark, Gaussian noise) into 32x128 grayscale, scaled to [-1, 1]",
    }


def _bert_tokenizer(d: Path):
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(docstrings(CORPUS_MODULES), vocab_size=2000, min_frequency=2, show_progress=False)
    vocab = tok.get_vocab()
    (d / "vocab.txt").write_text("".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])))
    return tok


def make_bert(d: Path) -> dict:
    torch = torch_setup()
    from transformers import BertConfig, BertModel

    seq = 32
    tok = _bert_tokenizer(d)
    tok.enable_truncation(seq)
    tok.enable_padding(length=seq)
    rng = np.random.default_rng(SEED + 11)
    lines = sentences(SENTENCE_MODULES, max_words=24)
    feeds = []
    for k in range(N_CALIB + N_VERIFY):
        a = lines[int(rng.integers(len(lines)))]
        if k % 3 == 2:  # every third sample a sentence pair (token_type_ids 1 on the second)
            enc = tok.encode(a, lines[int(rng.integers(len(lines)))])
        else:
            enc = tok.encode(a)
        feeds.append({
            "input_ids": np.array([enc.ids], dtype=np.int64),
            "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
        })
    config = BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=128, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=512, max_position_embeddings=64, attn_implementation="eager",
    )
    bert = BertModel(config).eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state, out.pooler_output

    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    axes["pooler_output"] = {0: "batch"}
    args = tuple(torch.from_numpy(feeds[0][n]) for n in names)
    export(Wrap(bert), args, d / "model.onnx", names, ["last_hidden_state", "pooler_output"], axes)
    import transformers

    return {
        "arch": "BERT encoder (4 layers, hidden 128, 2 heads, FFN 512, GELU, LayerNorm), pooler (Linear + Tanh); "
                "int64 token ids, attention mask with padding, token type ids",
        "source": f"transformers {transformers.__version__} `BertModel(BertConfig(vocab_size=2000, hidden_size=128, "
                  "num_hidden_layers=4, num_attention_heads=2, intermediate_size=512, max_position_embeddings=64, "
                  "attn_implementation=\"eager\"))`, random init (std 0.02); torch dynamic_axes batch/sequence",
        "inputs": {n: ([f[n] for f in feeds[:N_CALIB]], [f[n] for f in feeds[N_CALIB:]]) for n in names},
        "define_symbols": {"batch": 1, "sequence": seq},
        "data": "WordPiece vocabulary (2000, `vocab.txt` here) trained with `tokenizers` on docstrings of 35 standard-"
                "library modules; samples are other modules' docstring sentences, padded to 32 tokens "
                "([CLS] ... [SEP] [PAD]...), every third a sentence pair",
    }


def make_vit(d: Path) -> dict:
    torch = torch_setup()
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=64, patch_size=8, num_channels=3, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=256, num_labels=10, attn_implementation="eager",
    )
    vit = ViTForImageClassification(config).eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).logits

    calib, verify = image_sets(64, SEED + 12, lambda u: ((unit_nchw(u) - 0.5) / 0.5).astype(np.float32))
    export(Wrap(vit), (torch.from_numpy(calib[0]),), d / "model.onnx", ["pixel_values"], ["logits"])
    import transformers

    return {
        "arch": "ViT encoder (64x64 image, 8x8 patches -> 64 tokens + CLS, 4 layers, hidden 128, 4 heads, MLP 256) "
                "with a 10-class head",
        "source": f"transformers {transformers.__version__} `ViTForImageClassification(ViTConfig(image_size=64, "
                  "patch_size=8, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256, "
                  "num_labels=10))`, random init",
        "inputs": {"pixel_values": (calib, verify)},
        "data": "crops of scikit-learn's sample photos, 64x64, scaled to [-1, 1] (ViTImageProcessor's mean/std 0.5)",
    }


def _classifier(d: Path, model, size: int, seed: int, arch: str, source: str) -> dict:
    torch = torch_setup()
    calib, verify = image_sets(size, seed, imagenet_nchw)
    randomize_norm_affine(model, seed + 1)
    settle_batchnorm(model, [batch_of(calib)])
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["image"], ["logits"])
    return {"arch": arch, "source": source + "; random weights", "inputs": {"image": (calib, verify)},
            "data": f"crops of scikit-learn's sample photos, {size}x{size}, ImageNet mean/std"}


def make_mobilenetv3_small(d: Path) -> dict:
    torch_setup()
    from torchvision.models import mobilenet_v3_small

    return _classifier(
        d, mobilenet_v3_small(weights=None, num_classes=10), 96, SEED + 13,
        "MobileNetV3-Small (inverted residuals, depthwise Conv, squeeze-excite, Hardswish/Hardsigmoid), 10 classes",
        "torchvision `mobilenet_v3_small(weights=None, num_classes=10)`",
    )


def make_text_direction(d: Path) -> dict:
    """A trained MobileNetV3-Small text-direction classifier, the kind OCR pipelines run before
    recognition (PaddleOCR's direction classifier: 3x48x192 text-line crops, upright vs upside
    down). Trained here for seconds on rendered lines of standard-library docstring text, so its
    numerics are a trained net's (BatchNorm folded by the exporter, HardSigmoid, HardSwish).
    Its verify set is larger than the others': with two logits per sample, 8 samples give 16
    output values whose SQNR swings by a dB or two with the rounding of one or two of them."""
    torch = torch_setup()
    import torch.nn as nn
    from torchvision.models import mobilenet_v3_small

    rng = np.random.default_rng(SEED + 27)
    lines = sentences(CORPUS_MODULES + SENTENCE_MODULES)

    def line_image() -> tuple[np.ndarray, int]:
        words = lines[int(rng.integers(len(lines)))].split()
        start = int(rng.integers(max(1, len(words) - 2)))
        text = " ".join(words[start : start + int(rng.integers(2, 7))])
        dark = bool(rng.integers(2))
        img = render_text(text, 192, 48, int(rng.integers(16, 26)), int(rng.integers(0, 60)) if dark else
                          int(rng.integers(195, 256)), int(rng.integers(195, 256)) if dark else int(rng.integers(0, 60)))
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255)
        label = int(rng.integers(2))
        if label:
            img = img[::-1, ::-1]  # upside down
        x = (img / 255.0 - 0.5) / 0.5
        return np.ascontiguousarray(np.repeat(x[None, None], 3, axis=1), dtype=np.float32), label

    train = [line_image() for _ in range(2048)]
    held = [line_image() for _ in range(N_CALIB + TEXT_DIRECTION_VERIFY + 256)]
    model = mobilenet_v3_small(weights=None, num_classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(SEED + 28)
    xt = torch.from_numpy(np.concatenate([x for x, _ in train]))
    yt = torch.tensor([y for _, y in train])
    for _ in range(3):
        model.train()
        for idx in torch.randperm(len(train), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    # torchvision's MobileNetV3 BatchNorm has momentum 0.01: after ~100 steps its running
    # statistics still lag the weights and the eval net predicts one class. Re-estimate them
    # on training batches (then eval()).
    settle_batchnorm(model, [xt[i : i + 64] for i in range(0, 1024, 64)])
    test = held[N_CALIB + TEXT_DIRECTION_VERIFY :]
    with torch.no_grad():
        pred = model(torch.from_numpy(np.concatenate([x for x, _ in test]))).argmax(1).numpy()
    acc = float((pred == np.array([y for _, y in test])).mean())
    calib = [x for x, _ in held[:N_CALIB]]
    verify = [x for x, _ in held[N_CALIB : N_CALIB + TEXT_DIRECTION_VERIFY]]
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["image"], ["logits"])
    return {
        "arch": "MobileNetV3-Small text-direction classifier (upright / upside down), input [1, 3, 48, 192] as "
                "PaddleOCR's direction classifier; depthwise Conv, squeeze-excite, Hardswish/Hardsigmoid",
        "source": f"torchvision `mobilenet_v3_small(weights=None, num_classes=2)` trained 3 epochs (Adam) on 2048 "
                  f"rendered text lines here, BatchNorm statistics re-estimated after; held-out accuracy {acc:.3f} on 256 lines",
        "inputs": {"image": (calib, verify)},
        "labels": [y for _, y in held[N_CALIB : N_CALIB + TEXT_DIRECTION_VERIFY]],
        "data": "text lines of standard-library docstrings rendered with PIL's default font (random size, "
                "light/dark), Gaussian noise, half of them turned 180 degrees; 3x48x192 scaled to [-1, 1]",
    }


def make_shufflenetv2(d: Path) -> dict:
    torch_setup()
    from torchvision.models import shufflenet_v2_x0_5

    return _classifier(
        d, shufflenet_v2_x0_5(weights=None, num_classes=10), 96, SEED + 15,
        "ShuffleNetV2 x0.5 (channel split, channel shuffle via Reshape/Transpose, depthwise Conv), 10 classes",
        "torchvision `shufflenet_v2_x0_5(weights=None, num_classes=10)`",
    )


def make_efficientnet(d: Path) -> dict:
    torch_setup()
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

    settings, last = _efficientnet_conf("efficientnet_b0", width_mult=0.5, depth_mult=1.0)
    return _classifier(
        d, EfficientNet(settings, dropout=0.2, stochastic_depth_prob=0.0, num_classes=10, last_channel=last), 96, SEED + 17,
        "EfficientNet-B0 block structure at width 0.5 (MBConv with depthwise Conv, squeeze-excite, SiLU), 10 classes",
        "torchvision `EfficientNet(*_efficientnet_conf(\"efficientnet_b0\", width_mult=0.5, depth_mult=1.0), "
        "dropout=0.2, stochastic_depth_prob=0.0, num_classes=10)` (B0 is `width_mult=1.0`; halved to stay small)",
    )


def make_convnext(d: Path) -> dict:
    torch_setup()
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    cfg = [CNBlockConfig(24, 48, 2), CNBlockConfig(48, 96, 2), CNBlockConfig(96, 192, 4), CNBlockConfig(192, None, 2)]
    return _classifier(
        d, ConvNeXt(cfg, stochastic_depth_prob=0.0, layer_scale=0.1, num_classes=10), 96, SEED + 19,
        "ConvNeXt (patchify stem, 7x7 depthwise Conv, LayerNorm over channels, GELU MLP, layer scale), "
        "dims 24/48/96/192, depths 2/2/4/2, 10 classes",
        "torchvision `ConvNeXt([CNBlockConfig(24, 48, 2), CNBlockConfig(48, 96, 2), CNBlockConfig(96, 192, 4), "
        "CNBlockConfig(192, None, 2)], layer_scale=0.1, num_classes=10)` (layer scale 0.1 instead of 1e-6 so the "
        "random residual branches matter)",
    )


def speech_like(seconds: float, sr: int, rng) -> np.ndarray:
    """A synthetic utterance: 2-4 'syllables', each a glottal pulse train (f0 90-220 Hz with a
    falling/rising contour) through three formant resonators (vowel-like, jittered), with
    raised-cosine amplitude envelopes, short fricative noise bursts between some syllables, and
    background noise at ~25 dB SNR."""
    n = int(seconds * sr)
    out = np.zeros(n)
    t0 = int(rng.integers(0, sr // 8))
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
    for _ in range(int(rng.integers(2, 5))):
        length = int(rng.uniform(0.12, 0.25) * sr)
        if t0 + length >= n:
            break
        f0 = rng.uniform(90, 220) * np.linspace(1.0, rng.uniform(0.8, 1.2), length)
        phase = np.cumsum(2 * np.pi * f0 / sr)
        pulses = np.maximum(np.sin(phase), 0) ** 8
        sig = np.zeros(length)
        for f, bw in zip(np.array(vowels[int(rng.integers(len(vowels)))]) * rng.uniform(0.9, 1.1), (80, 100, 120)):
            # two-pole resonator
            r = np.exp(-np.pi * bw / sr)
            a1, a2 = -2 * r * np.cos(2 * np.pi * f / sr), r * r
            y1 = y2 = 0.0
            res = np.empty(length)
            for i in range(length):
                y = pulses[i] - a1 * y1 - a2 * y2
                res[i] = y
                y2, y1 = y1, y
            sig += res / np.max(np.abs(res))
        env = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)
        out[t0 : t0 + length] += rng.uniform(0.3, 1.0) * env * sig
        t0 += length
        if rng.integers(2) and t0 + sr // 20 < n:  # fricative
            m = sr // 20
            noise = np.diff(rng.normal(0, 0.3, m + 1))
            out[t0 : t0 + m] += noise * np.hanning(m)
            t0 += m
        t0 += int(rng.uniform(0.02, 0.08) * sr)
    out += rng.normal(0, 0.05 * np.std(out) + 1e-4, n)
    return out / (np.max(np.abs(out)) + 1e-9)


def log_mel(signal: np.ndarray, sr: int = 16000, n_fft: int = 512, win: int = 400, hop: int = 160, mels: int = 40):
    """Log-mel filterbank energies: Hann window 25 ms, hop 10 ms, 512-point FFT, 40 HTK-mel
    triangles 20-7600 Hz, log(energy + 1e-6). [frames, 40]."""
    frames = 1 + (len(signal) - win) // hop
    window = np.hanning(win + 1)[:-1]
    idx = np.arange(win)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(signal[idx] * window, n_fft)) ** 2
    hz2mel = lambda f: 2595 * np.log10(1 + f / 700)
    mel2hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    edges = mel2hz(np.linspace(hz2mel(20), hz2mel(7600), mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / sr)
    fb = np.zeros((mels, len(bins)))
    for m in range(mels):
        lo, c, hi = edges[m : m + 3]
        fb[m] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    return np.log(spec @ fb.T + 1e-6)


def make_kws_gru(d: Path) -> dict:
    torch = torch_setup()
    import torch.nn as nn

    class KWS(nn.Module):
        """Keyword spotting: Conv1d(40->64, k3)-BN-ReLU over time, 2-layer GRU (hidden 64), the
        last step's state -> Linear -> 12 keyword logits (Speech Commands' 10 words + silence +
        unknown)."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv1d(40, 64, 3, padding=1, bias=False), nn.BatchNorm1d(64), nn.ReLU())
            self.gru = nn.GRU(64, 64, num_layers=2, batch_first=True)
            self.fc = nn.Linear(64, 12)

        def forward(self, x):  # x: [B, frames, 40]
            h = self.conv(x.transpose(1, 2)).transpose(1, 2)
            y, _ = self.gru(h)
            return self.fc(y[:, -1])

    model = KWS()
    rng = np.random.default_rng(SEED + 21)
    feats = [log_mel(speech_like(1.0, 16000, rng)) for _ in range(N_CALIB + N_VERIFY)]
    mean = float(np.mean(feats[:N_CALIB]))
    std = float(np.std(feats[:N_CALIB]))
    arrays = [((f - mean) / std).astype(np.float32)[None] for f in feats]
    calib, verify = arrays[:N_CALIB], arrays[N_CALIB:]
    randomize_norm_affine(model, SEED + 22)
    settle_batchnorm(model, [batch_of(calib)])
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["features"], ["logits"])
    return {
        "arch": "keyword spotter: Conv1d-BN-ReLU over time, 2-layer GRU (hidden 64), Linear on the last step, 12 classes",
        "source": "defined in make_zoo.py (`make_kws_gru`), random weights",
        "inputs": {"features": (calib, verify)},
        "data": "1 s synthetic speech-like signals at 16 kHz (glottal pulse trains with pitch contours through vowel "
                "formant resonators, syllable envelopes, fricative bursts, background noise) -> 98x40 log-mel "
                "(25 ms Hann, 10 ms hop, numpy), standardized with the calibration set's mean/std",
    }


def make_uint8_classifier(d: Path) -> dict:
    torch = torch_setup()
    import torch.nn as nn

    class Uint8Net(nn.Module):
        """A deployed-style classifier taking a uint8 NHWC RGB image: Cast, /255, ImageNet
        mean/std, NHWC->NCHW Transpose inside the graph, then a small MobileNet-like CNN."""

        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

            def cbr(cin, cout, s=1, g=1, k=3):
                return [nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]

            self.body = nn.Sequential(
                *cbr(3, 16, 2), *cbr(16, 16, 1, 16), *cbr(16, 32, k=1), *cbr(32, 32, 2, 32), *cbr(32, 64, k=1),
                *cbr(64, 64, 2, 64), *cbr(64, 96, k=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 10),
            )

        def forward(self, x):
            x = x.permute(0, 3, 1, 2).float() / 255.0
            return self.body((x - self.mean) / self.std)

    model = Uint8Net()
    crops = photo_crops(N_CALIB + N_VERIFY, 96, SEED + 23)
    arrays = [c[None] for c in crops]
    calib, verify = arrays[:N_CALIB], arrays[N_CALIB:]
    randomize_norm_affine(model, SEED + 24)
    settle_batchnorm(model, [batch_of(calib)])
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["image"], ["logits"])
    return {
        "arch": "uint8 NHWC image input [1, 96, 96, 3]; Transpose, Cast, Div 255, Sub mean, Div std in the graph; "
                "MobileNet-like CNN (depthwise/pointwise Conv-BN-ReLU6), 10 classes",
        "source": "defined in make_zoo.py (`make_uint8_classifier`), random weights",
        "inputs": {"image": (calib, verify)},
        "data": "crops of scikit-learn's sample photos, 96x96 RGB, raw uint8 bytes (HWC)",
    }


def make_digits_dynbatch(d: Path) -> dict:
    """Trained (seconds) on scikit-learn's digits; input [?, 1, 8, 8] with an anonymous batch
    dim (ONNX dim with neither dim_value nor dim_param, onnxruntime's None, the `-1` of other
    tools); the flatten is a Reshape whose shape comes from Shape -> Gather -> Concat."""
    torch = torch_setup()
    import torch.nn as nn
    from sklearn.datasets import load_digits

    class DigitsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            )
            self.g = nn.Sequential(nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))

        def forward(self, x):
            y = self.f(x)
            return self.g(y.reshape(y.shape[0], -1))

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    perm = np.random.default_rng(SEED + 25).permutation(len(x))
    test, train = perm[:200], perm[200:]
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(SEED + 26)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    for _ in range(12):
        model.train()
        for idx in torch.randperm(len(train), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean())
    calib = [x[i : i + 1] for i in train[:N_CALIB]]
    verify = [x[i : i + 1] for i in test[:N_VERIFY]]
    (d / "verify").mkdir(parents=True, exist_ok=True)
    labels = [int(y[i]) for i in test[:N_VERIFY]]
    export(model, (torch.from_numpy(calib[0]),), d / "model.onnx", ["input"], ["logits"],
           {"input": {0: "batch"}, "logits": {0: "batch"}})
    m = onnx.load(str(d / "model.onnx"))
    for vi in list(m.graph.input) + list(m.graph.output):
        dim = vi.type.tensor_type.shape.dim[0]
        dim.Clear()  # anonymous: no dim_value, no dim_param
    onnx.save(m, str(d / "model.onnx"))
    return {
        "arch": "digits CNN (Conv-BN-Relu x2, MaxPool, Reshape(Shape-derived [batch, -1]), Gemm-Relu-Gemm) with an "
                "anonymous batch dim [?, 1, 8, 8]",
        "source": f"defined in make_zoo.py (`make_digits_dynbatch`), trained 12 epochs on scikit-learn's digits "
                  f"(1597 train / 200 test, test accuracy {acc:.3f}); torch dynamic_axes, then the dim_param cleared",
        "inputs": {"input": (calib, verify)},
        "labels": labels,
        "data": "scikit-learn digits 8x8 /16 (training split for calibration, held-out for verify; `verify/labels.txt`)",
        "notes": "the batch dim has no name, so `define_symbols` cannot set it: qairt has to take it as 1 "
                 "(or the schema needs per-input shapes)",
    }


MODELS = {
    "yolov8n": make_yolov8n,
    "lraspp_mobilenetv3": make_lraspp,
    "dbnet": make_dbnet,
    "crnn": make_crnn,
    "bert": make_bert,
    "vit": make_vit,
    "mobilenetv3_small": make_mobilenetv3_small,
    "mobilenetv3_text_direction": make_text_direction,
    "shufflenetv2_x0_5": make_shufflenetv2,
    "efficientnet_b0_w05": make_efficientnet,
    "convnext_nano": make_convnext,
    "kws_gru": make_kws_gru,
    "digits_dynbatch": make_digits_dynbatch,
    "dbnet_sharedhw": make_dbnet_sharedhw,
    "uint8_classifier": make_uint8_classifier,
}


# ============================================================================ fixture writing


ONNX_DTYPE = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


def io_desc(vi) -> dict:
    t = vi.type.tensor_type
    dims = []
    for dim in t.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(-1)
    return {"name": vi.name, "dtype": ONNX_DTYPE.get(t.elem_type, str(t.elem_type)), "shape": dims}


def op_counts(graph) -> dict:
    c = collections.Counter()
    for n in graph.node:
        c[(n.domain + "." if n.domain and n.domain != "ai.onnx" else "") + n.op_type] += 1
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                c.update(op_counts(a.g))
    return dict(sorted(c.items()))


def write_inputs(d: Path, part: str, names: list[str], samples: list[dict]) -> None:
    root = d / part
    lines = []
    for k, feed in enumerate(samples):
        (root / f"{k:03d}").mkdir(parents=True, exist_ok=True)
        entries = []
        for n in names:
            rel = f"{k:03d}/{sanitize(n)}.raw"
            a = feed[n]
            a.astype(a.dtype.newbyteorder("<")).tofile(root / rel)
            entries.append(f"{n}:={rel}")
        lines.append(" ".join(entries))
    (root / "input_list.txt").write_text("\n".join(lines) + "\n")


def write_outputs(root: Path, names: list[str], runs: list[list[np.ndarray]]) -> None:
    for n, outs in enumerate(runs):
        (root / f"Result_{n}").mkdir(parents=True, exist_ok=True)
        for name, a in zip(names, outs):
            a.astype(a.dtype.newbyteorder("<")).tofile(root / f"Result_{n}" / f"{sanitize(name)}.raw")


def sqnr(ref: list[np.ndarray], act: list[np.ndarray]) -> float:
    s = sum(float(np.sum(r.astype(np.float64) ** 2)) for r in ref)
    e = sum(float(np.sum((a.astype(np.float64) - r.astype(np.float64)) ** 2)) for r, a in zip(ref, act))
    if e == 0.0:
        return float("inf")
    return float(10 * np.log10(s / e)) if s > 0 else float("-inf")


def qairt_toml(name: str, info: dict) -> str:
    symbols = info.get("define_symbols")
    sym = ""
    if symbols:
        sym = "define_symbols = { " + ", ".join(f"{k} = {v}" for k, v in symbols.items()) + " }\n"
    note = f"# {info['notes']}\n" if info.get("notes") else ""
    labels = 'labels = "verify/labels.txt"\n' if info.get("labels") else ""
    return f"""# Model-zoo fixture `{name}`, made by scripts/python/make_zoo.py (see tests/data/zoo/README.md).
# Targets match onnxruntime's quantize_static baseline in ort_quant.json (MinMax, per-channel
# weights incl. Gemm/MatMul rows, asymmetric activations, symmetric int8 weights, int32 bias).
{note}
[project]
name = "zoo-{name}"

[model]
path = "model.onnx"
{sym}
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

[[target]]
name = "htp-w8a16"
backend = "htp"
act_bitwidth = 16

[verify]
input_list = "verify/input_list.txt"
{labels}# onnxruntime's float outputs for the verify list (float32, SDK-sanitized names); uncomment to
# score every target against onnxruntime instead of qairt's own float run:
# golden = "reference"
"""


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for mod in ("numpy", "onnx", "onnxruntime", "torch", "torchvision", "transformers", "tokenizers", "ultralytics",
                "sklearn"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:
            pass
    return out


def build_one(name: str) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    d = ZOO / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    print(f"== {name}", flush=True)
    info = MODELS[name](d)
    model_path = d / "model.onnx"
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model, full_check=True)
    blob = model_path.read_bytes()
    for bad in {str(ROOT).encode(), str(Path.home()).encode(), tempfile.gettempdir().encode()}:
        if bad in blob:
            raise SystemExit(f"{name}: model.onnx contains an absolute path ({bad!r})")

    inputs = [vi for vi in model.graph.input if vi.name not in {i.name for i in model.graph.initializer}]
    in_names = [vi.name for vi in inputs]
    calib = [{n: info["inputs"][n][0][k] for n in in_names} for k in range(N_CALIB)]
    n_verify = len(info["inputs"][in_names[0]][1])  # N_VERIFY unless the fixture needs more
    verify = [{n: info["inputs"][n][1][k] for n in in_names} for k in range(n_verify)]
    write_inputs(d, "calib", in_names, calib)
    write_inputs(d, "verify", in_names, verify)
    if info.get("labels"):
        (d / "verify" / "labels.txt").write_text("".join(f"{l}\n" for l in info["labels"]))

    fsess = session(str(model_path), optimize=False)
    out_names = [o.name for o in fsess.get_outputs()]
    ref = [fsess.run(None, f) for f in verify]
    write_outputs(d / "reference", out_names, ref)
    # How much the float net amplifies a small input perturbation: output SNR when the float
    # inputs get Gaussian noise at 40 dB below their own power (median over the verify samples).
    # A trained net keeps roughly 40 dB or more; random nets can be chaotic (much less), and then
    # any quantization SQNR of theirs is low and noisy.
    sensitivity = None
    if all(feed[n].dtype == np.float32 for feed in verify for n in in_names):
        rng = np.random.default_rng(SEED)
        snrs = []
        for feed, r in zip(verify, ref):
            noisy = {n: (a + rng.normal(0, 0.01 * a.std(), a.shape)).astype(np.float32) for n, a in feed.items()}
            snrs.append(sqnr(r, fsess.run(None, noisy)))
        sensitivity = float(np.median(snrs))

    report: dict = {"model": name, "calibration_samples": N_CALIB, "verify_samples": n_verify,
                    "method": "quant_pre_process, then quantize_static(QDQ, MinMax, per_channel=True, "
                              "WeightSymmetric=True, ActivationSymmetric=False); quantized model run with "
                              "onnxruntime CPU, full graph optimizations, one thread",
                    "configs": {}}
    with tempfile.TemporaryDirectory(prefix="zoo-ort-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        cwd = os.getcwd()
        os.chdir(tmp)  # quant_pre_process leaves temporary files in the working directory
        try:
            quant_pre_process(str(model_path), str(pre), skip_symbolic_shape=False)
            report["pre_process"] = "symbolic shape inference + optimizations"
        except Exception as e:  # noqa: BLE001
            quant_pre_process(str(model_path), str(pre), skip_symbolic_shape=True)
            report["pre_process"] = f"symbolic shape inference failed ({type(e).__name__}); onnx shape inference only"
        finally:
            os.chdir(cwd)
        for short, config in QUANT_CONFIGS.items():
            entry: dict = {"ort_config": config}
            try:
                q = Path(tmp) / f"{short}.onnx"
                ort_quantize(pre, q, calib, config)
                qmodel = onnx.load(str(q))
                entry["quantized_op_counts"] = {k: v for k, v in op_counts(qmodel.graph).items()
                                                if k in ("QuantizeLinear", "DequantizeLinear")}
                qsess = session(str(q), optimize=True)
                outs = [qsess.run(None, f) for f in verify]
                entry["sqnr_db"] = sqnr([o for r in ref for o in r], [o for a in outs for o in a])
                entry["per_output_sqnr_db"] = {
                    n: sqnr([r[i] for r in ref], [a[i] for a in outs]) for i, n in enumerate(out_names)
                }
                size = sum(o.nbytes for a in outs for o in a)
                if size <= MAX_QUANT_OUTPUT_BYTES:
                    write_outputs(d / "ort_quant" / short, out_names, outs)
                    entry["outputs"] = f"ort_quant/{short}/Result_<N>/"
            except Exception as e:  # noqa: BLE001
                entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            report["configs"][short] = entry
            print(f"   {short}: {entry.get('per_output_sqnr_db', entry.get('error'))}", flush=True)
    (d / "ort_quant.json").write_text(json.dumps(report, indent=1) + "\n")

    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    manifest = {
        "name": name,
        "arch": info["arch"],
        "source": info["source"],
        "data": info["data"],
        "notes": info.get("notes"),
        "params": params,
        "model_bytes": model_path.stat().st_size,
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [io_desc(vi) for vi in inputs],
        "outputs": [io_desc(vi) for vi in model.graph.output],
        "define_symbols": info.get("define_symbols", {}),
        "output_snr_db_at_40db_input_noise": sensitivity,
        "op_counts": op_counts(model.graph),
        "seed": SEED,
        "versions": versions(),
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (d / "qairt.toml").write_text(qairt_toml(name, info))
    print(f"   {manifest['model_bytes'] / 1e6:.2f} MB, {params} params, ops {manifest['op_counts']}", flush=True)


# ============================================================================ README tables


def fmt_db(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and np.isinf(x):
        return "inf"
    return f"{x:.1f}"


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and "out" not in f.relative_to(p).parts[:1]
               and "cache" not in f.relative_to(p).parts[:1])


def readme_tables() -> str:
    rows_models, rows_io, rows_ops, rows_q = [], [], [], []
    total = 0
    for name in MODELS:
        d = ZOO / name
        if not (d / "manifest.json").exists():
            continue
        m = json.loads((d / "manifest.json").read_text())
        q = json.loads((d / "ort_quant.json").read_text())
        size = dir_bytes(d)
        total += size
        rows_models.append(f"| `{name}` | {m['arch']} | {m['source']} | {m['params']:,} | "
                           f"{m['model_bytes'] / 1e6:.2f} MB | {size / 1e6:.2f} MB | {m['opset']} |")
        ins = "<br>".join(f"`{i['name']}` {i['dtype']} {i['shape']}" for i in m["inputs"])
        outs = "<br>".join(f"`{o['name']}` {o['dtype']} {o['shape']}" for o in m["outputs"])
        syms = ", ".join(f"{k} = {v}" for k, v in m["define_symbols"].items()) or "-"
        rows_io.append(f"| `{name}` | {ins} | {outs} | {syms} | {m['data']} |")
        ops = ", ".join(f"{k} {v}" for k, v in m["op_counts"].items())
        rows_ops.append(f"| `{name}` | {sum(m['op_counts'].values())} | {ops} |")
        cells = []
        for short in QUANT_CONFIGS:
            e = q["configs"].get(short, {})
            if "error" in e:
                cells.append(f"error: {e['error']}")
                continue
            per = e.get("per_output_sqnr_db", {})
            detail = ", ".join(f"{k} {fmt_db(v)}" for k, v in per.items()) if len(per) > 1 else ""
            cells.append(fmt_db(e.get("sqnr_db")) + (f" ({detail})" if detail else ""))
        rows_q.append(f"| `{name}` | " + " | ".join(cells) + f" | {fmt_db(m.get('output_snr_db_at_40db_input_noise'))} |")
    return "\n".join([
        "<!-- tables generated by `make_zoo.py --readme` from manifest.json and ort_quant.json -->",
        "",
        "### Models",
        "",
        "| name | architecture | source | params | model.onnx | directory | opset |",
        "|---|---|---|---:|---:|---:|---:|",
        *rows_models,
        "",
        f"Total committed zoo data: {total / 1e6:.1f} MB.",
        "",
        "### Inputs and outputs",
        "",
        "| name | inputs | outputs | define_symbols | data |",
        "|---|---|---|---|---|",
        *rows_io,
        "",
        "### Op types (ONNX nodes in model.onnx, with counts)",
        "",
        "| name | nodes | op types |",
        "|---|---:|---|",
        *rows_ops,
        "",
        "### onnxruntime quantize_static SQNR against onnxruntime float (dB, 8 verify samples)",
        "",
        "All outputs together (per output in parentheses where there are several).",
        "",
        "| name | W8A8 (QUInt8 act, QInt8 per-channel weights) | W8A16 (QUInt16 act, QInt8 per-channel weights) "
        "| float output SNR at 40 dB input noise |",
        "|---|---|---|---:|",
        *rows_q,
        "<!-- end of generated tables -->",
    ])


def write_readme() -> None:
    path = ZOO / "README.md"
    text = path.read_text() if path.exists() else "<!-- tables generated -->\n<!-- end of generated tables -->\n"
    start = text.index("<!-- tables generated")
    end = text.index("<!-- end of generated tables -->") + len("<!-- end of generated tables -->")
    path.write_text(text[:start] + readme_tables() + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help=f"some of: {', '.join(MODELS)} (default all)")
    parser.add_argument("--readme", action="store_true", help="only re-render the README tables")
    args = parser.parse_args()
    if not args.readme:
        for name in args.models or list(MODELS):
            if name not in MODELS:
                raise SystemExit(f"unknown model {name}; known: {', '.join(MODELS)}")
            build_one(name)
    write_readme()


if __name__ == "__main__":
    main()
