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
use crate::engine::{BuildReport, Event, Workspace};
use crate::project::TargetConfig;

use super::MessageFormat;
use super::commands::open;
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
    #[arg(long, value_enum, default_value = "human")]
    message_format: MessageFormat,
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

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
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
            Event::Stage { target, stage, built, key, ms, peak_activation_bytes } => {
                if format == MessageFormat::Json {
                    let mut line = json!({
                        "event": "stage", "target": target, "stage": stage.name(),
                        "status": if *built { "built" } else { "cached" },
                        "key": key.to_hex().to_string(), "ms": round(*ms, 3),
                    });
                    if let Some(bytes) = peak_activation_bytes {
                        line["peak_activation_bytes"] = json!(bytes);
                    }
                    let _ = writeln!(out, "{line}");
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
            "per_channel" | "cle" => json!(value == "true"),
            _ => json!(value),
        };
        map.insert(key.to_string(), v);
    }
    serde_json::Value::Object(map)
}

/// Writes to a temporary file next to `path`, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".qairt-").suffix(".tmp");
    if let Some(permissions) = std::fs::metadata(path).ok().map(|m| m.permissions()) {
        builder.permissions(permissions);
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

pub fn run(args: SweepArgs) -> u8 {
    let started = Instant::now();
    let format = args.message_format;
    let mut ws = match open(args.path.clone(), format == MessageFormat::Human) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let labels = ws.config.verify.labels.is_some();
    let metric = args.metric.unwrap_or(if labels { Metric::Accuracy } else { Metric::Sqnr });
    if metric == Metric::Accuracy && !labels {
        return fail(&[Diag::error("qairt::sweep::no_labels", "--metric accuracy needs labels to measure accuracy")
            .in_file(&ws.config.file)
            .with_help("add labels = \"<labels file>\" to [verify], or rank by sqnr, cosine or top1-agreement")]);
    }
    if let Some(name) = &args.write_winner
        && let Err(d) = winner::check_name(&ws.config, name)
    {
        return fail(&[d]);
    }
    let base = match base_target(&mut ws, args.target.as_deref()) {
        Ok(base) => base,
        Err(diags) => return fail(&diags),
    };
    let rules = match ws.backend_rules(&base.name) {
        Ok(rules) => rules,
        Err(diags) => return fail(&diags),
    };
    let axes = grid::AxisArgs {
        act_calibration: args.act_calibration.clone(),
        param_calibration: args.param_calibration.clone(),
        act_schema: args.act_schema.clone(),
        param_schema: args.param_schema.clone(),
        per_channel: args.per_channel.clone(),
        cle: args.cle.clone(),
        act_bitwidth: args.act_bitwidth.clone(),
        weight_bitwidth: args.weight_bitwidth.clone(),
    };
    let grid = match grid::Grid::new(&axes, &base.quant, &rules) {
        Ok(grid) => grid,
        Err(d) => return fail(&[d]),
    };
    let overrides = if args.no_overrides { None } else { base.overrides.clone() };
    let (targets, generated) = match place_configs(&ws, &base, grid.expand(&base.quant), overrides.clone()) {
        Ok(split) => split,
        Err(d) => return fail(&[d]),
    };
    if format == MessageFormat::Human {
        eprintln!(
            "sweeping {} configurations of target \"{}\" (backend {}), ranked by {}",
            targets.len(),
            base.name,
            base.backend,
            metric.key()
        );
        if let Some(path) = &overrides {
            eprintln!(
                "  the tensors named in {} keep their encodings in every configuration (--no-overrides to sweep without it)",
                path.display()
            );
        }
    }
    ws.set_generated_targets(generated);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let (mut built, mut cached) = (0, 0);
    let mut errors: Vec<Diag> = Vec::new();
    let mut rows = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let report = ws.build(std::slice::from_ref(&target.name));
        built += report.built;
        cached += report.cached;
        let outcome = print_build(&mut out, &report, format);
        for diag in report.errors {
            if !errors.contains(&diag) {
                errors.push(diag);
            }
        }
        if format == MessageFormat::Human {
            let shown = match &outcome {
                Some((m, _)) => format!("{} {:.4}", metric.key(), m.get(metric.key()).copied().unwrap_or(f64::NAN)),
                None => "failed".into(),
            };
            eprintln!(
                "  [{}/{}] {:<32} {shown}  ({} built, {} cached)",
                i + 1,
                targets.len(),
                target.name,
                report.built,
                report.cached
            );
        }
        let (metrics, passed) = match outcome {
            Some((m, p)) => (Some(m), p),
            None => (None, false),
        };
        rows.push(rank::Row { name: target.name.clone(), settings: target.quant.clone(), metrics, passed });
    }
    ws.set_generated_targets(Vec::new());
    rank::rank(&mut rows, metric);
    for diag in &errors {
        render::print(diag);
    }

    let csv_path = args.csv.clone().unwrap_or_else(|| ws.config.out_dir.join("sweep.csv"));
    if let Err(e) = write_atomically(&csv_path, rank::csv(&rows).as_bytes()) {
        let d = Diag::error("qairt::io::write", format!("cannot write {}: {e}", csv_path.display()));
        render::print(&d);
        errors.push(d);
    }

    let best = rows.first().filter(|r| r.metric(metric.key()).is_some());
    let mut written = None;
    if let Some(name) = &args.write_winner {
        match best {
            Some(row) => {
                let value = row.metric(metric.key()).unwrap_or(f64::NAN);
                let w = winner::Winner {
                    name,
                    base: &base.name,
                    backend: &base.backend,
                    settings: &row.settings,
                    overrides: overrides.as_deref(),
                    comment: format!(
                        "qairt sweep winner ({}): {} = {value} over {} configurations of \"{}\"",
                        row.name,
                        metric.key(),
                        rows.len(),
                        base.name
                    ),
                };
                match write_winner(&ws.config.file, &w) {
                    Ok(()) => written = Some(name.clone()),
                    Err(d) => {
                        render::print(&d);
                        errors.push(d);
                    }
                }
            }
            None => {
                let d = Diag::error("qairt::sweep::no_winner", "no configuration built: there is no winner to write")
                    .with_help("fix the errors above and sweep again");
                render::print(&d);
                errors.push(d);
            }
        }
    }

    let ok = errors.is_empty();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match format {
        MessageFormat::Json => {
            for (i, row) in rows.iter().enumerate() {
                let line = json!({
                    "event": "config",
                    "rank": row.metrics.as_ref().map(|_| i + 1),
                    "name": row.name,
                    "status": if row.metrics.is_some() { "ok" } else { "failed" },
                    "passed": row.passed,
                    "settings": settings_json(&row.settings),
                    "metrics": row.metrics,
                });
                let _ = writeln!(out, "{line}");
            }
            let line = json!({
                "event": "finished", "ok": ok, "base": base.name, "metric": metric.key(),
                "configs": rows.len(), "winner": best.map(|r| r.name.clone()),
                "csv": csv_path.display().to_string(), "written": written,
                "built": built, "cached": cached, "ms": round(ms, 3),
            });
            let _ = writeln!(out, "{line}");
        }
        MessageFormat::Human => {
            let _ = write!(out, "{}", rank::table(&rows, metric, labels));
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
    fn atomic_write_creates_the_directory_and_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/sweep.csv");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn settings_are_reported_with_their_types() {
        let v = settings_json(&crate::quant::settings::QuantSettings::default());
        assert_eq!(v["act_bitwidth"], 8);
        assert_eq!(v["per_channel"], true);
        assert_eq!(v["cle"], false);
        assert_eq!(v["act_calibration"], "min-max");
    }
}
