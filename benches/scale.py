#!/usr/bin/env python3
"""Scale benchmark (issue 10): memory, cache size, speed and rebuild cost of ``qairt build`` on
a full-size model, every figure measured side by side in one run (wall-clock and RSS are read,
never asserted). The projects come from ``scripts/python/make_scale.py``; see
benches/README.md, "Scale", for what each figure means and its target.

    python3 benches/scale.py QAIRT PROJECT [--ort-python PY] [--json FILE] [--verify-max N]
        [--verify-counts A,B] [--skip-rebuilds] [--threads N[,M...]] [--mem-limit-gb 20]
        [--ort-samples K] [--work DIR] [--keep]

Everything happens in a scratch copy of PROJECT (its small files copied, its ``calib/`` and
``verify/`` directories symlinked, read only), so the generated project is never written. Runs,
one qairt process at a time:

1. **cold build** (``cache/`` and ``out/`` removed first) of every target, ``[verify]
   max_samples`` = ``--verify-max`` when given: wall time, peak RSS of the qairt process
   (``ru_maxrss`` of that child from ``os.wait4``: what ``getrusage(RUSAGE_CHILDREN)`` or
   ``/usr/bin/time -v`` report, per process), a sampled RSS timeline (``/proc/PID/status``),
   the stage events of ``--message-format json``, and the sizes of ``cache/`` and ``out/``
   (bytes of regular files, ``du -sb``);
2. with ``--ort-python``, onnxruntime (one thread, CPU provider) on the first ``--ort-samples``
   verify inputs: the float ``model.onnx`` (all graph optimizations, and none) and qairt's own
   ``out/htp-w8a8/model.qdq.onnx`` with graph optimizations off (and on, for reading);
3. unless ``--skip-rebuilds``, rebuilds after one edit each (cumulative, each after a finished
   build): none (no-op), ``[verify.thresholds] min_sqnr_db``, ``[verify] metrics``, one line of
   the labels file, and one activation encoding of the last layer's output in the quantized
   target's overrides file (its encoding from the cold build with a 25 % wider range);
4. with ``--verify-counts A,B``, cold builds at ``[verify] max_samples`` = A and = B: RAM and
   ``cache/`` added per extra verify sample;
5. with ``--threads N,M``, a cold build per N with ``QAIRT_THREADS=N`` in the environment:
   calibrate and simulate ms per N.

Every qairt process runs under ``RLIMIT_AS`` = ``--mem-limit-gb`` (GiB of address space, default
20), so a build that would exhaust the machine fails its allocation instead (Rust aborts with
"memory allocation of N bytes failed"); the benchmark reports it as killed at its peak RSS, with
the exit status and stderr, and goes on with the other figures. Units are binary (KiB, MiB,
GiB). Standard library only; ``--ort-python`` is a Python with onnxruntime and numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

KIB, MIB, GIB = 1024, 1024**2, 1024**3
QUANT_TARGET = "htp-w8a8"
FLOAT_TARGET = "cpu"
DEFAULT_METRICS = ["sqnr", "cosinesimilarity", "mse", "maxerror"]
# Targets stated by issue 10 (binary units here: GiB, KiB).
TARGET_PEAK_RSS = 2 * GIB
TARGET_CACHE_BEYOND_OUT = 1.5 * GIB
TARGET_PER_SAMPLE = 64 * KIB


# ----------------------------------------------------------------------------- running qairt


def rss_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * KIB
    except (OSError, ValueError):
        return None
    return None


def run_qairt(qairt: Path, project: Path, mem_limit_gb: float | None, env: dict | None = None,
              args: tuple = ()) -> dict:
    """One ``qairt build PROJECT --message-format json``: exit status, wall time, peak RSS, an
    RSS timeline, the JSON events and stderr."""
    limit = int(mem_limit_gb * GIB) if mem_limit_gb else None

    def preexec() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    full_env = dict(os.environ)
    # A failed allocation then prints where it happened (nothing else changes).
    full_env.setdefault("RUST_BACKTRACE", "1")
    full_env.update(env or {})
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen([str(qairt), "build", str(project), "--message-format", "json", *args],
                                cwd=project, stdout=out, stderr=err, env=full_env, preexec_fn=preexec)
        timeline: list[tuple[float, int]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss = rss_of(proc.pid)
                if rss is not None:
                    timeline.append((time.monotonic() - start, rss))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        finally:
            done.set()
        wall = time.monotonic() - start
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    events = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    code = proc.returncode
    peak = usage.ru_maxrss * KIB
    # The 1-minute load average before and after: wall-clock figures on a shared machine are
    # only comparable when these are near the number of threads qairt uses.
    run = {"exit": code, "wall_s": wall, "peak_rss": peak, "events": events,
           "timeline": thin(timeline, 300), "stderr": stderr.strip(),
           "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if timeline:
        run["peak_at_s"] = max(timeline, key=lambda p: p[1])[0]
    if code < 0:
        run["signal"] = signal.Signals(-code).name
    finished = [e for e in events if e.get("event") == "finished"]
    run["finished"] = finished[0] if finished else None
    # 0: built and thresholds met; 2: built, a threshold not met; anything else: no build.
    run["ok"] = code in (0, 2) and run["finished"] is not None
    run["killed"] = code < 0 or "memory allocation of" in stderr
    return run


def thin(points: list, n: int) -> list:
    if len(points) <= n:
        return [[round(t, 3), r] for t, r in points]
    step = len(points) / n
    keep = [points[int(i * step)] for i in range(n)] + [max(points, key=lambda p: p[1]), points[-1]]
    return [[round(t, 3), r] for t, r in sorted(set(keep))]


def failure_text(run: dict) -> str:
    """Why a build did not finish, for the table."""
    stderr = run.get("stderr", run.get("stderr_head", "") + run.get("stderr_tail", ""))
    if run["killed"]:
        why = run.get("signal") or f"exit {run['exit']}"
        alloc = re.search(r"memory allocation of \d+ bytes failed", stderr)
        frames = run.get("backtrace_qairt_frames") or qairt_frames(stderr)
        where = " ← ".join(re.sub(r":\d+\)$", "", f).rsplit("(", 1)[-1] for f in frames[:4])
        return (f"killed at {run['peak_rss'] / GIB:.2f} GiB ({why}{': ' + alloc.group(0) if alloc else ''}"
                f"{'; in ' + where if where else ''})")
    last = stderr.splitlines()[-1] if stderr else ""
    return f"failed (exit {run['exit']}): {last[:200]}"


def built_stages(run: dict) -> list[str]:
    return [f"{e['target']}/{e['stage']}" for e in run["events"]
            if e.get("event") == "stage" and e.get("status") == "built"]


# ----------------------------------------------------------------------------- project copy


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under path (``du -sb`` without directory entries)."""
    if not path.exists():
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            total += st.st_size
    return total


