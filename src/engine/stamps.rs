//! Remembers `(path, size, mtime, inode) -> blake3` so an unchanged file is not re-read on
//! every build (git's index does the same). Kept in `cache/stamps`.
//!
//! A file rewritten with the same size inside one mtime tick would look unchanged: file
//! systems stamp mtimes from a coarse clock (a few milliseconds on Linux, up to 2 s on some),
//! so an editor or `qairt watch`'s user saving twice quickly can do exactly that. As git does
//! with "racily clean" entries, a stamp whose mtime is too recent to be settled is not trusted:
//! such a file is hashed again on every look until its mtime is [`SETTLED`] old. A stamp is
//! also not kept when the file changed while it was read.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::{Digest, write_atomically};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    digest: [u8; 32],
}

#[derive(Default, Serialize, Deserialize)]
pub struct Stamps {
    entries: BTreeMap<PathBuf, Stamp>,
    #[serde(skip)]
    dirty: bool,
}

/// How old an mtime must be before a stamp with it is trusted: beyond the coarsest mtime
/// granularity of common file systems (FAT's 2 s), so any later write gets a later mtime.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

fn is_settled(mtime_ns: i128) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
    now - mtime_ns >= SETTLED.as_nanos() as i128
}

fn stat(path: &Path) -> io::Result<(u64, i128, u64)> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mtime = meta.modified()?;
    let mtime_ns = match mtime.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok((meta.len(), mtime_ns, inode))
}

impl Stamps {
    /// Loads the stamp file; a missing or unreadable one is an empty cache.
    pub fn load(path: &Path) -> Stamps {
        let decode = |bytes: Vec<u8>| {
            // A trailing checksum: a torn or damaged file must not vouch for wrong digests.
            let body_len = bytes.len().checked_sub(32)?;
            let (body, checksum) = bytes.split_at(body_len);
            (blake3::hash(body).as_bytes() == checksum).then(|| postcard::from_bytes(body).ok()).flatten()
        };
        fs::read(path).ok().and_then(decode).unwrap_or_default()
    }

    pub fn save(&mut self, path: &Path, tmp_dir: &Path) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let mut bytes = postcard::to_stdvec(self).map_err(io::Error::other)?;
        let checksum = blake3::hash(&bytes);
        bytes.extend_from_slice(checksum.as_bytes());
        write_atomically(tmp_dir, path, &bytes)?;
        self.dirty = false;
        Ok(())
    }

    /// The content digest of `path`, re-hashing only when its stamp changed.
    pub fn digest(&mut self, path: &Path) -> io::Result<Digest> {
        let (size, mtime_ns, inode) = stat(path)?;
        if let Some(s) = self.entries.get(path)
            && (s.size, s.mtime_ns, s.inode) == (size, mtime_ns, inode)
        {
            return Ok(Digest::from_bytes(s.digest));
        }
        let bytes = fs::read(path)?;
        let digest = blake3::hash(&bytes);
        let after = stat(path)?;
        if after == (size, mtime_ns, inode) && is_settled(mtime_ns) {
            self.remember(path, after, digest);
        } else {
            // Not vouched for: the next look hashes the file again.
            self.dirty |= self.entries.remove(path).is_some();
        }
        Ok(digest)
    }

    /// Whether `path` currently holds content with `digest`, judged by its stamp when the
    /// stamp is known and by hashing otherwise. Used to skip rewriting materialized outputs.
    pub fn holds(&mut self, path: &Path, digest: &Digest) -> bool {
        self.digest(path).map(|d| d == *digest).unwrap_or(false)
    }

    /// Records that `path` was just written with content `digest`.
    pub fn wrote(&mut self, path: &Path, digest: Digest) {
        if let Ok(stamp) = stat(path) {
            self.remember(path, stamp, digest);
        }
    }

    fn remember(&mut self, path: &Path, (size, mtime_ns, inode): (u64, i128, u64), digest: Digest) {
        let stamp = Stamp { size, mtime_ns, inode, digest: *digest.as_bytes() };
        if self.entries.insert(path.to_path_buf(), stamp) != Some(stamp) {
            self.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_rehashed_and_an_unchanged_one_is_not_reread() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.raw");
        fs::write(&file, b"one").unwrap();
        let mut stamps = Stamps::default();
        assert_eq!(stamps.digest(&file).unwrap(), blake3::hash(b"one"));
        fs::write(&file, b"two!").unwrap();
        assert_eq!(stamps.digest(&file).unwrap(), blake3::hash(b"two!"));

        // Settled (mtime a minute ago): the stamp is kept, saved and trusted.
        let minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options().write(true).open(&file).unwrap().set_modified(minute_ago).unwrap();
        assert_eq!(stamps.digest(&file).unwrap(), blake3::hash(b"two!"));
        let saved = dir.path().join("stamps");
        stamps.save(&saved, dir.path()).unwrap();
        let mut reloaded = Stamps::load(&saved);
        assert!(reloaded.entries.contains_key(&file));
        assert!(reloaded.holds(&file, &blake3::hash(b"two!")));
        assert!(!reloaded.dirty, "a known stamp does not dirty the cache");
    }

    #[test]
    fn a_same_size_rewrite_within_one_mtime_tick_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("overrides.json");
        let mut stamps = Stamps::default();
        fs::write(&file, b"aaaa").unwrap();
        let tick = fs::metadata(&file).unwrap().modified().unwrap();
        assert_eq!(stamps.digest(&file).unwrap(), blake3::hash(b"aaaa"));
        // Same size, same inode, and (forced) the same mtime: only the content differs.
        fs::write(&file, b"bbbb").unwrap();
        fs::File::options().write(true).open(&file).unwrap().set_modified(tick).unwrap();
        assert_eq!(stamps.digest(&file).unwrap(), blake3::hash(b"bbbb"));
    }
}
