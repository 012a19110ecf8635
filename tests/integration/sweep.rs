//! Integration tests: `qairt sweep` on the digits project: ranking, the CSV, caching (seen
//! through the JSON event stream, never timing), the winner written into qairt.toml, and
//! diagnostics for bad axis values.

use serde_json::Value;

use crate::util::{Build, Project};

/// 2 calibration methods x 2 activation bitwidths of `htp-w8a16` (a target without overrides),
/// ranked by SQNR; `extra` is appended.
fn small_grid<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sweep",
        "--target",
        "htp-w8a16",
        "--act-calibration",
        "min-max,mse",
        "--act-bitwidth",
        "8,16",
        "--act-schema",
        "asymmetric",
        "--per-channel",
        "true",
        "--cle",
        "false",
        "--metric",
        "sqnr",
    ];
    args.extend_from_slice(extra);
    args
}

const SMALL_GRID_NAMES: [&str; 4] =
    ["sweep-a8w8-minmax-asym-pc", "sweep-a8w8-mse-asym-pc", "sweep-a16w8-minmax-asym-pc", "sweep-a16w8-mse-asym-pc"];

fn sweep_json(p: &Project, extra: &[&str]) -> Build {
    let mut args = small_grid(extra);
    args.extend(["--message-format", "json"]);
    Build::from(p.run(&args))
}

fn configs(b: &Build) -> Vec<&Value> {
    b.events.iter().filter(|e| e["event"] == "config").collect()
}

/// The stage events of one stage, over every configuration.
fn stage_events<'a>(b: &'a Build, stage: &str) -> Vec<&'a Value> {
    b.events.iter().filter(|e| e["event"] == "stage" && e["stage"] == stage).collect()
}

#[test]
fn a_small_grid_is_ranked_written_as_csv_and_calibrated_once() {
    let p = Project::digits();
    let b = sweep_json(&p, &[]);
    b.assert_ok();

    // Calibration does not depend on the method or the bitwidth: one run for the grid.
    let calibrate = stage_events(&b, "calibrate");
    assert_eq!(calibrate.len(), 4, "one calibrate event per configuration");
    assert_eq!(calibrate.iter().filter(|e| e["status"] == "built").count(), 1, "{calibrate:?}");
    assert!(calibrate.iter().all(|e| e["key"] == calibrate[0]["key"]));
    // Every configuration quantizes on its own.
    let quantize = stage_events(&b, "quantize");
    assert_eq!(quantize.iter().filter(|e| e["status"] == "built").count(), 4);

    // One event per configuration, best first.
    let configs = configs(&b);
    let mut names: Vec<&str> = configs.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let sqnr: Vec<f64> = configs.iter().map(|c| c["metrics"]["sqnr_db"].as_f64().unwrap()).collect();
    let ranks: Vec<u64> = configs.iter().map(|c| c["rank"].as_u64().unwrap()).collect();
    // At 16 bits the MSE search keeps min-max's range: both 16-bit configurations build the
    // same model.bin (equal compile keys), so they share rank 1 and the second says so.
    assert_eq!(ranks, [1, 1, 3, 4]);
    assert_eq!(configs[1]["same_model_as"], configs[0]["name"]);
    assert!(configs.iter().skip(2).all(|c| c["same_model_as"].is_null()), "{configs:?}");
    assert!(sqnr.windows(2).all(|w| w[0] >= w[1]), "ranked by SQNR, higher first: {sqnr:?}");
    // 16-bit activations are finer than 8-bit ones on the same ranges: both 16-bit
    // configurations rank above both 8-bit ones.
    let bitwidths: Vec<u64> = configs.iter().map(|c| c["settings"]["act_bitwidth"].as_u64().unwrap()).collect();
    assert_eq!(bitwidths, [16, 16, 8, 8], "{names:?} {sqnr:?}");
    let winner = names[0].to_string();
    names.sort();
    let mut expected = SMALL_GRID_NAMES.to_vec();
    expected.sort();
    assert_eq!(names, expected);

    let finished = b.events.last().unwrap();
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["ok"], true);
    assert_eq!(finished["winner"], winner.as_str());
    assert_eq!(finished["configs"], 4);

    // The CSV: a header, then the same rows in the same order with the same numbers.
    let csv = p.read("out/sweep.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (line, config) in lines[1..].iter().zip(&configs) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[column("name")], config["name"].as_str().unwrap());
        assert_eq!(cells[column("rank")], config["rank"].to_string());
        let value: f64 = cells[column("sqnr_db")].parse().unwrap();
        assert_eq!(value, config["metrics"]["sqnr_db"].as_f64().unwrap());
        assert_eq!(cells[column("status")], "ok");
    }

    // Generated configurations are not materialized under out/.
    let out: Vec<String> =
        std::fs::read_dir(p.path("out")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert_eq!(out, ["sweep.csv"]);

    // The same sweep again: every stage of every configuration is cached.
    let again = sweep_json(&p, &[]);
    again.assert_ok();
    assert_eq!(again.built(), vec![], "stderr: {}", again.stderr);
    assert_eq!(again.cached().len(), 4 * 7);
    let again_names: Vec<&Value> = configs_names(&again);
    assert_eq!(again_names, configs.iter().map(|c| &c["name"]).collect::<Vec<_>>(), "the same ranking");
}

