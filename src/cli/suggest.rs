//! `qairt suggest`: which layers to keep at higher precision so that a quantized target meets
//! the project's thresholds; writes the overrides file, then measures it with a real build.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::diag::Diag;
use crate::engine::{DebugOverride, Event};
use crate::verify::sensitivity::{Precision, SensitivityResult};

use super::MessageFormat;
use super::commands::open;
use super::output::{number, numbers, print_report, round, write_json};
use super::render;

#[derive(Args, Debug)]
pub struct SuggestArgs {
    /// The project directory or its qairt.toml (default: the nearest qairt.toml upwards)
    path: Option<PathBuf>,
    /// The quantized target to analyse (default: the first quantized target of qairt.toml)
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// What to keep the suggested layers at: int16 (16-bit activations and weights) or
    /// float16 (default: [verify] suggest_precision, else int16)
    #[arg(long, value_name = "PRECISION", value_parser = parse_precision)]
    precision: Option<Precision>,
    /// Skip the confirming build of the suggested overrides
    #[arg(long)]
    no_build: bool,
    /// human: the ranking and the suggestion; json: a `suggest` message, then `suggest_measured` (docs/json.md)
    #[arg(long, value_enum, default_value = "human")]
    pub message_format: MessageFormat,
}

fn parse_precision(text: &str) -> Result<Precision, String> {
    Precision::parse(text).ok_or_else(|| format!("`{text}` is not a precision (allowed: int16, float16)"))
}

pub fn run(args: SuggestArgs) -> u8 {
    let human = args.message_format == MessageFormat::Human;
    let mut ws = match open(args.path.clone(), human) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    ws.set_debug_override(DebugOverride { precision: args.precision, ..DebugOverride::default() });
    let target = match &args.target {
        Some(t) => t.clone(),
        None => match ws.config.targets.iter().find(|t| t.backend != "cpu") {
            Some(t) => t.name.clone(),
            None => {
                render::print(
                    &Diag::error("qairt::suggest::no_target", "qairt.toml has no quantized target to analyse")
                        .with_help("add a [[target]] with a quantized backend (e.g. backend = \"htp\")"),
                );
                return 1;
            }
        },
    };
    let suggested = match ws.suggest(&target) {
        Ok(s) => s,
        Err(diags) => {
            for d in &diags {
                render::print(d);
            }
            return 1;
        }
    };
    let root = ws.config.root.clone();
    let shown = |p: &PathBuf| p.strip_prefix(&root).unwrap_or(p).display().to_string();
    let result = &suggested.result;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.message_format {
        MessageFormat::Json => {
            let mut line = suggest_json(&target, result, suggested.overrides_path.as_ref().map(&shown));
            line["from_cache"] = json!(!suggested.built);
            write_json(&mut out, line);
        }
        MessageFormat::Human => print_human(&mut out, &target, result, suggested.built),
    }
    if let Some(path) = &suggested.overrides_path {
        if human {
            let _ = writeln!(out, "wrote {}", shown(path));
        }
        if !args.no_build {
            let status = measure(&mut ws, &target, path, args.message_format, &mut out);
            if status == 1 {
                return 1;
            }
        }
        if human {
            // Only a suggestion that meets the thresholds is one to adopt; the best set short of
            // them is shown for what it is.
            let adopt = "copy it beside the model and set overrides = \"<that path>\" in the [[target]]";
            if result.meets {
                let _ = writeln!(out, "to adopt it: {adopt} \"{target}\" of qairt.toml");
            } else {
                let _ = writeln!(
                    out,
                    "it does not meet the thresholds, so it is not a fix: the best this search found at {}. \
                     Try --precision float16, a calibration method or schema (qairt sweep), or relax the thresholds; \
                     to use it anyway: {adopt} \"{target}\"",
                    result.precision.name()
                );
            }
        }
    }
    if human {
        let _ = writeln!(out, "report: {}", shown(&suggested.report_path));
    }
    let _ = out.flush();
    if result.meets { 0 } else { 2 }
}

