//! Prints build events: one JSON object per line on stdout (`--message-format json`), or a
//! table for people. Diagnostics always go to stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::engine::{BuildReport, Event};

use super::MessageFormat;
use super::render;
use super::style::{self, Role, paint};

/// The version of the JSON messages' schema (docs/json.md), on every line as `"schema"`. It
/// rises when a field is removed or changes meaning; new events and new fields keep it.
pub const JSON_SCHEMA: u32 = 1;

/// Whether a `finished` message was written (so `cli::main` writes one on every other exit).
static FINISHED_WRITTEN: AtomicBool = AtomicBool::new(false);

/// Writes one JSON message to `out`: the object with `"schema"` added, on one line, flushed at
/// once (a reader sees each event the moment it happens).
pub(super) fn write_json(out: &mut impl Write, mut line: Value) {
    if let Some(map) = line.as_object_mut() {
        map.insert("schema".into(), json!(JSON_SCHEMA));
    }
    if line["event"] == "finished" {
        FINISHED_WRITTEN.store(true, Ordering::Relaxed);
    }
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// [`write_json`] to stdout.
pub(super) fn print_json(line: Value) {
    write_json(&mut std::io::stdout().lock(), line);
}

/// Whether a `finished` message has been written by this process.
pub(super) fn finished_written() -> bool {
    FINISHED_WRITTEN.load(Ordering::Relaxed)
}

/// A float as JSON: a number, or the string `"inf"`, `"-inf"` or `"nan"` where JSON has no
/// number (an SQNR of identical tensors is infinite; `null` would lose that).
pub(super) fn number(x: f64) -> Value {
    match crate::verify::json_float::non_finite_name(x) {
        Some(name) => json!(name),
        None => json!(x),
    }
}

/// A map of metrics with [`number`] values.
pub(super) fn numbers(metrics: &BTreeMap<String, f64>) -> Value {
    Value::Object(metrics.iter().map(|(k, v)| (k.clone(), number(*v))).collect())
}

/// The JSON line of a stage event (docs/json.md), shared by `build`, `watch` and
/// `sweep`; `None` for other events.
pub fn stage_json(event: &Event) -> Option<serde_json::Value> {
    let Event::Stage { target, stage, built, remote, key, ms, peak_activation_bytes } = event else { return None };
    let mut line = json!({
        "event": "stage", "target": target, "stage": stage.name(),
        "status": if *built { "built" } else { "cached" },
        "key": key.to_hex().to_string(), "ms": round(*ms, 3),
    });
    // Where a cached result came from: this machine's cache or the shared remote one.
    if !*built {
        line["from"] = json!(if *remote { "remote" } else { "local" });
    }
    if let Some(bytes) = peak_activation_bytes {
        line["peak_activation_bytes"] = json!(bytes);
    }
    Some(line)
}

/// The JSON line of a verify event (docs/json.md), for `build`, `watch` and the Python
/// package's `qairt.build`; `None` for other events.
pub fn verify_json(event: &Event) -> Option<serde_json::Value> {
    let Event::Verify { target, outcome } = event else { return None };
    let worst: Vec<serde_json::Value> = outcome
        .worst
        .iter()
        .map(|w| json!({"layer": w.layer, "op": w.op, "sqnr_db": number(w.sqnr_db), "compared_with": w.compared_with}))
        .collect();
    let first_failing = outcome
        .first_failing
        .as_ref()
        .map(|f| json!({"layer": f.layer, "failed": f.failed, "compared_with": f.compared_with}));
    let line = json!({
        "event": "verify", "target": target, "passed": outcome.passed,
        "metrics": numbers(&outcome.metrics), "failures": outcome.failures,
        "mode": outcome.mode.name(), "first_failing_layer": first_failing, "worst_layers": worst,
    });
    let mut line = line;
    if let Some((failed, analyzed)) = outcome.checker {
        line["checker"] = json!({"failed": failed, "analyzed": analyzed});
    }
    if let Some((matched, tensors, files)) = &outcome.golden {
        line["golden"] = json!({"matched": matched, "unmatched_tensors": tensors, "unmatched_files": files});
    }
    Some(line)
}

/// A remote cache's figures as JSON (the `finished` event's and `cache stats`'s `remote`).
pub(super) fn remote_json(remote: &crate::engine::RemoteReport) -> Value {
    let mut value = serde_json::to_value(&remote.stats).unwrap_or_default();
    value["url"] = json!(remote.url);
    value["mode"] = json!(remote.mode.name());
    value
}

/// A byte count for people: `812 B`, `3.4 MB`.
pub(super) fn bytes_text(bytes: u64) -> String {
    match bytes {
        b if b < 1_000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.2} GB", b as f64 / 1e9),
    }
}

