//! The whole pipeline on the real digits CNN, checked against independent references:
//! onnxruntime's float outputs and the dataset labels.

use crate::util::{Project, config, read_f32, repo_root};

#[test]
fn the_float_target_matches_onnxruntime_and_the_quantized_ones_pass_their_thresholds() {
    let p = Project::digits_with(&config(400));
    let b = p.build();
    b.assert_ok();
    let ort = repo_root().join("examples/digits/test/ort");
    let mut worst = 0f32;
    for n in 0..400 {
        let ours = read_f32(&p.path(&format!("out/cpu/outputs/Result_{n}/logits.raw")));
        let reference = read_f32(&ort.join(format!("Result_{n}/logits.raw")));
        assert_eq!(ours.len(), 10);
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, r) in ours.iter().zip(&reference) {
            worst = worst.max((a - r).abs() / scale);
        }
    }
    assert!(worst < 1e-5, "cpu target vs onnxruntime: max error relative to max |ref| = {worst}");

    // The model is 99.25% accurate in float (examples/digits/README.md); quantized targets
    // stay close, and the cpu target is exact.
    for target in ["htp-w8a8", "htp-w8a16", "cpu"] {
        let v = b.verify(target);
        assert_eq!(v["passed"], true, "{target}: {v}");
        let accuracy = v["metrics"]["accuracy"].as_f64().unwrap();
        assert!(accuracy >= 0.98, "{target}: accuracy {accuracy}");
    }
    let w8a16 = b.verify("htp-w8a16")["metrics"]["sqnr_db"].as_f64().unwrap();
    let w8a8 = b.verify("htp-w8a8")["metrics"]["sqnr_db"].as_f64().unwrap();
    assert!(w8a16 > w8a8, "16-bit activations beat 8-bit: {w8a16} vs {w8a8}");
}

#[test]
fn out_holds_every_artifact_the_interface_promises() {
    let p = Project::digits();
    p.build().assert_ok();
    for file in [
        "htp-w8a8/model.bin",
        "htp-w8a8/encodings.json",
        "htp-w8a8/outputs/Result_0/logits.raw",
        "htp-w8a8/reference/Result_39/logits.raw",
        "htp-w8a8/verify/summary.json",
        "htp-w8a8/verify/summary.csv",
        "htp-w8a8/build.json",
        "cpu/model.bin",
    ] {
        assert!(p.path("out").join(file).is_file(), "missing out/{file}");
    }
    assert!(!p.path("out/cpu/encodings.json").exists(), "a float target has no encodings");

    // The override in overrides.json wins over calibration for its tensor.
    let encodings: serde_json::Value = serde_json::from_str(&p.read("out/htp-w8a8/encodings.json")).unwrap();
    let relu1 = &encodings["activation_encodings"]["/relu1/Relu_output_0"][0];
    assert_eq!(relu1["bitwidth"], 16, "{relu1}");
    assert!(encodings["param_encodings"]["conv1.weight"].as_array().unwrap().len() == 8, "per-channel weights");

    // Per-layer rows in graph order.
    let csv = p.read("out/htp-w8a8/verify/summary.csv");
    let names: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    let relu1_row = names.iter().position(|n| *n == "/relu1/Relu_output_0").unwrap();
    let fc1_row = names.iter().position(|n| *n == "/fc1/Gemm_output_0").unwrap();
    assert!(relu1_row < fc1_row, "{names:?}");

    let provenance: serde_json::Value = serde_json::from_str(&p.read("out/htp-w8a8/build.json")).unwrap();
    assert_eq!(provenance["target"], "htp-w8a8");
}

#[test]
fn an_unmet_threshold_exits_with_status_2() {
    let p = Project::digits_with(&config(20).replace("min_sqnr_db = 20.0", "min_sqnr_db = 90.0"));
    let b = p.build();
    assert_eq!(b.status, 2, "{}", b.stderr);
    assert_eq!(b.verify("htp-w8a8")["passed"], false);
    assert_eq!(b.verify("cpu")["passed"], true, "the float target is exact");
}

/// interface.md: given the same model and the same encodings file, the quantized simulation
/// agrees with AIMET's QuantSim to rounding. AIMET 2.42 (examples/digits/make_aimet.py) folded
/// the BatchNorms, computed W8A8 encodings, exported them and ran QuantSim on the test set.
#[test]
fn with_aimets_encodings_the_simulation_agrees_with_aimet_quantsim_to_one_step() {
    let p = Project::empty();
    crate::util::copy_dir(&repo_root().join("examples/digits"), &p.path("digits"));
    p.write(
        "qairt.toml",
        r#"[project]
name = "aimet"
[model]
path = "digits/aimet/digits_bnfolded.onnx"
[calibration]
input_list = "digits/calib/input_list.txt"
[[target]]
name = "aimet"
backend = "htp"
overrides = "digits/aimet/encodings_v1.0.0.json"
[verify]
input_list = "digits/test/input_list.txt"
"#,
    );
    p.build().assert_ok();
    let encodings: serde_json::Value = serde_json::from_str(&p.read("digits/aimet/encodings_v1.0.0.json")).unwrap();
    let logits = encodings["activation_encodings"].as_array().unwrap().iter().find(|e| e["name"] == "logits").unwrap();
    let step = logits["scale"][0].as_f64().unwrap() as f32;
    let (mut identical, mut total) = (0, 0);
    for n in 0..400 {
        let ours = read_f32(&p.path(&format!("out/aimet/outputs/Result_{n}/logits.raw")));
        let aimet = read_f32(&p.path(&format!("digits/aimet/quantsim/Result_{n}/logits.raw")));
        for (a, b) in ours.iter().zip(&aimet) {
            assert!((a - b).abs() <= step * 1.001, "sample {n}: {a} vs AIMET {b} (step {step})");
            identical += usize::from(a == b);
            total += 1;
        }
    }
    // Measured: 3941 of 4000 identical; the rest one step apart (qairt's int32 biases,
    // AIMET's float biases).
    assert!(identical * 100 >= total * 95, "{identical} of {total} identical");
}
