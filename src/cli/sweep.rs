//! `qairt sweep`: a grid of quantization configurations, built with every cached stage reused, ranked.
//!
//! The SDK accuracy evaluator's minimal mode, as a build: the configurations vary one base
//! target's quantization settings and become generated targets of the workspace (never
//! written under `out/`). Calibration statistics do not depend on the method or bitwidth, so
//! the whole grid shares one calibration run; a repeated sweep finds every stage cached.
//! Output: a ranked table (or JSON lines), a CSV file, and optionally the winner as a new
//! `[[target]]` of `qairt.toml`.

mod grid;
mod rank;
mod winner;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use crate::diag::Diag;
use crate::engine::{BuildReport, Event, Stage, Workspace};
use crate::project::TargetConfig;

use super::MessageFormat;
use super::commands::open;
use super::files::write_atomically;
use super::output::{numbers, round, stage_json, write_json};
use super::render;

pub use rank::Metric;

/// The command line of `qairt sweep`.
#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The project directory or its qairt.toml (default: the nearest qairt.toml upwards)
    path: Option<PathBuf>,
    /// The target whose settings the grid varies (default: the first quantized target)
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Activation calibration methods [default: min-max,percentile,mse,sqnr,entropy]
    #[arg(long, value_name = "LIST")]
    act_calibration: Option<String>,
    /// Parameter calibration methods [default: the base target's]
    #[arg(long, value_name = "LIST")]
    param_calibration: Option<String>,
    /// Activation schemas [default: asymmetric,symmetric]
    #[arg(long, visible_alias = "schema", value_name = "LIST")]
    act_schema: Option<String>,
    /// Parameter schemas [default: the base target's]
    #[arg(long, value_name = "LIST")]
    param_schema: Option<String>,
    /// Per-channel weights for the conv family [default: true,false where the backend allows]
    #[arg(long, value_name = "LIST")]
    per_channel: Option<String>,
    /// Per-row weights for Gemm and MatMul [default: the base target's]
    #[arg(long, value_name = "LIST")]
    per_row: Option<String>,
    /// Cross-layer equalization [default: false,true]
    #[arg(long, value_name = "LIST")]
    cle: Option<String>,
    /// Activation bitwidths [default: 8,16 where the backend allows]
    #[arg(long, value_name = "LIST")]
    act_bitwidth: Option<String>,
    /// Weight bitwidths [default: the base target's]
    #[arg(long, value_name = "LIST")]
    weight_bitwidth: Option<String>,
    /// Rank by this metric [default: accuracy when [verify] has labels, else sqnr]
    #[arg(long, value_enum)]
    metric: Option<Metric>,
    /// Where to write the ranked table as CSV [default: <out_dir>/sweep.csv]
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
    /// Append the winning configuration to qairt.toml as a [[target]] with this name
    #[arg(long, value_name = "NAME")]
    write_winner: Option<String>,
    /// Sweep without the base target's overrides file (its encodings pin the tensors it names)
    #[arg(long)]
    no_overrides: bool,
    /// human: a ranked table; json: its builds' stage messages, then one `config` message per configuration (docs/json.md)
    #[arg(long, value_enum, default_value = "human")]
    pub message_format: MessageFormat,
}

fn fail(diags: &[Diag]) -> u8 {
    for diag in diags {
        render::print(diag);
    }
    1
}

/// The base target: the one named, else the first whose backend is quantized.
fn base_target(ws: &mut Workspace, wanted: Option<&str>) -> Result<TargetConfig, Vec<Diag>> {
    let targets = ws.config.targets.clone();
    if let Some(name) = wanted {
        let rules = ws.backend_rules(name)?;
        let target =
            targets.iter().find(|t| t.name == name).cloned().ok_or_else(|| {
                vec![Diag::error("qairt::cli::unknown_target", format!("no target named \"{name}\""))]
            })?;
        if !rules.quantized {
            return Err(vec![
                Diag::error(
                    "qairt::sweep::float_target",
                    format!(
                        "target \"{name}\" uses the float backend \"{}\": there is nothing to sweep",
                        target.backend
                    ),
                )
                .with_help("give --target a target whose backend is quantized (e.g. htp)"),
            ]);
        }
        return Ok(target);
    }
    for target in &targets {
        if ws.backend_rules(&target.name)?.quantized {
            return Ok(target.clone());
        }
    }
    Err(vec![
        Diag::error("qairt::sweep::no_quantized_target", "qairt.toml has no target with a quantized backend")
            .in_file(&ws.config.file)
            .with_help("add a [[target]] with a quantized backend, e.g. backend = \"htp\""),
    ])
}

