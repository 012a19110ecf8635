//! Accuracy debugging end to end: verify modes, metrics, report.html, qairt suggest.
//!
//! Every number asserted here is either recomputed from files the build wrote (the model's
//! outputs and the float reference, `out/<target>/{outputs,reference}`), taken from an
//! independent source (the ONNX node list `examples/digits/make_digits.py` recorded in
//! `examples/digits/summary.json`), or a relation between runs that must hold whatever the
//! values are (the float target is exact; the first op sees the same inputs in every mode).

use std::path::Path;

use serde_json::Value;

use crate::browser;
use crate::util::{Build, Project, config, pairs, read_f32, repo_root};

/// The per-layer columns when `[verify] metrics` is not set.
const DEFAULT_METRICS: [&str; 4] = ["sqnr", "cosinesimilarity", "mse", "maxerror"];

const TARGETS: [&str; 3] = ["htp-w8a8", "htp-w8a16", "cpu"];

/// Relative agreement for values this test recomputes in f64 from the same f32 data (only the
/// summation order may differ).
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

// ------------------------------------------------------------------------------ helpers

/// `summary.csv` split into its header and rows (fields may be double-quoted, without
/// embedded quotes: the dims column is `"[1, 8, 8, 8]"`).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn read(p: &Project, target: &str) -> Table {
        let text = p.read(&format!("out/{target}/verify/summary.csv"));
        let mut lines = text.lines().map(split_csv_line);
        let header = lines.next().expect("summary.csv has a header");
        let rows: Vec<Vec<String>> = lines.collect();
        for row in &rows {
            assert_eq!(row.len(), header.len(), "ragged row {row:?} in {text}");
        }
        Table { header, rows }
    }

    fn column(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {:?}", self.header))
    }

    fn names(&self) -> Vec<String> {
        self.rows.iter().map(|r| r[0].clone()).collect()
    }

    fn text(&self, column: &str) -> Vec<String> {
        let c = self.column(column);
        self.rows.iter().map(|r| r[c].clone()).collect()
    }

    fn values(&self, column: &str) -> Vec<f64> {
        self.text(column)
            .iter()
            .map(|v| v.parse::<f64>().unwrap_or_else(|e| panic!("{column} value {v:?} is not a number: {e}")))
            .collect()
    }

    fn value(&self, layer: &str, column: &str) -> f64 {
        let row = self.names().iter().position(|n| n == layer).unwrap_or_else(|| panic!("no row {layer}"));
        self.values(column)[row]
    }
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().expect("at least one field").push(c),
        }
    }
    fields
}

fn summary_json(p: &Project, target: &str) -> Value {
    serde_json::from_str(&p.read(&format!("out/{target}/verify/summary.json"))).expect("summary.json is JSON")
}

