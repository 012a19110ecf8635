//! The disk half of memoization: action keys, "look up or build" for one stage, and
//! loading a stage's value by digest.
//!
//! A stage's key hashes the *output digests* of the stages it reads (not their keys), plus
//! its own canonical settings: when an upstream stage rebuilds to the same bytes, nothing
//! downstream rebuilds (early cutoff, as Bazel's action cache does).

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::diag::Diag;

use super::db::{BuiltEvent, Db, Failed, Stage, lock, volatile};
use super::store::{ActionRecord, Digest};

/// In every key: qairt's version and a hash of its source (`build.rs`), so that a change of
/// qairt, released or not, never reuses results an older qairt stored (in the local cache or
/// in a remote one shared with runners on other commits).
const ENGINE_SALT: &str = concat!("qairt ", env!("CARGO_PKG_VERSION"), " engine 19 source ", env!("QAIRT_SOURCE_HASH"));

/// Builds an action key from labelled parts; labels keep `("a","bc")` and `("ab","c")` apart.
pub struct KeyBuilder(blake3::Hasher);

impl KeyBuilder {
    pub fn new(stage: Stage) -> KeyBuilder {
        let mut h = blake3::Hasher::new();
        h.update(ENGINE_SALT.as_bytes());
        h.update(&[0]);
        h.update(stage.name().as_bytes());
        KeyBuilder(h)
    }