/// Splits the grid into generated targets and targets of `qairt.toml` that already are one of
/// its configurations (same name and same settings: a winner written by an earlier sweep).
fn place_configs(
    ws: &Workspace,
    base: &TargetConfig,
    configs: Vec<grid::Config>,
    overrides: Option<PathBuf>,
) -> Result<(Vec<TargetConfig>, Vec<TargetConfig>), Diag> {
    let mut all = Vec::new();
    let mut generated = Vec::new();
    for config in configs {
        let target = TargetConfig {
            name: config.name,
            backend: base.backend.clone(),
            quant: config.settings,
            overrides: overrides.clone(),
        };
        match ws.config.targets.iter().find(|t| t.name == target.name) {
            Some(existing) if *existing == target => {}
            Some(_) => {
                return Err(Diag::error(
                    "qairt::sweep::name_taken",
                    format!("qairt.toml has a target named \"{}\" with other settings", target.name),
                )
                .in_file(&ws.config.file)
                .with_help("names starting with `sweep-` name the sweep's configurations; rename that target"));
            }
            None => generated.push(target.clone()),
        }
        all.push(target);
    }
    Ok((all, generated))
}

/// Prints one configuration's build: stage events (JSON) and warnings; returns its verify
/// outcome, if it got that far.
fn print_build(
    out: &mut impl Write,
    report: &BuildReport,
    format: MessageFormat,
) -> Option<(BTreeMap<String, f64>, bool)> {
    let mut outcome = None;
    for event in &report.events {
        match event {
            Event::Warning(diag) => render::print(diag),
            Event::Stage { .. } => {
                if format == MessageFormat::Json
                    && let Some(line) = stage_json(event)
                {
                    write_json(out, line);
                }
            }
            Event::Verify { outcome: o, .. } => outcome = Some((o.metrics.clone(), o.passed)),
        }
    }
    outcome
}

fn settings_json(s: &crate::quant::settings::QuantSettings) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (key, value) in rank::settings_columns(s) {
        let v = match key {
            "act_bitwidth" | "weight_bitwidth" => json!(value.parse::<u32>().unwrap_or(0)),
            "per_channel" | "per_row" | "cle" => json!(value == "true"),
            _ => json!(value),
        };
        map.insert(key.to_string(), v);
    }
    serde_json::Value::Object(map)
}

/// What a sweep will build, decided before anything runs.
struct Plan {
    base: TargetConfig,
    metric: Metric,
    labels: bool,
    overrides: Option<PathBuf>,
    /// Every configuration, in grid order (generated ones and existing equal targets).
    targets: Vec<TargetConfig>,
}

/// Checks the command line against the project and expands the grid; nothing is built.
fn plan(ws: &mut Workspace, args: &SweepArgs) -> Result<(Plan, Vec<TargetConfig>), Vec<Diag>> {
    let labels = ws.config.verify.labels.is_some();
    let metric = args.metric.unwrap_or(if labels { Metric::Accuracy } else { Metric::Sqnr });
    if metric == Metric::Accuracy && !labels {
        return Err(vec![
            Diag::error("qairt::sweep::no_labels", "--metric accuracy needs labels to measure accuracy")
                .in_file(&ws.config.file)
                .with_help("add labels = \"<labels file>\" to [verify], or rank by sqnr, cosine or top1-agreement"),
        ]);
    }
    if let Some(name) = &args.write_winner {
        winner::check_name(&ws.config, name).map_err(|d| vec![d])?;
    }
    let base = base_target(ws, args.target.as_deref())?;
    let rules = ws.backend_rules(&base.name)?;
    let axes = grid::AxisArgs {
        act_calibration: args.act_calibration.clone(),
        param_calibration: args.param_calibration.clone(),
        act_schema: args.act_schema.clone(),
        param_schema: args.param_schema.clone(),
        per_channel: args.per_channel.clone(),
        per_row: args.per_row.clone(),
        cle: args.cle.clone(),
        act_bitwidth: args.act_bitwidth.clone(),
        weight_bitwidth: args.weight_bitwidth.clone(),
    };
    let grid = grid::Grid::new(&axes, &base.quant, &rules).map_err(|d| vec![d])?;
    let overrides = if args.no_overrides { None } else { base.overrides.clone() };
    let (targets, generated) =
        place_configs(ws, &base, grid.expand(&base.quant), overrides.clone()).map_err(|d| vec![d])?;
    Ok((Plan { base, metric, labels, overrides, targets }, generated))
}