def inside(base: Path, rel: str) -> Path:
    p = (base / rel)
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise SystemExit(f"{rel}: the benchmark needs project-relative paths without '..'")
    return p


class Scratch:
    """A scratch copy of a project: small files copied, directories symlinked (read only)."""

    def __init__(self, src: Path, work: Path | None):
        self.src = src
        self.dir = Path(tempfile.mkdtemp(prefix=f"qairt-scale-{src.name}-", dir=work))
        config = tomllib.loads((src / "qairt.toml").read_text())
        project = config.get("project", {})
        self.out_rel = project.get("out_dir", "out")
        self.cache_rel = project.get("cache_dir", "cache")
        skip = {Path(self.out_rel).parts[0], Path(self.cache_rel).parts[0]}
        for entry in src.iterdir():
            if entry.name in skip:
                continue
            if entry.is_dir():
                (self.dir / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
            else:
                shutil.copy2(entry, self.dir / entry.name)
        self.out = inside(self.dir, self.out_rel)
        self.cache = inside(self.dir, self.cache_rel)
        self.toml = self.dir / "qairt.toml"
        text = self.toml.read_text()
        # Files the rebuilds edit must be the scratch's own, not behind a symlinked directory.
        labels = config.get("verify", {}).get("labels")
        if labels and (self.dir / Path(labels).parts[0]).is_symlink():
            shutil.copy2(src / labels, self.dir / "scale-labels.txt")
            text = set_key(text, "verify", "labels", '"scale-labels.txt"')
        self.base_toml = ensure_overrides(text, self.dir)
        self.toml.write_text(self.base_toml)
        self.verify_lines = count_lines(inside(src, config["verify"]["input_list"]))
        # The files the rebuild edits change, as they were: reset() puts them back.
        config = self.config()
        editable = [config.get("verify", {}).get("labels")]
        editable += [t.get("overrides") for t in config.get("target", []) if t.get("name") == QUANT_TARGET]
        self.originals = {self.dir / p: (self.dir / p).read_bytes() for p in editable if p}

    def reset(self, text: str) -> None:
        """Fresh state: no cache, no out, the given qairt.toml, the edited files restored."""
        shutil.rmtree(self.cache, ignore_errors=True)
        shutil.rmtree(self.out, ignore_errors=True)
        self.toml.write_text(text)
        for path, data in self.originals.items():
            path.write_bytes(data)

    def config(self) -> dict:
        return tomllib.loads(self.toml.read_text())

    def sizes(self) -> dict:
        cache, out = tree_bytes(self.cache), tree_bytes(self.out)
        return {"cache_bytes": cache, "out_bytes": out, "cache_beyond_out_bytes": cache - out}


def count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith(("#", "%")))


