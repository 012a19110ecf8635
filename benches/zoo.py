#!/usr/bin/env python3
"""The model zoo's acceptance table (docs/accuracy.md, "Model zoo"): builds every fixture of
tests/data/zoo with the qairt binary given, in a scratch copy of each project, and compares

* the ``cpu`` target with onnxruntime's float outputs (``reference/``): SQNR per output, the bar
  is 80 dB on every output;
* ``htp-w8a8`` / ``htp-w8a16`` with the same reference, next to onnxruntime's own
  ``quantize_static`` SQNR from ``ort_quant.json`` (same calibration data): the bar is at most
  1 dB below it;
* next to them AIMET's plain min-max QuantSim SQNR where ``aimet_quant.json`` holds one (made by
  scripts/python/aimet_zoo.py, BatchNorm folded, per-channel weights);
* for BERT, the mean cosine of the pooled embedding (``pooler_output``) to float per target;
* with ``--ort-python``, each quantized target's ``model.qdq.onnx`` run by onnxruntime
  (scripts/python/qdq_check.py --both-modes): its agreement with qairt's simulate outputs with
  onnxruntime's graph optimizations off and on, and onnxruntime's agreement with itself across
  the two (a second table, between the ``qdq`` markers of ``--doc``); and the same file op by
  op: onnxruntime's value of every tensor (``qdq_check.py --golden-dump``) as the project's
  ``[verify] golden`` in the ``layerwise`` mode, so each op of qairt's simulation starts from
  the inputs onnxruntime gave that op and is compared with onnxruntime's output of it (the
  lowest per-op SQNR, and how many ops are not bit for bit equal).

It also reports ``simulate`` time per inference (from the JSON event stream; wall-clock, so only
for reading, never asserted) and, with ``--ort-python`` (a Python with onnxruntime and numpy),
onnxruntime's float time per inference on the same verify inputs (CPU provider, one thread, all
graph optimizations, median of the samples after one warm-up run). Standard library only
otherwise; the references were made by scripts/python/make_zoo.py. (That Python also needs onnx
for the QDQ table: the venv of ``scripts/setup-python.sh --test``.)

    python3 benches/zoo.py target/debug/qairt [model ...] [--json FILE] [--doc docs/accuracy.md]
        [--ort-python PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "tests" / "data" / "zoo"
QUANT_TARGETS = {"htp-w8a8": "w8a8", "htp-w8a16": "w8a16"}
# Lines a fixture's qairt.toml leaves out on purpose: digits_dynbatch has an anonymous batch dim
# (its integration test checks the diagnostic that asks for this line).
EXTRA_MODEL_LINES = {"digits_dynbatch": "input_dims = { input = [1, 1, 8, 8] }"}


def read_f32(path: Path) -> array:
    values = array("f")
    values.frombytes(path.read_bytes())
    if sys.byteorder != "little":
        values.byteswap()
    return values


def sqnr(pairs: list[tuple[array, array]]) -> float:
    signal = noise = 0.0
    for got, want in pairs:
        if len(got) != len(want):
            return float("nan")
        for g, w in zip(got, want):
            signal += w * w
            noise += (g - w) * (g - w)
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def cosine(a: array, b: array) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else float("nan")


def outputs_of(result_dir: Path) -> dict[str, array]:
    return {p.stem: read_f32(p) for p in sorted(result_dir.glob("*.raw"))}


def evaluate(qairt: Path, name: str, ort_python: Path | None = None) -> dict:
    src = ZOO / name
    row: dict = {"model": name}
    with tempfile.TemporaryDirectory(prefix=f"qairt-zoo-{name}-") as tmp:
        project = Path(tmp) / name
        shutil.copytree(src, project, ignore=shutil.ignore_patterns("out", "cache", "ort_quant"))
        if name in EXTRA_MODEL_LINES:
            toml = project / "qairt.toml"
            text = toml.read_text().replace('path = "model.onnx"', 'path = "model.onnx"\n' + EXTRA_MODEL_LINES[name], 1)
            toml.write_text(text)
        run = subprocess.run(
            [str(qairt), "build", "--message-format", "json"],
            cwd=project,
            capture_output=True,
            text=True,
        )
        events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        if ort_python:
            row["ort_ms_per_inference"] = ort_ms(ort_python, project)
        row["exit"] = run.returncode
        if run.returncode != 0:
            row["error"] = " ".join(run.stderr.split())[:400]
        samples = sorted((src / "reference").glob("Result_*"), key=lambda p: int(p.name.split("_")[1]))
        ort = json.loads((src / "ort_quant.json").read_text())["configs"]
        aimet_file = src / "aimet_quant.json"
        aimet = json.loads(aimet_file.read_text())["configs"] if aimet_file.exists() else None
        for target in ["cpu", *QUANT_TARGETS]:
            out = project / "out" / target / "outputs"
            if not out.is_dir():
                continue
            per_output: dict[str, list] = {}
            cosines = []
            for ref_dir in samples:
                want = outputs_of(ref_dir)
                got = outputs_of(out / ref_dir.name)
                for key, w in want.items():
                    per_output.setdefault(key, []).append((got.get(key, array("f")), w))
                if "pooler_output" in want and "pooler_output" in got:
                    cosines.append(cosine(got["pooler_output"], want["pooler_output"]))
            entry = {
                "per_output_sqnr_db": {k: sqnr(v) for k, v in per_output.items()},
                "sqnr_db": sqnr([pair for pairs in per_output.values() for pair in pairs]),
            }
            if cosines:
                entry["pooled_cosine"] = sum(cosines) / len(cosines)
            simulate = [e for e in events if e.get("event") == "stage" and e.get("stage") == "simulate"
                        and e.get("target") == target and e.get("status") == "built"]
            if simulate and samples:
                entry["simulate_ms_per_inference"] = simulate[0].get("ms", 0.0) / len(samples)
            if target in QUANT_TARGETS:
                entry["ort_sqnr_db"] = ort[QUANT_TARGETS[target]]["sqnr_db"]
                if aimet:
                    entry["aimet_sqnr_db"] = aimet[QUANT_TARGETS[target]]["sqnr_db"]
                if ort_python:
                    entry["qdq"] = qdq_check(ort_python, project, target)
                    if entry["qdq"] is not None:
                        entry["qdq"].update(per_op_check(qairt, ort_python, project, target) or {})
            row[target] = entry
    return row


# Run by the --ort-python interpreter: onnxruntime's float time per inference, in ms.
ORT_TIMER = r"""
import sys, time, statistics
from pathlib import Path
import numpy as np
import onnxruntime as ort
project = Path(sys.argv[1])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(str(project / "model.onnx"), options, providers=["CPUExecutionProvider"])
types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32}
inputs = {i.name: i for i in session.get_inputs()}
symbols = {}
lists = project / "verify" / "input_list.txt"
feeds = []
for line in lists.read_text().splitlines():
    if not line.strip():
        continue
    feed = {}
    for entry in line.split():
        name, path = entry.split(":=")
        info = inputs[name]
        data = np.fromfile(lists.parent / path, dtype=types[info.type])
        feed[name] = data
    feeds.append(feed)