fn configs_names(b: &Build) -> Vec<&Value> {
    configs(b).into_iter().map(|c| &c["name"]).collect()
}

#[test]
fn after_a_build_the_sweep_reuses_calibration_and_every_identical_target() {
    let p = Project::digits();
    p.build().assert_ok();
    let b = sweep_json(&p, &[]);
    b.assert_ok();
    let shared = ["parse", "optimize", "calibrate"];
    assert!(
        b.built().iter().all(|(_, stage)| !shared.contains(&stage.as_str())),
        "nothing before quantize runs again: {:?}",
        b.built()
    );
    // sweep-a16w8-minmax-asym-pc has exactly the settings of htp-w8a16: stage keys depend on
    // settings, not names, so its every stage comes from the build's cache.
    let same = "sweep-a16w8-minmax-asym-pc";
    assert!(b.built().iter().all(|(target, _)| target != same), "{:?}", b.built());
    assert_eq!(b.cached().iter().filter(|(target, _)| target == same).count(), 7);
    // The other three quantize on their own (what follows may be cut off early when the
    // quantized graph comes out equal to another one's).
    let quantized: Vec<String> =
        b.built().into_iter().filter(|(_, stage)| stage == "quantize").map(|(t, _)| t).collect();
    assert_eq!(quantized.len(), 3, "{:?}", b.built());
}

