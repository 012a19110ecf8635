//! `[simulate] debug` and `profile` end to end: the per-layer dumps of the compiled program's
//! run (`out/<target>/debug/Result_<N>/`, as the SDK's `qnn-net-run --debug` writes them) and
//! the per-step profile (`profile.csv`, `profile.json`, the report's section).
//!
//! What a dump must hold is checked against sources that do not read the dumps: the layer
//! list `make_digits.py` recorded with the onnx package (`examples/digits/summary.json`), the
//! graph outputs the build writes to `outputs/`, the per-layer target ranges verify reports
//! in `summary.json`, and layers recomputed by hand from the dump of their input.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::util::{Build, Project, config, read_f32, repo_root, tree};

const TARGETS: [&str; 3] = ["htp-w8a8", "htp-w8a16", "cpu"];
const SAMPLES: usize = 5;

/// The layer outputs of the optimized digits model in graph order (its program's steps), from
/// the ONNX node list of `examples/digits/summary.json` (BatchNormalization is folded away).
fn layer_outputs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("examples/digits/summary.json")).unwrap();
    let summary: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<String> = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["op_type"] != "BatchNormalization")
        .map(|n| n["outputs"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
    names
}

fn digits_with_simulate(keys: &str) -> Project {
    Project::digits_with(&format!("{}\n[simulate]\n{keys}\n", config(SAMPLES)))
}

fn build(p: &Project, args: &[&str]) -> Build {
    let mut all = vec!["build", "--message-format", "json"];
    all.extend_from_slice(args);
    let build = Build::from(p.run(&all));
    build.assert_ok();
    build
}

/// `debug/tensor_names.json`: (tensor name, file) in program order.
fn tensor_files(p: &Project, target: &str) -> Vec<(String, String)> {
    let map: Value = serde_json::from_str(&p.read(&format!("out/{target}/debug/tensor_names.json"))).unwrap();
    map["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t["file"].as_str().unwrap().to_string()))
        .collect()
}

/// Every dump of `target` by tensor name, each sample's values back to back per sample.
fn dumps(p: &Project, target: &str) -> BTreeMap<String, Vec<Vec<f32>>> {
    tensor_files(p, target)
        .into_iter()
        .map(|(name, file)| {
            let per_sample =
                (0..SAMPLES).map(|n| read_f32(&p.path(&format!("out/{target}/debug/Result_{n}/{file}")))).collect();
            (name, per_sample)
        })
        .collect()
}

fn summary_layers(p: &Project, target: &str) -> Vec<Value> {
    let summary: Value = serde_json::from_str(&p.read(&format!("out/{target}/verify/summary.json"))).unwrap();
    summary["layers"].as_array().unwrap().clone()
}

fn as_f32(v: &Value) -> f32 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32
}

#[test]
fn every_step_output_is_dumped_per_sample_as_the_values_verify_compares() {
    let p = digits_with_simulate("debug = true");
    build(&p, &[]);
    let layers = layer_outputs();
    for target in TARGETS {
        let files = tensor_files(&p, target);
        assert_eq!(files.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>(), layers, "{target}");
        // The SDK's sanitized names: `/conv1/Conv_output_0` -> `_conv1_Conv_output_0.raw`.
        assert!(files.contains(&("/conv1/Conv_output_0".into(), "_conv1_Conv_output_0.raw".into())));
        for n in 0..SAMPLES {
            let dir = p.path(&format!("out/{target}/debug/Result_{n}"));
            let mut listed: Vec<String> = files.iter().map(|(_, file)| file.clone()).collect();
            listed.sort();
            let mut present: Vec<String> =
                std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            present.sort();
            assert_eq!(present, listed, "{target} Result_{n}: one file per step output and nothing else");
            // The graph output, byte for byte the file of outputs/ (float32 either way here).
            let dumped = std::fs::read(dir.join("logits.raw")).unwrap();
            let output = std::fs::read(p.path(&format!("out/{target}/outputs/Result_{n}/logits.raw"))).unwrap();
            assert_eq!(dumped, output, "{target} Result_{n}");
        }
        assert!(!p.path(&format!("out/{target}/debug/Result_{SAMPLES}")).exists());

        // Each layer row of summary.json compares the target's values of its tensor (or of
        // the activation it is fused into) over every sample: the dumps' range is its range,
        // element counts included (float32: four bytes an element).
        let dumps = dumps(&p, target);
        for row in summary_layers(&p, target) {
            let name = row["name"].as_str().unwrap();
            let measured = row["compared_with"].as_str().unwrap_or(name);
            let values: Vec<f32> = dumps[measured].iter().flatten().copied().collect();
            let size = row["size"].as_u64().unwrap() as usize;
            assert!(dumps[name].iter().all(|sample| sample.len() == size), "{target} {name}");
            let min = values.iter().copied().fold(f32::INFINITY, f32::min);
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!((min, max), (as_f32(&row["target_min"]), as_f32(&row["target_max"])), "{target} {name}");
        }
    }

    // Layers recomputed by hand from the dump of their input, on the float target (exact):
    // ReLU, a 2x2 stride-2 max pool over [16, 8, 8] planes, and Flatten (the same values).
    let cpu = dumps(&p, "cpu");
    assert_eq!(cpu["/conv1/Conv_output_0"].len(), SAMPLES);
    for (n, conv1) in cpu["/conv1/Conv_output_0"].iter().enumerate() {
        let relu1: Vec<f32> = conv1.iter().map(|&x| x.max(0.0)).collect();
        assert_eq!(cpu["/relu1/Relu_output_0"][n], relu1);
        let relu2 = &cpu["/relu2/Relu_output_0"][n];
        assert_eq!(relu2.len(), 16 * 8 * 8);
        let mut pool = Vec::new();
        for c in 0..16 {
            for y in 0..4 {
                for x in 0..4 {
                    let at = |dy: usize, dx: usize| relu2[c * 64 + (2 * y + dy) * 8 + 2 * x + dx];
                    pool.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
                }
            }
        }
        assert_eq!(cpu["/pool/MaxPool_output_0"][n], pool, "Result_{n}");
        assert_eq!(cpu["/flatten/Flatten_output_0"][n], pool);
    }
    // A quantized target's dumps are dequantized values on the grid of their encoding, not the
    // float run's: the 8-bit target differs from the float target somewhere.
    let w8a8 = dumps(&p, "htp-w8a8");
    assert_ne!(w8a8["/conv2/Conv_output_0"], cpu["/conv2/Conv_output_0"]);
}

/// The modification time of every file under `dir`.
fn modified(dir: &Path) -> BTreeMap<String, std::time::SystemTime> {
    tree(dir)
        .into_keys()
        .map(|rel| {
            let time = std::fs::metadata(dir.join(&rel)).unwrap().modified().unwrap();
            (rel, time)
        })
        .collect()
}

/// Every file under `out/`, without the parts a build with dumps or a profile adds.
fn out_without_views(p: &Project) -> BTreeMap<String, Vec<u8>> {
    tree(&p.path("out"))
        .into_iter()
        .filter(|(rel, _)| !rel.contains("/debug/") && !rel.ends_with("profile.csv") && !rel.ends_with("profile.json"))
        .collect()
}

#[test]
fn dumps_come_back_after_a_delete_and_go_once_debug_is_off() {
    let p = Project::digits_with(&config(SAMPLES));
    build(&p, &[]);
    let plain = tree(&p.path("out"));
    assert!(!p.path("out/cpu/debug").exists());

    // --debug runs no stage again and changes nothing else in out/.
    let first = build(&p, &["--debug"]);
    assert!(first.built().is_empty(), "{:?}", first.built());
    assert_eq!(out_without_views(&p), plain);
    let dumped = tree(&p.path("out/cpu/debug"));
    assert_eq!(dumped.len(), 1 + SAMPLES * 9, "tensor_names.json and 9 tensors per sample");
    // A no-op build with dumps and a profile writes nothing to the store (a rewrite of the
    // same bytes would show in the modification times).
    build(&p, &["--debug", "--profile"]);
    let actions = modified(&p.path("cache/actions"));
    build(&p, &["--debug", "--profile"]);
    assert_eq!(modified(&p.path("cache/actions")), actions);

    // Deleting out/ restores the dumps (the program runs again; no stage does); so does
    // deleting or editing one file.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let again = build(&p, &["--debug"]);
    assert!(again.built().is_empty(), "{:?}", again.built());
    assert_eq!(tree(&p.path("out/cpu/debug")), dumped);
    std::fs::remove_file(p.path("out/cpu/debug/Result_3/_relu2_Relu_output_0.raw")).unwrap();
    std::fs::write(p.path("out/cpu/debug/Result_1/logits.raw"), b"edited").unwrap();
    build(&p, &["--debug"]);
    assert_eq!(tree(&p.path("out/cpu/debug")), dumped);

    // Fewer samples: the dumps of the samples gone are removed with their directories.
    p.write("qairt.toml", &format!("{}\n[simulate]\ndebug = true\n", config(3)));
    build(&p, &[]);
    assert!(p.path("out/cpu/debug/Result_2/logits.raw").is_file());
    assert!(!p.path("out/cpu/debug/Result_3").exists() && !p.path("out/cpu/debug/Result_4").exists());

    // Debug off: qairt removes what it wrote, but not a file of the user's.
    p.write("out/htp-w8a8/debug/Result_0/notes.txt", "mine");
    p.write("qairt.toml", &config(SAMPLES));
    build(&p, &[]);
    assert!(!p.path("out/cpu/debug").exists() && !p.path("out/htp-w8a16/debug").exists());
    let left: Vec<String> = tree(&p.path("out/htp-w8a8/debug")).into_keys().collect();
    assert_eq!(left, ["Result_0/notes.txt"]);
    std::fs::remove_dir_all(p.path("out/htp-w8a8/debug")).unwrap();
    assert_eq!(tree(&p.path("out")), plain, "out/ is the plain build's again");
}

/// `profile.csv` as rows of fields (no field of the digits model needs quoting).
fn profile_rows(p: &Project, target: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = p.read(&format!("out/{target}/profile.csv"));
    let mut lines = text.lines().map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>());
    let header = lines.next().unwrap();
    (header, lines.collect())
}

