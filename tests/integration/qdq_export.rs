//! Integration tests: `out/<target>/model.qdq.onnx` passes `onnx.checker` and, run by
//! onnxruntime on the verify inputs, agrees with qairt's own simulation
//! (`scripts/python/qdq_check.py` in the venv of `scripts/setup-python.sh --test`).
//!
//! They need the test venv; without it they fail in CI and are skipped elsewhere, with a line
//! saying how to make it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::util::{Project, config, repo_root};

/// The interpreter of the test venv (`scripts/setup-python.sh --test`, which .ci/run runs
/// first; `QAIRT_TEST_VENV` moves it), when it is there with onnx and onnxruntime.
fn test_python() -> Option<PathBuf> {
    let venv = std::env::var_os("QAIRT_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/qairt-test-venv")))?;
    let python = venv.join("bin/python");
    let works = Command::new(&python)
        .args(["-c", "import numpy, onnx, onnxruntime"])
        .output()
        .is_ok_and(|out| out.status.success());
    works.then_some(python)
}

/// Whether the QDQ tests can run: see [`crate::util::tool_or_skip`].
fn python_available() -> bool {
    crate::util::tool_or_skip(
        test_python().is_some(),
        "the test venv (Python with numpy, onnx and onnxruntime)",
        "`bash scripts/setup-python.sh --test` creates it, as .ci/run does",
    )
}

/// What `qdq_check.py` reports for one target.
#[derive(Debug)]
struct Check {
    sqnr_db: f64,
    max_abs_diff: f64,
    top1_agreement: f64,
    samples: u64,
    /// Element types of initializers and intermediate tensors, e.g. "INT4", "UINT16".
    element_types: Vec<String>,
    /// Nodes per op type.
    op_counts: Value,
}