/// Builds a generated copy of `target` that reads the suggested overrides, and prints it.
fn measure(
    ws: &mut crate::engine::Workspace,
    target: &str,
    overrides: &std::path::Path,
    format: MessageFormat,
    out: &mut impl Write,
) -> u8 {
    let Some(base) = ws.config.targets.iter().find(|t| t.name == target).cloned() else { return 1 };
    let name = format!("{target}.suggested");
    let mut generated = base;
    generated.name = name.clone();
    generated.overrides = Some(overrides.to_path_buf());
    ws.set_generated_targets(vec![generated]);
    if format == MessageFormat::Human {
        let _ = writeln!(out, "measuring it: a build of {name} (= {target} with the suggested overrides)");
        let _ = out.flush();
    }
    let report = ws.build(std::slice::from_ref(&name));
    ws.set_generated_targets(Vec::new());
    if format == MessageFormat::Json {
        if let Some(Event::Verify { outcome, .. }) = report.events.iter().find(|e| matches!(e, Event::Verify { .. })) {
            let line = json!({"event": "suggest_measured", "target": name, "passed": outcome.passed, "metrics": numbers(&outcome.metrics)});
            write_json(out, line);
        }
        for diag in &report.errors {
            render::print(diag);
        }
        return if report.errors.is_empty() { 0 } else { 1 };
    }
    print_report(&report, format)
}

fn suggest_json(target: &str, r: &SensitivityResult, overrides: Option<String>) -> serde_json::Value {
    let ranking: Vec<serde_json::Value> = r
        .ranking
        .iter()
        .map(|g| json!({"layer": g.layer, "op": g.op, "sqnr_db": number(g.measurement.sqnr_db), "gain_db": number(g.gain_db)}))
        .collect();
    json!({
        "event": "suggest", "target": target, "precision": r.precision.name(),
        "baseline": {"sqnr_db": number(r.baseline.sqnr_db), "cosine": r.baseline.cosine, "top1_agreement": r.baseline.top1_agreement},
        "ranking": ranking, "chosen": r.chosen,
        "result": {"sqnr_db": number(r.result.sqnr_db), "cosine": r.result.cosine, "top1_agreement": r.result.top1_agreement},
        "meets_thresholds": r.meets, "configurations_measured": r.measured, "overrides": overrides,
    })
}

fn print_human(out: &mut impl Write, target: &str, r: &SensitivityResult, built: bool) {
    let cached = if built { "" } else { " (from the cache)" };
    let _ = writeln!(
        out,
        "{target}: output SQNR {:.2} dB; sensitivity at {} of {} layers, {} configurations measured{cached}",
        r.baseline.sqnr_db,
        r.precision.name(),
        r.ranking.len(),
        r.measured
    );
    let name_width = r.ranking.iter().map(|g| g.layer.chars().count()).max().unwrap_or(0).max(5);
    let op_width = r.ranking.iter().map(|g| g.op.len()).max().unwrap_or(0).max(2);
    let _ = writeln!(
        out,
        "  {:>4}  {:<name_width$}  {:<op_width$} {:>10} {:>9}",
        "rank", "layer", "op", "SQNR dB", "gain dB"
    );
    for (i, g) in r.ranking.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>4}  {:<name_width$}  {:<op_width$} {:>10.2} {:>+9.2}",
            i + 1,
            g.layer,
            g.op,
            g.measurement.sqnr_db,
            round(g.gain_db, 2)
        );
    }
    if r.chosen.is_empty() {
        let why = if r.meets { "the target already meets its thresholds" } else { "no threshold is set" };
        let _ = writeln!(out, "suggestion: none ({why})");
    } else {
        let verdict = if r.meets {
            "meets the thresholds"
        } else {
            "still short of the thresholds: no set of these layers reaches them"
        };
        let _ = writeln!(
            out,
            "suggestion: keep {} layer(s) at {}: {} -> output SQNR {:.2} dB ({verdict})",
            r.chosen.len(),
            r.precision.name(),
            r.chosen.join(", "),
            r.result.sqnr_db
        );
    }
}