#[test]
fn the_winner_written_into_qairt_toml_builds_from_the_cache_with_its_encodings() {
    let toml = format!("# hand-written, keep me\n{}", crate::util::config(40));
    let p = Project::digits_with(&toml);
    let out = p.run(&small_grid(&["--write-winner", "best", "--csv", "ranking.csv"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The human table: a header, four ranked rows, the metric named.
    assert!(stdout.lines().next().unwrap().starts_with("rank"), "{stdout}");
    assert!(stdout.contains("ranked by sqnr_db"), "{stdout}");
    assert!(stdout.contains("added target \"best\""), "{stdout}");
    let csv = p.read("ranking.csv");
    let winner_line = csv.lines().nth(1).unwrap();
    let winner_name = winner_line.split(',').nth(1).unwrap();
    let sqnr_column = csv.lines().next().unwrap().split(',').position(|h| h == "sqnr_db").unwrap();
    let winner_sqnr: f64 = winner_line.split(',').nth(sqnr_column).unwrap().parse().unwrap();

    // The new [[target]] follows the last target; the rest of the file is kept as it was.
    let written = p.read("qairt.toml");
    let start = written.find("\n# qairt sweep winner").unwrap_or_else(|| panic!("{written}"));
    let header = start + written[start..].find("[[target]]\nname = \"best\"").unwrap();
    let end = header + written[header..].find("\n[").unwrap();
    let block = &written[start..end];
    assert_eq!(format!("{}{}", &written[..start], &written[end..]), toml, "{written}");
    assert!(block.contains(&format!("# qairt sweep winner ({winner_name})")), "{block}");
    assert!(written[..start].ends_with("name = \"cpu\"\nbackend = \"cpu\"\n"), "{written}");

    // Building it runs nothing: its stage keys are those of the winning configuration.
    let b = Build::from(p.run(&["build", "--target", "best", "--message-format", "json"]));
    b.assert_ok();
    assert_eq!(b.built(), vec![], "stderr: {}", b.stderr);
    assert_eq!(b.verify("best")["metrics"]["sqnr_db"].as_f64().unwrap(), winner_sqnr);
    let encodings: Value = serde_json::from_str(&p.read("out/best/encodings.json")).unwrap();
    let activations = encodings["activation_encodings"].as_object().unwrap();
    let bitwidth = activations.values().next().unwrap()[0]["bitwidth"].as_u64().unwrap();
    let expected_bits: u64 = winner_name.strip_prefix("sweep-a").unwrap().split('w').next().unwrap().parse().unwrap();
    assert_eq!(bitwidth, expected_bits, "{winner_name}");

    // A second winner with the same name is refused, and qairt.toml is left alone.
    let again = p.run(&small_grid(&["--write-winner", "best"]));
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a target named \"best\""));
    assert_eq!(p.read("qairt.toml"), written);
}

const DSP8: &str = r#"[backend]
name = "dsp8"
quantized = true
activation_bitwidths = [8]
weight_bitwidths = [8]
bias_bitwidths = [32]
per_channel_ops = []
supported_ops = ["Conv", "Gemm", "Relu", "MaxPool", "Flatten", "Reshape", "Softmax"]
"#;

fn sweep_fails(p: &Project, args: &[&str], expected: &[&str]) {
    let mut all = vec!["sweep"];
    all.extend_from_slice(args);
    let out = p.run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    for text in expected {
        assert!(stderr.contains(text), "{args:?}: expected {text:?} in:\n{stderr}");
    }
    assert!(!p.path("out/sweep.csv").exists(), "nothing is written");
}

#[test]
fn bad_axis_values_are_diagnostics_with_exit_1() {
    let p = Project::digits();
    sweep_fails(&p, &["--act-bitwidth", "8,12"], &["--act-bitwidth", "\"12\"", "allowed values: 8, 16"]);
    sweep_fails(&p, &["--act-calibration", "mse,min_max"], &["did you mean \"min-max\""]);
    sweep_fails(&p, &["--per-channel", "yes"], &["--per-channel", "allowed values: true, false"]);
    sweep_fails(&p, &["--target", "cpu"], &["float backend \"cpu\""]);
    sweep_fails(&p, &["--target", "htp-w8"], &["no target named \"htp-w8\""]);
    sweep_fails(&p, &["--write-winner", "a/b"], &["not a valid target name"]);
    // A target of qairt.toml with a generated name but other settings.
    let taken = crate::util::config(40)
        .replace("[verify]", "[[target]]\nname = \"sweep-a8w8-mse-asym-pc\"\nbackend = \"htp\"\n\n[verify]");
    p.write("qairt.toml", &taken);
    sweep_fails(&p, &small_grid(&[])[1..], &["has a target named \"sweep-a8w8-mse-asym-pc\" with other settings"]);
    // A project backend with 8-bit activations and no per-channel weights.
    p.write("rules/dsp8.toml", DSP8);
    let toml =
        crate::util::config(40).replace("[verify]", "[[target]]\nname = \"dsp\"\nbackend = \"dsp8\"\n\n[verify]");
    p.write("qairt.toml", &toml);
    sweep_fails(
        &p,
        &["--target", "dsp", "--act-bitwidth", "8,16"],
        &["backend \"dsp8\" does not allow activation bitwidth 16"],
    );
    sweep_fails(&p, &["--target", "dsp", "--per-channel", "true"], &["does not allow per-channel weights"]);
    let unlabeled = crate::util::config(40).replace("labels = \"digits/test/labels.txt\"\n", "");
    p.write("qairt.toml", &unlabeled);
    sweep_fails(&p, &["--metric", "accuracy"], &["--metric accuracy needs labels"]);
}

#[test]
fn configurations_that_fail_to_build_are_listed_last_and_the_sweep_exits_1() {
    let p = Project::digits();
    // A backend that cannot run the model's Gemm: every configuration fails in compile.
    p.write("rules/nogemm.toml", &DSP8.replace("dsp8", "nogemm").replace("\"Gemm\", ", ""));
    let toml =
        crate::util::config(40).replace("[verify]", "[[target]]\nname = \"ng\"\nbackend = \"nogemm\"\n\n[verify]");
    p.write("qairt.toml", &toml);
    let args =
        ["sweep", "--target", "ng", "--act-calibration", "min-max,mse", "--cle", "false", "--act-schema", "asymmetric"];
    let mut json = args.to_vec();
    json.extend(["--message-format", "json"]);
    let b = Build::from(p.run(&json));
    assert_eq!(b.status, 1, "{}", b.stderr);
    assert!(b.stderr.contains("Gemm"), "the compile diagnostic is shown: {}", b.stderr);
    let configs = configs(&b);
    assert_eq!(configs.len(), 2);
    assert!(configs.iter().all(|c| c["status"] == "failed" && c["rank"].is_null()), "{configs:?}");
    let finished = b.events.last().unwrap();
    assert_eq!((finished["ok"].clone(), finished["winner"].clone()), (Value::Bool(false), Value::Null));
    let csv = p.read("out/sweep.csv");
    assert_eq!(csv.lines().filter(|l| l.ends_with(",failed,")).count(), 2, "{csv}");
    // No winner to write: an error, qairt.toml untouched.
    let mut write = args.to_vec();
    write.extend(["--write-winner", "best"]);
    let out = p.run(&write);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no winner to write"));
    assert_eq!(p.read("qairt.toml"), toml);
}

/// An overrides file with an encoding for every tensor (AIMET's own export of the digits
/// model) leaves nothing for the swept settings to change: every configuration builds the
/// same model.bin, and the sweep says so instead of ranking equal results by name.
#[test]
fn configurations_pinned_by_overrides_share_a_rank_and_the_sweep_says_it_measured_nothing() {
    let p = Project::digits();
    std::fs::copy(
        crate::util::repo_root().join("examples/digits/aimet/encodings_v0.6.1.json"),
        p.path("aimet_all.json"),
    )
    .unwrap();
    let toml = p.read("qairt.toml").replacen("overrides = \"overrides.json\"", "overrides = \"aimet_all.json\"", 1);
    p.write("qairt.toml", &toml);
    let args = [
        "sweep",
        "--target",
        "htp-w8a8",
        "--act-bitwidth",
        "8,16",
        "--act-calibration",
        "min-max,mse",
        "--act-schema",
        "asymmetric",
        "--per-channel",
        "true",
        "--cle",
        "false",
        "--message-format",
        "json",
    ];
    let b = Build::from(p.run(&args));
    b.assert_ok();
    let pinned = configs(&b);
    assert_eq!(pinned.len(), 4);
    let first = pinned[0]["name"].as_str().unwrap();
    assert_eq!(pinned[0]["same_model_as"], Value::Null);
    for config in &pinned[1..] {
        assert_eq!(config["same_model_as"], first, "{config}");
        assert_eq!(config["rank"], 1, "a tie shares the rank: {config}");
    }
    assert!(b.stderr.contains("built the same model.bin"), "{}", b.stderr);
    assert!(b.stderr.contains("--no-overrides"), "{}", b.stderr);

    // Without the overrides the settings reach the model again: distinct models, no warning.
    let mut free = args.to_vec();
    free.insert(1, "--no-overrides");
    let b = Build::from(p.run(&free));
    b.assert_ok();
    assert!(configs(&b).iter().filter(|c| !c["same_model_as"].is_null()).count() < 3, "{:?}", configs(&b));
    assert!(!b.stderr.contains("built the same model.bin"), "{}", b.stderr);
}
