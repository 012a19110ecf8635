//! `qairt encodings convert|validate|compare` on AIMET's own exports of the digits model
//! (examples/digits/aimet/: the same QuantSim written by AIMET in the 0.6.1 dict form and the
//! 1.0.0 list form, an independent reference for each other).

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::util::{Project, repo_root};

fn aimet(file: &str) -> PathBuf {
    repo_root().join("examples/digits/aimet").join(file)
}

fn aimet_text(file: &str) -> String {
    std::fs::read_to_string(aimet(file)).unwrap()
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run(p: &Project, args: &[&str]) -> Run {
    let out: Output = p.run(args);
    let run = Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// AIMET's 0.6.1 file converted to 1.0.0 holds what AIMET's own 1.0.0 file holds (no
/// difference at the default 6 digits, nor at 9), and the other way round.
#[test]
fn converting_aimets_export_gives_aimets_other_export() {
    let p = Project::empty();
    let v0 = aimet("encodings_v0.6.1.json");
    let v1 = aimet("encodings_v1.0.0.json");
    let r = run(&p, &["encodings", "convert", path_str(&v0), "v1.json", "--to", "1.0.0"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.contains("5 activation, 4 param encodings"), "{}", r.stdout);
    let ours: Value = serde_json::from_str(&p.read("v1.json")).unwrap();
    let theirs: Value = serde_json::from_str(&aimet_text("encodings_v1.0.0.json")).unwrap();
    assert_eq!(ours["version"], "1.0.0");
    assert_eq!(ours["quantizer_args"], theirs["quantizer_args"]);
    let names = |v: &Value, section: &str| {
        let mut n: Vec<String> =
            v[section].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    for section in ["activation_encodings", "param_encodings"] {
        assert_eq!(names(&ours, section), names(&theirs, section));
    }
    for digits in ["6", "9"] {
        let r = run(&p, &["encodings", "compare", "v1.json", path_str(&v1), "--precision", digits]);
        assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("0 difference(s)"), "{}", r.stdout);
    }

    let r = run(&p, &["encodings", "convert", path_str(&v1), "v0.json", "--to", "0.6.1"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let r = run(&p, &["encodings", "compare", path_str(&v0), "v0.json", "--message-format", "json"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("\"difference\""), "no differences: {}", r.stdout);
    assert!(r.stdout.trim_end().ends_with('}') && r.stdout.contains("\"finished\""), "{}", r.stdout);
    // Converting twice is byte-identical (deterministic output).
    let first = p.read("v0.json");
    run(&p, &["encodings", "convert", "v1.json", "v0.json", "--to", "0.6.1"]);
    assert_eq!(p.read("v0.json"), first);
}

#[test]
fn validate_reports_syntax_and_value_errors_with_line_and_column() {
    let p = Project::empty();
    let text = aimet_text("encodings_v0.6.1.json");
    // A trailing comma after the last member: the comma is on line 675, column 23.
    p.write("broken.json", &text.replacen("\"version\": \"0.6.1\"\n}", "\"version\": \"0.6.1\",\n}", 1));
    let r = run(&p, &["encodings", "validate", "broken.json"]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(r.stderr.contains("broken.json:675:23"), "{}", r.stderr);
    assert!(r.stderr.contains("trailing comma"), "{}", r.stderr);
    // Bitwidth 3 on line 5 (`                "bitwidth": 3,`: 16 spaces and 12 characters
    // before the value, so column 29).
    p.write("bits.json", &text.replacen("\"bitwidth\": 8,", "\"bitwidth\": 3,", 1));
    let r = run(&p, &["encodings", "validate", "bits.json"]);
    assert_eq!(r.status, 1);
    assert!(r.stderr.contains("bits.json:5:29"), "{}", r.stderr);
    assert!(r.stderr.contains("4, 8, 16, 32"), "{}", r.stderr);
    // The untouched file is valid.
    p.write("good.json", &text);
    let r = run(&p, &["encodings", "validate", "good.json"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.stdout.contains("valid"), "{}", r.stdout);
}

/// With a project, every name must be a tensor of its optimized model; a misspelt one gets
/// a did-you-mean.
#[test]
fn validate_against_a_project_suggests_the_tensor_meant() {
    let p = Project::digits();
    let r = run(&p, &["encodings", "validate", "overrides.json", "--project", "."]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let typo = p.read("overrides.json").replacen("\"/relu1/Relu_output_0\"", "\"/relu1/Relu_outptu_0\"", 1);
    assert!(typo.contains("outptu"), "fixture changed");
    p.write("typo.json", &typo);
    let r = run(&p, &["encodings", "validate", "typo.json", "--project", path_str(&p.path("qairt.toml"))]);
    assert_eq!(r.status, 1, "{}", r.stdout);
    assert!(r.stderr.contains("no tensor named \"/relu1/Relu_outptu_0\""), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean \"/relu1/Relu_output_0\"?"), "{}", r.stderr);
    let line = typo.lines().position(|l| l.contains("outptu")).unwrap() + 1;
    assert!(r.stderr.contains(&format!("typo.json:{line}:")), "{}", r.stderr);
}

/// A = AIMET's 1.0.0 file; B = its 0.6.1 file with the scale of `logits` changed from
/// 0.1890632704192517 to 0.1891 (relative difference 3.67e-5 / 0.1891 = 1.94e-4) and the entry
/// `input` renamed `input_renamed`. min = -159 * scale and max = 96 * scale move with it.
#[test]
fn compare_reports_changed_fields_and_one_sided_entries() {
    let p = Project::empty();
    let edited = aimet_text("encodings_v0.6.1.json")
        .replacen("\"scale\": 0.1890632704192517", "\"scale\": 0.1891", 1)
        .replacen("\"input\": [", "\"input_renamed\": [", 1);
    assert!(edited.contains("0.1891,") || edited.contains("0.1891\n"), "fixture changed");
    p.write("b.json", &edited);
    let a = aimet("encodings_v1.0.0.json");

    let r = run(&p, &["encodings", "compare", path_str(&a), "b.json", "--message-format", "json"]);
    assert_eq!(r.status, 2, "{}{}", r.stdout, r.stderr);
    let diffs: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|line| line["event"] == "difference")
        .collect();
    let fields: Vec<(String, String)> = diffs
        .iter()
        .map(|d| (d["tensor"].as_str().unwrap().to_string(), d["field"].as_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> =
        [("input", "entry"), ("input_renamed", "entry"), ("logits", "scale"), ("logits", "min"), ("logits", "max")]
            .iter()
            .map(|(t, f)| (t.to_string(), f.to_string()))
            .collect();
    assert_eq!(fields, expected);
    assert_eq!(diffs[0]["b"], Value::Null);
    assert_eq!(diffs[0]["a"], "int 8-bit PER_TENSOR");
    assert_eq!(diffs[1]["a"], Value::Null);
    let scale = &diffs[2];
    assert!((scale["a"].as_f64().unwrap() - 0.1890632704192517).abs() < 1e-8, "f32 of AIMET's value");
    assert!((scale["b"].as_f64().unwrap() - 0.1891).abs() < 1e-8);
    assert!((scale["relative"].as_f64().unwrap() - 1.94e-4).abs() < 1e-6, "{scale}");
    assert_eq!(scale["channel"], Value::Null);

    let r = run(&p, &["encodings", "compare", path_str(&a), "b.json"]);
    assert_eq!(r.status, 2);
    let row = r.stdout.lines().find(|l| l.starts_with("logits") && l.contains("scale")).unwrap();
    assert!(row.contains("0.1891"), "{}", r.stdout);
    assert!(r.stdout.contains("5 difference(s), 2 of them one-sided entries"), "{}", r.stdout);

    // At 3 significant digits the scale change (1.94e-4 < 1e-3) is within precision.
    let r = run(&p, &["encodings", "compare", path_str(&a), "b.json", "--precision", "3"]);
    assert_eq!(r.status, 2);
    assert!(r.stdout.contains("2 difference(s), 2 of them one-sided entries"), "{}", r.stdout);
}

/// A per-channel change is reported at its channel.
#[test]
fn compare_names_the_channel() {
    let p = Project::empty();
    let text = aimet_text("encodings_v1.0.0.json");
    // conv1.weight's second channel scale (channel 1).
    let edited = text.replacen("0.01732795499265194", "0.0175", 1);
    assert_ne!(edited, text, "fixture changed");
    p.write("b.json", &edited);
    let r = run(
        &p,
        &["encodings", "compare", path_str(&aimet("encodings_v1.0.0.json")), "b.json", "--message-format", "json"],
    );
    assert_eq!(r.status, 2, "{}", r.stderr);
    let first: Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["tensor"].as_str(), first["channel"].as_u64(), first["field"].as_str()),
        (Some("conv1.weight"), Some(1), Some("scale"))
    );
}

#[test]
fn unreadable_inputs_are_errors() {
    let p = Project::empty();
    let r = run(&p, &["encodings", "compare", "missing.json", "also-missing.json"]);
    assert_eq!(r.status, 1);
    assert!(r.stderr.contains("missing.json"), "{}", r.stderr);
    let r = run(&p, &["encodings", "convert", "missing.json", "out.json", "--to", "1.0.0"]);
    assert_eq!(r.status, 1);
    assert!(!p.path("out.json").exists());
}
