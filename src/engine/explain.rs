//! `qairt explain`: for each stage, whether the next build would reuse it, and if not, which
//! input changed since the last successful build.
//!
//! Each successful build writes the labelled input digests of every stage to
//! `cache/last/<target>.json`; `explain` computes stage keys in dry-run mode (a cache miss is
//! reported, not built) and diffs the current inputs against that file.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::diag::Diag;

use super::db::{Db, Failed, ProjectInput, Stage, TargetInput};
use super::stages;
use super::store::write_atomically;
use super::workspace::Workspace;

/// The direct inputs of a stage, as `label -> digest`, for diffing between builds.
pub fn stage_inputs(
    ws: &Workspace,
    project: ProjectInput,
    target: TargetInput,
    stage: Stage,
) -> BTreeMap<String, String> {
    let db = &ws.db;
    let root = &ws.config.root;
    let show = |path: &std::path::Path| path.strip_prefix(root).unwrap_or(path).display().to_string();
    let mut inputs = BTreeMap::new();
    let entry = |label: &str, f: super::db::SourceFile| {
        (format!("{label} {}", show(f.path(db))), f.digest(db).to_hex().to_string())
    };
    let hash = |value: &dyn erased::Hashable| value.digest();
    // An input list and every raw file it names, labelled "<what> list" / "<what> file".
    let list_files = |list: super::db::DataList, what: &'static str| {
        let files = list.samples(db).iter().flat_map(|s| s.entries.iter().map(|e| e.file));
        std::iter::once((format!("{what} list"), list.list(db))).chain(files.map(move |f| (format!("{what} file"), f)))
    };
    // The form of the input files, a part of the key of every run that reads them
    // (`stages::list_key`), listed only when set, as the key has it.
    let input_files = |inputs: &mut BTreeMap<String, String>| {
        let io = &project.io(db).inputs;
        if !io.is_empty() {
            inputs.insert("[io.inputs]".into(), hash(io));
        }
    };
    match stage {
        Stage::Parse => {
            let model = project.model(db);
            let (k, v) = entry("model", model.file(db));
            inputs.insert(k, v);
            for (_, ext) in model.externals(db) {
                let (k, v) = entry("external data", *ext);
                inputs.insert(k, v);
            }
            inputs.insert("[model] define_symbols, input_dims".into(), hash(model.shapes(db)));
        }
        Stage::Optimize => {}
        Stage::Calibrate => {
            if let Some(list) = project.calibration(db) {
                inputs.extend(list_files(list, "calibration").map(|(label, f)| entry(&label, f)));
            }
            inputs.insert("[calibration] max_samples".into(), hash(&project.calibration_max(db)));
            input_files(&mut inputs);
        }
        Stage::Quantize => {
            inputs.insert(format!("quantization settings of target {}", target.name(db)), hash(target.settings(db)));
            if let Some(f) = target.overrides(db) {
                let (k, v) = entry("overrides", f);
                inputs.insert(k, v);
            }
            // A quantized target's I/O on the files' uint8/int8 grids, as the key has it.
            if stages::is_quantized(db, project, target).unwrap_or(false) {
                let grids = super::io_files::quantized_io_encodings(project.io(db));
                if !grids.is_empty() {
                    inputs.insert("[io] uint8/int8 grids".into(), hash(&grids));
                }
            }
        }
        Stage::Compile => {
            let rules = stages::backend(db, project, target).map(|b| hash(&*b)).unwrap_or_default();
            inputs.insert(format!("rules of backend {}", target.backend(db)), rules);
        }
        Stage::Simulate | Stage::Reference => {
            inputs.extend(list_files(project.verify(db), "verify").map(|(label, f)| entry(&label, f)));
            inputs.insert("[verify] max_samples".into(), hash(&project.verify_max(db)));
            input_files(&mut inputs);
            // The runs fold each layer against the golden values, with the verifiers that need
            // the values themselves (stages::comparison_key).
            inputs.insert("[verify] metrics that need values".into(), hash(&project.debug(db).folded_metrics()));
            inputs.insert("[verify] mode".into(), hash(&project.debug(db).mode));
            if let Some(golden) = project.golden(db) {
                for (_, file) in golden.files(db) {
                    let (k, v) = entry("golden", *file);
                    inputs.insert(k, v);
                }
            }
        }
        Stage::Verify => {
            if let Some(f) = project.labels(db) {
                let (k, v) = entry("labels", f);
                inputs.insert(k, v);
            }
            inputs.insert("[verify.thresholds]".into(), hash(project.thresholds(db)));
            inputs.insert("[verify] mode, metrics".into(), hash(project.debug(db)));
            if let Some(golden) = project.golden(db) {
                for (_, file) in golden.files(db) {
                    let (k, v) = entry("golden", *file);
                    inputs.insert(k, v);
                }
                if let Some(mapping) = golden.mapping(db) {
                    let (k, v) = entry("tensor_mapping", mapping);
                    inputs.insert(k, v);
                }
            }
        }
    }
    inputs
}

mod erased {
    /// Hashes any serializable setting for the explain record.
    pub trait Hashable {
        fn digest(&self) -> String;
    }

