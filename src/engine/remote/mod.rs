//! The shared remote cache under the local store (Redis, WebDAV or S3, through Apache
//! OpenDAL): a local miss asks the remote, and what a build stores locally is uploaded.
//!
//! The remote holds the same two kinds of entry as the local store, under `v1/`:
//! `cas/<digest>` (an object, named by the blake3 of its bytes) and `ac/<key>` (an action
//! record, in the local file's checksummed form).
//!
//! **Invariants:**
//! - nothing remote is trusted: an object is re-hashed when downloaded and a record's checksum
//!   checked; a mismatch is a warning and a miss (so a rebuild), never a result;
//! - a record is uploaded only after its object is known to be on the remote, so a reader
//!   that finds a record finds its object (unless someone removed it since: a miss again);
//! - a remote that fails (down, refusing, slower than the timeout after two retries) is
//!   dropped for the rest of the process with one warning; the build goes on locally;
//! - objects are immutable by content, so many machines may write the same entry at once.
//!
//! The store's callers are synchronous (salsa queries, rayon workers): each read blocks on
//! this module's own tokio runtime. Uploads run on it in the background, a few at a time, and
//! [`RemoteCache::finish`] waits for them at the end of a build.

pub mod connect;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use opendal::{ErrorKind, Operator};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use crate::diag::Diag;
use crate::project::remote::RemoteMode;

use super::db::lock;
use super::store::Digest;

pub use connect::RemoteSettings;

/// Uploads in flight at once: enough to hide a round trip, few enough for a small server.
const UPLOADS_AT_ONCE: usize = 8;

/// What the remote cache did, for one build or (in `cache/remote.json`) over every build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteStats {
    /// Action records found on the remote after a local miss.
    pub hits: u64,
    /// Action records asked for and not there.
    pub misses: u64,
    /// Objects downloaded (each re-hashed).
    pub objects_down: u64,
    pub bytes_down: u64,
    pub objects_up: u64,
    pub records_up: u64,
    pub bytes_up: u64,
    /// Entries that did not match their hash or checksum (each a warning and a rebuild).
    pub damaged: u64,
    /// Requests that failed (the remote is then dropped for the rest of the process).
    pub errors: u64,
}

impl RemoteStats {
    pub fn add(&mut self, other: &RemoteStats) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.objects_down += other.objects_down;
        self.bytes_down += other.bytes_down;
        self.objects_up += other.objects_up;
        self.records_up += other.records_up;
        self.bytes_up += other.bytes_up;
        self.damaged += other.damaged;
        self.errors += other.errors;
    }
}

/// The remote cache of one process.
pub struct RemoteCache {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    /// Upload tasks not yet waited for.
    pending: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Objects whose upload this process started, with the upload's outcome once known, so a
    /// record waits for its object and no object is sent twice.
    objects: Mutex<HashMap<Digest, watch::Receiver<Option<bool>>>>,
    /// Action keys answered by the remote in this process (reported as `cached (remote)`).
    served: Mutex<HashSet<Digest>>,
}

/// What the background uploads share with the process.
struct Shared {
    op: Operator,
    shown: String,
    /// The longest a request may take before the remote counts as down (a transfer gets
    /// more, by its size).
    timeout: std::time::Duration,
    /// `host:port` to try a plain TCP connection to before the first request (Redis: its
    /// client retries a refused connection for half a minute before giving up).
    probe: Option<String>,
    reachable: tokio::sync::OnceCell<bool>,
    /// Sizes of remote objects seen by `stat`, so a download's deadline fits its size.
    sizes: Mutex<HashMap<Digest, u64>>,
    mode: RemoteMode,
    down: AtomicBool,
    stats: Mutex<RemoteStats>,
    warnings: Mutex<Vec<Diag>>,
    /// Objects found damaged on the remote: replaced by the next upload, never skipped as
    /// "already there".
    damaged: Mutex<HashSet<Digest>>,
    slots: Semaphore,
}

fn record_path(key: &Digest) -> String {
    format!("v1/ac/{}", key.to_hex())
}

fn object_path(digest: &Digest) -> String {
    format!("v1/cas/{}", digest.to_hex())
}