# Shapes: the declared ones with symbolic/unknown dims solved from the element count (one free dim).
def shaped(name, data):
    dims = [d if isinstance(d, int) and d > 0 else None for d in inputs[name].shape]
    known = int(np.prod([d for d in dims if d])) if any(dims) else 1
    if dims.count(None) == 1:
        dims[dims.index(None)] = data.size // known
    elif dims.count(None) > 1:
        dims = [1 if d is None else d for d in dims]
        free = [i for i, d in enumerate(inputs[name].shape) if not (isinstance(d, int) and d > 0)]
        dims[free[-1]] = data.size // int(np.prod(dims)) * dims[free[-1]]
    return data.reshape(dims)
feeds = [{n: shaped(n, d) for n, d in f.items()} for f in feeds]
session.run(None, feeds[0])
times = []
for feed in feeds:
    t = time.perf_counter()
    session.run(None, feed)
    times.append((time.perf_counter() - t) * 1000.0)
print(statistics.median(times))
"""


def ort_ms(python: Path, project: Path) -> float | None:
    run = subprocess.run([str(python), "-c", ORT_TIMER, str(project)], capture_output=True, text=True)
    try:
        return float(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"onnxruntime timing failed for {project.name}: {run.stderr[-300:]}", file=sys.stderr)
        return None


def qdq_check(python: Path, project: Path, target: str) -> dict | None:
    """scripts/python/qdq_check.py --both-modes on the target's model.qdq.onnx: SQNR of
    onnxruntime's outputs against qairt's with graph optimizations off (``off``) and on
    (``on``), and of onnxruntime's two runs against each other (``ort``)."""
    script = ROOT / "scripts" / "python" / "qdq_check.py"
    run = subprocess.run([str(python), str(script), str(project), target, "--both-modes"], capture_output=True, text=True)
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(f"qdq_check failed for {project.name} {target}: {run.stderr[-300:]}", file=sys.stderr)
        return None
    as_float = lambda v: float(v) if isinstance(v, str) else v  # noqa: E731 ("inf" strings)
    return {"off": as_float(report["sqnr_db"]), "on": as_float(report["other_mode_sqnr_db"]),
            "ort": as_float(report["ort_modes_sqnr_db"])}


