//! `[verify] golden`: comparing against another tool's dump (onnxruntime's, made by
//! scripts/python/dump_goldens.py into tests/data/goldens/).

use serde_json::Value;

use crate::util::{Project, copy_dir, read_f32, repo_root};

/// The digits project with `extra` added to `[verify]` and the verify list cut to `samples`,
/// with the golden fixtures copied to `goldens/`.
fn project(samples: usize, extra: &str) -> Project {
    let toml = format!(
        r#"[project]
name = "golden-test"

[model]
path = "digits/model.onnx"

[calibration]
input_list = "digits/calib/input_list.txt"

[[target]]
name = "htp-w8a8"
backend = "htp"

[[target]]
name = "cpu"
backend = "cpu"

[verify]
input_list = "digits/test/input_list.txt"
max_samples = {samples}
{extra}
"#
    );
    let project = Project::digits_with(&toml);
    copy_dir(&repo_root().join("tests/data/goldens"), &project.path("goldens"));
    project
}

fn summary(project: &Project, target: &str) -> Value {
    serde_json::from_str(&project.read(&format!("out/{target}/verify/summary.json"))).unwrap()
}

fn sqnr_db(golden: &[f32], actual: &[f32]) -> f64 {
    let signal: f64 = golden.iter().map(|&g| f64::from(g) * f64::from(g)).sum();
    let noise: f64 = golden.iter().zip(actual).map(|(&g, &a)| (f64::from(g) - f64::from(a)).powi(2)).sum();
    10.0 * (signal / noise).log10()
}

#[test]
fn an_onnxruntime_dump_replaces_the_float_run() {
    // The dump holds the first 8 lines of the test list (Result_0..7).
    let p = project(8, "golden = \"goldens/digits_ort\"");
    let build = p.build();
    build.assert_ok();
    let golden = &build.verify("cpu")["golden"];
    assert_eq!(golden["matched"], 9, "{golden}");
    assert_eq!(golden["unmatched_tensors"], serde_json::json!([]));
    assert_eq!(golden["unmatched_files"], serde_json::json!([]));

    // The float target against onnxruntime: close (float rounding) but not identical, which is
    // what shows the dump, not qairt's own float run (that would be exact), is the reference.
    let s = summary(&p, "cpu");
    let reported = s["outputs"][0]["metrics"]["sqnr_db"].as_f64().expect("finite: not qairt's own run");
    assert!(reported > 100.0, "{reported}");
    assert_eq!(s["layers"].as_array().unwrap().len(), 9);
    // Recomputed here from the files: qairt's outputs against the dump's logits.
    let (mut golden_all, mut actual_all) = (Vec::new(), Vec::new());
    for n in 0..8 {
        golden_all.extend(read_f32(&p.path(&format!("goldens/digits_ort/Result_{n}/logits.raw"))));
        actual_all.extend(read_f32(&p.path(&format!("out/cpu/outputs/Result_{n}/logits.raw"))));
    }
    let expected = sqnr_db(&golden_all, &actual_all);
    assert!((reported - expected).abs() < 1e-6 * expected, "{reported} vs {expected}");

    // The quantized target measures about the same against either reference.
    let against_dump = s_sqnr(&p, "htp-w8a8");
    let plain = project(8, "");
    plain.build().assert_ok();
    let against_float = s_sqnr(&plain, "htp-w8a8");
    assert!((against_dump - against_float).abs() < 0.05, "{against_dump} vs {against_float}");

    // Editing one golden file re-runs only the runs that fold each layer against it (no
    // intermediate tensor is kept, so the comparison needs the quantized run again) and the
    // verdict; nothing upstream.
    let file = p.path("goldens/digits_ort/Result_3/logits.raw");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let again = p.build();
    again.assert_ok();
    let built: Vec<String> = again.built().into_iter().map(|(_, stage)| stage).collect();
    assert_eq!(built, ["simulate", "verify", "simulate", "verify"], "{:?}", again.built());
}

fn s_sqnr(p: &Project, target: &str) -> f64 {
    summary(p, target)["outputs"][0]["metrics"]["sqnr_db"].as_f64().unwrap()
}

