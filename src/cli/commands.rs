//! The one-shot commands: build, explain, clean and cache maintenance.

use std::path::{Path, PathBuf};

use crate::diag::Diag;
use crate::engine::owned_dir::{self, DirKind, Removal};
use crate::engine::{self, Workspace};
use crate::project::PROJECT_FILE;

use super::MessageFormat;
use super::output::EventPrinter;
use super::render;

/// Finds `qairt.toml` as cargo finds `Cargo.toml`: the given path (a directory or the file
/// itself), else the current directory or its nearest ancestor.
pub fn find_project(path: Option<PathBuf>) -> Result<PathBuf, Diag> {
    if let Some(path) = path {
        let candidate = if path.is_dir() { path.join(PROJECT_FILE) } else { path.clone() };
        if candidate.is_file() {
            return Ok(absolute(&candidate));
        }
        return Err(Diag::error("qairt::cli::no_project", format!("no {PROJECT_FILE} at {}", path.display()))
            .with_help("give a project directory or the path of its qairt.toml"));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Diag::error("qairt::cli::no_project", format!("cannot read the current directory: {e}")))?;
    for dir in cwd.ancestors() {
        let candidate = dir.join(PROJECT_FILE);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Diag::error(
        "qairt::cli::no_project",
        format!("no {PROJECT_FILE} in {} or any parent directory", cwd.display()),
    )
    .with_help("run qairt inside a project, or pass its directory"))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn fail(diags: &[Diag]) -> u8 {
    for diag in diags {
        render::print(diag);
    }
    1
}

pub fn open(path: Option<PathBuf>, progress: bool) -> Result<Workspace, u8> {
    let config = find_project(path).map_err(|d| fail(&[d]))?;
    let bars = if progress { super::progress::for_stderr() } else { None };
    Workspace::open(&config, bars).map_err(|d| fail(&d))
}

pub fn build(
    path: Option<PathBuf>,
    targets: &[String],
    format: MessageFormat,
    debug: engine::DebugOverride,
    simulate: engine::SimulateOverride,
) -> u8 {
    let mut ws = match open(path, format == MessageFormat::Human) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    ws.set_debug_override(debug);
    ws.set_simulate_override(simulate);
    let mut printer = EventPrinter::new(format);
    let report = ws.build_with(targets, &mut |event| printer.print(event));
    printer.finish(&report)
}

pub fn explain(path: Option<PathBuf>, target: Option<String>, stage: Option<String>, format: MessageFormat) -> u8 {
    let mut ws = match open(path, false) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let stage = match stage.as_deref().map(|s| (s, engine::Stage::parse(s))) {
        None => None,
        Some((_, Some(stage))) => Some(stage),
        Some((name, None)) => {
            let names: Vec<&str> = engine::Stage::VISIBLE.iter().map(|s| s.name()).collect();
            return fail(&[Diag::error("qairt::cli::unknown_stage", format!("no stage named \"{name}\""))
                .with_help(format!("stages: {}", names.join(", ")))]);
        }
    };
    match engine::explain(&mut ws, target.as_deref(), stage) {
        Ok(verdicts) => {
            print_verdicts(&verdicts, format);
            0
        }
        Err(diags) => fail(&diags),
    }
}

/// `explain`'s verdicts: per target a heading and a line per stage, or one JSON message each.
fn print_verdicts(verdicts: &[engine::StageVerdict], format: MessageFormat) {
    use engine::Verdict;
    let mut last_target = None;
    for v in verdicts {
        if format == MessageFormat::Json {
            let (status, detail) = match &v.verdict {
                Verdict::Fresh { key, remote } => {
                    ("fresh", serde_json::json!({"key": key, "from": if *remote { "remote" } else { "local" }}))
                }
                Verdict::Rebuilds { reason } => ("rebuilds", serde_json::json!({"reason": reason})),
                Verdict::Fails { reason } => ("fails", serde_json::json!({"reason": reason})),
            };
            let mut line =
                serde_json::json!({"event": "explain", "target": v.target, "stage": v.stage.name(), "status": status});
            if let (Some(line), Some(detail)) = (line.as_object_mut(), detail.as_object()) {
                line.extend(detail.clone());
            }
            super::output::print_json(line);
            continue;
        }
        if last_target != Some(&v.target) {
            println!("{}:", v.target);
            last_target = Some(&v.target);
        }
        let name = v.stage.name();
        match &v.verdict {
            Verdict::Fresh { key, remote: false } => {
                println!("  {name:<10} fresh: the next build reuses it (key {})", &key[..16])
            }
            Verdict::Fresh { key, remote: true } => {
                println!("  {name:<10} fresh: the next build reuses it from the remote cache (key {})", &key[..16])
            }
            Verdict::Rebuilds { reason } => println!("  {name:<10} rebuilds: {reason}"),
            Verdict::Fails { reason } => println!("  {name:<10} fails: {reason}"),
        }
    }
}

pub fn clean(path: Option<PathBuf>, cache: bool) -> u8 {
    let config_path = match find_project(path) {
        Ok(p) => p,
        Err(d) => return fail(&[d]),
    };
    let text = match std::fs::read_to_string(&config_path) {
        Ok(t) => t,
        Err(e) => {
            return fail(&[Diag::error("qairt::io::read", format!("cannot read {}: {e}", config_path.display()))]);
        }
    };
    let config = match crate::project::parse_config(&config_path, &text) {
        Ok(c) => c,
        Err(d) => return fail(&d),
    };
    // The cache's lock first (made when there is no cache): a build writing out/ or the cache
    // finishes before anything is removed, and a build that starts meanwhile waits (then makes
    // what it needs again).
    let lock = match crate::engine::CleanLock::take(&config.cache_dir) {
        Ok(lock) => lock,
        Err(diag) => return fail(&[diag]),
    };
    let made_the_cache = lock.made_the_cache();
    let mut dirs = vec![(config.out_dir.clone(), DirKind::Out)];
    if cache && !made_the_cache {
        dirs.push((config.cache_dir.clone(), DirKind::Cache));
    }
    for (dir, kind) in dirs {
        match owned_dir::remove(&dir, kind) {
            Ok(Removal::Removed) => println!("removed {}", dir.display()),
            Ok(Removal::Absent) => {}
            Err(diag) => return fail(&[diag]),
        }
    }
    // A cache made only to be locked goes again (with or without --cache: there was none).
    if let Err(diag) = lock.remove_if_made_and_empty() {
        return fail(&[diag]);
    }
    0
}

pub fn cache_stats(path: Option<PathBuf>, format: MessageFormat) -> u8 {
    let ws = match open(path, false) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    match engine::cache_stats(ws.store()) {
        Ok(stats) if format == MessageFormat::Json => {
            let mut line = serde_json::json!({
                "event": "cache_stats", "cache": ws.store().root().display().to_string(),
                "objects": stats.objects, "object_bytes": stats.object_bytes,
                "actions": stats.actions, "action_bytes": stats.action_bytes,
            });
            let totals = engine::remote::load_totals(ws.store().root());
            line["remote"] = serde_json::to_value(&totals.stats).unwrap_or_default();
            // The remote this project uses now (the totals may include earlier ones).
            let remote = ws.store().remote();
            line["remote"]["url"] = serde_json::json!(remote.map(|r| r.shown().to_string()));
            line["remote"]["mode"] = serde_json::json!(remote.map(|r| r.mode().name()));
            line["remote"]["last_url"] = serde_json::json!(totals.remote);
            super::output::print_json(line);
            0
        }
        Ok(stats) => {
            println!("cache: {}", ws.store().root().display());
            println!("objects: {} ({} bytes)", stats.objects, stats.object_bytes);
            println!("actions: {} ({} bytes)", stats.actions, stats.action_bytes);
            let totals = engine::remote::load_totals(ws.store().root());
            match configured_remote(&ws) {
                Some(url) => println!("remote: {url}"),
                None => println!("remote: none (set QAIRT_REMOTE_CACHE or [cache] remote)"),
            }
            let t = &totals.stats;
            if *t != engine::remote::RemoteStats::default() {
                println!(
                    "remote, over every build: {} hits, {} misses; {} objects ({}) down, {} objects and {} records ({}) up; {} damaged entries, {} failed requests",
                    t.hits,
                    t.misses,
                    t.objects_down,
                    super::output::bytes_text(t.bytes_down),
                    t.objects_up,
                    t.records_up,
                    super::output::bytes_text(t.bytes_up),
                    t.damaged,
                    t.errors
                );
            }
            0
        }
        Err(e) => fail(&[Diag::error("qairt::cache::io", format!("cannot read the cache: {e}"))]),
    }
}

/// The remote cache this project would use now (URL without credentials, and its mode).
fn configured_remote(ws: &Workspace) -> Option<String> {
    ws.store().remote().map(|r| format!("{} ({})", r.shown(), r.mode().name()))
}

pub fn cache_push(path: Option<PathBuf>) -> u8 {
    let mut ws = match open(path, false) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    transfer_done(engine::cache_push(&mut ws), "pushed")
}

pub fn cache_pull(path: Option<PathBuf>, targets: &[String]) -> u8 {
    let mut ws = match open(path, false) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    transfer_done(engine::cache_pull(&mut ws, targets), "pulled")
}

/// Prints what a push or pull moved; exit 1 when the remote failed.
fn transfer_done(result: Result<engine::TransferReport, Vec<Diag>>, verb: &str) -> u8 {
    let report = match result {
        Ok(report) => report,
        Err(diags) => return fail(&diags),
    };
    for warning in &report.warnings {
        render::print(warning);
    }
    let s = &report.stats;
    println!(
        "{verb} {}: {} objects and {} records up ({}), {} objects down ({}), {} records found",
        report.url,
        s.objects_up,
        s.records_up,
        super::output::bytes_text(s.bytes_up),
        s.objects_down,
        super::output::bytes_text(s.bytes_down),
        s.hits
    );
    for (target, stage) in &report.missing {
        println!("  {target}: the remote has no result for `{}` and what follows; a build runs them", stage.name());
    }
    if s.errors > 0 { 1 } else { 0 }
}

pub fn cache_gc(path: Option<PathBuf>, max_size: u64) -> u8 {
    let ws = match open(path, false) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    match engine::cache_gc(ws.store(), max_size) {
        Ok((removed, freed)) => {
            println!("removed {removed} objects, freed {freed} bytes");
            0
        }
        Err(e) => fail(&[Diag::error("qairt::cache::io", format!("garbage collection failed: {e}"))]),
    }
}

pub fn cache_verify(path: Option<PathBuf>) -> u8 {
    let ws = match open(path, false) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    match ws.store().verify_all() {
        Ok((checked, bad)) => {
            for c in &bad {
                eprintln!("corrupt: {} ({}), removed", c.path.display(), c.what);
            }
            println!("checked {checked} entries, {} corrupt", bad.len());
            if bad.is_empty() { 0 } else { 1 }
        }
        Err(e) => fail(&[Diag::error("qairt::cache::io", format!("cannot verify the cache: {e}"))]),
    }
}
