//! The on-disk store that survives the process: a content-addressed object store
//! (`objects/<2 hex>/<hex>`, named by the blake3 of the bytes) and an action cache
//! (`actions/<2 hex>/<key hex>` -> the digest of the object a stage produced for that key).
//!
//! **Invariants:**
//! - every file appears under its final name only complete: written to `tmp/`, then renamed
//!   into place (rename is atomic within one file system);
//! - an object is re-hashed when read; a mismatch is a miss with a warning, never a result;
//! - an action record carries its own checksum, so a torn or edited record is a miss too;
//! - two processes may share a store: identical content gives identical names, and a build
//!   holds the store's lock file for its duration.
//!
//! With a remote cache ([`super::remote`]) the store reads through it (a local miss asks the
//! remote; what comes back is checked, then kept locally) and writes through it (every object
//! and record stored is uploaded in the background).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub type Digest = blake3::Hash;

const RECORD_MAGIC: &[u8; 8] = b"QAIRTAC1";

/// What an action (a stage run for one key) produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub output: [u8; 32],
    pub size: u64,
    /// Small stage-specific facts needed without loading the object (e.g. the discovered
    /// inputs of `parse`), postcard-encoded by the stage.
    pub meta: Vec<u8>,
}

impl ActionRecord {
    pub fn output_digest(&self) -> Digest {
        Digest::from_bytes(self.output)
    }
}

/// Something in the store was not what its name promised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub path: PathBuf,
    pub what: String,
}

pub struct Store {
    root: PathBuf,
    remote: Option<super::remote::RemoteCache>,
    /// `qairt cache pull`: a remote hit downloads its object at once rather than when read.
    eager: std::sync::atomic::AtomicBool,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens the store rooted at `root`, creating (and tagging) it if needed. A directory
    /// qairt did not make is refused (see `owned_dir`).
    pub fn open(root: &Path) -> Result<Store, crate::diag::Diag> {
        let store = Store { root: root.to_path_buf(), remote: None, eager: Default::default() };
        store.ensure_layout().map_err(|e| {
            crate::diag::Diag::error("qairt::cache::io", format!("cannot open the cache at {}: {e}", root.display()))
        })?;
        Ok(store)
    }

