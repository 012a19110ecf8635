//! The salsa database, the stage queries, the on-disk store, materialization of `out/`,
//! `explain`, and cache maintenance.
//!
//! **Invariants:** the only module that names `salsa::` or touches the file system on behalf
//! of stages; stages below it (onnx, passes, quant, compile, runtime, verify) are pure.

mod cache_transfer;
mod checkpoint;
mod compare;
mod convert;
mod db;
mod debug_run;
mod explain;
mod golden_stage;
mod inputs;
mod io_files;
mod materialize;
mod memo;
mod memory_budget;
mod output_names;
pub mod owned_dir;
pub mod remote;
mod samples;
mod sensitivity_stage;
mod snoop;
mod specialize;
mod stages;
mod stamps;
mod store;
mod verify_stage;
mod workspace;

pub use cache_transfer::{TransferReport, pull as cache_pull, push as cache_push};
pub(crate) use convert::override_error;
pub use db::{Progress, Stage};
pub use explain::{StageVerdict, Verdict, explain};
pub use store::{Digest, Store};
pub use verify_stage::VerifyOutcome;
pub use workspace::{BuildReport, DebugOverride, Event, RemoteReport, SimulateOverride, SuggestReport, Workspace};

/// Sizes and counts of the store, for `qairt cache stats`.
pub struct CacheStats {
    pub objects: usize,
    pub object_bytes: u64,
    pub actions: usize,
    pub action_bytes: u64,
}

/// The cache lock `qairt clean` holds while it removes `out/` (and with `--cache` the cache).
pub struct CleanLock {
    /// The locked file; `None` when `root` is a directory that is not a cache, or there is
    /// none and none can be made (no build can use it then, so none can race the clean).
    _file: Option<std::fs::File>,
    /// The cache was made by this lock: there was none, so a build could have started between
    /// the clean looking and removing `out/`.
    made: bool,
    root: std::path::PathBuf,
}

impl CleanLock {
    /// Takes the lock of the cache at `root`, making the cache first when there is none.
    /// Without a cache there would be nothing to lock, and a build starting meanwhile (which
    /// makes and locks the cache before it writes anything) would write `out/` while the
    /// clean removes it; with one, that build waits for the clean.
    pub fn take(root: &std::path::Path) -> Result<CleanLock, crate::diag::Diag> {
        let lock_failed = |e: std::io::Error| {
            crate::diag::Diag::error("qairt::cache::lock", format!("cannot lock the cache {}: {e}", root.display()))
        };
        if std::fs::symlink_metadata(root).is_ok() {
            let file = store::lock_existing(root).map_err(lock_failed)?;
            return Ok(CleanLock { _file: file, made: false, root: root.to_path_buf() });
        }
        // A cache that cannot be made (a read-only parent, say) cannot be made by a build
        // either: no build can race the clean then, which goes on without a lock.
        let Ok(store) = Store::open(root) else {
            return Ok(CleanLock { _file: None, made: false, root: root.to_path_buf() });
        };
        let file = store.lock().map_err(lock_failed)?;
        Ok(CleanLock { _file: Some(file), made: true, root: root.to_path_buf() })
    }

    /// Whether there was no cache, and this lock made it.
    pub fn made_the_cache(&self) -> bool {
        self.made
    }

    /// Removes the cache this lock made, when it still holds nothing (no object, no action
    /// record): a `qairt clean` of a project without a cache leaves none behind. A build that
    /// made the cache too and waits for the lock makes it again (see [`Store::lock`]); one
    /// that stored results in it meanwhile keeps them.
    pub fn remove_if_made_and_empty(self) -> Result<(), crate::diag::Diag> {
        let holds_nothing = ["objects", "actions"].iter().all(|sub| {
            std::fs::read_dir(self.root.join(sub)).map(|mut entries| entries.next().is_none()).unwrap_or(true)
        });
        if self.made && holds_nothing {
            owned_dir::remove(&self.root, owned_dir::DirKind::Cache)?;
        }
        Ok(())
    }
}

pub fn cache_stats(store: &Store) -> std::io::Result<CacheStats> {
    let objects = store.objects()?;
    let actions = store.actions()?;
    Ok(CacheStats {
        objects: objects.len(),
        object_bytes: objects.iter().map(|(_, n)| n).sum(),
        actions: actions.len(),
        action_bytes: actions.iter().map(|(_, n)| n).sum(),
    })
}

/// Removes the oldest objects (by write time) until the objects fit in `max_bytes`, then the
/// action records whose objects are gone. Returns (objects removed, bytes freed).
pub fn cache_gc(store: &Store, max_bytes: u64) -> std::io::Result<(usize, u64)> {
    let _lock = store.lock()?;
    let mut objects: Vec<(std::time::SystemTime, std::path::PathBuf, u64)> = store
        .objects()?
        .into_iter()
        .map(|(path, size)| {
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            (modified, path, size)
        })
        .collect();
    objects.sort();
    let mut total: u64 = objects.iter().map(|(_, _, size)| size).sum();
    let (mut removed, mut freed) = (0, 0);
    for (_, path, size) in objects {
        if total <= max_bytes {
            break;
        }
        std::fs::remove_file(&path)?;
        total -= size;
        freed += size;
        removed += 1;
    }
    if removed > 0 {
        for (path, _) in store.actions()? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Ok(key) = Digest::from_hex(name) else { continue };
            if let Ok(Some(record)) = store.lookup(&key)
                && record.output != [0; 32]
                && !store.has_object(&record.output_digest())
            {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok((removed, freed))
}
