"""qairt from Python.

``qairt.Session`` runs a compiled model (a ``model.bin`` that ``qairt build`` wrote, or an
``.onnx`` model built through qairt's pipeline with the session's options) on numpy arrays, with
the methods of the SDK's qaic ``Session``: ``run``, ``model_input_shape_dict``,
``model_output_shape_dict``, ``run_benchmark``, ``get_metrics``, ``print_metrics``, ``setup``
and ``reset``. ``qairt.build`` builds a project as ``qairt build`` does and returns its results.
Every qairt diagnostic is raised as ``qairt.QairtError`` whose text is the diagnostic
``qairt build`` prints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy

from . import _qairt
from ._qairt import QairtError

__all__ = ["Session", "build", "BuildResult", "QairtError", "__version__"]
__version__ = _qairt.__version__

# get_metrics' percentiles, by key.
_PERCENTILES = (("P25", 25.0), ("P50", 50.0), ("P75", 75.0), ("P90", 90.0), ("P99", 99.0), ("P999", 99.9))


def _load_options(options_path: str | os.PathLike) -> Dict[str, Any]:
    """The options of a YAML file: a mapping of the same keys as ``Session``'s keyword arguments."""
    import yaml

    with open(options_path, encoding="utf-8") as f:
        try:
            options = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise QairtError(f"{os.fspath(options_path)}: not valid YAML: {e}") from None
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise QairtError(
            f"{os.fspath(options_path)}: expected a mapping of options (e.g. `backend: htp`), "
            f"found {type(options).__name__}"
        )
    return options


class Session:
    """A compiled model, run on numpy arrays on the host CPU by qairt's executor.

    ``model_path`` is a ``model.bin`` that ``qairt build`` wrote (run as it is), or an ``.onnx``
    model, built through qairt's pipeline (parse, optimize, calibrate, quantize, compile) with
    ``options``: the keys of ``qairt.toml``'s ``[[target]]`` table (``backend``, default ``cpu``,
    ``act_bitwidth``, ``weight_bitwidth``, ``overrides``, ...), ``define_symbols`` (or qaic's
    ``onnx_define_symbol``, a list of ``(name, value)`` pairs), ``input_dims``, ``calibration``
    (an input-list path, or a list of dicts of arrays by input name), ``calibration_max_samples``,
    ``verify`` and ``verify_max_samples`` (the data the build verifies the compiled model on, in
    the same forms; by default the calibration data: one of the two is needed), and ``output_dir`` (where the build's project, ``out/`` and cache go; by default a directory
    per model and options under ``~/.cache/qairt/sessions``). ``options_path`` names a YAML file
    with the same keys; keyword arguments win over it. With ``enable_metrics=True`` every
    inference's latency is kept for ``get_metrics``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        options_path: Optional[str | os.PathLike] = None,
        enable_metrics: bool = False,
        **options: Any,
    ) -> None:
        merged = _load_options(options_path) if options_path is not None else {}
        merged.update(options)
        self.enable_metrics = bool(merged.pop("enable_metrics", enable_metrics))
        self._session = _qairt.Session(os.fspath(model_path), merged or None)

    @property
    def model_path(self) -> str:
        """The ``model.bin`` this session runs."""
        return os.fspath(self._session.model_bin)

    @property
    def project(self) -> Optional[str]:
        """The ``qairt.toml`` of the project that built the model (``None`` for a ``model.bin``)."""
        project = self._session.project
        return None if project is None else os.fspath(project)

    @property
    def verify(self) -> Optional[Dict[str, Any]]:
        """For an ``.onnx`` model, the verification of the build that compiled it (as in
        ``BuildResult.verify``: passed, metrics, worst layers, ...); ``None`` for a ``model.bin``."""
        text = self._session._verify_json
        return None if text is None else json.loads(text)

    def setup(self) -> None:
        """Loads the network (``run`` does it when needed)."""
        self._session.setup()

    def reset(self) -> None:
        """Releases the loaded network; the next ``run`` loads it again."""
        self._session.reset()

    def run(self, input_dict: Dict[str, numpy.ndarray]) -> Dict[str, numpy.ndarray]:
        """One inference: each input's array by name; returns each output's array by name."""
        return self._session.run(input_dict)

    def model_input_shape_dict(self) -> Dict[str, Tuple[List[int], str]]:
        """Each input's name with its shape and numpy type name."""
        return self._session.model_input_shape_dict()

    def model_output_shape_dict(self) -> Dict[str, Tuple[List[int], str]]:
        """Each output's name with its shape and numpy type name."""
        return self._session.model_output_shape_dict()

    def run_benchmark(
        self,
        num_inferences: Optional[int] = None,
        inf_time: Optional[float] = None,
        input_dict: Optional[Dict[str, numpy.ndarray]] = None,
    ) -> Tuple[int, float, float, int]:
        """Runs ``num_inferences`` inferences (40 by default), or as many as fit in ``inf_time``
        seconds, on ``input_dict`` (by default fixed pseudo-random inputs). Returns
        ``(inf_completed, inf_rate, inf_time, batch_size)``: inferences run, inferences per
        second, seconds spent running them (Python's overhead not counted) and the batch size
        (the first input's first dimension)."""
        if num_inferences is not None and inf_time is not None:
            raise ValueError("num_inferences and inf_time cannot be used together")
        if num_inferences is not None and num_inferences < 1:
            raise ValueError(f"num_inferences must be at least 1, not {num_inferences}")
        if inf_time is not None and not inf_time > 0:
            raise ValueError(f"inf_time must be a positive number of seconds, not {inf_time}")
        return self._session._run_benchmark(num_inferences, inf_time, input_dict)

    def get_metrics(self) -> Dict[str, float]:
        """Latency statistics of every inference so far, in seconds (needs ``enable_metrics``):
        ``num_of_inferences``, ``min_latency``, ``max_latency``, ``P25`` ... ``P999`` (numpy's
        linear-interpolation percentiles), ``total_inference_time`` and ``avg_latency``."""
        self._require_metrics()
        latencies = numpy.asarray(self._session._latencies(), dtype=numpy.float64)
        if latencies.size == 0:
            raise QairtError("no inference has run on this session yet: call run or run_benchmark first")
        metrics: Dict[str, float] = {
            "num_of_inferences": int(latencies.size),
            "min_latency": float(latencies.min()),
            "max_latency": float(latencies.max()),
        }
        for key, q in _PERCENTILES:
            metrics[key] = float(numpy.percentile(latencies, q))
        metrics["total_inference_time"] = float(latencies.sum())
        metrics["avg_latency"] = float(latencies.mean())
        return metrics

    def print_metrics(self) -> None:
        """Prints ``get_metrics`` as the SDK's qaic ``Session.print_metrics`` does."""
        m = self.get_metrics()
        print(f"Number of inferences utilized for calculation are {m['num_of_inferences']}")
        print(f"Minimum latency observed {m['min_latency']} s")
        print(f"Maximum latency observed {m['max_latency']} s")
        print(f"Average latency / inference time observed is {m['avg_latency']} s")
        for key, q in _PERCENTILES:
            print(f"{key} / {q:g}% of inferences observed latency less than {m[key]} s")
        print(f"Sum of all the inference times {m['total_inference_time']} s")
        print(f"Average latency / inference time observed is {m['avg_latency']} s")

    def _require_metrics(self) -> None:
        if not self.enable_metrics:
            raise QairtError("metrics are off for this session: create it with enable_metrics=True")

    def __repr__(self) -> str:
        return f"qairt.Session({self.model_path!r})"


