//! `qairt.build(path, targets=None)`: a project built in this process as `qairt build` builds
//! it (same stages, same cache, same `out/`), its events returned as the JSON objects
//! `--message-format json` prints (docs/json.md), for `python/qairt/__init__.py` to wrap.

use std::path::PathBuf;

use pyo3::prelude::*;
use qairt::engine::{Event, Workspace};

use crate::errors;

/// Builds the project at `path` (a directory or its `qairt.toml`): every target, or those
/// named. Returns the JSON text of the build's stage and verify events and its closing line;
/// a build that failed (bad input, a failed stage) raises `QairtError` with every diagnostic.
/// Warnings come back as `warning` events with their rendered text.
#[pyfunction]
#[pyo3(signature = (path, targets = None))]
pub fn build(py: Python<'_>, path: PathBuf, targets: Option<Vec<String>>) -> PyResult<Vec<String>> {
    let config = qairt::cli::find_project(Some(path)).map_err(|d| errors::from_diags(&[d]))?;
    let targets = targets.unwrap_or_default();
    let (report, mut lines) = py
        .detach(move || -> Result<_, Vec<qairt::diag::Diag>> {
            let mut ws = Workspace::open(&config, None)?;
            let mut lines = Vec::new();
            let report = ws.build_with(&targets, &mut |event| {
                let line = match event {
                    Event::Stage { .. } => qairt::cli::stage_json(event),
                    Event::Verify { .. } => qairt::cli::verify_json(event),
                    Event::Warning(diag) => Some(serde_json::json!({
                        "event": "warning", "code": diag.code, "text": qairt::cli::render::render(diag),
                    })),
                };
                lines.extend(line.map(|l| l.to_string()));
            });
            Ok((report, lines))
        })
        .map_err(|diags| errors::from_diags(&diags))?;
    if !report.errors.is_empty() {
        return Err(errors::from_diags(&report.errors));
    }
    let closing = serde_json::json!({
        "event": "finished", "ok": report.thresholds_met, "exit_code": if report.thresholds_met { 0 } else { 2 },
        "built": report.built, "cached": report.cached, "ms": report.ms,
    });
    lines.push(closing.to_string());
    Ok(lines)
}