/// An SQNR for people: `38.2 dB`, or `exact` for identical tensors.
fn db_text(sqnr: f64) -> String {
    if sqnr == f64::INFINITY { "exact".into() } else { format!("{:.1} dB", sqnr) }
}

pub(super) fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Prints one build's events and returns its exit status.
pub fn print_report(report: &BuildReport, format: MessageFormat) -> u8 {
    let mut printer = EventPrinter::new(format);
    for event in &report.events {
        printer.print(event);
    }
    printer.finish(report)
}

/// Prints a build's events one at a time, as they happen (each line flushed, so a pipe or a
/// terminal sees a stage the moment it finishes), then the build's end.
pub struct EventPrinter {
    format: MessageFormat,
    last_target: Option<String>,
}

impl EventPrinter {
    pub fn new(format: MessageFormat) -> EventPrinter {
        EventPrinter { format, last_target: None }
    }

    pub fn print(&mut self, event: &Event) {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let format = self.format;
        match (event, format) {
            (Event::Warning(diag), _) => render::print(diag),
            (event @ Event::Stage { .. }, MessageFormat::Json) => {
                if let Some(line) = stage_json(event) {
                    write_json(&mut out, line);
                }
            }
            (Event::Stage { .. }, MessageFormat::Human) if style::quiet() => {}
            (Event::Stage { target, stage, built, remote, key, ms, peak_activation_bytes }, MessageFormat::Human) => {
                if self.last_target.as_ref() != Some(target) {
                    let _ = writeln!(out, "{}", paint(Role::Heading, target));
                    self.last_target = Some(target.clone());
                }
                let status = match (built, remote) {
                    (true, _) => paint(Role::Built, "built "),
                    (false, true) => paint(Role::Dim, "cached (remote)"),
                    (false, false) => paint(Role::Dim, "cached"),
                };
                let time = format!("{ms:>9.1} ms");
                let peak =
                    peak_activation_bytes.map(|b| format!("  (peak activation memory {b} B)")).unwrap_or_default();
                // -v: the action key, to compare across runs and machines (first 16 hex digits).
                let key = if style::verbose() {
                    paint(Role::Dim, &format!("  key {}", &key.to_hex()[..16]))
                } else {
                    String::new()
                };
                let _ = writeln!(out, "  {:<10} {status}{time}{peak}{key}", stage.name());
            }
            (event @ Event::Verify { .. }, MessageFormat::Json) => {
                if let Some(line) = verify_json(event) {
                    write_json(&mut out, line);
                }
            }
            // -q: a passing target says nothing; a failing one says which and why.
            (Event::Verify { outcome, .. }, MessageFormat::Human) if style::quiet() && outcome.passed => {}
            (Event::Verify { target, outcome }, MessageFormat::Human) if style::quiet() => {
                let _ = writeln!(out, "{}: verify {}", paint(Role::Heading, target), paint(Role::Bad, "FAILED"));
                for failure in &outcome.failures {
                    let _ = writeln!(out, "    {}: {failure}", paint(Role::Bad, "threshold not met"));
                }
            }
            (Event::Verify { outcome, .. }, MessageFormat::Human) => {
                let metrics: Vec<String> =
                    outcome.metrics.iter().map(|(k, v)| format!("{k} {}", round(*v, 4))).collect();
                let verdict = if outcome.passed { paint(Role::Good, "passed") } else { paint(Role::Bad, "FAILED") };
                let _ = writeln!(out, "  verify: {verdict}  {}", metrics.join("  "));
                for failure in &outcome.failures {
                    let _ = writeln!(out, "    {}: {failure}", paint(Role::Bad, "threshold not met"));
                }
                match &outcome.first_failing {
                    Some(failing) => {
                        // A fused op's row is measured at the activation it is fused into: say
                        // so here, where people read it, not only in the HTML report.
                        let fused = failing
                            .compared_with
                            .as_ref()
                            .map(|at| {
                                format!(
                                    ", measured at {at} (fused into that activation on the target, whose encoding \
                                     decides it)"
                                )
                            })
                            .unwrap_or_default();
                        let _ = writeln!(
                            out,
                            "    {} ({}): {}{fused}: {}",
                            paint(Role::Notice, "first failing layer"),
                            outcome.mode.name(),
                            failing.layer,
                            failing.failed.join(", ")
                        );
                    }
                    None => {
                        let _ = writeln!(out, "    every layer meets its metric thresholds ({})", outcome.mode.name());
                    }
                }
                if let Some((matched, tensors, files)) = &outcome.golden {
                    let _ = writeln!(out, "    golden dump: {matched} tensors matched");
                    if !tensors.is_empty() {
                        let _ = writeln!(out, "    no golden file for: {}", tensors.join(", "));
                    }
                    if !files.is_empty() {
                        let _ = writeln!(out, "    golden files matching no tensor: {}", files.join(", "));
                    }
                }
                if let Some((failed, analyzed)) = outcome.checker {
                    let _ = writeln!(out, "    quantization checker: {failed} of {analyzed} tensors fail a check");
                }
                if !outcome.worst.is_empty() {
                    let worst: Vec<String> = outcome
                        .worst
                        .iter()
                        .map(|w| match &w.compared_with {
                            Some(at) => format!("{} ({}, measured at {at}) {}", w.layer, w.op, db_text(w.sqnr_db)),
                            None => format!("{} ({}) {}", w.layer, w.op, db_text(w.sqnr_db)),
                        })
                        .collect();
                    let _ = writeln!(out, "    largest error: {}", worst.join(", "));
                }
            }
        }
        let _ = out.flush();
    }

