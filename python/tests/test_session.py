"""The qairt Python package against the real binary's work: the root project (the digits CNN in
examples/digits/) built by ``qairt.build`` in a scratch copy, then its compiled models run from
numpy through ``qairt.Session`` and compared byte for byte with the build's own ``Result_N``
files. Run by .ci/run (scripts/test-python.sh) after ``pip install .`` in a fresh venv."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path

import numpy
import pytest

import qairt

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A copy of the root project (qairt.toml and examples/digits/), built once."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "qairt.toml", root / "qairt.toml")
    shutil.copytree(DIGITS, root / "examples" / "digits")
    result = qairt.build(root)
    assert result.ok, result
    return root


def input_list(path: Path) -> list[dict[str, Path]]:
    """The files of each line of an input list (``name:=path`` pairs, or a bare path for the
    model's one input, keyed ``None``)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith(("#", "%")):
            continue
        files = {}
        for word in line.split():
            name, _, file = word.rpartition(":=")
            files[name or None] = path.parent / file
        lines.append(files)
    return lines


def inputs_of(session: qairt.Session, files: dict) -> dict[str, numpy.ndarray]:
    """The arrays of one input-list line, read as the model's inputs."""
    arrays = {}
    for name, (shape, dtype) in session.model_input_shape_dict().items():
        file = files.get(name, files.get(None))
        arrays[name] = numpy.fromfile(file, dtype=dtype).reshape(shape)
    return arrays


def result_files(out: Path, n: int) -> dict[str, bytes]:
    """The bytes of ``outputs/Result_n/`` by output name (output_names.json maps names to files)."""
    names = json.loads((out / "output_names.json").read_text())["outputs"]
    return {entry["name"]: (out / "outputs" / f"Result_{n}" / entry["file"]).read_bytes() for entry in names}


def test_build_returns_every_targets_verification_and_a_rebuild_is_cached(project):
    result = qairt.build(project)
    assert result.ok and result.exit_code == 0
    assert sorted(result.verify) == ["cpu", "htp-w8a16", "htp-w8a8"]
    assert result.built == 0 and result.cached == len(result.stages) > 0
    assert all(stage["status"] == "cached" for stage in result.stages)
    w8a8 = result.verify["htp-w8a8"]
    assert w8a8["passed"] is True
    assert w8a8["metrics"]["accuracy"] == pytest.approx(0.9925)
    assert w8a8["metrics"]["sqnr_db"] > 30
    only = qairt.build(project, targets=["cpu"])
    assert list(only.verify) == ["cpu"]


@pytest.mark.parametrize("target", ["htp-w8a8", "htp-w8a16", "cpu"])
def test_a_model_bin_run_from_numpy_gives_the_bytes_of_the_builds_results(project, target):
    out = project / "out" / target
    session = qairt.Session(out / "model.bin")
    lines = input_list(project / "examples" / "digits" / "test" / "input_list.txt")
    for n in range(8):
        outputs = session.run(inputs_of(session, lines[n]))
        expected = result_files(out, n)
        assert list(outputs) == list(expected)
        for name, array in outputs.items():
            assert array.dtype == numpy.float32
            assert array.tobytes() == expected[name], f"{target} Result_{n} {name}"


def test_an_onnx_session_builds_the_float_target_and_gives_its_bytes(project, tmp_path):
    test_list = project / "examples" / "digits" / "test" / "input_list.txt"
    session = qairt.Session(project / "examples" / "digits" / "model.onnx", verify=test_list, output_dir=tmp_path)
    assert session.verify["passed"] is True
    assert session.verify["metrics"]["top1_agreement"] == 1.0
    first = input_list(test_list)[0]
    outputs = session.run(inputs_of(session, first))
    assert outputs["logits"].tobytes() == result_files(project / "out" / "cpu", 0)["logits"]


def test_calibration_arrays_build_the_model_the_projects_input_list_builds(project, tmp_path):
    """The htp-w8a8 target's settings as Session options, its calibration data as numpy arrays:
    the same compiled model, byte for byte."""
    digits = project / "examples" / "digits"
    probe = qairt.Session(project / "out" / "cpu" / "model.bin")
    calibration = [inputs_of(probe, files) for files in input_list(digits / "calib" / "input_list.txt")]
    session = qairt.Session(
        digits / "model.onnx",
        backend="htp",
        overrides=digits / "overrides.json",
        per_channel=True,
        calibration=calibration,
        verify=digits / "test" / "input_list.txt",
        output_dir=tmp_path,
    )
    assert Path(session.model_path).read_bytes() == (project / "out" / "htp-w8a8" / "model.bin").read_bytes()


def test_options_path_takes_the_same_keys_and_keyword_arguments_win(project, tmp_path):
    digits = project / "examples" / "digits"
    options = tmp_path / "options.yaml"
    options.write_text(
        f"backend: htp\nact_bitwidth: 8\ncalibration: {digits / 'calib' / 'input_list.txt'}\n"
        f"verify: {digits / 'test' / 'input_list.txt'}\nverify_max_samples: 40\n"
    )
    session = qairt.Session(digits / "model.onnx", options_path=options, act_bitwidth=16, output_dir=tmp_path / "b")
    assert Path(session.model_path).read_bytes() == (project / "out" / "htp-w8a16" / "model.bin").read_bytes()


def test_shape_dicts_name_each_input_and_output(project):
    session = qairt.Session(project / "out" / "htp-w8a8" / "model.bin")
    assert session.model_input_shape_dict() == {"input": ([1, 1, 8, 8], "float32")}
    assert session.model_output_shape_dict() == {"logits": ([1, 10], "float32")}


def test_other_memory_layouts_give_what_the_contiguous_array_gives(project):
    session = qairt.Session(project / "out" / "htp-w8a8" / "model.bin")
    x = inputs_of(session, input_list(project / "examples" / "digits" / "test" / "input_list.txt")[3])["input"]
    expected = session.run({"input": x})["logits"].tobytes()
    fortran = numpy.asfortranarray(x)
    assert fortran.flags.f_contiguous and not fortran.flags.c_contiguous
    assert session.run({"input": fortran})["logits"].tobytes() == expected
    strided = numpy.zeros((1, 1, 8, 16), dtype=numpy.float32)[..., ::2]
    strided[...] = x
    assert not strided.flags.c_contiguous
    assert session.run({"input": strided})["logits"].tobytes() == expected


def test_run_benchmark_and_metrics(project, capsys):
    session = qairt.Session(project / "out" / "htp-w8a8" / "model.bin", enable_metrics=True)
    completed, rate, seconds, batch = session.run_benchmark()
    assert (completed, batch) == (40, 1)
    assert seconds > 0 and rate == pytest.approx(completed / seconds)
    completed, _, seconds, _ = session.run_benchmark(num_inferences=5)
    assert completed == 5
    completed, _, _, _ = session.run_benchmark(inf_time=0.05)
    assert completed >= 1
    with pytest.raises(ValueError):
        session.run_benchmark(num_inferences=3, inf_time=1.0)

    metrics = session.get_metrics()
    assert metrics["num_of_inferences"] == 45 + completed
    order = ["min_latency", "P25", "P50", "P75", "P90", "P99", "P999", "max_latency"]
    values = [metrics[key] for key in order]
    assert values == sorted(values) and values[0] > 0
    assert metrics["avg_latency"] == pytest.approx(metrics["total_inference_time"] / metrics["num_of_inferences"])
    session.print_metrics()
    printed = capsys.readouterr().out
    assert f"Number of inferences utilized for calculation are {metrics['num_of_inferences']}" in printed
    assert "P999 / 99.9% of inferences observed latency less than" in printed

    without = qairt.Session(project / "out" / "htp-w8a8" / "model.bin")
    with pytest.raises(qairt.QairtError, match="enable_metrics=True"):
        without.get_metrics()


def test_the_gil_is_released_while_the_model_runs(project):
    """A Python thread counts while the model runs: it could not if the GIL were held."""
    session = qairt.Session(project / "out" / "htp-w8a8" / "model.bin")
    counted, stop = [0], threading.Event()

    def count():
        while not stop.is_set():
            counted[0] += 1

    thread = threading.Thread(target=count)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        thread.start()
        before = counted[0]
        session.run_benchmark(num_inferences=2000)
        during = counted[0] - before
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(previous)
    assert during > 1000, during


def test_setup_and_reset_load_and_release_the_network(project):
    session = qairt.Session(project / "out" / "cpu" / "model.bin")
    x = inputs_of(session, input_list(project / "examples" / "digits" / "test" / "input_list.txt")[0])
    first = session.run(x)["logits"].tobytes()
    session.reset()
    assert session.run(x)["logits"].tobytes() == first
    session.reset()
    session.setup()
    assert session.run(x)["logits"].tobytes() == first


def test_bad_input_is_a_diagnostic(project, tmp_path):
    session = qairt.Session(project / "out" / "htp-w8a8" / "model.bin")
    x = numpy.zeros((1, 1, 8, 8), dtype=numpy.float32)
    with pytest.raises(qairt.QairtError, match=r"astype"):
        session.run({"input": x.astype(numpy.float64)})
    with pytest.raises(qairt.QairtError, match=r"shape \[1, 1, 8, 8\]"):
        session.run({"input": x.reshape(1, 64)})
    with pytest.raises(qairt.QairtError, match=r'did you mean "input"'):
        session.run({"inptu": x})
    with pytest.raises(qairt.QairtError, match=r'"input" is missing'):
        session.run({})
    with pytest.raises(qairt.QairtError, match=r'did you mean "act_bitwidth"'):
        qairt.Session(DIGITS / "model.onnx", act_bitwidht=8, verify=DIGITS / "test" / "input_list.txt")
    with pytest.raises(qairt.QairtError, match=r"verify="):
        qairt.Session(DIGITS / "model.onnx", output_dir=tmp_path / "none")
    not_a_model = tmp_path / "model.bin"
    not_a_model.write_bytes(b"not a model")
    with pytest.raises(qairt.QairtError, match="model.bin"):
        qairt.Session(not_a_model)

    # A bad qairt.toml: the miette diagnostic, with its file, line and column.
    broken = tmp_path / "broken"
    shutil.copytree(project / "examples", broken / "examples")
    text = (project / "qairt.toml").read_text().replace("act_bitwidth = 16", "act_bitwidth = 12")
    (broken / "qairt.toml").write_text(text)
    with pytest.raises(qairt.QairtError) as error:
        qairt.build(broken)
    line = next(n for n, l in enumerate(text.splitlines(), 1) if "act_bitwidth = 12" in l)
    assert f"qairt.toml:{line}:" in str(error.value)
    assert "act_bitwidth 12 is not supported" in str(error.value)
    assert "allowed values: 8, 16" in str(error.value)