    /// The tagged root and its subdirectories, made again if `qairt clean --cache` removed
    /// them since the store was opened. A `clean` running meanwhile can remove the cache
    /// between `create_dir_all` finding a subdirectory another process made (EEXIST) and
    /// checking that it is a directory, which then fails with "File exists" (or a parent is
    /// gone, "not found"): the layout is made again from the root, a bounded number of times.
    fn ensure_layout(&self) -> io::Result<()> {
        const ATTEMPTS: usize = 8;
        let mut attempt = 1;
        loop {
            match self.try_layout() {
                Err(e)
                    if attempt < ATTEMPTS
                        && matches!(e.kind(), io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound) =>
                {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    fn try_layout(&self) -> io::Result<()> {
        super::owned_dir::claim(&self.root, super::owned_dir::DirKind::Cache)
            .map_err(|diag| io::Error::other(diag.message))?;
        for sub in ["objects", "actions", "tmp"] {
            fs::create_dir_all(self.root.join(sub))?;
        }
        Ok(())
    }

    /// The store, reading and writing through `remote` as well.
    pub fn with_remote(mut self, remote: super::remote::RemoteCache) -> Store {
        self.remote = Some(remote);
        self
    }

    pub fn remote(&self) -> Option<&super::remote::RemoteCache> {
        self.remote.as_ref()
    }

    /// Whether a remote hit downloads its object at once (`qairt cache pull`).
    pub fn set_eager(&self, eager: bool) {
        self.eager.store(eager, Ordering::SeqCst);
    }

    /// Uploads the local record under `key`, and its object first (`qairt cache push`). A
    /// damaged record, or one whose object is gone, is not shared.
    pub fn push(&self, key: &Digest) {
        let Some(remote) = &self.remote else { return };
        let Some(bytes) = fs::read(self.action_path(key)).ok() else { return };
        let Some(record) = decode_record(&bytes) else { return };
        let output = (record.output != [0; 32]).then(|| record.output_digest());
        if let Some(digest) = output {
            let path = self.object_path(&digest);
            if !path.is_file() {
                return;
            }
            remote.upload_object(digest, path);
        }
        remote.upload_record(*key, bytes, output);
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("objects").join(&hex[..2]).join(hex.as_str())
    }

    fn action_path(&self, key: &Digest) -> PathBuf {
        let hex = key.to_hex();
        self.root.join("actions").join(&hex[..2]).join(hex.as_str())
    }

    /// Takes the store's exclusive lock (blocking until a concurrent build or `clean`
    /// releases it). When the store was removed while this process waited, it is made again
    /// and the new lock file taken, so the holder always writes into a store that exists.
    pub fn lock(&self) -> io::Result<File> {
        loop {
            self.ensure_layout()?;
            if let Some(file) = lock_existing(&self.root)? {
                return Ok(file);
            }
        }
    }

    /// Stores `bytes` and returns their digest. Existing objects are left alone.
    pub fn put(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = blake3::hash(bytes);
        let path = self.object_path(&digest);
        if !path.exists() {
            write_atomically(&self.root.join("tmp"), &path, bytes)?;
        }
        if let Some(remote) = &self.remote {
            remote.upload_object(digest, path);
        }
        Ok(digest)
    }

    /// Reads an object, checking its hash. `Ok(None)` when absent; `Err` when corrupt (the
    /// corrupt file is removed so the next writer can replace it).
    pub fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Corruption> {
        let path = self.object_path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(self.fetch_object(digest, &path)),
            Err(e) => return Err(Corruption { path, what: format!("unreadable: {e}") }),
        };
        if blake3::hash(&bytes) != *digest {
            let _ = fs::remove_file(&path);
            return Err(Corruption { path, what: "content does not match its hash".into() });
        }
        Ok(Some(bytes))
    }

    /// The object from the remote cache (re-hashed there), kept locally too; `None` without a
    /// remote or when it does not have it. Failing to keep it locally costs only a refetch.
    fn fetch_object(&self, digest: &Digest, path: &Path) -> Option<Vec<u8>> {
        let bytes = self.remote.as_ref()?.object(digest)?;
        let _ = write_atomically(&self.root.join("tmp"), path, &bytes);
        Some(bytes)
    }

    /// Checks, without reading it, that the object a record points at is there with the size
    /// the record says: a cache hit costs one `stat`, yet an object truncated by a crash or a
    /// full disk is found (and removed, so the rebuild can store it again) in the build that
    /// would have used it. A same-size alteration is found when the object is read (hashed).
    ///
    /// With a remote cache, an object only the remote has counts (and the action `key` is
    /// then reported as reused from the remote, though its record may be local: `explain`
    /// keeps the records it fetched).
    pub fn check_object(&self, key: &Digest, record: &ActionRecord) -> Result<(), Corruption> {
        let path = self.object_path(&record.output_digest());
        match fs::metadata(&path) {
            Ok(meta) if meta.len() == record.size => Ok(()),
            Ok(meta) => {
                let _ = fs::remove_file(&path);
                Err(Corruption { path, what: format!("{} bytes where {} were stored", meta.len(), record.size) })
            }
            // On the remote with the recorded size: fetched (and re-hashed) when it is read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(remote) = &self.remote else { return Err(Corruption { path, what: "missing".into() }) };
                let there = if self.eager.load(Ordering::SeqCst) {
                    self.fetch_object(&record.output_digest(), &path).is_some_and(|b| b.len() as u64 == record.size)
                } else {
                    remote.object_size(&record.output_digest()) == Some(record.size)
                };
                if !there {
                    return Err(Corruption { path, what: "missing".into() });
                }
                remote.mark_served(key);
                Ok(())
            }
            Err(e) => Err(Corruption { path, what: format!("unreadable: {e}") }),
        }
    }

    pub fn has_object(&self, digest: &Digest) -> bool {
        self.object_path(digest).exists()
    }

    /// Looks up an action key (locally, then on the remote cache); a torn or altered record
    /// is reported as corruption.
    pub fn lookup(&self, key: &Digest) -> Result<Option<ActionRecord>, Corruption> {
        self.lookup_in(key, true)
    }

    /// [`Store::lookup`] in this machine's cache only: for records of what this checkout's
    /// `out/` holds and of timings measured here, which mean nothing elsewhere (and whose
    /// absence, the usual case, would cost a remote round trip in every no-op build).
    pub fn lookup_local(&self, key: &Digest) -> Result<Option<ActionRecord>, Corruption> {
        self.lookup_in(key, false)
    }

    fn lookup_in(&self, key: &Digest, remote: bool) -> Result<Option<ActionRecord>, Corruption> {
        let path = self.action_path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(if remote { self.fetch_record(key, &path) } else { None });
            }
            Err(e) => return Err(Corruption { path, what: format!("unreadable: {e}") }),
        };
        match decode_record(&bytes) {
            Some(record) => Ok(Some(record)),
            None => {
                let _ = fs::remove_file(&path);
                Err(Corruption { path, what: "action record is damaged".into() })
            }
        }
    }

