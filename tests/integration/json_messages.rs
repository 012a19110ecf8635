//! `--message-format json` as CI reads it: every stdout line a versioned JSON object,
//! diagnostics as messages with file, line and column, `finished` on every exit, infinities
//! as explicit strings, and JSON from `explain` and `cache stats` too.

use serde_json::Value;

use crate::util::{Project, config};

/// Every stdout line of `qairt ARGS`, parsed (a line that is not JSON fails the test), and the
/// exit status.
fn messages(p: &Project, args: &[&str]) -> (Vec<Value>, i32) {
    let out = p.run(args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect::<Vec<_>>();
    assert!(lines.iter().all(|l| l["schema"] == 1 && l["event"].is_string()), "{lines:?}");
    (lines, out.status.code().unwrap_or(-1))
}

#[test]
fn a_config_error_is_a_diagnostic_message_and_the_run_still_finishes() {
    let p = Project::digits_with(&config(5).replace("per_channel = true", "per_chanel = true"));
    let (lines, status) = messages(&p, &["build", "--message-format", "json"]);
    assert_eq!(status, 1);
    let diag = lines.iter().find(|l| l["event"] == "diagnostic").expect("a diagnostic message");
    assert_eq!(diag["code"], "qairt::config::syntax");
    assert_eq!(diag["severity"], "error");
    assert!(diag["file"].as_str().unwrap().ends_with("qairt.toml"), "{diag}");
    assert_eq!((diag["line"].as_u64(), diag["column"].as_u64()), (Some(12), Some(1)), "{diag}");
    assert!(diag["message"].as_str().unwrap().contains("per_chanel"));
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!((last["ok"].as_bool(), last["exit_code"].as_i64()), (Some(false), Some(1)));
}

#[test]
fn an_exact_sqnr_is_the_string_inf_and_every_stage_is_a_message() {
    let p = Project::digits_with(&config(5));
    let (lines, status) = messages(&p, &["build", "--message-format", "json"]);
    assert_eq!(status, 0);
    let cpu = lines.iter().find(|l| l["event"] == "verify" && l["target"] == "cpu").unwrap();
    assert_eq!(cpu["metrics"]["sqnr_db"], "inf", "the float target reproduces its reference exactly");
    let htp = lines.iter().find(|l| l["event"] == "verify" && l["target"] == "htp-w8a8").unwrap();
    assert!(htp["metrics"]["sqnr_db"].as_f64().is_some_and(f64::is_finite));
    let last = lines.last().unwrap();
    assert_eq!((last["event"].as_str(), last["exit_code"].as_i64()), (Some("finished"), Some(0)));
}

#[test]
fn explain_and_cache_stats_speak_json() {
    let p = Project::digits_with(&config(5));
    p.build().assert_ok();
    p.write("overrides.json", &crate::util::edit_one_encoding(&p.read("overrides.json")));
    let (lines, status) = messages(&p, &["explain", "--target", "htp-w8a8", "--message-format", "json"]);
    assert_eq!(status, 0);
    let status_of = |stage: &str| {
        let line = lines.iter().find(|l| l["event"] == "explain" && l["stage"] == stage).unwrap();
        (line["status"].as_str().unwrap().to_string(), line.clone())
    };
    let (parse, line) = status_of("parse");
    assert_eq!(parse, "fresh");
    assert_eq!(line["key"].as_str().unwrap().len(), 64);
    let (quantize, line) = status_of("quantize");
    assert_eq!(quantize, "rebuilds");
    assert!(line["reason"].as_str().unwrap().contains("overrides"), "{line}");
    assert_eq!(status_of("compile").0, "rebuilds");

    let (lines, status) = messages(&p, &["cache", "stats", "--message-format", "json"]);
    assert_eq!(status, 0);
    let stats = &lines[0];
    assert_eq!(stats["event"], "cache_stats");
    assert!(stats["objects"].as_u64().unwrap() > 0 && stats["object_bytes"].as_u64().unwrap() > 0);
    assert_eq!(lines.last().unwrap()["event"], "finished");
}