/// What building the grid gave.
struct Outcome {
    rows: Vec<rank::Row>,
    errors: Vec<Diag>,
    built: usize,
    cached: usize,
}

/// Builds every configuration, one at a time (so shared stages are reported once, by the
/// first configuration that needs them), streaming stage events; rows come back ranked.
fn build_all(ws: &mut Workspace, plan: &Plan, out: &mut impl Write, format: MessageFormat) -> Outcome {
    let mut outcome = Outcome { rows: Vec::new(), errors: Vec::new(), built: 0, cached: 0 };
    let key = plan.metric.key();
    for (i, target) in plan.targets.iter().enumerate() {
        let report = ws.build(std::slice::from_ref(&target.name));
        outcome.built += report.built;
        outcome.cached += report.cached;
        let verified = print_build(out, &report, format);
        for diag in report.errors {
            if !outcome.errors.contains(&diag) {
                outcome.errors.push(diag);
            }
        }
        if format == MessageFormat::Human {
            let shown = match &verified {
                Some((m, _)) => format!("{key} {:.4}", m.get(key).copied().unwrap_or(f64::NAN)),
                None => "failed".into(),
            };
            eprintln!(
                "  [{}/{}] {:<32} {shown}  ({} built, {} cached)",
                i + 1,
                plan.targets.len(),
                target.name,
                report.built,
                report.cached
            );
        }
        let (metrics, passed) = match verified {
            Some((m, p)) => (Some(m), p),
            None => (None, false),
        };
        // The compile key hashes the quantized graph (and the backend): equal keys, equal model.bin.
        let model = report.events.iter().find_map(|e| match e {
            Event::Stage { target: t, stage: Stage::Compile, key, .. } if *t == target.name => {
                Some(key.to_hex().to_string())
            }
            _ => None,
        });
        let model = metrics.as_ref().and(model);
        outcome.rows.push(rank::Row {
            name: target.name.clone(),
            settings: target.quant.clone(),
            metrics,
            passed,
            model,
        });
    }
    rank::rank(&mut outcome.rows, plan.metric);
    outcome
}

/// A warning when every configuration that built built the same model: the sweep measured
/// nothing, whatever the table's order says.
fn identical_models(rows: &[rank::Row], plan: &Plan) -> Option<Diag> {
    let built: Vec<&rank::Row> = rows.iter().filter(|r| r.model.is_some()).collect();
    if built.len() < 2 || built.iter().any(|r| r.model != built[0].model) {
        return None;
    }
    let why = match &plan.overrides {
        Some(file) => format!("the overrides in {} pin every tensor the settings differ in", file.display()),
        None => "no tensor's encoding depends on the settings that differ".to_string(),
    };
    let diag = Diag::warning(
        "qairt::sweep::identical",
        format!("all {} configurations built the same model.bin: {why}, so the ranking compares nothing", built.len()),
    );
    Some(match &plan.overrides {
        Some(_) => diag.with_help("sweep with --no-overrides to measure the settings themselves"),
        None => diag.with_help("vary settings that reach the model (act_bitwidth, weight_bitwidth, calibration)"),
    })
}

/// Writes the best row into `qairt.toml` as the target `name`.
fn write_winner_of(ws: &Workspace, plan: &Plan, rows: &[rank::Row], name: &str) -> Result<(), Diag> {
    let key = plan.metric.key();
    let Some((row, value)) = rows.first().and_then(|r| r.metric(key).map(|v| (r, v))) else {
        return Err(Diag::error("qairt::sweep::no_winner", "no configuration built: there is no winner to write")
            .with_help("fix the errors above and sweep again"));
    };
    let w = winner::Winner {
        name,
        base: &plan.base.name,
        backend: &plan.base.backend,
        settings: &row.settings,
        overrides: plan.overrides.as_deref(),
        comment: format!(
            "qairt sweep winner ({}): {key} = {value} over {} configurations of \"{}\"",
            row.name,
            rows.len(),
            plan.base.name
        ),
    };
    write_winner(&ws.config.file, &w)
}