impl Shared {
    fn usable(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// Drops the remote for the rest of the process, saying so once.
    fn fail(&self, what: &str, why: &str, detail: String) {
        lock(&self.stats).errors += 1;
        if !self.down.swap(true, Ordering::Relaxed) {
            lock(&self.warnings).push(
                Diag::warning(
                    "qairt::cache::remote_unavailable",
                    format!(
                        "the remote cache {} failed to {what} ({why}); this build goes on with the local cache only",
                        self.shown
                    ),
                )
                .with_help(detail),
            );
        }
    }

    /// How long a request moving `bytes` (unknown: `None`) may take in all: the timeout,
    /// plus one more per 16 MiB (a server slower than 1.6 MB/s at the default counts as
    /// down). Each chunk is also bounded by the timeout on its own (OpenDAL's layer).
    fn deadline(&self, bytes: Option<u64>) -> std::time::Duration {
        let chunks = bytes.map_or(16, |b| b / (16 << 20)) as u32;
        self.timeout * (1 + chunks)
    }

    /// Runs one request within its deadline, once the remote is known to be reachable;
    /// `Err` (after dropping the remote) when it is not, or the request failed or took too
    /// long. `NotFound` is `Ok(None)`.
    async fn request<T>(
        &self,
        what: &str,
        bytes: Option<u64>,
        request: impl std::future::Future<Output = opendal::Result<T>>,
    ) -> Result<Option<T>, ()> {
        if !self.usable() || !self.reachable().await {
            return Err(());
        }
        match tokio::time::timeout(self.deadline(bytes), request).await {
            Ok(Ok(value)) => Ok(Some(value)),
            Ok(Err(e)) if e.kind() == ErrorKind::NotFound => Ok(None),
            Ok(Err(e)) => {
                self.fail(what, &e.kind().to_string(), e.to_string());
                Err(())
            }
            Err(_) => {
                let limit = self.deadline(bytes);
                self.fail(
                    what,
                    &format!("no answer within {:.1} s", limit.as_secs_f64()),
                    format!(
                        "a slow remote counts as down; {} sets the seconds a request may take (now {:.1})",
                        connect::TIMEOUT_VAR,
                        self.timeout.as_secs_f64()
                    ),
                );
                Err(())
            }
        }
    }

    /// Whether the probe address (if any) accepts a connection within the timeout; tried
    /// once per process.
    async fn reachable(&self) -> bool {
        *self
            .reachable
            .get_or_init(|| async {
                let Some(address) = &self.probe else { return true };
                match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(address.as_str())).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => {
                        self.fail("connect", &e.kind().to_string(), format!("{address}: {e}"));
                        false
                    }
                    Err(_) => {
                        self.fail("connect", "no answer", format!("{address}: no connection within the timeout"));
                        false
                    }
                }
            })
            .await
    }

    fn damaged(&self, what: String) {
        lock(&self.stats).damaged += 1;
        lock(&self.warnings).push(
            Diag::warning("qairt::cache::remote_corrupt", format!("damaged remote cache entry: {what}; rebuilding it"))
                .with_help(format!("the entry on {} is replaced by this build's", self.shown)),
        );
    }

    async fn read(&self, path: &str, what: &str, bytes: Option<u64>) -> Option<Vec<u8>> {
        self.request(what, bytes, self.op.read(path)).await.ok().flatten().map(|buffer| buffer.to_vec())
    }

    async fn size(&self, path: &str) -> Option<u64> {
        let meta = self.request("look up an object", Some(0), self.op.stat(path)).await.ok().flatten()?;
        Some(meta.content_length())
    }

    async fn write(&self, path: &str, bytes: Vec<u8>, what: &str) -> bool {
        let len = bytes.len() as u64;
        let sent = self.request(what, Some(len), self.op.write(path, bytes)).await.ok().flatten().is_some();
        if sent {
            lock(&self.stats).bytes_up += len;
        }
        sent
    }

    /// Uploads the object stored locally at `file` unless the remote has it already; whether
    /// the remote holds it afterwards.
    async fn upload_object(&self, digest: Digest, file: PathBuf) -> bool {
        let _slot = self.slots.acquire().await;
        let replace = lock(&self.damaged).contains(&digest);
        let path = object_path(&digest);
        if !replace && self.size(&path).await.is_some() {
            return true;
        }
        if !self.usable() {
            return false;
        }
        let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || std::fs::read(file)).await else { return false };
        // A local object damaged since it was written is not shared.
        if blake3::hash(&bytes) != digest {
            return false;
        }
        let sent = self.write(&path, bytes, "store an object").await;
        if sent {
            lock(&self.stats).objects_up += 1;
            lock(&self.damaged).remove(&digest);
        }
        sent
    }
}