    /// The record from the remote cache, checked and kept locally; a damaged one is a miss.
    fn fetch_record(&self, key: &Digest, path: &Path) -> Option<ActionRecord> {
        let remote = self.remote.as_ref()?;
        let bytes = remote.record(key)?;
        match decode_record(&bytes) {
            Some(record) => {
                let _ = write_atomically(&self.root.join("tmp"), path, &bytes);
                Some(record)
            }
            None => {
                remote.record_damaged(key);
                None
            }
        }
    }

    /// Records `record` under `key` in this machine's cache only (see [`Store::lookup_local`]).
    pub fn record_local(&self, key: &Digest, record: &ActionRecord) -> io::Result<()> {
        write_atomically(&self.root.join("tmp"), &self.action_path(key), &encode_record(record))
    }

    pub fn record(&self, key: &Digest, record: &ActionRecord) -> io::Result<()> {
        let bytes = encode_record(record);
        write_atomically(&self.root.join("tmp"), &self.action_path(key), &bytes)?;
        if let Some(remote) = &self.remote {
            let output = (record.output != [0; 32]).then(|| record.output_digest());
            remote.upload_record(*key, bytes, output);
        }
        Ok(())
    }

    /// Every object file, for `cache stats|gc|verify`.
    pub fn objects(&self) -> io::Result<Vec<(PathBuf, u64)>> {
        list_two_level(&self.root.join("objects"))
    }

    pub fn actions(&self) -> io::Result<Vec<(PathBuf, u64)>> {
        list_two_level(&self.root.join("actions"))
    }

    /// Re-hashes every object and action record; returns the damaged ones (and removes them).
    pub fn verify_all(&self) -> io::Result<(usize, Vec<Corruption>)> {
        let mut bad = Vec::new();
        let mut checked = 0;
        for (path, _) in self.objects()? {
            checked += 1;
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ok = match (Digest::from_hex(name), fs::read(&path)) {
                (Ok(digest), Ok(bytes)) => blake3::hash(&bytes) == digest,
                _ => false,
            };
            if !ok {
                let _ = fs::remove_file(&path);
                bad.push(Corruption { path, what: "content does not match its hash".into() });
            }
        }
        for (path, _) in self.actions()? {
            checked += 1;
            let ok = fs::read(&path).ok().and_then(|b| decode_record(&b)).is_some();
            if !ok {
                let _ = fs::remove_file(&path);
                bad.push(Corruption { path, what: "action record is damaged".into() });
            }
        }
        Ok((checked, bad))
    }
}