fn qdq_check(project: &Project, target: &str, optimized: bool) -> Check {
    let mut cmd = Command::new(test_python().expect("the test checked python_available() first"));
    cmd.arg(repo_root().join("scripts/python/qdq_check.py")).arg(project.dir.path()).arg(target);
    if optimized {
        cmd.arg("--optimized");
    }
    let out = cmd.output().expect("run qdq_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qdq_check.py {target} failed (onnx.checker or onnxruntime):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(report["checker"], "ok", "{report}");
    let number = |key: &str| match &report[key] {
        Value::String(s) if s == "inf" => f64::INFINITY,
        v => v.as_f64().unwrap_or_else(|| panic!("{key} is not a number: {report}")),
    };
    let check = Check {
        sqnr_db: number("sqnr_db"),
        max_abs_diff: number("max_abs_diff"),
        top1_agreement: number("top1_agreement"),
        samples: report["samples"].as_u64().unwrap_or(0),
        element_types: report["element_types"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        op_counts: report["op_counts"].clone(),
    };
    eprintln!("qdq_check {target} (onnxruntime optimizations {}): {check:?}", if optimized { "on" } else { "off" });
    check
}

/// onnxruntime's outputs of the exported model agree with qairt's simulated outputs to more
/// than 40 dB, on every verify sample, with the same top-1 class, with and without
/// onnxruntime's graph optimizations; the model stores the element types `types` (and maybe
/// others). Returns the report of the unoptimized run.
fn assert_agrees(project: &Project, target: &str, samples: u64, types: &[&str]) -> Check {
    let [plain, optimized] = [false, true].map(|optimized| qdq_check(project, target, optimized));
    for check in [&plain, &optimized] {
        assert_eq!(check.samples, samples, "{target}: {check:?}");
        assert!(check.sqnr_db > 40.0, "{target}: SQNR vs simulate {check:?}");
        assert!(check.max_abs_diff.is_finite(), "{target}: {check:?}");
        assert_eq!(check.top1_agreement, 1.0, "{target}: {check:?}");
    }
    for t in types {
        assert!(plain.element_types.iter().any(|e| e == t), "{target}: no {t} tensor in {plain:?}");
    }
    assert!(plain.op_counts["QuantizeLinear"].as_u64() > Some(0), "{target}: {plain:?}");
    plain
}

/// The test config: htp-w8a8 has per-channel weights and the example overrides (a 16-bit
/// activation among 8-bit ones), htp-w8a16 16-bit activations, cpu no quantization.
#[test]
fn digits_targets_export_a_qdq_model_that_matches_simulate() {
    if !python_available() {
        return;
    }
    let project = Project::digits();
    project.build().assert_ok();
    assert!(!project.path("out/cpu/model.qdq.onnx").exists(), "a float target has no QDQ model");
    let bytes = std::fs::read(project.path("out/htp-w8a8/model.qdq.onnx")).expect("model.qdq.onnx is written");
    assert!(!bytes.is_empty());
    // Per-channel int8 weights, int32 biases, uint8 activations and the overrides' 16-bit one.
    assert_agrees(&project, "htp-w8a8", 40, &["INT8", "INT32", "UINT8", "UINT16"]);
    assert_agrees(&project, "htp-w8a16", 40, &["INT8", "INT32", "UINT16"]);
}

/// Per-tensor weights, 4-bit weights (int4), 8-bit biases with symmetric activations (int8
/// activations), and a float16 island (Cast pairs, and the Convert ops mixed precision adds).
#[test]
fn per_tensor_int4_int8_and_float16_encodings_export_exactly() {
    if !python_available() {
        return;
    }
    let base = config(40);
    let (head, tail) = base.split_once("[[target]]").expect("the test config has targets");
    let verify = tail.find("[verify]").map(|i| &tail[i..]).expect("the test config has [verify]");
    // 4-bit weights cost ~16 dB against float; this test compares with the simulation instead.
    let verify = verify.replace("min_sqnr_db = 20.0", "min_sqnr_db = 10.0");
    let toml = format!(
        r#"{head}
[[target]]
name = "per-tensor"
backend = "htp"
per_channel = false

[[target]]
name = "w4a8"
backend = "htp"
weight_bitwidth = 4

[[target]]
name = "b8-symmetric"
backend = "htp"
bias_bitwidth = 8
act_schema = "symmetric"

[[target]]
name = "fp16"
backend = "htp"
overrides = "fp16.json"

{verify}"#
    );
    let project = Project::digits_with(&toml);
    project.write(
        "fp16.json",
        r#"{"activation_encodings": {"/fc1/Gemm_output_0": [{"bitwidth": 16, "dtype": "float"}]}, "param_encodings": {}}"#,
    );
    project.build().assert_ok();
    assert_agrees(&project, "per-tensor", 40, &["INT8", "INT32", "UINT8"]);
    assert_agrees(&project, "w4a8", 40, &["INT4"]);
    let b8 = assert_agrees(&project, "b8-symmetric", 40, &["INT8"]);
    assert!(!b8.element_types.iter().any(|t| t == "INT32" || t == "UINT8"), "{b8:?}");
    let fp16 = assert_agrees(&project, "fp16", 40, &["FLOAT16"]);
    assert!(fp16.op_counts["Cast"].as_u64() >= Some(2), "{fp16:?}");
}

/// qairt's own QDQ import reads an exported model back with the optimized graph's tensor
/// names: the encodings of a target built from `model.qdq.onnx` are keyed by the same names as
/// those of the target that exported it (values may differ: they are calibrated again unless
/// the model's own encodings are used).
#[test]
fn an_exported_model_imports_back_with_the_same_tensor_names() {
    let first = Project::digits();
    first.build().assert_ok();
    let second = Project::empty();
    std::fs::copy(first.path("out/htp-w8a8/model.qdq.onnx"), second.path("model.onnx")).unwrap();
    crate::util::copy_dir(&first.path("digits/calib"), &second.path("calib"));
    crate::util::copy_dir(&first.path("digits/test"), &second.path("test"));
    second.write(
        "qairt.toml",
        r#"[project]
name = "reimported"

[model]
path = "model.onnx"

[calibration]
input_list = "calib/input_list.txt"

[[target]]
name = "htp"
backend = "htp"

[verify]
input_list = "test/input_list.txt"
max_samples = 10
"#,
    );
    second.build().assert_ok();
    let a = first.path("out/htp-w8a8/encodings.json");
    let b = second.path("out/htp/encodings.json");
    let out =
        second.command().args(["encodings", "compare", "--message-format", "json"]).arg(&a).arg(&b).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "compare failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let one_sided: Vec<&str> = stdout.lines().filter(|l| l.contains(r#""field":"entry""#)).collect();
    assert!(one_sided.is_empty(), "tensors present on one side only:\n{}", one_sided.join("\n"));
    // The comparison did see the activations (a renamed graph would list each twice above).
    let encodings = std::fs::read_to_string(&b).unwrap();
    for name in ["/conv1/Conv_output_0", "/relu3/Relu_output_0", "logits", "conv1.weight", "fc2.bias"] {
        assert!(encodings.contains(&format!("\"{name}\"")), "{name} missing from {}", b.display());
    }
}

/// A copy of the model-zoo fixture `tests/data/zoo/<name>` as a project.
fn zoo(name: &str) -> Project {
    let project = Project::empty();
    crate::util::copy_dir(&repo_root().join("tests/data/zoo").join(name), project.dir.path());
    project
}

/// Graph inputs that are not float32 (uint8 images, int64 token ids and masks): qdq_check.py
/// reads each verify file in its input's own element type, and the exported models run in
/// onnxruntime and agree with the simulation.
#[test]
fn zoo_models_with_integer_inputs_export_a_qdq_model_that_matches_simulate() {
    if !python_available() {
        return;
    }
    let classifier = zoo("uint8_classifier");
    classifier.build().assert_ok();
    assert_agrees(&classifier, "htp-w8a8", 8, &["INT8", "INT32", "UINT8"]);
    let bert = zoo("bert");
    bert.build().assert_ok();
    // BERT's outputs are hidden states, not class scores: top-1 agreement says nothing there.
    for optimized in [false, true] {
        let check = qdq_check(&bert, "htp-w8a8", optimized);
        assert_eq!(check.samples, 8, "{check:?}");
        assert!(check.sqnr_db > 40.0, "SQNR vs simulate {check:?}");
    }
}