    impl<T: serde::Serialize> Hashable for T {
        fn digest(&self) -> String {
            let bytes = postcard::to_stdvec(self).unwrap_or_default();
            blake3::hash(&bytes).to_hex().to_string()
        }
    }
}

type LastBuild = BTreeMap<String, BTreeMap<String, String>>;

fn last_build_path(ws: &Workspace, target: &str) -> std::path::PathBuf {
    ws.config.cache_dir.join("last").join(format!("{target}.json"))
}

/// Records the inputs of every stage of a target that just built successfully.
pub fn remember(ws: &Workspace, project: ProjectInput, target: TargetInput, stages: &[Stage]) {
    let record: LastBuild =
        stages.iter().map(|&s| (s.name().to_string(), stage_inputs(ws, project, target, s))).collect();
    if let Ok(json) = serde_json::to_vec_pretty(&record) {
        let path = last_build_path(ws, target.name(&ws.db));
        // A no-op build leaves the file alone.
        if std::fs::read(&path).ok().as_deref() != Some(json.as_slice()) {
            let _ = write_atomically(&ws.config.cache_dir.join("tmp"), &path, &json);
        }
    }
}

/// One line per stage of each selected target.
/// What the next build would do with one stage of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageVerdict {
    pub target: String,
    pub stage: Stage,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Reused from the cache (the action key; `remote`: found in the remote cache, not yet in
    /// this machine's).
    Fresh { key: String, remote: bool },
    /// Run again, and why (the inputs that changed, or the upstream stage that is stale).
    Rebuilds { reason: String },
    /// Fails (the first diagnostic's message).
    Fails { reason: String },
}

pub fn explain(ws: &mut Workspace, target: Option<&str>, only: Option<Stage>) -> Result<Vec<StageVerdict>, Vec<Diag>> {
    ws.load()?;
    let names = match target {
        Some(t) => vec![t.to_string()],
        None => ws.target_names(),
    };
    ws.db.services().dry_run.store(true, Ordering::SeqCst);
    let mut lines = Vec::new();
    for name in names {
        let (project, input) = match (ws.project_input(), ws.target_input(&name)) {
            (Some(p), Some(t)) => (p, t),
            _ => return Err(vec![Diag::error("qairt::cli::unknown_target", format!("no target named \"{name}\""))]),
        };
        let stages = ws.stages_of(&name).map_err(|f| f.0)?;
        let last: Option<LastBuild> =
            std::fs::read(last_build_path(ws, &name)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let mut first_stale: Option<Stage> = None;
        for stage in stages {
            let status = ws.stage_key(project, input, stage);
            if only.is_some_and(|o| o != stage) {
                if status.is_err() && first_stale.is_none() {
                    first_stale = Some(stage);
                }
                continue;
            }
            let verdict = match status {
                Ok(key) => Verdict::Fresh {
                    key: key.to_hex().to_string(),
                    remote: ws.store().remote().is_some_and(|r| r.served(&key)),
                },
                Err(failed) if !is_stale(&failed) => {
                    Verdict::Fails { reason: failed.0.first().map(|d| d.message.clone()).unwrap_or_default() }
                }
                Err(_) => match first_stale {
                    Some(upstream) => {
                        Verdict::Rebuilds { reason: format!("its input from `{}` is out of date", upstream.name()) }
                    }
                    None => {
                        first_stale = Some(stage);
                        let now = stage_inputs(ws, project, input, stage);
                        let before = last.as_ref().and_then(|l| l.get(stage.name()));
                        Verdict::Rebuilds { reason: describe_change(before, &now) }
                    }
                },
            };
            lines.push(StageVerdict { target: name.clone(), stage, verdict });
        }
    }
    ws.db.services().dry_run.store(false, Ordering::SeqCst);
    Ok(lines)
}

fn is_stale(failed: &Failed) -> bool {
    failed.0.iter().any(|d| d.code == STALE)
}

pub const STALE: &str = "qairt::explain::stale";

fn describe_change(before: Option<&BTreeMap<String, String>>, now: &BTreeMap<String, String>) -> String {
    let Some(before) = before else {
        return "no earlier build recorded its inputs".to_string();
    };
    let mut changes = Vec::new();
    for (label, digest) in now {
        match before.get(label) {
            None => changes.push(format!("new input {label}")),
            Some(old) if old != digest => changes.push(format!("{label} changed")),
            _ => {}
        }
    }
    for label in before.keys().filter(|l| !now.contains_key(*l)) {
        changes.push(format!("{label} was removed"));
    }
    if changes.is_empty() {
        "its inputs are as in the last build, but the cache no longer holds its result".to_string()
    } else {
        changes.truncate(5);
        changes.join("; ")
    }
}

/// Stops a dry run at the first stage that would have to build.
pub fn stale(db: &dyn Db, stage: Stage) -> Option<Failed> {
    db.services()
        .dry_run
        .load(Ordering::SeqCst)
        .then(|| Failed(vec![Diag::error(STALE, format!("{} is out of date", stage.name()))]))
}