def set_key(text: str, table: str, key: str, value: str) -> str:
    """Sets ``key = value`` (a TOML literal) in ``[table]``: replaces a one-line entry, else
    inserts it after the header; appends the table when it is missing."""
    lines = text.split("\n")
    header = next((i for i, l in enumerate(lines) if l.strip() == f"[{table}]"), None)
    if header is None:
        return text.rstrip("\n") + f"\n\n[{table}]\n{key} = {value}\n"
    end = next((i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(header + 1, end):
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            if lines[i].count("[") != lines[i].count("]"):
                raise SystemExit(f"qairt.toml: {key} spans several lines; put it on one line for the benchmark")
            lines[i] = f"{key} = {value}"
            return "\n".join(lines)
    lines.insert(header + 1, f"{key} = {value}")
    return "\n".join(lines)


def ensure_overrides(text: str, scratch: Path) -> str:
    """The quantized target needs an overrides file of the scratch's own for the encoding edit:
    an empty one is added (key and file) when the project has none."""
    config = tomllib.loads(text)
    target = next((t for t in config.get("target", []) if t.get("name") == QUANT_TARGET), None)
    if target is None:
        return text
    current = target.get("overrides") or config.get("quantization", {}).get("overrides")
    if current and not (scratch / Path(current).parts[0]).is_symlink():
        return text
    empty = {"version": "0.6.1", "activation_encodings": {}, "param_encodings": {}}
    if current:  # behind a symlinked directory: copy it next to qairt.toml
        (scratch / "scale-overrides.json").write_text((scratch / current).read_text())
    else:
        (scratch / "scale-overrides.json").write_text(json.dumps(empty, indent=2) + "\n")
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if re.match(rf'\s*name\s*=\s*"{re.escape(QUANT_TARGET)}"', line):
            # The [[target]] table of this name: drop an overrides line of its own, add ours.
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("["):
                if re.match(r"\s*overrides\s*=", lines[j]):
                    del lines[j]
                    continue
                j += 1
            lines.insert(i + 1, 'overrides = "scale-overrides.json"')
            return "\n".join(lines)
    return text


def sanitize(name: str) -> str:
    """The SDK's output file naming (scripts/python/ort_baseline.py)."""
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return "_" + s if s[:1].isdigit() else s


# ----------------------------------------------------------------------------- the edits


def edit_threshold(s: Scratch) -> str:
    current = s.config().get("verify", {}).get("thresholds", {}).get("min_sqnr_db", 0.0)
    new = float(current) - 1.0  # stays lenient
    s.toml.write_text(set_key(s.toml.read_text(), "verify.thresholds", "min_sqnr_db", repr(new)))
    return f"[verify.thresholds] min_sqnr_db {current} -> {new}"


def edit_metrics(s: Scratch) -> str:
    current = s.config().get("verify", {}).get("metrics", DEFAULT_METRICS)
    names = [m if isinstance(m, str) else m.get("name") for m in current]
    new = [m for m in names if m != "maxerror"] if "maxerror" in names else names + ["maxerror"]
    s.toml.write_text(set_key(s.toml.read_text(), "verify", "metrics", json.dumps(new)))
    return f"[verify] metrics {names} -> {new}"


def edit_labels(s: Scratch) -> str:
    rel = s.config().get("verify", {}).get("labels")
    if not rel:
        raise RuntimeError("the project has no [verify] labels")
    path = s.dir / rel
    lines = path.read_text().split("\n")
    old = int(lines[0])
    lines[0] = str(old + 1 if old < 999 else old - 1)
    path.write_text("\n".join(lines))
    return f"{rel}: first label {old} -> {lines[0]}"


def edit_last_encoding(s: Scratch) -> tuple[str, dict]:
    """Writes into the quantized target's overrides file the cold build's encoding of the
    (first) graph output, with a 25 % wider range: one activation encoding of the last layer."""
    out = s.out / QUANT_TARGET
    computed = json.loads((out / "encodings.json").read_text())["activation_encodings"]
    outputs = {p.stem for p in (out / "outputs" / "Result_0").glob("*.raw")}
    name = next((n for n in computed if sanitize(n) in outputs), None)
    if name is None:
        raise RuntimeError(f"no activation encoding of a graph output ({sorted(outputs)}) in encodings.json")
    enc = dict(computed[name][0])
    bw = int(enc.get("bitwidth", 8))
    lo, hi = float(enc["min"]), float(enc["max"])
    levels = 2**bw - 1
    scale = (hi - lo) * 1.25 / levels
    offset = round(lo / scale)
    new = {"bitwidth": bw, "dtype": "int", "is_symmetric": "False", "min": offset * scale,
           "max": (offset + levels) * scale, "offset": offset, "scale": scale}
    target = next(t for t in s.config()["target"] if t.get("name") == QUANT_TARGET)
    path = s.dir / target["overrides"]
    doc = json.loads(path.read_text())
    doc.setdefault("activation_encodings", {})[name] = [new]
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return f"{path.name}: {name} scale {enc.get('scale')} -> {scale}", {"tensor": name, "scale": scale}


def encoding_applied(s: Scratch, info: dict) -> bool:
    enc = json.loads((s.out / QUANT_TARGET / "encodings.json").read_text())["activation_encodings"]
    got = enc.get(info["tensor"], [{}])[0].get("scale")
    return got is not None and abs(float(got) - info["scale"]) <= 1e-6 * info["scale"]


# ----------------------------------------------------------------------------- onnxruntime


ORT_TIMER = r"""
import json, sys, time, statistics
from pathlib import Path
import numpy as np
import onnxruntime as ort
model, lst, count, level = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.log_severity_level = 3
options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level == "all"
                                    else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
inputs = {i.name: i for i in session.get_inputs()}
feeds = []
for line in lst.read_text().splitlines():
    if not line.strip() or line.lstrip().startswith(("#", "%")):
        continue
    feed = {}
    for entry in line.split():
        name, path = entry.split(":=")
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inputs[name].shape]
        feed[name] = np.fromfile(lst.parent / path, dtype="<f4").reshape(shape)
    feeds.append(feed)
    if len(feeds) == count:
        break
session.run(None, feeds[0])
times = []
for feed in feeds:
    t = time.perf_counter()
    session.run(None, feed)
    times.append((time.perf_counter() - t) * 1000.0)
print(json.dumps({"median_ms": statistics.median(times), "mean_ms": statistics.fmean(times), "samples": len(times)}))
"""


def ort_time(python: Path, model: Path, input_list: Path, count: int, level: str) -> dict:
    run = subprocess.run([str(python), "-c", ORT_TIMER, str(model), str(input_list), str(count), level],
                         capture_output=True, text=True)
    try:
        return json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": " ".join(run.stderr.split())[-300:]}


# ----------------------------------------------------------------------------- figures


def build_figures(run: dict, samples: int) -> dict:
    """Per-target stage ms, simulate ms per inference and verify / simulate of a cold build."""
    targets: dict[str, dict] = {}
    for e in run["events"]:
        if e.get("event") == "stage":
            t = targets.setdefault(e["target"], {"stages_ms": {}})
            t["stages_ms"][e["stage"]] = e.get("ms", 0.0) if e.get("status") == "built" else None
    for t in targets.values():
        sim, ver = t["stages_ms"].get("simulate"), t["stages_ms"].get("verify")
        if sim:
            t["simulate_ms_per_inference"] = sim / samples
            if ver is not None:
                t["verify_over_simulate"] = ver / sim
    # A stage shared by the targets (parse, optimize) is reported as built for each with the
    # same key and ms: count it once.
    unique = {(e["stage"], e.get("key")): e.get("ms", 0.0) for e in run["events"]
              if e.get("event") == "stage" and e.get("status") == "built"}
    reported = sum(unique.values())
    owners: dict[tuple, set] = {}
    for e in run["events"]:
        if e.get("event") == "stage" and e.get("status") == "built":
            owners.setdefault((e["stage"], e.get("key")), set()).add(e["target"])
    shared = list(dict.fromkeys(stage for (stage, _), ts in owners.items() if len(ts) > 1))
    fig = {"targets": targets, "shared_stages": shared, "stage_ms_sum": reported}
    if run.get("finished"):
        fig["build_ms"] = run["finished"].get("ms")
        # The float reference run, hashing, materializing out/: not in any stage event.
        fig["unreported_ms"] = run["finished"].get("ms", 0.0) - reported
    return fig


def qairt_frames(stderr: str) -> list[str]:
    """The frames of a Rust backtrace (RUST_BACKTRACE set) inside qairt's own source, innermost
    first: where an allocation failed."""
    frames, name = [], None
    for line in stderr.splitlines():
        m = re.match(r"\s*\d+: (.+)", line)
        if m:
            name = m.group(1)
            continue
        m = re.match(r"\s+at (\S*src/\S+)", line)
        if m and name and "/.cargo/" not in m.group(1) and "/rustc/" not in m.group(1):
            frames.append(f"{name} ({m.group(1).split('/src/', 1)[-1]})")
            name = None
    return frames[:12]


def summarize(run: dict) -> dict:
    keep = {k: v for k, v in run.items() if k not in ("events", "stderr")}
    keep["stderr_head"] = run["stderr"][:2000]
    keep["stderr_tail"] = run["stderr"][-2000:]
    frames = qairt_frames(run["stderr"])
    if frames:
        keep["backtrace_qairt_frames"] = frames
    keep["events"] = [e for e in run["events"] if e.get("event") in ("stage", "finished", "verify")]
    return keep


def cold(scratch: Scratch, qairt: Path, args, text: str, label: str, env: dict | None = None) -> dict:
    scratch.reset(text)
    samples = scratch.config()["verify"].get("max_samples") or scratch.verify_lines
    samples = min(samples, scratch.verify_lines)
    print(f"[scale] {label}: cold build, {samples} verify samples"
          + (f", {' '.join(f'{k}={v}' for k, v in env.items())}" if env else ""), file=sys.stderr, flush=True)
    run = run_qairt(qairt, scratch.dir, args.mem_limit_gb, env)
    result = summarize(run)
    result["verify_samples"] = samples
    result.update(scratch.sizes())
    result.update(build_figures(run, samples))
    status = "ok" if run["ok"] else failure_text(run)
    print(f"[scale]   {status}; {run['wall_s']:.1f} s, peak RSS {run['peak_rss'] / MIB:.0f} MiB, "
          f"cache {result['cache_bytes'] / MIB:.0f} MiB, out {result['out_bytes'] / MIB:.0f} MiB",
          file=sys.stderr, flush=True)
    return result


def with_max(text: str, n: int | None) -> str:
    return set_key(text, "verify", "max_samples", str(n)) if n else text


def measure(args) -> dict:
    qairt = args.qairt.resolve()
    src = args.project.resolve()
    scratch = Scratch(src, args.work)
    report: dict = {"project": src.name, "qairt": str(args.qairt), "mem_limit_gb": args.mem_limit_gb,
                    "verify_list_samples": scratch.verify_lines}
    try:
        base = with_max(scratch.base_toml, args.verify_max)
        main = cold(scratch, qairt, args, base, "main")
        report["cold"] = main

        if args.ort_python and main["ok"]:
            verify_list = scratch.dir / scratch.config()["verify"]["input_list"]
            n = min(args.ort_samples, main["verify_samples"])
            model = scratch.dir / scratch.config()["model"]["path"]
            qdq = scratch.out / QUANT_TARGET / "model.qdq.onnx"
            print(f"[scale] onnxruntime timings on {n} samples", file=sys.stderr, flush=True)
            report["ort"] = {
                "float_all": ort_time(args.ort_python, model, verify_list, n, "all"),
                "float_off": ort_time(args.ort_python, model, verify_list, n, "off"),
                "qdq_off": ort_time(args.ort_python, qdq, verify_list, n, "off") if qdq.exists() else None,
                "qdq_all": ort_time(args.ort_python, qdq, verify_list, n, "all") if qdq.exists() else None,
            }

        if not args.skip_rebuilds and main["ok"]:
            rebuilds = []
            edits = [("no-op", lambda s: ("nothing changed", None)),
                     ("threshold", lambda s: (edit_threshold(s), None)),
                     ("metrics", lambda s: (edit_metrics(s), None)),
                     ("labels", lambda s: (edit_labels(s), None)),
                     ("last-layer encoding", edit_last_encoding)]
            for name, edit in edits:
                try:
                    what, info = edit(scratch)
                except (RuntimeError, KeyError, StopIteration, OSError, ValueError) as e:
                    rebuilds.append({"edit": name, "error": f"{type(e).__name__}: {e}"})
                    continue
                print(f"[scale] rebuild after {name}: {what}", file=sys.stderr, flush=True)
                run = run_qairt(qairt, scratch.dir, args.mem_limit_gb)
                entry = {"edit": name, "what": what, "exit": run["exit"], "ok": run["ok"], "wall_s": run["wall_s"],
                         "peak_rss": run["peak_rss"], "built": built_stages(run),
                         "build_ms": (run["finished"] or {}).get("ms"),
                         "fraction_of_cold": run["wall_s"] / main["wall_s"], "loadavg": run["loadavg"]}
                if not run["ok"]:
                    entry["failure"] = failure_text(run)
                    entry["stderr_tail"] = run["stderr"][-2000:]
                if info is not None and run["ok"]:
                    entry["encoding_applied"] = encoding_applied(scratch, info)
                entry.update(scratch.sizes())
                rebuilds.append(entry)
            report["rebuilds"] = rebuilds

        if args.verify_counts:
            a, b = args.verify_counts
            runs = {}
            for n in (a, b):
                if args.verify_max == n and main["verify_samples"] == n:
                    runs[n] = main
                else:
                    runs[n] = cold(scratch, qairt, args, with_max(scratch.base_toml, n), f"growth {n}")
            growth = {"counts": [a, b], "runs": {str(n): runs[n] for n in (a, b) if runs[n] is not main}}
            ra, rb = runs[a], runs[b]
            da, db = ra["verify_samples"], rb["verify_samples"]
            if ra["ok"] and rb["ok"] and db != da:
                growth["rss_per_sample"] = (rb["peak_rss"] - ra["peak_rss"]) / (db - da)
                growth["cache_per_sample"] = (rb["cache_bytes"] - ra["cache_bytes"]) / (db - da)
                growth["cache_beyond_out_per_sample"] = (rb["cache_beyond_out_bytes"] - ra["cache_beyond_out_bytes"]) / (db - da)
                growth["out_per_sample"] = (rb["out_bytes"] - ra["out_bytes"]) / (db - da)
            growth["summary"] = {str(n): {"ok": runs[n]["ok"], "peak_rss": runs[n]["peak_rss"],
                                          "cache_bytes": runs[n]["cache_bytes"], "out_bytes": runs[n]["out_bytes"],
                                          "wall_s": runs[n]["wall_s"], "verify_samples": runs[n]["verify_samples"],
                                          "failure": None if runs[n]["ok"] else failure_text(runs[n])}
                                 for n in (a, b)}
            report["growth"] = growth

        if args.threads:
            scaling = []
            for n in args.threads:
                run = cold(scratch, qairt, args, base, f"threads {n}", {"QAIRT_THREADS": str(n)})
                entry = {"threads": n, "ok": run["ok"], "wall_s": run["wall_s"], "peak_rss": run["peak_rss"],
                         "loadavg": run["loadavg"],
                         "calibrate_ms": stage_ms_of(run, "calibrate"),
                         "simulate_ms": {t: v["stages_ms"].get("simulate") for t, v in run["targets"].items()}}
                if not run["ok"]:
                    entry["failure"] = failure_text(run)
                scaling.append(entry)
            report["threads"] = scaling
    finally:
        if args.keep:
            print(f"[scale] scratch kept: {scratch.dir}", file=sys.stderr)
        else:
            shutil.rmtree(scratch.dir, ignore_errors=True)
    return report


def stage_ms_of(run: dict, stage: str) -> float | None:
    values = [v["stages_ms"].get(stage) for v in run["targets"].values()]
    values = [v for v in values if v is not None]
    return values[0] if values else None


# ----------------------------------------------------------------------------- the table


def size(b: float | None) -> str:
    if b is None:
        return "–"
    a = abs(b)
    if a >= GIB:
        return f"{b / GIB:.2f} GiB"
    if a >= MIB:
        return f"{b / MIB:.1f} MiB"
    return f"{b / KIB:.1f} KiB"


def ms(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f} ms"


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return ""
    return " (met)" if value <= target else " (not met)"


def markdown(r: dict) -> str:
    c = r["cold"]
    rows = [("figure", "value", "issue 10 target"), ("---", "---", "---")]
    n = c["verify_samples"]
    cold_label = f"cold build ({n} verify samples)"
    if c["ok"]:
        rows.append((f"{cold_label}: wall time", f"{c['wall_s']:.1f} s (qairt: {c.get('build_ms', 0) / 1000:.1f} s; "
                     f"load average {c['loadavg'][0]:.1f} before, {c['loadavg'][1]:.1f} after)", ""))
        rows.append((f"{cold_label}: peak RSS", size(c["peak_rss"]) + verdict(c["peak_rss"], TARGET_PEAK_RSS)
                     + f" at {c.get('peak_at_s', 0):.1f} s", "≤ 2 GiB"))
    else:
        rows.append((f"{cold_label}: peak RSS", failure_text(c) + f" after {c['wall_s']:.1f} s", "≤ 2 GiB"))
    rows.append((f"{cold_label}: cache/ / out/", f"{size(c['cache_bytes'])} / {size(c['out_bytes'])}", ""))
    rows.append((f"{cold_label}: cache/ beyond out/",
                 size(c["cache_beyond_out_bytes"]) + (verdict(c["cache_beyond_out_bytes"], TARGET_CACHE_BEYOND_OUT)
                                                      if c["ok"] else ""), "≤ 1.5 GiB"))
    g = r.get("growth")
    if g:
        a, b = g["counts"]
        if "rss_per_sample" in g:
            rows.append((f"peak RSS per extra verify sample ({a} → {b})",
                         size(g["rss_per_sample"]) + verdict(g["rss_per_sample"], TARGET_PER_SAMPLE), "≤ 64 KiB"))
            rows.append((f"cache/ per extra verify sample ({a} → {b})",
                         size(g["cache_per_sample"]) + verdict(g["cache_per_sample"], TARGET_PER_SAMPLE)
                         + f"; beyond out/ {size(g['cache_beyond_out_per_sample'])}", "≤ 64 KiB"))
        for k, s in g["summary"].items():
            state = "" if s["ok"] else f" — {s['failure']}"
            rows.append((f"  cold build at {k} verify samples", f"peak RSS {size(s['peak_rss'])}, cache/ "
                         f"{size(s['cache_bytes'])}, out/ {size(s['out_bytes'])}, {s['wall_s']:.1f} s{state}", ""))
    if c["ok"]:
        ort = r.get("ort") or {}
        cpu = c["targets"].get(FLOAT_TARGET, {})
        q = c["targets"].get(QUANT_TARGET, {})
        f_all = (ort.get("float_all") or {}).get("median_ms")
        f_off = (ort.get("float_off") or {}).get("median_ms")
        q_off = (ort.get("qdq_off") or {}).get("median_ms")
        q_all = (ort.get("qdq_all") or {}).get("median_ms")
        # onnxruntime runs on one thread, so qairt's figure comes from the QAIRT_THREADS=1 build
        # when there is one (the main cold build uses every core).
        one = next((t for t in r.get("threads", []) if t["threads"] == 1 and t["ok"]), None)
        if one:
            threads = "1 thread each"
            sim_cpu, sim_q = ((one["simulate_ms"].get(t) or 0) / n or None for t in (FLOAT_TARGET, QUANT_TARGET))
        else:
            threads = "qairt on every core, onnxruntime on 1: run with --threads 1 to compare"
            sim_cpu, sim_q = cpu.get("simulate_ms_per_inference"), q.get("simulate_ms_per_inference")
        if sim_cpu:
            ratio = f" = {sim_cpu / f_all:.1f}× onnxruntime" if f_all else ""
            rows.append((f"simulate {FLOAT_TARGET} per inference vs onnxruntime float ({threads})",
                         f"{ms(sim_cpu, 2)} vs {ms(f_all, 2)} (optimizations off {ms(f_off, 2)}){ratio}", "ratio (speed)"))
        if sim_q:
            ratio = f" = {sim_q / q_off:.1f}× onnxruntime" if q_off else ""
            rows.append((f"simulate {QUANT_TARGET} per inference vs onnxruntime on model.qdq.onnx, optimizations off "
                         f"({threads})",
                         f"{ms(sim_q, 2)} vs {ms(q_off, 2)} (optimizations on {ms(q_all, 2)}){ratio}", "ratio (speed)"))
        for t, v in c["targets"].items():
            if "verify_over_simulate" in v:
                rows.append((f"verify time / simulate time, {t}",
                             f"{v['verify_over_simulate']:.2f} ({ms(v['stages_ms'].get('verify'), 0)} / "
                             f"{ms(v['stages_ms'].get('simulate'), 0)})", "ratio (speed)"))
        shared = c.get("shared_stages", [])
        first = next(iter(c["targets"].values()), {"stages_ms": {}})
        parts = (["shared: " + ", ".join(f"{k} {ms(first['stages_ms'].get(k), 0)}" for k in shared)] if shared else [])
        parts += [f"{t}: " + ", ".join(f"{k} {ms(x, 0) if x is not None else 'cached'}"
                                        for k, x in v["stages_ms"].items() if k not in shared)
                  for t, v in c["targets"].items()]
        stages = "; ".join(parts)
        rows.append(("cold build stage times", stages + f"; not in any stage event: {ms(c.get('unreported_ms'), 0)}", ""))
    for e in r.get("rebuilds", []):
        if "error" in e:
            rows.append((f"rebuild after {e['edit']}", e["error"], "fraction (rebuild)"))
            continue
        built = ", ".join(e["built"]) or "nothing"
        extra = ""
        if "encoding_applied" in e:
            extra = "; encoding in out/: " + ("changed" if e["encoding_applied"] else "NOT changed")
        state = "" if e["ok"] else f" — {e['failure']}"
        rows.append((f"rebuild after {e['edit']} edit" if e["edit"] != "no-op" else "no-op rebuild",
                     f"{e['fraction_of_cold'] * 100:.1f} % of cold ({e['wall_s']:.2f} s, peak RSS "
                     f"{size(e['peak_rss'])}; built: {built}{extra}){state}", "fraction (rebuild)"))
    for t in r.get("threads", []):
        sims = ", ".join(f"{k} {ms(v, 0)}" for k, v in t["simulate_ms"].items())
        state = "" if t["ok"] else f" — {t['failure']}"
        rows.append((f"QAIRT_THREADS={t['threads']}", f"calibrate {ms(t['calibrate_ms'], 0)}; simulate {sims}; "
                     f"wall {t['wall_s']:.1f} s{state}", "scaling (multi-core)"))
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def counts(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 2 or parts[0] < 1 or parts[1] <= parts[0]:
        raise argparse.ArgumentTypeError("give two increasing counts, A,B")
    return parts[0], parts[1]


def thread_list(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("qairt", type=Path, help="the qairt binary (target/release/qairt)")
    parser.add_argument("project", type=Path, help="a project from scripts/python/make_scale.py")
    parser.add_argument("--ort-python", type=Path, help="a Python with onnxruntime and numpy, for the speed ratios")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--verify-max", type=int, help="[verify] max_samples of the main build (default: the whole list)")
    parser.add_argument("--verify-counts", type=counts, help="A,B: cold builds at these max_samples, for the growth figures")
    parser.add_argument("--skip-rebuilds", action="store_true", help="no rebuild figures")
    parser.add_argument("--threads", type=thread_list, help="N[,M...]: a cold build per N with QAIRT_THREADS=N")
    parser.add_argument("--mem-limit-gb", type=float, default=20.0,
                        help="RLIMIT_AS of every qairt process, GiB (default 20; 0 for none)")
    parser.add_argument("--ort-samples", type=int, default=50, help="verify samples onnxruntime is timed on (default 50)")
    parser.add_argument("--work", type=Path, help="where the scratch copy goes (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args()
    if not (args.project / "qairt.toml").is_file():
        parser.error(f"{args.project} has no qairt.toml")
    report = measure(args)
    table = markdown(report)
    report["table"] = table
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(table)
    return 0 if report["cold"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