/// Takes the lock of the store at `root` if the store exists (blocking until its holder lets
/// go), without creating a store: `qairt clean` locks a cache only to remove it. `Ok(None)`
/// when there is no store. A store whose lock file is not there yet (a build has just made its
/// directory) gets one, so that `clean` never removes a store a build is writing without
/// holding its lock; a store removed and made again while this process waited is locked anew.
pub fn lock_existing(root: &Path) -> io::Result<Option<File>> {
    let path = root.join("lock");
    loop {
        let file = match File::options().create(false).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A store written before the lock file existed, or whose lock file was lost,
                // has objects; one being made has its tag.
                let is_store =
                    root.join("objects").is_dir() || super::owned_dir::is_owned(root, super::owned_dir::DirKind::Cache);
                if !is_store {
                    return Ok(None);
                }
                match File::options().create(true).truncate(false).write(true).open(&path) {
                    Ok(file) => file,
                    // Removed since: no store.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        file.lock()?;
        if is_same_file(&file, &path) {
            return Ok(Some(file));
        }
    }
}

/// Whether `path` still names `file` (it does not once the directory was removed and made
/// again while we waited for the lock).
#[cfg(unix)]
fn is_same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

fn list_two_level(dir: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    let Ok(shards) = fs::read_dir(dir) else { return Ok(files) };
    for shard in shards {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(shard.path())? {
            let entry = entry?;
            files.push((entry.path(), entry.metadata()?.len()));
        }
    }
    files.sort();
    Ok(files)
}

fn encode_record(record: &ActionRecord) -> Vec<u8> {
    let mut bytes = RECORD_MAGIC.to_vec();
    bytes.extend(postcard::to_stdvec(record).expect("an action record always serializes"));
    let checksum = blake3::hash(&bytes);
    bytes.extend_from_slice(checksum.as_bytes());
    bytes
}

fn decode_record(bytes: &[u8]) -> Option<ActionRecord> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, checksum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != checksum {
        return None;
    }
    let payload = body.strip_prefix(RECORD_MAGIC.as_slice())?;
    postcard::from_bytes(payload).ok()
}

/// Writes `bytes` to `dest` so that `dest` is either absent, its old content, or complete:
/// a uniquely named temporary file in `tmp_dir` (same file system), then renamed.
///
/// There is no fsync: after a machine crash a renamed file may hold garbage, but every object
/// is re-hashed and every action record checksummed when read, so such damage is a cache miss,
/// never a wrong result. (An fsync per object made cold builds 2-5x slower on ext4, where it
/// flushes every pending write of the file system.)
pub fn write_atomically(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::create_dir_all(tmp_dir)?;
    write_into_existing_dirs(tmp_dir, dest, bytes)
}

/// [`write_atomically`] when both directories are known to exist (materializing thousands of
/// files: creating a file costs far more than writing it, so no redundant `mkdir`s).
pub fn write_into_existing_dirs(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let unique = format!(
        "{}-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed),
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    );
    let tmp = tmp_dir.join(unique);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_just_made_is_locked_and_anything_else_is_not() {
        use super::super::owned_dir::{DirKind, claim};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        assert!(lock_existing(&root).unwrap().is_none(), "no store");
        // A build has claimed the directory and not yet made its lock file: `clean` must
        // wait for that build, so the lock exists from here on.
        claim(&root, DirKind::Cache).unwrap();
        assert!(!root.join("lock").exists());
        let lock = lock_existing(&root).unwrap();
        assert!(lock.is_some() && root.join("lock").is_file());
        drop(lock);
        // A directory qairt did not make gets no lock file.
        let foreign = dir.path().join("foreign");
        fs::create_dir(&foreign).unwrap();
        assert!(lock_existing(&foreign).unwrap().is_none());
        assert!(!foreign.join("lock").exists());
    }

    #[test]
    fn objects_round_trip_and_corruption_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = store.put(b"hello").unwrap();
        assert_eq!(store.get(&digest).unwrap().as_deref(), Some(&b"hello"[..]));
        let path = store.object_path(&digest);
        fs::write(&path, b"hellO").unwrap();
        assert!(store.get(&digest).is_err());
        assert_eq!(store.get(&digest).unwrap(), None, "the corrupt object was removed");
    }

    #[test]
    fn action_records_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = blake3::hash(b"key");
        let record = ActionRecord { output: [7; 32], size: 5, meta: vec![1, 2] };
        store.record(&key, &record).unwrap();
        assert_eq!(store.lookup(&key).unwrap(), Some(record));
        let path = store.action_path(&key);
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(store.lookup(&key).is_err());
        let (checked, bad) = store.verify_all().unwrap();
        assert_eq!((checked, bad.len()), (0, 0), "lookup already removed the damaged record");
    }
}
