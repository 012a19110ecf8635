//! `qairt cache push` and `pull`: moving a whole build between the local cache and the remote
//! one explicitly (a build reads and writes through the remote on its own; these are for a
//! cache filled before a remote was configured, and for preparing a machine that will build
//! offline).

use std::sync::atomic::Ordering;

use crate::diag::Diag;
use crate::project::remote::RemoteMode;

use super::db::{Db, Stage};
use super::remote::{RemoteCache, RemoteStats};
use super::store::Digest;
use super::workspace::Workspace;

/// What a push or pull moved, and for a pull the stages the remote does not have.
#[derive(Debug, Default)]
pub struct TransferReport {
    pub url: String,
    pub stats: RemoteStats,
    /// `(target, stage)` of every stage whose result the remote lacks (pull only).
    pub missing: Vec<(String, Stage)>,
    pub warnings: Vec<Diag>,
}

fn no_remote() -> Diag {
    Diag::error("qairt::cache::no_remote", "no remote cache is configured").with_help(
        "set QAIRT_REMOTE_CACHE=<url> (redis://host:port, webdav+http://host/path, s3://bucket/prefix?endpoint=…) \
         or [cache] remote = \"<url>\" in qairt.toml",
    )
}

fn lock_failed(e: std::io::Error) -> Vec<Diag> {
    vec![Diag::error("qairt::cache::lock", format!("cannot lock the cache: {e}"))]
}

/// Uploads every action record of the local cache, each after its object.
pub fn push(ws: &mut Workspace) -> Result<TransferReport, Vec<Diag>> {
    let store = ws.store();
    let remote: &RemoteCache = store.remote().ok_or_else(|| vec![no_remote()])?;
    if remote.mode() == RemoteMode::Read {
        return Err(vec![
            Diag::error("qairt::cache::read_only", format!("the remote cache {} is read-only here", remote.shown()))
                .with_help("QAIRT_REMOTE_CACHE_MODE (or [cache] mode) is \"read\"; unset it to push"),
        ]);
    }
    let _lock = store.lock().map_err(lock_failed)?;
    let actions = store.actions().map_err(|e| vec![read_error(e)])?;
    for (path, _) in actions {
        let Some(key) = path.file_name().and_then(|n| n.to_str()).and_then(|n| Digest::from_hex(n).ok()) else {
            continue;
        };
        store.push(&key);
    }
    let (stats, warnings) = remote.finish();
    Ok(TransferReport { url: remote.shown().to_string(), stats, missing: Vec::new(), warnings })
}

/// Downloads what building `targets` (all when empty) would reuse from the remote: every
/// stage's record and object, as far as the remote has them, without running a stage.
pub fn pull(ws: &mut Workspace, targets: &[String]) -> Result<TransferReport, Vec<Diag>> {
    if ws.store().remote().is_none() {
        return Err(vec![no_remote()]);
    }
    let lock = ws.store().lock().map_err(lock_failed)?;
    ws.load()?;
    let names = if targets.is_empty() { ws.target_names() } else { targets.to_vec() };
    let services = ws.db.services();
    services.dry_run.store(true, Ordering::SeqCst);
    ws.store().set_eager(true);
    let mut missing = Vec::new();
    let mut result = Ok(());
    for name in &names {
        let (Some(project), Some(input)) = (ws.project_input(), ws.target_input(name)) else {
            result = Err(vec![Diag::error("qairt::cli::unknown_target", format!("no target named \"{name}\""))]);
            break;
        };
        let stages = match ws.stages_of(name) {
            Ok(stages) => stages,
            Err(failed) => {
                result = Err(failed.0);
                break;
            }
        };
        for stage in stages {
            if ws.stage_key(project, input, stage).is_err() {
                // Everything after a stage the remote lacks is rebuilt too.
                missing.push((name.clone(), stage));
                break;
            }
        }
    }
    ws.store().set_eager(false);
    ws.db.services().dry_run.store(false, Ordering::SeqCst);
    let (_, mut warnings) = ws.db.drain_log();
    let remote = ws.store().remote().expect("checked above");
    let (stats, more) = remote.finish();
    warnings.extend(more);
    drop(lock);
    result?;
    Ok(TransferReport { url: remote.shown().to_string(), stats, missing, warnings })
}

fn read_error(e: std::io::Error) -> Diag {
    Diag::error("qairt::cache::io", format!("cannot read the cache: {e}"))
}