impl RemoteCache {
    /// Connects lazily: nothing is contacted until the first lookup or upload.
    pub fn open(settings: &RemoteSettings) -> Result<RemoteCache, Diag> {
        let op = connect::operator(settings)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("qairt-remote")
            .enable_all()
            .build()
            .map_err(|e| {
                Diag::error("qairt::cache::remote_config", format!("cannot start the remote cache's I/O threads: {e}"))
            })?;
        Ok(RemoteCache {
            shared: Arc::new(Shared {
                op,
                shown: settings.spec.shown.clone(),
                timeout: settings.timeout,
                probe: connect::probe_address(&settings.spec),
                reachable: tokio::sync::OnceCell::new(),
                sizes: Mutex::new(HashMap::new()),
                mode: settings.mode,
                down: AtomicBool::new(false),
                stats: Mutex::new(RemoteStats::default()),
                warnings: Mutex::new(Vec::new()),
                damaged: Mutex::new(HashSet::new()),
                slots: Semaphore::new(UPLOADS_AT_ONCE),
            }),
            runtime,
            pending: Mutex::new(Vec::new()),
            objects: Mutex::new(HashMap::new()),
            served: Mutex::new(HashSet::new()),
        })
    }

    /// The URL (without credentials).
    pub fn shown(&self) -> &str {
        &self.shared.shown
    }

    pub fn mode(&self) -> RemoteMode {
        self.shared.mode
    }

    /// The bytes of the action record under `key` (checked by the caller, which calls
    /// [`RemoteCache::record_damaged`] when they do not decode), or `None`.
    pub fn record(&self, key: &Digest) -> Option<Vec<u8>> {
        let bytes = self.runtime.block_on(self.shared.read(&record_path(key), "look up an action", Some(0)));
        let mut stats = lock(&self.shared.stats);
        match &bytes {
            Some(b) => {
                stats.hits += 1;
                stats.bytes_down += b.len() as u64;
                lock(&self.served).insert(*key);
            }
            None if self.shared.usable() => stats.misses += 1,
            None => {}
        }
        bytes
    }

    /// A record that did not pass its checksum: a warning, and the key is a miss (this
    /// build's record replaces it).
    pub fn record_damaged(&self, key: &Digest) {
        lock(&self.served).remove(key);
        let mut stats = lock(&self.shared.stats);
        stats.hits -= 1;
        stats.misses += 1;
        drop(stats);
        self.shared.damaged(format!("action record {}", record_path(key)));
    }

    /// The size of the remote object `digest`, without downloading it.
    pub fn object_size(&self, digest: &Digest) -> Option<u64> {
        let size = self.runtime.block_on(self.shared.size(&object_path(digest)))?;
        lock(&self.shared.sizes).insert(*digest, size);
        Some(size)
    }

    /// Downloads the object `digest`; `None` when absent, unreachable or damaged (the bytes
    /// do not hash to `digest`: a warning, and the next upload replaces it).
    pub fn object(&self, digest: &Digest) -> Option<Vec<u8>> {
        let path = object_path(digest);
        let size = lock(&self.shared.sizes).get(digest).copied();
        let bytes = self.runtime.block_on(self.shared.read(&path, "fetch an object", size))?;
        if blake3::hash(&bytes) != *digest {
            lock(&self.shared.damaged).insert(*digest);
            self.shared.damaged(format!("object {path} does not match its hash"));
            return None;
        }
        let mut stats = lock(&self.shared.stats);
        stats.objects_down += 1;
        stats.bytes_down += bytes.len() as u64;
        Some(bytes)
    }

