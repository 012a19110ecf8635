//! Replacing a user's file (an encodings file, `qairt.toml`, a CSV) atomically: the bytes go to
//! a temporary file in the same directory, are synced, and are renamed over the target, so a
//! crash never leaves a half-written file under its final name; and writing a new file the
//! same way without ever replacing one that exists.

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path` atomically, creating its directory. The result keeps the
/// permissions of the file it replaces, or gets those of an ordinary new file (a temporary file
/// is private, 0600).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions()).or_else(new_file_permissions);
    written_beside(path, bytes, permissions)?.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes a new file atomically; fails with `AlreadyExists` (leaving it untouched) when `path`
/// exists, so qairt never replaces a file it did not make.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    written_beside(path, bytes, new_file_permissions())?.persist_noclobber(path).map_err(|e| e.error)?;
    Ok(())
}

/// `bytes` in a synced temporary file in `path`'s directory (made if missing), ready to be
/// renamed onto `path`.
fn written_beside(
    path: &Path,
    bytes: &[u8],
    permissions: Option<std::fs::Permissions>,
) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".qairt-").suffix(".tmp");
    if let Some(permissions) = permissions {
        builder.permissions(permissions);
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

#[cfg(unix)]
fn new_file_permissions() -> Option<std::fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn new_file_permissions() -> Option<std::fs::Permissions> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        std::fs::write(&path, "old contents that are longer").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let fresh = dir.path().join("fresh.json");
            write_atomically(&fresh, b"{}").unwrap();
            assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o644);
        }
    }

    #[test]
    fn a_new_file_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qairt.toml");
        write_new(&path, b"first").unwrap();
        let err = write_new(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
    }

    #[test]
    fn atomic_write_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/sweep.csv");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }
}