pub fn run(args: SweepArgs) -> u8 {
    let started = Instant::now();
    let format = args.message_format;
    let mut ws = match open(args.path.clone(), format == MessageFormat::Human) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let (plan, generated) = match plan(&mut ws, &args) {
        Ok(planned) => planned,
        Err(diags) => return fail(&diags),
    };
    if format == MessageFormat::Human {
        eprintln!(
            "sweeping {} configurations of target \"{}\" (backend {}), ranked by {}",
            plan.targets.len(),
            plan.base.name,
            plan.base.backend,
            plan.metric.key()
        );
        if let Some(path) = &plan.overrides {
            eprintln!(
                "  the tensors named in {} keep their encodings in every configuration (--no-overrides to sweep without it)",
                path.display()
            );
        }
    }
    ws.set_generated_targets(generated);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let Outcome { rows, mut errors, built, cached } = build_all(&mut ws, &plan, &mut out, format);
    ws.set_generated_targets(Vec::new());
    for diag in &errors {
        render::print(diag);
    }

    let csv_path = args.csv.clone().unwrap_or_else(|| ws.config.out_dir.join("sweep.csv"));
    let mut late = Vec::new();
    if let Err(e) = write_atomically(&csv_path, rank::csv(&rows).as_bytes()) {
        late.push(Diag::error("qairt::io::write", format!("cannot write {}: {e}", csv_path.display())));
    }
    let mut written = None;
    if let Some(name) = &args.write_winner {
        match write_winner_of(&ws, &plan, &rows, name) {
            Ok(()) => written = Some(name.clone()),
            Err(d) => late.push(d),
        }
    }
    for diag in &late {
        render::print(diag);
    }
    errors.extend(late);
    if let Some(warning) = identical_models(&rows, &plan) {
        render::print(&warning);
    }

    let ok = errors.is_empty();
    let best = rows.first().filter(|r| r.metric(plan.metric.key()).is_some());
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match format {
        MessageFormat::Json => {
            let (ranks, same) = (rank::ranks(&rows), rank::same_model_as(&rows));
            for (i, row) in rows.iter().enumerate() {
                let line = json!({
                    "event": "config",
                    "rank": ranks[i],
                    "same_model_as": same[i].map(|first| rows[first].name.clone()),
                    "name": row.name,
                    "status": if row.metrics.is_some() { "ok" } else { "failed" },
                    "passed": row.passed,
                    "settings": settings_json(&row.settings),
                    "metrics": row.metrics.as_ref().map(numbers),
                });
                write_json(&mut out, line);
            }
            let line = json!({
                "event": "finished", "ok": ok, "base": plan.base.name, "metric": plan.metric.key(),
                "configs": rows.len(), "winner": best.map(|r| r.name.clone()),
                "csv": csv_path.display().to_string(), "written": written,
                "built": built, "cached": cached, "ms": round(ms, 3),
            });
            write_json(&mut out, line);
        }
        MessageFormat::Human => {
            let _ = write!(out, "{}", rank::table(&rows, plan.metric, plan.labels));
            let _ = writeln!(out, "wrote {}", csv_path.display());
            if let Some(name) = &written {
                let _ = writeln!(out, "added target \"{name}\" to {}", ws.config.file.display());
            }
            let verdict = if ok { "finished" } else { "failed" };
            let _ = writeln!(
                out,
                "{verdict}: {} configurations, {built} stages built, {cached} cached in {ms:.0} ms",
                rows.len()
            );
        }
    }
    let _ = out.flush();
    if ok { 0 } else { 1 }
}

/// Reads `qairt.toml`, appends the winner and replaces the file atomically.
fn write_winner(file: &Path, w: &winner::Winner) -> Result<(), Diag> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Diag::error("qairt::io::read", format!("cannot read {}: {e}", file.display())))?;
    let edited = winner::add_target(file, &text, w)?;
    write_atomically(file, edited.as_bytes())
        .map_err(|e| Diag::error("qairt::io::write", format!("cannot write {}: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_reported_with_their_types() {
        let v = settings_json(&crate::quant::settings::QuantSettings::default());
        assert_eq!(v["act_bitwidth"], 8);
        assert_eq!(v["per_channel"], true);
        assert_eq!(v["cle"], false);
        assert_eq!(v["act_calibration"], "min-max");
    }
}