    /// Notes that the action `key` was answered by the remote (its object is there).
    pub fn mark_served(&self, key: &Digest) {
        lock(&self.served).insert(*key);
    }

    /// Whether the action `key` was answered by the remote in this process.
    pub fn served(&self, key: &Digest) -> bool {
        lock(&self.served).contains(key)
    }

    fn writable(&self) -> bool {
        self.shared.mode == RemoteMode::ReadWrite && self.shared.usable()
    }

    /// Starts uploading the local object `file` (named `digest`), once per process.
    pub fn upload_object(&self, digest: Digest, file: PathBuf) {
        if !self.writable() {
            return;
        }
        let mut objects = lock(&self.objects);
        if objects.contains_key(&digest) {
            return;
        }
        let (done, outcome) = watch::channel(None);
        objects.insert(digest, outcome);
        drop(objects);
        let shared = Arc::clone(&self.shared);
        let task = self.runtime.spawn(async move {
            let sent = shared.upload_object(digest, file).await;
            let _ = done.send(Some(sent));
        });
        lock(&self.pending).push(task);
    }

    /// Starts uploading an action record (its stored bytes), after its object `output` is on
    /// the remote: uploaded by this process, or found there.
    pub fn upload_record(&self, key: Digest, bytes: Vec<u8>, output: Option<Digest>) {
        if !self.writable() {
            return;
        }
        let outcome = output.and_then(|digest| lock(&self.objects).get(&digest).cloned());
        let shared = Arc::clone(&self.shared);
        let task = self.runtime.spawn(async move {
            let object_there = match (output, outcome) {
                (None, _) => true,
                (Some(_), Some(mut outcome)) => match outcome.wait_for(Option::is_some).await {
                    Ok(sent) => sent.unwrap_or(false),
                    Err(_) => false,
                },
                (Some(digest), None) => shared.size(&object_path(&digest)).await.is_some(),
            };
            if object_there && shared.write(&record_path(&key), bytes, "store an action").await {
                lock(&shared.stats).records_up += 1;
            }
        });
        lock(&self.pending).push(task);
    }

    /// Waits for every upload started so far, and returns what the remote did since the last
    /// call, with its warnings.
    pub fn finish(&self) -> (RemoteStats, Vec<Diag>) {
        self.wait_for_uploads();
        lock(&self.objects).clear();
        lock(&self.served).clear();
        let stats = std::mem::take(&mut *lock(&self.shared.stats));
        (stats, self.take_warnings())
    }

    fn wait_for_uploads(&self) {
        let tasks = std::mem::take(&mut *lock(&self.pending));
        self.runtime.block_on(async {
            for task in tasks {
                let _ = task.await;
            }
        });
    }

    /// The warnings of the remote so far (each said once).
    pub fn take_warnings(&self) -> Vec<Diag> {
        std::mem::take(&mut *lock(&self.shared.warnings))
    }
}

/// `cache/remote.json`: the remote cache's totals over every build of this cache, for
/// `qairt cache stats`.
const TOTALS_FILE: &str = "remote.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Totals {
    /// The remote of the last build that used one (without credentials).
    pub remote: String,
    #[serde(flatten)]
    pub stats: RemoteStats,
}

/// The totals recorded in the cache at `cache_dir` (zero when there are none).
pub fn load_totals(cache_dir: &std::path::Path) -> Totals {
    std::fs::read(cache_dir.join(TOTALS_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Adds one build's figures to the totals (called with the cache's lock held).
pub fn add_to_totals(cache_dir: &std::path::Path, remote: &str, stats: &RemoteStats) -> std::io::Result<()> {
    let mut totals = load_totals(cache_dir);
    totals.remote = remote.to_string();
    totals.stats.add(stats);
    let mut json = serde_json::to_vec_pretty(&totals).map_err(std::io::Error::other)?;
    json.push(b'\n');
    super::store::write_atomically(&cache_dir.join("tmp"), &cache_dir.join(TOTALS_FILE), &json)
}

impl Drop for RemoteCache {
    /// Uploads still running finish (each bounded by its deadline) rather than being cut off.
    fn drop(&mut self) {
        self.wait_for_uploads();
    }
}
