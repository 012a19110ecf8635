//! The salsa database, the stage queries, the on-disk store, materialization of `out/`,
//! `explain`, and cache maintenance.
//!
//! **Invariants:** the only module that names `salsa::` or touches the file system on behalf
//! of stages; stages below it (onnx, passes, quant, compile, runtime, verify) are pure.

mod checkpoint;
mod compare;
mod convert;
mod db;
mod explain;
mod golden_stage;
mod inputs;
mod materialize;
mod memo;
mod memory_budget;
mod output_names;
pub mod owned_dir;
mod samples;
mod sensitivity_stage;
mod snoop;
mod specialize;
mod stages;
mod stamps;
mod store;
mod verify_stage;
mod workspace;

pub(crate) use convert::override_error;
pub use db::{Progress, Stage};
pub use explain::{StageVerdict, Verdict, explain};
pub use store::{Digest, Store};
pub use verify_stage::VerifyOutcome;
pub use workspace::{BuildReport, DebugOverride, Event, SuggestReport, Workspace};

/// Sizes and counts of the store, for `qairt cache stats`.
pub struct CacheStats {
    pub objects: usize,
    pub object_bytes: u64,
    pub actions: usize,
    pub action_bytes: u64,
}

/// Takes the lock of the cache at `root` without creating a cache (see
/// [`store::lock_existing`]); `None` when there is no cache.
pub fn lock_existing_cache(root: &std::path::Path) -> std::io::Result<Option<std::fs::File>> {
    store::lock_existing(root)
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