/// `(tensor, op type)` of every layer of the optimized digits model in graph order, from the
/// ONNX node list that `make_digits.py` recorded with the onnx package: the optimizer folds
/// each BatchNormalization into the Conv before it, which keeps its output name.
fn expected_layers() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("examples/digits/summary.json")).unwrap();
    let summary: Value = serde_json::from_str(&text).unwrap();
    let nodes = summary["nodes"].as_array().expect("examples/digits/summary.json lists the ONNX nodes");
    let layers: Vec<(String, String)> = nodes
        .iter()
        .filter(|n| n["op_type"] != "BatchNormalization")
        .map(|n| (n["outputs"][0].as_str().unwrap().to_string(), n["op_type"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(layers.len(), 9, "the digits CNN has 11 nodes, 2 of them BatchNormalization: {layers:?}");
    layers
}

/// The digits project with `extra` lines added to its `[verify]` table and `min_sqnr_db` set.
fn digits(max_samples: usize, min_sqnr_db: f64, extra: &str) -> Project {
    Project::digits_with(&toml_with(max_samples, min_sqnr_db, extra))
}

fn toml_with(max_samples: usize, min_sqnr_db: f64, extra: &str) -> String {
    let base = config(max_samples);
    let with_extra =
        base.replacen(&format!("max_samples = {max_samples}\n"), &format!("max_samples = {max_samples}\n{extra}"), 1);
    let edited = with_extra.replacen("min_sqnr_db = 20.0", &format!("min_sqnr_db = {min_sqnr_db:?}"), 1);
    assert!(edited.contains(&format!("min_sqnr_db = {min_sqnr_db:?}")), "the fixture config changed");
    edited
}

fn build_with(p: &Project, args: &[&str]) -> Build {
    let mut all = vec!["build", "--message-format", "json"];
    all.extend_from_slice(args);
    Build::from(p.run(&all))
}

/// The graph output `logits` of every verify sample, back to back: (float reference, target).
fn logits(p: &Project, target: &str, samples: usize) -> (Vec<f32>, Vec<f32>) {
    let mut golden = Vec::new();
    let mut actual = Vec::new();
    for n in 0..samples {
        golden.extend(read_f32(&p.path(&format!("out/{target}/reference/Result_{n}/logits.raw"))));
        actual.extend(read_f32(&p.path(&format!("out/{target}/outputs/Result_{n}/logits.raw"))));
    }
    assert_eq!(golden.len(), samples * 10, "10 logits per sample");
    assert_eq!(actual.len(), golden.len());
    (golden, actual)
}

/// The debugger's element-wise metrics over the pooled values, in f64:
/// (sqnr = 10 log10(mean(t^2) / mean((g-t)^2)) with the signal taken from the inference side
/// as the debugger does, cosine similarity, mse, max |g - t|).
fn elementwise(golden: &[f32], actual: &[f32]) -> (f64, f64, f64, f64) {
    let n = golden.len() as f64;
    let (mut err2, mut sig2, mut dot, mut gg, mut max) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (&g, &t) in golden.iter().zip(actual) {
        let (g, t) = (f64::from(g), f64::from(t));
        err2 += (g - t) * (g - t);
        sig2 += t * t;
        dot += g * t;
        gg += g * g;
        max = max.max((g - t).abs());
    }
    let sqnr = 10.0 * ((sig2 / n) / (err2 / n)).log10();
    let cosine = dot / (gg.sqrt() * sig2.sqrt());
    (sqnr, cosine, err2 / n, max)
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best
}

/// Every stage of every target except `rebuilt` is cached and exactly `rebuilt` are built.
fn assert_only_built(b: &Build, rebuilt: &[(&str, &str)]) {
    b.assert_ok();
    assert_eq!(b.built(), pairs(rebuilt), "stderr:\n{}", b.stderr);
    let stages = b.events.iter().filter(|e| e["event"] == "stage").count();
    assert_eq!(b.cached().len(), stages - rebuilt.len(), "every other stage is cached");
}

fn per_target(stages: &[&'static str]) -> Vec<(&'static str, &'static str)> {
    TARGETS.iter().flat_map(|t| stages.iter().map(move |s| (*t, *s))).collect()
}

// ------------------------------------------------------------------------------ 1. default columns

#[test]
fn a_default_build_writes_the_debugger_columns_in_graph_order() {
    let samples = 60;
    let p = digits(samples, 20.0, "");
    let b = p.build();
    b.assert_ok();
    let mut header = vec!["Name", "LayerType", "Size", "Tensor_dims"];
    header.extend(DEFAULT_METRICS);
    header.extend(["golden_min", "golden_max", "target_min", "target_max"]);
    let expected = expected_layers();
    for target in TARGETS {
        let table = Table::read(&p, target);
        assert_eq!(table.header, header, "{target}");
        let rows: Vec<(String, String)> = table.names().into_iter().zip(table.text("LayerType")).collect();
        assert_eq!(rows, expected, "{target}: one row per layer of the optimized model, in graph order");
        for (size, dims) in table.values("Size").iter().zip(table.text("Tensor_dims")) {
            let product: f64 = dims
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|d| d.trim().parse::<f64>().unwrap())
                .product();
            assert_eq!(*size, product, "{target}: Size is the element count of {dims}");
        }
        let json = summary_json(&p, target);
        assert_eq!(json["mode"], "oneshot");
        assert_eq!(json["verifier_columns"], serde_json::json!(DEFAULT_METRICS), "{target}");
        let json_names: Vec<&str> =
            json["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert_eq!(json_names, table.names(), "{target}: summary.json and summary.csv list the same layers");
        assert_eq!(b.verify(target)["mode"], "oneshot");
    }

    // The float target computes what the reference computes: every layer exact.
    let cpu = Table::read(&p, "cpu");
    assert!(cpu.values("sqnr").iter().all(|v| *v == f64::INFINITY), "{:?}", cpu.text("sqnr"));
    assert!(cpu.values("mse").iter().all(|v| *v == 0.0), "{:?}", cpu.text("mse"));
    assert!(cpu.values("maxerror").iter().all(|v| *v == 0.0), "{:?}", cpu.text("maxerror"));
    assert_eq!(cpu.text("golden_min"), cpu.text("target_min"));
    assert_eq!(cpu.text("golden_max"), cpu.text("target_max"));
    assert_eq!(b.verify("cpu")["first_failing_layer"], Value::Null);
    let cpu_json = summary_json(&p, "cpu");
    assert_eq!(cpu_json["first_failing"], Value::Null);
    assert!(cpu_json["layers"].as_array().unwrap().iter().all(|l| l["failed"] == false));

    // A quantized target: the final layer's row recomputed from the files the build wrote.
    let htp = Table::read(&p, "htp-w8a8");
    let (golden, actual) = logits(&p, "htp-w8a8", samples);
    let (sqnr, cosine, mse, max) = elementwise(&golden, &actual);
    assert!(sqnr.is_finite() && mse > 0.0, "an 8-bit target is not exact");
    for (column, want) in [("sqnr", sqnr), ("cosinesimilarity", cosine), ("mse", mse), ("maxerror", max)] {
        let got = htp.value("logits", column);
        assert!(close(got, want), "logits {column}: summary.csv {got}, recomputed {want}");
    }
    assert!(htp.values("sqnr").iter().all(|v| v.is_finite()), "{:?}", htp.text("sqnr"));

    // The five worst layers of the event are the five lowest SQNRs of summary.json, worst first.
    let json = summary_json(&p, "htp-w8a8");
    let mut by_sqnr: Vec<(f64, String)> = json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["metrics"]["sqnr_db"].as_f64().unwrap(), l["name"].as_str().unwrap().to_string()))
        .collect();
    by_sqnr.sort_by(|a, b| a.0.total_cmp(&b.0));
    let worst = b.verify("htp-w8a8")["worst_layers"].as_array().unwrap().clone();
    assert_eq!(worst.len(), 5);
    for (w, (sqnr, name)) in worst.iter().zip(&by_sqnr) {
        assert_eq!(w["sqnr_db"].as_f64().unwrap(), *sqnr, "{worst:?}");
        // Ties (a Relu and the op squashed into it) may come in either order.
        let tied: Vec<&str> = by_sqnr.iter().filter(|(s, _)| s == sqnr).map(|(_, n)| n.as_str()).collect();
        assert!(tied.contains(&w["layer"].as_str().unwrap()), "{w} is not among {tied:?} ({name})");
    }
}

// ------------------------------------------------------------------------------ 2. metric specs

#[test]
fn metrics_on_the_command_line_replace_the_columns() {
    let samples = 60;
    let p = digits(samples, 20.0, "metrics = [\"sqnr\", \"mse\"]\n");
    let b = build_with(&p, &["--target", "htp-w8a8", "--metric", "rtolatol,rtolmargin,0.05", "--metric", "topk"]);
    b.assert_ok();
    let table = Table::read(&p, "htp-w8a8");
    assert_eq!(
        table.header,
        [
            "Name",
            "LayerType",
            "Size",
            "Tensor_dims",
            "rtolatol",
            "topk",
            "golden_min",
            "golden_max",
            "target_min",
            "target_max"
        ]
    );
    assert_eq!(summary_json(&p, "htp-w8a8")["verifier_columns"], serde_json::json!(["rtolatol", "topk"]));

    // RtolAtol: % of elements with |t - g| > atol + rtol |g| (atolmargin keeps its default 0.01).
    let (golden, actual) = logits(&p, "htp-w8a8", samples);
    let not_close = golden
        .iter()
        .zip(&actual)
        .filter(|(g, t)| (f64::from(**t) - f64::from(**g)).abs() > 0.01 + 0.05 * f64::from(**g).abs())
        .count();
    let rtolatol = 100.0 * not_close as f64 / golden.len() as f64;
    assert!(close(table.value("logits", "rtolatol"), rtolatol), "{} vs {rtolatol}", table.value("logits", "rtolatol"));
    // TopK (k = 1): % of samples whose top class differs, averaged per sample.
    let wrong = golden.chunks(10).zip(actual.chunks(10)).filter(|(g, t)| argmax(g) != argmax(t)).count();
    let topk = 100.0 * wrong as f64 / samples as f64;
    assert!(close(table.value("logits", "topk"), topk), "{} vs {topk}", table.value("logits", "topk"));

    // Without --metric the config's list is back.
    build_with(&p, &["--target", "htp-w8a8"]).assert_ok();
    assert_eq!(summary_json(&p, "htp-w8a8")["verifier_columns"], serde_json::json!(["sqnr", "mse"]));
}

#[test]
fn an_invalid_metric_on_the_command_line_exits_1_naming_the_problem() {
    let p = Project::digits();
    for (spec, problem) in [
        ("snr", "unknown verifier \"snr\""),
        ("rtolatol,rtolmargin", "expected key,value pairs"),
        ("sqnr,threshold,high", "\"high\" is not a finite number"),
        ("mse,k,3", "\"k\""),
        ("meaniou", "detection outputs"),
    ] {
        let out = p.run(&["build", "--metric", spec]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "--metric {spec}: {stderr}");
        assert!(stderr.contains(&format!("'{spec}'")), "names the spec: {stderr}");
        assert!(stderr.contains(problem), "--metric {spec} should say {problem}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!p.path("out").exists(), "nothing is built");
    }
    let out = p.run(&["build", "--metric", "sqnr", "--metric", "sqnr,threshold,40"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--metric sqnr is given twice"), "{stderr}");
    assert!(!p.path("out").exists(), "nothing is built");
    let out = p.run(&["build", "--mode", "partial"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("oneshot, cumulative, layerwise"), "lists the modes: {stderr}");
}

/// Line and column (1-based) of the first `needle` in `text`, as the diagnostics print them.
fn position(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle} not in the config"));
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |nl| nl + 1) + 1;
    format!("qairt.toml:{line}:{column}")
}

#[test]
fn an_invalid_metric_in_qairt_toml_points_at_it() {
    for (line, bad, problem) in [
        ("metrics = [\"sqnr\", \"snr\"]\n", "\"snr\"", "unknown verifier \"snr\""),
        (
            "metrics = [{ name = \"rtolatol\", rtolmargin = 0.02 }, \"rtolatol,rtolmargin\"]\n",
            "\"rtolatol,rtolmargin\"",
            "expected key,value pairs",
        ),
        ("metrics = [{ name = \"mse\", threshold = \"x\" }]\n", "{ name = \"mse\"", "not a finite number"),
        ("mode = \"partial\"\n", "\"partial\"", "oneshot, cumulative, layerwise"),
        ("suggest_precision = \"int4\"\n", "\"int4\"", "int16, float16"),
    ] {
        let toml = toml_with(5, 20.0, line);
        let p = Project::digits_with(&toml);
        let out = p.run(&["build"]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{line}: {stderr}");
        let at = position(&toml, bad);
        assert!(stderr.contains(&at), "{line}: expected a diagnostic at {at}: {stderr}");
        assert!(stderr.contains(problem), "{line}: should say {problem}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// ------------------------------------------------------------------------------ 3. incremental

#[test]
fn changing_metrics_reruns_verify_and_a_mode_reruns_the_debug_run() {
    let samples = 40;
    let p = digits(samples, 20.0, "");
    p.build().assert_ok();
    let outputs_before = std::fs::read(p.path("out/htp-w8a8/outputs/Result_7/logits.raw")).unwrap();

    // The metric list: only the comparison changes.
    p.write("qairt.toml", &toml_with(samples, 20.0, "metrics = [\"sqnr\", \"mse\"]\n"));
    assert_only_built(&p.build(), &per_target(&["verify"]));
    // Only a metric's threshold.
    let thresholds = "metrics = [{ name = \"sqnr\", threshold = 30.0 }, \"mse\"]\n";
    p.write("qairt.toml", &toml_with(samples, 20.0, thresholds));
    assert_only_built(&p.build(), &per_target(&["verify"]));
    // Any choice among the verifiers every row's sums serve re-renders from them.
    p.write("qairt.toml", &toml_with(samples, 20.0, "metrics = [\"cos\", \"maxerror\", \"l1error\", \"mae\"]\n"));
    assert_only_built(&p.build(), &per_target(&["verify"]));
    // A verifier that needs the values themselves is folded in the runs: they re-run.
    p.write("qairt.toml", &toml_with(samples, 20.0, "metrics = [\"sqnr\", \"rtolatol\"]\n"));
    assert_only_built(&p.build(), &per_target(&["simulate", "verify"]));
    // Back: both runs and that verdict are in the cache.
    p.write("qairt.toml", &toml_with(samples, 20.0, thresholds));
    assert_only_built(&p.build(), &[]);
    let oneshot_csv = p.read("out/htp-w8a8/verify/summary.csv");
    let oneshot_event = p.build().verify("htp-w8a8").clone();

    // Layerwise needs its own runs of the compiled model (shown as simulate), nothing upstream.
    p.write("qairt.toml", &toml_with(samples, 20.0, &format!("{thresholds}mode = \"layerwise\"\n")));
    let layerwise = p.build();
    assert_only_built(&layerwise, &per_target(&["simulate", "verify"]));
    assert_eq!(layerwise.verify("htp-w8a8")["mode"], "layerwise");
    // The model's own outputs and their metrics do not depend on how layers are debugged.
    assert_eq!(std::fs::read(p.path("out/htp-w8a8/outputs/Result_7/logits.raw")).unwrap(), outputs_before);
    assert_eq!(layerwise.verify("htp-w8a8")["metrics"], oneshot_event["metrics"]);
    assert_ne!(p.read("out/htp-w8a8/verify/summary.csv"), oneshot_csv, "layerwise rows differ");

    // Back to oneshot: that comparison is in the cache, nothing runs, out/ is as before.
    p.write("qairt.toml", &toml_with(samples, 20.0, &format!("{thresholds}mode = \"oneshot\"\n")));
    let back = p.build();
    assert_only_built(&back, &[]);
    assert_eq!(back.verify("htp-w8a8")["mode"], "oneshot");
    assert_eq!(p.read("out/htp-w8a8/verify/summary.csv"), oneshot_csv);

    // The command line overrides the config the same way, and is just as incremental.
    let cumulative = build_with(&p, &["--mode", "cumulative"]);
    assert_only_built(&cumulative, &per_target(&["simulate", "verify"]));
    assert_only_built(&build_with(&p, &["--mode", "layerwise"]), &[]);
}

// ------------------------------------------------------------------------------ 4. modes

#[test]
fn layerwise_and_cumulative_rows_isolate_each_layers_error() {
    let samples = 60;
    let p = digits(samples, 20.0, "");
    let oneshot = build_with(&p, &[]);
    oneshot.assert_ok();
    let one = Table::read(&p, "htp-w8a8");
    let one_sqnr = one.values("sqnr");
    let mut tables = Vec::new();
    for mode in ["layerwise", "cumulative"] {
        let b = build_with(&p, &["--mode", mode]);
        b.assert_ok();
        for target in TARGETS {
            assert_eq!(b.verify(target)["mode"], mode);
            assert_eq!(summary_json(&p, target)["mode"], mode);
            assert_eq!(b.verify(target)["metrics"], oneshot.verify(target)["metrics"], "{target}: outputs unchanged");
            let cpu = Table::read(&p, target);
            if target == "cpu" {
                assert!(cpu.values("sqnr").iter().all(|v| *v == f64::INFINITY), "{mode}: {:?}", cpu.text("sqnr"));
                assert!(cpu.values("mse").iter().all(|v| *v == 0.0), "{mode}: {:?}", cpu.text("mse"));
            }
        }
        let table = Table::read(&p, "htp-w8a8");
        assert_eq!(table.names(), one.names(), "{mode}: same rows in the same order");
        let sqnr = table.values("sqnr");
        // The first op reads the model input in every mode: identical row.
        assert_eq!(table.rows[0], one.rows[0], "{mode}");
        // Downstream, a layer fed float inputs adds only its own error: never below the oneshot
        // row, where the errors of every layer before it have accumulated; strictly above for
        // the final layer.
        for ((name, s), o) in table.names().iter().zip(&sqnr).zip(&one_sqnr) {
            assert!(*s >= *o - 1e-9, "{mode}: {name} {s} dB below oneshot {o} dB");
        }
        let last = sqnr.len() - 1;
        assert!(sqnr[last] > one_sqnr[last] + 0.5, "{mode}: final layer {} vs oneshot {}", sqnr[last], one_sqnr[last]);
        tables.push(table);
    }

    // Cumulative: every layer of this chain differs from the float run, so the model is
    // partitioned after each one ("part") and each row sees float inputs, as in layerwise.
    let json = summary_json(&p, "htp-w8a8");
    let layers = json["layers"].as_array().unwrap();
    assert!(layers.iter().all(|l| l["status"] == "part"), "{layers:?}");
    assert_eq!(tables[1].values("sqnr"), tables[0].values("sqnr"));
    // final_outputs: the model's output metric (the first metric, SQNR) from the last partition
    // point on. The first row's run starts at the input: the oneshot output; the last row's run
    // is only the final layer, whose output is the graph output.
    let final_of = |i: usize| layers[i]["final_outputs"]["logits"].as_f64().unwrap();
    assert!(close(final_of(0), one.value("logits", "sqnr")), "{} vs {}", final_of(0), one.value("logits", "sqnr"));
    let last = layers.len() - 1;
    assert!(close(final_of(last), tables[1].value("logits", "sqnr")), "{}", final_of(last));
    // Oneshot and layerwise rows carry neither column.
    build_with(&p, &["--mode", "layerwise"]).assert_ok();
    let json = summary_json(&p, "htp-w8a8");
    assert!(json["layers"].as_array().unwrap().iter().all(|l| l["status"].is_null() && l["final_outputs"].is_null()));
}

// ------------------------------------------------------------------------------ 5. first failing layer

/// A user clips the Relu's encoding in the overrides; the first failing row is the Conv
/// before it, because on the target that Conv exists only fused into the Relu (measured at
/// its output, with its encoding). The terminal and the JSON say so, not only the HTML.
#[test]
fn a_conv_failing_because_of_its_fused_relus_encoding_is_named_with_that_relu() {
    let p = digits(20, 0.0, "");
    let clipped = p.read("overrides.json").replacen("\"max\": 3.7817842960357666", "\"max\": 0.5", 1).replacen(
        "\"scale\": 5.770632938179242e-05",
        "\"scale\": 7.629510948348211e-06",
        1,
    );
    assert_eq!(clipped.matches("7.629510948348211e-06").count() + clipped.matches("\"max\": 0.5,").count(), 2);
    p.write("overrides.json", &clipped);
    let args = ["--target", "htp-w8a8", "--metric", "sqnr,threshold,30"];
    let b = build_with(&p, &args);
    let failing = &b.verify("htp-w8a8")["first_failing_layer"];
    assert_eq!(failing["layer"], "/conv1/Conv_output_0", "{failing}");
    assert_eq!(failing["compared_with"], "/relu1/Relu_output_0", "{failing}");
    let mut human = vec!["build"];
    human.extend(args);
    let stdout = String::from_utf8(p.run(&human).stdout).unwrap();
    assert!(
        stdout.contains("first failing layer (oneshot): /conv1/Conv_output_0, measured at /relu1/Relu_output_0"),
        "{stdout}"
    );
}

#[test]
fn the_first_failing_layer_is_the_first_row_below_the_layer_threshold() {
    let p = digits(60, 20.0, "");
    let b = build_with(&p, &["--target", "htp-w8a8", "--metric", "sqnr,threshold,40"]);
    assert_eq!(b.status, 0, "per-layer thresholds do not decide the exit status: {}", b.stderr);
    let table = Table::read(&p, "htp-w8a8");
    let sqnr = table.values("sqnr");
    let first = sqnr.iter().position(|s| *s < 40.0).expect("some layer of htp-w8a8 is below 40 dB");
    assert!(first > 0, "the test needs a passing layer before the failing one: {sqnr:?}");
    let expected = &table.names()[first];
    let event = &b.verify("htp-w8a8")["first_failing_layer"];
    assert_eq!(event["layer"], expected.as_str(), "{event}");
    let why = event["failed"].as_array().unwrap();
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].as_str().unwrap().starts_with("sqnr = "), "{why:?}");
    let json = summary_json(&p, "htp-w8a8");
    assert_eq!(json["first_failing"], expected.as_str());
    for (layer, s) in json["layers"].as_array().unwrap().iter().zip(&sqnr) {
        assert_eq!(layer["failed"], *s < 40.0, "{layer}");
        assert_eq!(layer["verifiers"][0]["threshold"], 40.0);
    }
    // The human output says it too.
    let human = p.run(&["build", "--target", "htp-w8a8", "--metric", "sqnr,threshold,40"]);
    let stdout = String::from_utf8(human.stdout).unwrap();
    assert!(stdout.contains(&format!("first failing layer (oneshot): {expected}")), "{stdout}");

    // A low per-layer threshold fails no layer, yet the output threshold decides: exit 2.
    p.write("qairt.toml", &toml_with(60, 45.0, ""));
    let b = build_with(&p, &["--target", "htp-w8a8", "--metric", "sqnr,threshold,10"]);
    assert_eq!(b.status, 2, "{}", b.stderr);
    assert_eq!(b.verify("htp-w8a8")["first_failing_layer"], Value::Null);
    assert_eq!(b.verify("htp-w8a8")["passed"], false);
    // Without a per-layer threshold SQNR rows are held to min_sqnr_db (45 dB here).
    let b = build_with(&p, &["--target", "htp-w8a8"]);
    assert_eq!(b.status, 2);
    let table = Table::read(&p, "htp-w8a8");
    let first = table.values("sqnr").iter().position(|s| *s < 45.0).expect("a layer is below 45 dB");
    assert_eq!(b.verify("htp-w8a8")["first_failing_layer"]["layer"], table.names()[first].as_str());
}

// ------------------------------------------------------------------------------ 6. report.html

/// The report's text is self-contained: no network reference except the SVG namespace.
fn assert_self_contained(html: &str, which: &str) {
    let without_ns = html.replace("http://www.w3.org/2000/svg", "");
    assert!(!without_ns.contains("http://") && !without_ns.contains("https://"), "{which} refers to the network");
    assert!(!html.contains("<script src"), "{which} loads a script");
    assert!(!html.contains("<link"), "{which} links a resource");
}

#[test]
fn report_html_renders_in_chromium_and_is_self_contained() {
    let p = digits(40, 20.0, "");
    p.build().assert_ok();
    for target in ["htp-w8a8", "cpu"] {
        let path = p.path(&format!("out/{target}/verify/report.html"));
        let html = std::fs::read_to_string(&path).unwrap();
        assert_self_contained(&html, target);
        for name in Table::read(&p, target).names() {
            // Names may wrap after each `/` (a <wbr> there).
            let shown = name.replace('/', "/<wbr>");
            assert!(html.contains(&format!(">{shown}<")), "{target}: the per-layer table lists {name}");
        }
        // The SQNR chart, and for a quantized target the histograms too.
        let svgs = html.matches("<svg").count();
        assert!(svgs >= if target == "cpu" { 1 } else { 2 }, "{target}: {svgs} <svg>");
    }
    if !browser::available() {
        return;
    }
    let shots = tempfile::tempdir().unwrap();
    for target in ["htp-w8a8", "cpu"] {
        let dir = shots.path().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let found = browser::inspect(&p.path(&format!("out/{target}/verify/report.html")), &dir);
        assert_eq!(found.console_errors, Vec::<String>::new(), "{target}; log: {}", found.log.display());
        assert!(!browser::is_blank(&found.screenshot), "{target}: blank screenshot");
    }
}

// ------------------------------------------------------------------------------ 7. qairt suggest

fn suggest(p: &Project, args: &[&str]) -> Build {
    let mut all = vec!["suggest", "--message-format", "json"];
    all.extend_from_slice(args);
    Build::from(p.run(&all))
}

fn event<'a>(b: &'a Build, name: &str) -> &'a Value {
    b.events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event: {:?}\n{}", b.events, b.stderr))
}

#[test]
fn suggest_finds_the_layers_that_meet_the_threshold_and_measures_them() {
    let p = digits(60, 41.0, "");
    // The target as configured misses 41 dB: the suggestion is needed.
    let plain = build_with(&p, &["--target", "htp-w8a8"]);
    assert_eq!(plain.status, 2, "{}", plain.stderr);
    let baseline = plain.verify("htp-w8a8")["metrics"]["sqnr_db"].as_f64().unwrap();
    assert!(baseline < 41.0);

    let s = suggest(&p, &[]);
    assert_eq!(s.status, 0, "{}\n{:?}", s.stderr, s.events);
    let sug = event(&s, "suggest");
    assert_eq!(sug["target"], "htp-w8a8", "the first quantized target");
    assert_eq!(sug["precision"], "int16");
    assert_eq!(sug["meets_thresholds"], true);
    assert_eq!(sug["baseline"]["sqnr_db"].as_f64().unwrap(), baseline, "the baseline is the target's own build");
    let chosen: Vec<String> =
        sug["chosen"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert!(!chosen.is_empty());
    let predicted = sug["result"]["sqnr_db"].as_f64().unwrap();
    assert!(predicted >= 41.0, "{sug}");
    // The ranking: best gain first, each gain the SQNR over the baseline.
    let ranking = sug["ranking"].as_array().unwrap();
    let gains: Vec<f64> = ranking.iter().map(|r| r["gain_db"].as_f64().unwrap()).collect();
    assert!(gains.windows(2).all(|w| w[0] >= w[1]), "{gains:?}");
    for r in ranking {
        let want = r["sqnr_db"].as_f64().unwrap() - baseline;
        assert!((r["gain_db"].as_f64().unwrap() - want).abs() < 1e-9, "{r}");
    }
    assert_eq!(ranking[0]["layer"].as_str(), Some(chosen[0].as_str()), "the best layer is chosen first");
    assert_eq!(sug["from_cache"], false);

    // The confirming build measures what the analysis predicted.
    let measured = event(&s, "suggest_measured");
    assert_eq!(measured["target"], "htp-w8a8.suggested");
    assert_eq!(measured["passed"], true);
    let sqnr = measured["metrics"]["sqnr_db"].as_f64().unwrap();
    assert!(sqnr >= 41.0 && close(sqnr, predicted), "measured {sqnr}, predicted {predicted}");

    // The overrides file: the target's own overrides plus the chosen layers at 16 bits.
    let rel = sug["overrides"].as_str().unwrap();
    assert_eq!(rel, "out/htp-w8a8/verify/suggested_overrides.json");
    let text = p.read(rel);
    let written: Value = serde_json::from_str(&text).expect("suggested_overrides.json is JSON");
    let acts = &written["activation_encodings"];
    for layer in &chosen {
        assert_eq!(acts[layer.as_str()][0]["bitwidth"], 16, "{layer}: {text}");
    }
    let own: Value = serde_json::from_str(&p.read("overrides.json")).unwrap();
    for name in own["activation_encodings"].as_object().unwrap().keys() {
        assert!(acts.get(name).is_some(), "{name} of overrides.json is kept: {text}");
    }
    let validate = p.run(&["encodings", "validate", rel, "--project", "."]);
    let out = String::from_utf8_lossy(&validate.stdout).into_owned() + &String::from_utf8_lossy(&validate.stderr);
    assert_eq!(validate.status.code(), Some(0), "{out}");
    assert!(out.contains("valid"), "{out}");

    // Adopting it as the help says: the target then meets the thresholds with that SQNR.
    p.write("suggested.json", &text);
    let adopted = p.read("qairt.toml").replacen("overrides = \"overrides.json\"", "overrides = \"suggested.json\"", 1);
    assert_ne!(adopted, p.read("qairt.toml"));
    p.write("qairt.toml", &adopted);
    let b = build_with(&p, &["--target", "htp-w8a8"]);
    b.assert_ok();
    assert!(close(b.verify("htp-w8a8")["metrics"]["sqnr_db"].as_f64().unwrap(), sqnr));
    p.write("qairt.toml", &toml_with(60, 41.0, ""));

    // A second run is served from the cache, the analysis and the confirming build alike.
    let again = p.run(&["suggest"]);
    let stdout = String::from_utf8(again.stdout).unwrap();
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("(from the cache)"), "{stdout}");
    assert!(stdout.contains("finished: 0 built"), "{stdout}");
    assert!(stdout.contains(&format!("suggestion: keep {} layer(s) at int16", chosen.len())), "{stdout}");
    let json_again = p.run(&["suggest", "--no-build", "--message-format", "json"]);
    let line = String::from_utf8(json_again.stdout).unwrap();
    let cached: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(cached["from_cache"], true, "{line}");

    // The report shows the suggestion in its Sensitivity section.
    let html = p.read("out/htp-w8a8/verify/report.html");
    let section = html.split("<section id=\"sensitivity\">").nth(1).expect("a sensitivity section");
    let section = section.split("</section>").next().unwrap();
    for layer in &chosen {
        assert!(section.contains(&format!("<code>{layer}</code>")), "{layer} in {section}");
    }
    assert_self_contained(&html, "report.html after suggest");
}

#[test]
fn suggest_with_an_unreachable_threshold_exits_2() {
    let p = digits(40, 80.0, "");
    let s = suggest(&p, &[]);
    assert_eq!(s.status, 2, "{}", s.stderr);
    let sug = event(&s, "suggest");
    assert_eq!(sug["meets_thresholds"], false);
    assert!(sug["result"]["sqnr_db"].as_f64().unwrap() < 80.0);
    assert_eq!(event(&s, "suggest_measured")["passed"], false);
    let human = p.run(&["suggest"]);
    assert_eq!(human.status.code(), Some(2));
    let stdout = String::from_utf8(human.stdout).unwrap();
    assert!(stdout.contains("still short of the thresholds"), "{stdout}");
    assert!(!stdout.contains("to adopt it"), "a suggestion short of the thresholds is no fix to adopt: {stdout}");
    assert!(stdout.contains("it does not meet the thresholds, so it is not a fix"), "{stdout}");
}

#[test]
fn suggest_at_float16_from_the_config() {
    let p = digits(60, 41.0, "suggest_precision = \"float16\"\n");
    let s = suggest(&p, &["--no-build"]);
    assert_eq!(s.status, 0, "{}", s.stderr);
    let sug = event(&s, "suggest");
    assert_eq!(sug["precision"], "float16");
    assert!(s.events.iter().all(|e| e["event"] != "suggest_measured"), "--no-build measures nothing");
    let written: Value = serde_json::from_str(&p.read("out/htp-w8a8/verify/suggested_overrides.json")).unwrap();
    for layer in sug["chosen"].as_array().unwrap() {
        let e = &written["activation_encodings"][layer.as_str().unwrap()][0];
        assert_eq!((e["dtype"].as_str(), e["bitwidth"].as_u64()), (Some("float"), Some(16)), "{layer}: {written}");
    }
    // --precision on the command line wins over the config.
    let s = suggest(&p, &["--no-build", "--precision", "int16"]);
    assert_eq!(event(&s, "suggest")["precision"], "int16");
}

#[test]
fn suggest_on_the_float_target_fails_clearly() {
    let p = digits(5, 41.0, "");
    for format in ["human", "json"] {
        let out = p.run(&["suggest", "--target", "cpu", "--message-format", format]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("target \"cpu\" is not quantized"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        if format == "human" {
            assert!(stdout.is_empty(), "nothing on stdout: {stdout}");
        } else {
            // JSON: the diagnostic as a message, then `finished` (docs/json.md).
            let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(lines.len(), 2, "{stdout}");
            assert_eq!(lines[0]["code"], "qairt::suggest::float_target");
            assert_eq!((lines[1]["event"].as_str(), lines[1]["ok"].as_bool()), (Some("finished"), Some(false)));
        }
    }
    assert!(!Path::new(&p.path("out/cpu/verify/suggested_overrides.json")).exists());
}

/// The reason printed for a failing layer must show a value that visibly fails its limit. A
/// small metric (an MSE of 1.9e-5 against a limit of 1e-5) must not read "mse = 0.0000
/// (limit 0.00001)".
#[test]
fn the_reason_a_layer_fails_shows_a_value_beyond_its_limit() {
    let p = digits(40, 20.0, "");
    let b = build_with(&p, &["--target", "htp-w8a8", "--metric", "mse,threshold,0.00001"]);
    b.assert_ok();
    let first = &b.verify("htp-w8a8")["first_failing_layer"];
    let mse = Table::read(&p, "htp-w8a8").value(first["layer"].as_str().unwrap(), "mse");
    assert!(mse > 1e-5, "the layer fails: {mse}");
    for reason in first["failed"].as_array().unwrap() {
        let reason = reason.as_str().unwrap();
        // "mse = <value> (limit <limit>)"
        let value = reason.strip_prefix("mse = ").and_then(|r| r.split(' ').next()).unwrap_or_default();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("unexpected reason {reason:?}"));
        assert!(value > 1e-5, "{reason:?} shows a value within the limit for a layer whose mse is {mse}");
    }
}

#[test]
fn the_quantization_checker_writes_every_result_and_checks_fused_ops_as_fused() {
    let p = digits(40, 20.0, "");
    let b = build_with(&p, &[]);
    b.assert_ok();
    for target in ["htp-w8a8", "htp-w8a16"] {
        let report: Value = serde_json::from_str(&p.read(&format!("out/{target}/verify/checker.json"))).unwrap();
        let tensors = report["tensors"].as_array().unwrap();
        let failed = tensors
            .iter()
            .filter(|t| {
                t["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["verdict"] == "fail" && r["algorithm"] != "data_distribution_analyzer")
            })
            .count();
        assert_eq!(report["failed"].as_u64(), Some(failed as u64), "{target}");
        let event = &b.verify(target)["checker"];
        assert_eq!(event["failed"], report["failed"], "{target}");
        assert_eq!(event["analyzed"], report["analyzed"], "{target}");
        // Weights and biases of every Conv/Gemm are there (digits: 2 Conv + 2 Gemm), and the
        // graph input is analysed from the verify samples.
        let class_count = |class: &str| tensors.iter().filter(|t| t["class"] == class).count();
        assert_eq!((class_count("weight"), class_count("bias"), class_count("input")), (4, 4, 1), "{target}");
        let input = tensors.iter().find(|t| t["class"] == "input").unwrap();
        assert_eq!(input["results"][0]["verdict"], "pass", "{input}");
        // fc1's output is squashed into relu3 (their encodings are one): its range check is
        // against the fused op's values, so the negative pre-Relu minimum is no failure.
        let fc1 = tensors
            .iter()
            .find(|t| t["tensor"] == "/fc1/Gemm_output_0" && t["class"] == "activation")
            .expect("fc1's output is checked");
        let minmax = fc1["results"].as_array().unwrap().iter().find(|r| r["algorithm"] == "minmax").unwrap();
        assert_eq!(minmax["verdict"], "pass", "{target}: {fc1}");
    }
}

#[test]
fn checker_thresholds_from_qairt_toml_rerun_only_verify() {
    let p = digits(40, 20.0, "");
    build_with(&p, &[]).assert_ok();
    let failed = |p: &Project| -> u64 {
        let report: Value = serde_json::from_str(&p.read("out/htp-w8a16/verify/checker.json")).unwrap();
        report["failed"].as_u64().unwrap()
    };
    assert_eq!(failed(&p), 0);
    // 60 dB is more than 8-bit weights give (about 6 dB per bit): every weight fails sqnr.
    p.write("qairt.toml", &toml_with(40, 20.0, "[verify.checker.weight]\nsqnr = 60.0\n"));
    let b = build_with(&p, &[]);
    b.assert_ok();
    // The float target has no checker: nothing of it re-runs.
    assert_only_built(&b, &[("htp-w8a8", "verify"), ("htp-w8a16", "verify")]);
    let report: Value = serde_json::from_str(&p.read("out/htp-w8a16/verify/checker.json")).unwrap();
    let weights: Vec<&Value> =
        report["tensors"].as_array().unwrap().iter().filter(|t| t["class"] == "weight").collect();
    assert_eq!(weights.len(), 4);
    for w in &weights {
        let sqnr = w["results"].as_array().unwrap().iter().find(|r| r["algorithm"] == "sqnr").unwrap();
        assert_eq!((sqnr["verdict"].as_str(), sqnr["threshold"].as_f64()), (Some("fail"), Some(60.0)), "{w}");
    }
    assert_eq!(failed(&p), 4);
}