def per_op_check(qairt: Path, python: Path, project: Path, target: str) -> dict | None:
    """Each op of ``model.qdq.onnx`` against qairt's simulation of that op alone: onnxruntime's
    value of every tensor (graph optimizations off) is the golden dump, and qairt's layerwise
    mode seeds every op with the dump's values of its inputs. Returns the lowest per-op SQNR
    (``op_min``, inf when all are bit for bit equal), its op type, the number of ops
    compared (``ops``) and not bit for bit equal (``ops_differing``; ``ops_with_infinities`` hold an
    infinity and have no metrics), and the largest difference of any element in quantization
    steps of its integer-quantized tensor (``max_steps``). Rebuilds ``target`` in
    ``project`` (a scratch copy): only the simulate and verify stages re-run."""
    dump = project / f"golden-{target}"
    script = ROOT / "scripts" / "python" / "qdq_check.py"
    run = subprocess.run([str(python), str(script), str(project), target, "--golden-dump", str(dump)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        print(f"golden dump failed for {project.name} {target}: {run.stderr[-300:]}", file=sys.stderr)
        return None
    toml = project / "qairt.toml"
    original = toml.read_text()
    toml.write_text(original.replace("[verify]\n", f"[verify]\ngolden = \"{dump.name}\"\n", 1))
    try:
        run = subprocess.run([str(qairt), "build", "--target", target, "--mode", "layerwise"],
                             cwd=project, capture_output=True, text=True)
        summary_path = project / "out" / target / "verify" / "summary.json"
        if not summary_path.is_file():
            print(f"layerwise build failed for {project.name} {target}: {run.stderr[-300:]}", file=sys.stderr)
            return None
        layers = json.loads(summary_path.read_text())["layers"]
    finally:
        toml.write_text(original)
    encodings = json.loads((project / "out" / target / "encodings.json").read_text())["activation_encodings"]
    # sqnr_db is null when the two are equal.
    finite = [(l["metrics"]["sqnr_db"], l["layer_type"]) for l in layers if l["metrics"]["sqnr_db"] is not None]
    # Rows holding an infinity have no metrics (BERT's float16 mask path: float32.lowest is -inf
    # in float16, on both sides); they are counted apart.
    with_infinities = [l for l in layers if l["metrics"]["non_finite"]]
    differing = [l for l in layers if l["metrics"]["max_abs_error"] not in (0.0, None)]
    worst = min(finite, default=(math.inf, None))
    # The largest difference in quantization steps of an integer-quantized tensor (a producer
    # squashed into its Relu/Clip is compared with, and quantized like, that activation);
    # float16 tensors have no fixed step and are left to the SQNR.
    steps = 0.0
    for layer in differing:
        encoding = encodings.get(layer.get("compared_with") or layer["name"])
        if encoding and len(encoding) == 1 and encoding[0].get("scale"):
            steps = max(steps, layer["metrics"]["max_abs_error"] / encoding[0]["scale"])
    return {"op_min": worst[0], "op_min_type": worst[1], "ops": len(layers), "ops_differing": len(differing),
            "ops_with_infinities": len(with_infinities), "max_steps": steps}


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return "∞" if x == math.inf else f"{x:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | cpu: min SQNR vs onnxruntime float (dB) | htp-w8a8 qairt / onnxruntime [/ AIMET] (dB) | "
        "htp-w8a16 qairt / onnxruntime [/ AIMET] (dB) | ms/inference: qairt simulate cpu / w8a8, onnxruntime float |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("exit") and "cpu" not in r:
            lines.append(f"| {r['model']} | build failed: {r.get('error', '')[:120]} | | | |")
            continue
        cpu = r.get("cpu", {})
        cells = [fmt(min(cpu["per_output_sqnr_db"].values())) if cpu else "–"]
        for t in QUANT_TARGETS:
            e = r.get(t)
            if e:
                extra = f" (cos {e['pooled_cosine']:.3f})" if "pooled_cosine" in e else ""
                aimet = f" / {fmt(e['aimet_sqnr_db'])}" if "aimet_sqnr_db" in e else ""
                cells.append(f"{fmt(e['sqnr_db'])} / {fmt(e['ort_sqnr_db'])}{aimet}{extra}")
            else:
                cells.append("–")
        times = [fmt(r.get(t, {}).get("simulate_ms_per_inference"), 2) for t in ("cpu", "htp-w8a8")]
        cells.append(" / ".join(times) + f", {fmt(r.get('ort_ms_per_inference'), 2)}")
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def qdq_markdown(rows: list[dict]) -> str:
    lines = [
        "| model | htp-w8a8: vs simulate, optimizations off / on; onnxruntime on vs off (dB) | "
        "htp-w8a8 op by op: lowest SQNR (op), ops not bit-exact / ops, largest difference in steps | "
        "htp-w8a16: the same (dB) | "
        "htp-w8a16 op by op |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = []
        for t in QUANT_TARGETS:
            q = r.get(t, {}).get("qdq")
            cells.append(f"{fmt(q['off'])} / {fmt(q['on'])}; {fmt(q['ort'])}" if q else "–")
            if q and "op_min" in q:
                op = f" ({q['op_min_type']})" if q["op_min_type"] else ""
                steps = f", {fmt(q['max_steps'], 2)}" if q["max_steps"] else ""
                cells.append(f"{fmt(q['op_min'])}{op}, {q['ops_differing']} / {q['ops']}{steps}")
            else:
                cells.append("–")
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_between(text: str, marker: str, table: str) -> str | None:
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if begin not in text or end not in text:
        return None
    return text[: text.index(begin) + len(begin)] + "\n" + table + "\n" + text[text.index(end) :]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("qairt", type=Path, help="the qairt binary")
    parser.add_argument("models", nargs="*", help="zoo models (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--doc", type=Path, help="replace the table between the zoo markers of this file")
    parser.add_argument("--ort-python", type=Path, help="a Python with onnxruntime and numpy, to time onnxruntime")
    args = parser.parse_args()
    names = args.models or sorted(p.name for p in ZOO.iterdir() if (p / "qairt.toml").exists())
    rows = []
    for name in names:
        row = evaluate(args.qairt.resolve(), name, args.ort_python)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    tables = {"zoo": markdown(rows)}
    if args.ort_python:
        tables["qdq"] = qdq_markdown(rows)
    print("\n\n".join(tables.values()))
    if args.doc:
        text = args.doc.read_text()
        for marker, table in tables.items():
            replaced = replace_between(text, marker, table)
            if replaced is None:
                print(f"{args.doc} has no <!-- {marker}:begin --> ... <!-- {marker}:end --> markers", file=sys.stderr)
                return 1
            text = replaced
        args.doc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