    pub fn bytes(mut self, label: &str, bytes: &[u8]) -> KeyBuilder {
        self.0.update(&(label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub fn digest(self, label: &str, digest: &Digest) -> KeyBuilder {
        self.bytes(label, digest.as_bytes())
    }

    /// Hashes the canonical (postcard) encoding of a parsed value.
    pub fn value<T: Serialize>(self, label: &str, value: &T) -> KeyBuilder {
        let bytes = postcard::to_stdvec(value).expect("settings always serialize");
        self.bytes(label, &bytes)
    }

    pub fn finish(self) -> Digest {
        self.0.finalize()
    }
}

/// The result of a stage for one key. Equality is by (key, output digest) only, so a
/// downstream salsa query is not re-run just because the timing differs.
#[derive(Clone, Debug, Eq)]
pub struct Record {
    pub key: Digest,
    pub output: Digest,
    pub meta: Vec<u8>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.key == other.key && self.output == other.output && self.meta == other.meta
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("stage values always serialize")
}

pub(super) fn store_error(what: &str, e: impl std::fmt::Display) -> Failed {
    Failed(vec![
        Diag::error("qairt::cache::io", format!("cannot {what} the build cache: {e}"))
            .with_help("check that the cache directory is writable and the disk is not full"),
    ])
}

pub fn warn(db: &dyn Db, diag: Diag) {
    lock(&db.services().warnings).push(diag);
}

/// Looks `key` up in the action cache; on a miss runs `compute`, stores its value and
/// records the key. `meta` derives the record's small side facts from the value.
pub fn memoize<T>(
    db: &dyn Db,
    stage: Stage,
    target: Option<&str>,
    key: Digest,
    compute: impl FnOnce() -> Result<T, Failed>,
    meta: impl FnOnce(&T) -> Vec<u8>,
) -> Result<Record, Failed>
where
    T: Serialize + Send + Sync + 'static,
{
    let services = db.services();
    let damaged = |corrupt: super::store::Corruption| {
        warn(
            db,
            Diag::warning(
                "qairt::cache::corrupt",
                format!(
                    "damaged cache entry {} ({}); rebuilding {}",
                    corrupt.path.display(),
                    corrupt.what,
                    stage.name()
                ),
            ),
        )
    };
    match services.store.lookup(&key) {
        Ok(Some(record)) => match services.store.check_object(&key, &record) {
            Ok(()) => return Ok(Record { key, output: record.output_digest(), meta: record.meta }),
            // Rebuilt now, so the damage is repaired in the build that found it rather than
            // surfacing (or not) whenever a later build happens to read the object.
            Err(corrupt) => damaged(corrupt),
        },
        Ok(None) => {}
        Err(corrupt) => damaged(corrupt),
    }
    if let Some(stale) = super::explain::stale(db, stage) {
        return Err(stale);
    }
    let started = Instant::now();
    let value = compute().map_err(|failed| volatile(db, failed))?;
    let bytes = encode(&value);
    let output = services.store.put(&bytes).map_err(|e| volatile(db, store_error("write to", e)))?;
    let meta = meta(&value);
    let record = ActionRecord { output: *output.as_bytes(), size: bytes.len() as u64, meta: meta.clone() };
    services.store.record(&key, &record).map_err(|e| volatile(db, store_error("write to", e)))?;
    lock(&services.fresh).insert(output, Arc::new(value) as Arc<dyn Any + Send + Sync>);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    lock(&services.built).push(BuiltEvent { stage, target: target.map(str::to_string), key, ms });
    Ok(Record { key, output, meta })
}

/// Loads the value a record points at: from this process's fresh values, else from the
/// store. A missing or corrupt object is rebuilt with `compute` (and reported as built).
pub fn load<T>(
    db: &dyn Db,
    stage: Stage,
    target: Option<&str>,
    record: &Record,
    compute: impl FnOnce() -> Result<T, Failed>,
) -> Result<Arc<T>, Failed>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let services = db.services();
    if let Some(value) = lock(&services.fresh).get(&record.output).cloned()
        && let Ok(value) = value.downcast::<T>()
    {
        return Ok(value);
    }
    let problem = match services.store.get(&record.output) {
        Ok(Some(bytes)) => match postcard::from_bytes::<T>(&bytes) {
            Ok(value) => return Ok(Arc::new(value)),
            Err(e) => format!("object {} does not decode ({e})", record.output.to_hex()),
        },
        Ok(None) => format!("object {} is missing", record.output.to_hex()),
        Err(corrupt) => format!("{} ({})", corrupt.path.display(), corrupt.what),
    };
    warn(
        db,
        Diag::warning("qairt::cache::corrupt", format!("damaged cache entry: {problem}; rebuilding {}", stage.name())),
    );
    let started = Instant::now();
    let value = compute().map_err(|failed| volatile(db, failed))?;
    let bytes = encode(&value);
    let output = services.store.put(&bytes).map_err(|e| volatile(db, store_error("write to", e)))?;
    let rebuilt = ActionRecord { output: *output.as_bytes(), size: bytes.len() as u64, meta: record.meta.clone() };
    services.store.record(&record.key, &rebuilt).map_err(|e| volatile(db, store_error("write to", e)))?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    lock(&services.built).push(BuiltEvent { stage, target: target.map(str::to_string), key: record.key, ms });
    Ok(Arc::new(value))
}

/// The value (and its digest) an earlier run stored under `key`, without computing anything:
/// `None` when it is not in the cache (or does not decode).
pub fn lookup<T>(db: &dyn Db, key: &super::store::Digest) -> Option<(super::store::Digest, Arc<T>)>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let services = db.services();
    let record = lookup_record(db, key)?;
    let output = record.output_digest();
    if let Some(value) = lock(&services.fresh).get(&output).cloned()
        && let Ok(value) = value.downcast::<T>()
    {
        return Some((output, value));
    }
    let problem = match services.store.get(&output) {
        Ok(Some(bytes)) => match postcard::from_bytes::<T>(&bytes) {
            Ok(value) => return Some((output, Arc::new(value))),
            Err(e) => format!("object {} does not decode ({e})", output.to_hex()),
        },
        Ok(None) => return None,
        Err(corrupt) => format!("{} ({})", corrupt.path.display(), corrupt.what),
    };
    warn(db, Diag::warning("qairt::cache::corrupt", format!("damaged cache entry: {problem}; not used")));
    None
}

/// The action record under `key`, if there is one; a damaged record is reported (and removed
/// by the store, so the caller's rebuild replaces it) instead of passing silently as a miss.
pub fn lookup_record(db: &dyn Db, key: &Digest) -> Option<ActionRecord> {
    reported(db, db.services().store.lookup(key))
}

/// [`lookup_record`] in this machine's cache only (`Store::lookup_local`).
pub fn lookup_local_record(db: &dyn Db, key: &Digest) -> Option<ActionRecord> {
    reported(db, db.services().store.lookup_local(key))
}

fn reported(db: &dyn Db, found: Result<Option<ActionRecord>, super::store::Corruption>) -> Option<ActionRecord> {
    match found {
        Ok(record) => record,
        Err(corrupt) => {
            let message = format!("damaged cache entry {} ({}); rebuilding it", corrupt.path.display(), corrupt.what);
            warn(db, Diag::warning("qairt::cache::corrupt", message));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_separate_otherwise_equal_concatenations() {
        let a = KeyBuilder::new(Stage::Parse).bytes("a", b"bc").finish();
        let b = KeyBuilder::new(Stage::Parse).bytes("ab", b"c").finish();
        assert_ne!(a, b);
        let c = KeyBuilder::new(Stage::Optimize).bytes("a", b"bc").finish();
        assert_ne!(a, c, "the stage is part of the key");
    }
}