fn number(field: &str) -> f64 {
    field.parse().unwrap_or_else(|e| panic!("{field:?}: {e}"))
}

#[test]
fn the_profile_has_a_row_per_step_with_the_stored_sizes_and_stays_out_of_the_artifacts() {
    let p = Project::digits_with(&config(SAMPLES));
    build(&p, &[]);
    let plain = tree(&p.path("out"));
    let profiled = build(&p, &["--profile"]);
    assert!(profiled.built().is_empty(), "profiling runs no stage: {:?}", profiled.built());
    let layers = layer_outputs();
    for target in TARGETS {
        let (header, rows) = profile_rows(&p, target);
        assert_eq!(
            header,
            ["step", "node", "op_type", "outputs", "median_us", "mean_us", "bytes_read", "bytes_written", "time_share"]
        );
        assert_eq!(rows.len(), layers.len(), "{target}: one row per program step");
        let outputs: Vec<&str> = rows.iter().map(|r| r[3].as_str()).collect();
        assert_eq!(outputs, layers, "{target}");
        let summary = summary_layers(&p, target);
        let size = |name: &str| summary.iter().find(|l| l["name"] == name).unwrap()["size"].as_u64().unwrap();
        for (k, row) in rows.iter().enumerate() {
            assert_eq!(row[0], k.to_string());
            for column in [4, 5, 8] {
                assert!(number(&row[column]) >= 0.0, "{target} {row:?}");
            }
            let (read, written) = (number(&row[6]) as u64, number(&row[7]) as u64);
            // Written: the output in its stored form, float32 on cpu, 8 or 16 bits on htp.
            let elements = size(&row[3]);
            if target == "cpu" {
                assert_eq!(written, 4 * elements, "{target} {row:?}");
            } else {
                assert!(written == elements || written == 2 * elements, "{target} {row:?}");
            }
            // A one-input op reads what the step before it wrote.
            if ["Relu", "MaxPool", "Flatten"].contains(&row[2].as_str()) {
                assert_eq!(read, number(&rows[k - 1][7]) as u64, "{target} {row:?}");
            }
            // Conv and Gemm read their weights too.
            if ["Conv", "Gemm"].contains(&row[2].as_str()) && k > 0 {
                assert!(read > number(&rows[k - 1][7]) as u64, "{target} {row:?}");
            }
        }
        let shares: f64 = rows.iter().map(|r| number(&r[8])).sum();
        assert!((shares - 1.0).abs() < 0.01 || shares == 0.0, "{target}: shares sum to {shares}");

        let json: Value = serde_json::from_str(&p.read(&format!("out/{target}/profile.json"))).unwrap();
        assert_eq!(json["samples"], SAMPLES);
        assert_eq!(json["statistic"], "median");
        let steps = json["steps"].as_array().unwrap();
        assert_eq!(steps.len(), rows.len());
        for (step, row) in steps.iter().zip(&rows) {
            assert_eq!(step["node"], row[1].as_str());
            assert_eq!(step["bytes_read"].as_u64().unwrap(), number(&row[6]) as u64);
            assert_eq!(step["median_us"].as_f64().unwrap(), number(&row[4]));
        }
        let report = p.read(&format!("out/{target}/verify/report.html"));
        assert!(report.contains("<section id=\"profile\">"), "{target}");
    }
    // Times are measurements: they stay out of everything that must be the same on every run.
    for rel in ["build.json", "verify/summary.json", "verify/summary.csv", "outputs/Result_0/logits.raw"] {
        assert_eq!(plain[&format!("cpu/{rel}")], std::fs::read(p.path(&format!("out/cpu/{rel}"))).unwrap(), "{rel}");
    }

    // Deleting out/ restores the same profile (the measurement is kept), running no stage.
    let csv = p.read("out/cpu/profile.csv");
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let again = build(&p, &["--profile"]);
    assert!(again.built().is_empty(), "{:?}", again.built());
    assert_eq!(p.read("out/cpu/profile.csv"), csv);

    // Profile off: the files go and the report is the plain build's page again.
    build(&p, &[]);
    assert!(!p.path("out/cpu/profile.csv").exists() && !p.path("out/cpu/profile.json").exists());
    assert_eq!(tree(&p.path("out")), plain);
}

#[test]
fn a_bad_simulate_key_points_at_its_line_with_a_hint() {
    let p = digits_with_simulate("debug = \"yes\"");
    let out = p.run(&["build"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = config(SAMPLES).lines().count() + 3;
    assert!(stderr.contains(&format!("qairt.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("true or false"), "{stderr}");

    let typo = digits_with_simulate("dump = true");
    let stderr = String::from_utf8(typo.run(&["build"]).stderr).unwrap();
    assert!(stderr.contains(&format!("qairt.toml:{line}:1")), "{stderr}");
    assert!(stderr.contains("debug") && stderr.contains("profile"), "the allowed keys are listed: {stderr}");
}

/// The dump directory is the project's own: nothing of it depends on where the project is.
#[test]
fn only_the_targets_built_are_dumped_with_no_machine_path() {
    let p = digits_with_simulate("debug = true");
    build(&p, &["--target", "cpu"]);
    let map = p.read("out/cpu/debug/tensor_names.json");
    assert!(!map.contains(p.dir.path().to_str().unwrap()), "{map}");
    assert!(Path::new(&p.path("out/cpu/debug/Result_0/logits.raw")).is_file());
    assert!(!p.path("out/htp-w8a8/debug").exists(), "only the targets built are dumped");
}