@dataclass
class BuildResult:
    """What ``qairt.build`` did: the events ``qairt build --message-format json`` prints."""

    ok: bool
    """Every selected target built and met its verification thresholds."""
    exit_code: int
    """``qairt build``'s exit status for this build: 0, or 2 when a threshold is not met."""
    built: int
    cached: int
    ms: float
    stages: List[Dict[str, Any]] = field(default_factory=list)
    """One ``stage`` event per stage run or reused: target, stage, status (built or cached), key, ms."""
    verify: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    """Per target, its ``verify`` event: passed, metrics, failures, worst layers, ..."""
    warnings: List[str] = field(default_factory=list)
    """Each warning as ``qairt build`` prints it."""


def build(path: str | os.PathLike = ".", targets: Optional[Sequence[str]] = None) -> BuildResult:
    """Builds the project at ``path`` (a directory or its ``qairt.toml``) as ``qairt build``
    does: every target, or those in ``targets``. Raises ``QairtError`` (the diagnostics' text)
    when the build fails; a target below its thresholds is a result (``ok`` false), not an
    error."""
    lines = _qairt.build(os.fspath(path), list(targets) if targets is not None else None)
    events = [json.loads(line) for line in lines]
    closing = events[-1]
    result = BuildResult(
        ok=closing["ok"],
        exit_code=closing["exit_code"],
        built=closing["built"],
        cached=closing["cached"],
        ms=closing["ms"],
    )
    for event in events[:-1]:
        kind = event.get("event")
        if kind == "stage":
            result.stages.append(event)
        elif kind == "verify":
            result.verify[event["target"]] = event
        elif kind == "warning":
            result.warnings.append(event["text"])
    return result