    /// Prints the errors and the closing line; returns the build's exit status.
    pub fn finish(self, report: &BuildReport) -> u8 {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for diag in &report.errors {
            render::print(diag);
        }
        let ok = report.errors.is_empty();
        let code = if !ok {
            1
        } else if !report.thresholds_met {
            2
        } else {
            0
        };
        match self.format {
            MessageFormat::Json => {
                let mut line = json!({
                    "event": "finished", "ok": code == 0, "exit_code": code, "built": report.built,
                    "cached": report.cached, "ms": round(report.ms, 3),
                });
                if let Some(remote) = &report.remote {
                    line["remote"] = remote_json(remote);
                }
                write_json(&mut out, line);
            }
            // -q: a build that did what was asked prints nothing at all, as cargo's does.
            MessageFormat::Human if style::quiet() && code == 0 => {}
            MessageFormat::Human => {
                let verdict = if !ok {
                    paint(Role::Bad, "failed")
                } else if !report.thresholds_met {
                    paint(Role::Bad, "finished, verification thresholds NOT met")
                } else {
                    paint(Role::Good, "finished")
                };
                let _ =
                    writeln!(out, "{verdict}: {} built, {} cached in {:.0} ms", report.built, report.cached, report.ms);
                if let Some(remote) = &report.remote {
                    let s = &remote.stats;
                    let _ = writeln!(
                        out,
                        "remote cache {}: {} hits, {} misses, {} down, {} up{}",
                        remote.url,
                        s.hits,
                        s.misses,
                        bytes_text(s.bytes_down),
                        bytes_text(s.bytes_up),
                        if s.errors > 0 { " (unavailable: built locally)" } else { "" }
                    );
                }
            }
        }
        let _ = out.flush();
        code
    }
}