#[test]
fn a_mapping_file_matches_renamed_files_and_unmatched_names_are_listed() {
    let p = project(1, "golden = \"goldens/digits_renamed\"\ntensor_mapping = \"goldens/digits_renamed/mapping.json\"");
    let build = p.build();
    build.assert_ok();
    let golden = &build.verify("cpu")["golden"];
    assert_eq!(golden["matched"], 8, "{golden}");
    assert_eq!(golden["unmatched_tensors"], serde_json::json!(["/pool/MaxPool_output_0"]));
    assert_eq!(golden["unmatched_files"], serde_json::json!(["golden__debug_probe.raw"]));
    let s = summary(&p, "cpu");
    let rows: Vec<&str> = s["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert!(!rows.contains(&"/pool/MaxPool_output_0") && rows.len() == 8, "{rows:?}");
    let human = p.run(&["build", "--target", "cpu"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("no golden file for: /pool/MaxPool_output_0"), "{text}");
    assert!(text.contains("golden files matching no tensor: golden__debug_probe.raw"), "{text}");
    let report = p.read("out/cpu/verify/report.html");
    assert!(report.contains("golden__debug_probe.raw"));
}

#[test]
fn golden_mistakes_are_diagnostics() {
    // Without the mapping nothing matches the renamed files.
    let p = project(1, "golden = \"goldens/digits_renamed\"");
    let out = p.run(&["build", "--target", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no golden file matches a tensor"), "{stderr}");
    assert!(stderr.contains("tensor_mapping"), "{stderr}");

    // 8 samples in the dump, 20 in the verify list.
    let p = project(20, "golden = \"goldens/digits_ort\"");
    let out = p.run(&["build", "--target", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the golden dump has 8 sample(s), the verify input list has 20"), "{stderr}");

    // A mapping that is not an object of strings points at its line and column.
    let p = project(1, "golden = \"goldens/digits_renamed\"\ntensor_mapping = \"bad.json\"");
    p.write("bad.json", "{\n  \"/conv1/Conv_output_0\": \"golden__conv1_Conv_output_0\",\n  \"logits\": 3\n}\n");
    let out = p.run(&["build", "--target", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad.json:3:13"), "{stderr}");
    assert!(stderr.contains("not a string"), "{stderr}");

    // A golden directory that is not there points at qairt.toml.
    let p = project(1, "golden = \"goldens/nowhere\"");
    let out = p.run(&["build", "--target", "cpu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("qairt.toml:") && stderr.contains("golden directory"), "{stderr}");
}

/// Row `name` of the per-layer table: its SQNR in dB (None when equal).
fn layer_sqnr(summary: &Value, name: &str) -> Option<f64> {
    let layers = summary["layers"].as_array().unwrap();
    let row = layers.iter().find(|l| l["name"] == name).unwrap_or_else(|| panic!("no row {name}"));
    row["metrics"]["sqnr_db"].as_f64()
}

#[test]
fn layerwise_against_a_dump_starts_every_op_from_the_dump() {
    // onnxruntime's dump with relu2's values halved in every sample: the op reading relu2 (the
    // MaxPool) must see the halved values, and no op after it may.
    let p = project(8, "golden = \"goldens/digits_ort\"\nmode = \"layerwise\"");
    for n in 0..8 {
        let file = p.path(&format!("goldens/digits_ort/Result_{n}/_relu2_Relu_output_0.raw"));
        let halved: Vec<u8> = read_f32(&file).iter().flat_map(|v| (v * 0.5).to_le_bytes()).collect();
        std::fs::write(&file, halved).unwrap();
    }
    p.build().assert_ok();
    let s = summary(&p, "cpu");
    // MaxPool commutes with a positive scale: its output is half the dump's, noise = signal / 2.
    let pool = layer_sqnr(&s, "/pool/MaxPool_output_0").expect("the pool reads the halved dump");
    assert!((pool - 20.0 * 2f64.log10()).abs() < 1e-3, "{pool}");
    // fc1 reads the dump's (unchanged) flattened pool output: float rounding only.
    let fc1 = layer_sqnr(&s, "/fc1/Gemm_output_0").unwrap_or(f64::INFINITY);
    assert!(fc1 > 100.0, "{fc1}");

    // The quantized target, op by op against the same dump: the pool reads relu2's halved
    // values quantized with relu2's encoding, so it is about 6 dB off too.
    let pool_q = layer_sqnr(&summary(&p, "htp-w8a8"), "/pool/MaxPool_output_0").unwrap();
    assert!((pool_q - 6.0).abs() < 1.0, "{pool_q}");

    // In this mode the dump seeds the run: editing it re-runs the layerwise run (`simulate`)
    // and the comparison, nothing else.
    let file = p.path("goldens/digits_ort/Result_3/_conv2_Conv_output_0.raw");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let again = p.build();
    again.assert_ok();
    let mut built: Vec<String> = again.built().into_iter().map(|(_, stage)| stage).collect();
    built.sort();
    assert_eq!(built, ["simulate", "simulate", "verify", "verify"], "{:?}", again.built());
}
