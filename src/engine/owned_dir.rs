//! The directories qairt owns: `out/` and the cache. qairt creates them, marks them with a tag
//! file, writes only into marked directories, and `qairt clean` removes only a marked one. A
//! directory qairt did not make (a typo in `out_dir`, a symlink to somewhere else, a folder
//! that happens to be called `cache`) is never written into or deleted.
//!
//! The cache's tag is a standard `CACHEDIR.TAG` (backup tools skip the directory); `out/`'s is
//! qairt's own, since `out/` holds the deliverables and must be backed up like any build output.
//!
//! A repository that commits the directory (git keeps no empty one) holds a placeholder in it:
//! a `README.md`, `.gitignore` or `.gitkeep`. Such a directory is adopted, the placeholders are
//! listed in the tag, and `qairt clean` removes everything but them, so the checkout stays as it
//! was committed.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::Path;

use crate::diag::Diag;

/// The signature line the Cache Directory Tagging Specification requires.
const CACHEDIR_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";
const OUT_SIGNATURE: &str = "Signature: qairt output directory";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirKind {
    /// `out_dir`: `out/<target>/` for every target, and `out/.tmp/` while writing.
    Out,
    /// `cache_dir`: the content-addressed store.
    Cache,
}

impl DirKind {
    pub fn key(self) -> &'static str {
        match self {
            DirKind::Out => "out_dir",
            DirKind::Cache => "cache_dir",
        }
    }

    fn tag_file(self) -> &'static str {
        match self {
            DirKind::Out => ".qairt-out",
            DirKind::Cache => "CACHEDIR.TAG",
        }
    }

    /// The tag, listing the placeholders (`kept`) that `qairt clean` leaves in the directory.
    fn tag_text(self, kept: &[String]) -> String {
        let mut text = match self {
            DirKind::Out => format!(
                "{OUT_SIGNATURE}\n# Made by qairt: `qairt clean` removes this directory, and the next `qairt build` \
                 restores it from the cache.\n"
            ),
            DirKind::Cache => format!(
                "{CACHEDIR_SIGNATURE}\n# This file is a cache directory tag created by qairt.\n# For information about \
                 cache directory tags, see https://bford.info/cachedir/\n"
            ),
        };
        for name in kept {
            text.push_str(&format!("{KEPT_PREFIX}{name}\n"));
        }
        text
    }

    /// Whether `text` is this kind's tag as qairt writes it (a `CACHEDIR.TAG` of another tool
    /// marks a cache that is not ours).
    fn is_tag(self, text: &str) -> bool {
        match self {
            DirKind::Out => text.starts_with(OUT_SIGNATURE),
            DirKind::Cache => text.starts_with(CACHEDIR_SIGNATURE) && text.contains("created by qairt"),
        }
    }

    /// Whether `name` is the temporary `store::write_atomically` writes this kind's tag
    /// through (`<pid>-<counter>-<tag file>`) before renaming it into place.
    fn is_tag_temporary(self, name: &str) -> bool {
        let Some(prefix) = name.strip_suffix(self.tag_file()).and_then(|p| p.strip_suffix('-')) else {
            return false;
        };
        let mut numbers = prefix.split('-');
        let numeric = |part: Option<&str>| part.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        numeric(numbers.next()) && numeric(numbers.next()) && numbers.next().is_none()
    }

    /// What a directory of this kind written by a qairt from before the tags holds, or a
    /// checkout's placeholder: such a directory is adopted (tagged) rather than refused.
    fn is_untagged_layout(self, dir: &Path) -> io::Result<bool> {
        // Another qairt adopting the same directory right now writes its tag through a
        // temporary in it: that file is qairt's too.
        let names: Vec<String> =
            entry_names(dir)?.into_iter().filter(|n| !is_placeholder(dir, n) && !self.is_tag_temporary(n)).collect();
        Ok(match self {
            // Any part of the layout: a build makes the subdirectories one by one.
            DirKind::Cache => names.iter().all(|n| CACHE_ENTRIES.contains(&n.as_str())),
            DirKind::Out => names.iter().all(|name| {
                let sub = dir.join(name);
                name == ".tmp"
                    || (sub.is_dir()
                        && sub.join("build.json").is_file()
                        && entry_names(&sub)
                            .is_ok_and(|inner| inner.iter().all(|n| TARGET_DIR_ENTRIES.contains(&n.as_str()))))
            }),
        })
    }
}

/// The files a repository commits to keep a directory in a checkout.
const PLACEHOLDERS: &[&str] = &["README.md", ".gitignore", ".gitkeep"];

/// How the tag lists a placeholder `qairt clean` keeps.
const KEPT_PREFIX: &str = "# kept by qairt clean: ";

fn is_placeholder(dir: &Path, name: &str) -> bool {
    PLACEHOLDERS.contains(&name) && dir.join(name).is_file()
}

/// The placeholders the tag of `dir` lists.
fn kept_names(dir: &Path, kind: DirKind) -> Vec<String> {
    let text = fs::read_to_string(dir.join(kind.tag_file())).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix(KEPT_PREFIX))
        .filter(|name| PLACEHOLDERS.contains(name))
        .map(str::to_string)
        .collect()
}

/// What the cache holds (every name qairt writes there).
const CACHE_ENTRIES: &[&str] = &["objects", "actions", "tmp", "lock", "stamps", "last", "remote.json"];

/// What `out/<target>/` holds (every name qairt writes there).
const TARGET_DIR_ENTRIES: &[&str] = &[
    "build.json",
    "model.bin",
    "encodings.json",
    "model.qdq.onnx",
    "output_names.json",
    "outputs",
    "reference",
    "verify",
    "debug",
    "profile.csv",
    "profile.json",
];

fn entry_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// Whether `dir` carries qairt's tag of `kind`.
pub fn is_owned(dir: &Path, kind: DirKind) -> bool {
    fs::read_to_string(dir.join(kind.tag_file())).is_ok_and(|text| kind.is_tag(&text))
}

/// Makes sure `dir` is a directory qairt owns before anything is written into it: creates and
/// tags it when missing, tags it when empty or laid out as an older qairt left it, and refuses
/// (a diagnostic, nothing written) a directory that holds anything else.
pub fn claim(dir: &Path, kind: DirKind) -> Result<(), Diag> {
    if is_owned(dir, kind) {
        return Ok(());
    }
    let io_error = |e: io::Error| {
        Diag::error("qairt::io::write", format!("cannot create the {} {}: {e}", kind.key(), dir.display()))
    };
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            create_tagged(dir, kind).map_err(io_error)?;
            // Made whole, or someone else made it meanwhile: look again.
            return if is_owned(dir, kind) { Ok(()) } else { claim(dir, kind) };
        }
        Err(e) => return Err(io_error(e)),
        Ok(meta) if !meta.is_dir() => return Err(not_ours(dir, kind, "it is not a directory qairt made")),
        // Another qairt may have made it, tagged, since the first look (its cache appearing
        // while this build starts): that directory is ours too.
        Ok(_) if is_owned(dir, kind) => return Ok(()),
        Ok(_) => {
            let empty = entry_names(dir).map_err(io_error)?.is_empty();
            if !empty && !kind.is_untagged_layout(dir).map_err(io_error)? {
                return Err(not_ours(dir, kind, "it holds files qairt did not write"));
            }
        }
    }
    let mut kept: Vec<String> =
        entry_names(dir).map_err(io_error)?.into_iter().filter(|n| is_placeholder(dir, n)).collect();
    kept.sort();
    super::store::write_atomically(dir, &dir.join(kind.tag_file()), kind.tag_text(&kept).as_bytes()).map_err(io_error)
}

/// Creates `dir` with its tag already inside: the tagged directory is made beside it under a
/// unique name and renamed into place, so a concurrent `qairt clean` never sees it untagged. A
/// directory that appeared meanwhile wins (the rename fails and the spare is removed).
fn create_tagged(dir: &Path, kind: DirKind) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let spare = sibling(dir, &format!("qairt-new-{}", std::process::id()));
    let _ = fs::remove_dir_all(&spare);
    fs::create_dir(&spare)?;
    let made = fs::write(spare.join(kind.tag_file()), kind.tag_text(&[])).and_then(|()| fs::rename(&spare, dir));
    if let Err(e) = &made {
        let _ = fs::remove_dir_all(&spare);
        // Someone else made it meanwhile, and a concurrent `clean` may already have removed
        // it again: either way the caller looks again rather than failing.
        if dir.is_dir() || matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty) {
            return Ok(());
        }
    }
    made
}

fn not_ours(dir: &Path, kind: DirKind, why: &str) -> Diag {
    Diag::error(
        "qairt::project::foreign_dir",
        format!(
            "{} {} was not made by qairt: {why}, so qairt will not write into it or remove it",
            kind.key(),
            dir.display()
        ),
    )
    .with_help(format!(
        "point {} in qairt.toml at a new directory (qairt creates it), or move the directory's contents away",
        kind.key()
    ))
}

/// What [`remove`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    Absent,
}

/// Removes `dir` whole if qairt owns it; refuses a directory without qairt's tag.
pub fn remove(dir: &Path, kind: DirKind) -> Result<Removal, Diag> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Removal::Absent),
        Err(e) => {
            return Err(Diag::error("qairt::io::read", format!("cannot read {}: {e}", dir.display())));
        }
        Ok(meta) if meta.is_dir() && is_owned(dir, kind) => {}
        Ok(_) => {
            return Err(Diag::error(
                "qairt::clean::not_ours",
                format!("{} {} was not made by qairt (it has no {} tag); not removing it", kind.key(), dir.display(), kind.tag_file()),
            )
            .with_help(format!(
                "qairt clean removes only directories qairt created; remove this one yourself if you are sure, or fix {} in qairt.toml",
                kind.key()
            )));
        }
    }
    let failed = |e: io::Error| Diag::error("qairt::io::write", format!("cannot remove {}: {e}", dir.display()));
    let doomed = sibling(dir, &format!("qairt-removing-{}", std::process::id()));
    let kept = kept_names(dir, kind);
    if !kept.is_empty() {
        // A committed directory: everything but its placeholders goes (the tag last, so an
        // interrupted clean leaves a directory the next build adopts again).
        fs::create_dir_all(&doomed).map_err(failed)?;
        let mut names = entry_names(dir).map_err(failed)?;
        names.retain(|n| !kept.contains(n));
        names.sort_by_key(|n| n == kind.tag_file());
        for name in names {
            fs::rename(dir.join(&name), doomed.join(&name)).map_err(failed)?;
        }
        remove_settling(&doomed, |d| fs::remove_dir_all(d)).map_err(failed)?;
        return Ok(Removal::Removed);
    }
    // Renamed away first, then deleted: a concurrent build sees the whole tagged directory or
    // none, never one half deleted (which it could not tell from a directory of someone else).
    let target = if fs::rename(dir, &doomed).is_ok() { doomed } else { dir.to_path_buf() };
    remove_settling(&target, |d| fs::remove_dir_all(d)).map_err(failed)?;
    Ok(Removal::Removed)
}

/// Runs `remove_all` on `dir` again while it fails with "directory not empty", a bounded
/// number of times. A directory renamed out of sight can still gain an entry: a process whose
/// path lookup passed through the old name just before the rename (a build starting beside
/// `qairt clean --cache` making `cache/tmp`) creates it inside the renamed directory after
/// `remove_dir_all` listed it, and the final `rmdir` then fails. Such lookups are in flight,
/// not new, so the directory settles after a few short waits.
fn remove_settling(dir: &Path, mut remove_all: impl FnMut(&Path) -> io::Result<()>) -> io::Result<()> {
    const ATTEMPTS: u32 = 20;
    let mut attempt = 1;
    loop {
        match remove_all(dir) {
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty && attempt < ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(5 * u64::from(attempt)));
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// `.<name>.<suffix>` beside `dir`: where a directory is made or removed out of sight.
fn sibling(dir: &Path, suffix: &str) -> std::path::PathBuf {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parent.join(format!(".{name}.{suffix}"))
}

/// Removes what writers that died left in a temporary directory (`out/.tmp`, the cache's
/// `tmp/`). Called with the cache's lock held: every writer holds it, so a temporary of
/// another process is a leftover; on Linux a running process's files are kept regardless
/// (two projects may share an `out_dir` outside the project under different caches).
pub fn remove_leftover_temporaries(tmp_dir: &Path) {
    let Ok(entries) = fs::read_dir(tmp_dir) else { return };
    let ours = format!("{}-", std::process::id());
    let proc_fs = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&ours) {
            continue;
        }
        let pid = name.split('-').next().unwrap_or("");
        let running = proc_fs && !pid.is_empty() && Path::new("/proc").join(pid).exists();
        if !running {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_made_tagged_and_removable() {
        let tmp = tempfile::tempdir().unwrap();
        for kind in [DirKind::Out, DirKind::Cache] {
            let dir = tmp.path().join(kind.key()).join("nested");
            claim(&dir, kind).unwrap();
            assert!(is_owned(&dir, kind));
            assert!(!is_owned(&dir, if kind == DirKind::Out { DirKind::Cache } else { DirKind::Out }));
            fs::write(dir.join("file"), b"x").unwrap();
            claim(&dir, kind).unwrap();
            assert_eq!(remove(&dir, kind).unwrap(), Removal::Removed);
            assert!(!dir.exists());
            assert_eq!(remove(&dir, kind).unwrap(), Removal::Absent);
        }
    }

    #[test]
    fn a_directory_that_gains_an_entry_while_removed_is_removed_on_a_later_attempt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("doomed");
        fs::create_dir_all(dir.join("objects")).unwrap();
        // The first two attempts see a late entry appear (as an in-flight lookup would make
        // it) and fail as `rmdir` does; the third removes everything.
        let mut attempts = 0;
        remove_settling(&dir, |d| {
            attempts += 1;
            if attempts < 3 {
                fs::create_dir_all(d.join("tmp")).unwrap();
                return Err(io::Error::from(ErrorKind::DirectoryNotEmpty));
            }
            fs::remove_dir_all(d)
        })
        .unwrap();
        assert_eq!(attempts, 3);
        assert!(!dir.exists());
        // Another error, or one that never settles, is returned rather than retried for ever.
        let mut calls = 0;
        let err = remove_settling(&tmp.path().join("absent"), |d| {
            calls += 1;
            fs::remove_dir_all(d)
        })
        .unwrap_err();
        assert_eq!((err.kind(), calls), (ErrorKind::NotFound, 1));
        let mut calls = 0;
        let err = remove_settling(tmp.path(), |_| {
            calls += 1;
            Err(io::Error::from(ErrorKind::DirectoryNotEmpty))
        })
        .unwrap_err();
        assert_eq!((err.kind(), calls), (ErrorKind::DirectoryNotEmpty, 20));
    }

    #[test]
    fn a_directory_of_someone_else_is_never_written_or_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("precious.txt"), b"keep me").unwrap();
        for kind in [DirKind::Out, DirKind::Cache] {
            let refused = claim(&dir, kind).unwrap_err();
            assert_eq!(refused.code, "qairt::project::foreign_dir");
            assert!(remove(&dir, kind).is_err());
        }
        // Another tool's cache directory tag is not qairt's.
        fs::write(dir.join("CACHEDIR.TAG"), format!("{CACHEDIR_SIGNATURE}\n# created by cargo\n")).unwrap();
        assert!(remove(&dir, DirKind::Cache).is_err());
        assert_eq!(fs::read(dir.join("precious.txt")).unwrap(), b"keep me");
        assert_eq!(entry_names(&dir).unwrap().len(), 2);
        // A file where the directory should be.
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(claim(&file, DirKind::Out).is_err());
        assert!(remove(&file, DirKind::Out).is_err());
        assert_eq!(fs::read(&file).unwrap(), b"x");
    }

    #[test]
    fn empty_and_older_qairt_directories_are_adopted() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        claim(&empty, DirKind::Out).unwrap();
        assert!(is_owned(&empty, DirKind::Out));

        let cache = tmp.path().join("cache");
        for sub in ["objects/ab", "actions", "tmp"] {
            fs::create_dir_all(cache.join(sub)).unwrap();
        }
        fs::write(cache.join("lock"), b"").unwrap();
        claim(&cache, DirKind::Cache).unwrap();
        assert!(is_owned(&cache, DirKind::Cache));

        let out = tmp.path().join("out");
        fs::create_dir_all(out.join("cpu/outputs")).unwrap();
        fs::write(out.join("cpu/build.json"), b"{}").unwrap();
        claim(&out, DirKind::Out).unwrap();
        // Another qairt tagging the same directory at this moment: its tag's temporary is
        // qairt's own (`.ci`'s concurrency script once refused a cache for it), a look-alike
        // is not.
        for kind in [DirKind::Cache, DirKind::Out] {
            let racing = tmp.path().join(format!("racing-{}", kind.key()));
            fs::create_dir_all(racing.join(if kind == DirKind::Cache { "objects/ab" } else { ".tmp" })).unwrap();
            fs::write(racing.join(format!("4242-17-{}", kind.tag_file())), b"half a tag").unwrap();
            claim(&racing, kind).unwrap();
            assert!(is_owned(&racing, kind));
            for foreign in
                [format!("x-17-{}", kind.tag_file()), format!("4242-{}", kind.tag_file()), "4242-17-notes".into()]
            {
                let other = tmp.path().join(format!("other-{}-{foreign}", kind.key()));
                fs::create_dir_all(&other).unwrap();
                fs::write(other.join(&foreign), b"mine").unwrap();
                assert!(claim(&other, kind).is_err(), "{foreign} is not a tag's temporary");
            }
        }
        // One file more than qairt writes, and it is not adopted.
        let other = tmp.path().join("other");
        fs::create_dir_all(other.join("cpu")).unwrap();
        fs::write(other.join("cpu/build.json"), b"{}").unwrap();
        fs::write(other.join("cpu/notes.txt"), b"mine").unwrap();
        assert!(claim(&other, DirKind::Out).is_err());
    }

    /// A fresh clone of this repository has `cache/README.md` (git keeps no empty directory):
    /// the cache there is adopted, and `qairt clean --cache` leaves the checkout as it was.
    #[test]
    fn a_committed_directory_with_a_placeholder_is_adopted_and_cleaned_back_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        for kind in [DirKind::Cache, DirKind::Out] {
            let dir = tmp.path().join(kind.key());
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("README.md"), b"The build cache lives here.").unwrap();
            fs::write(dir.join(".gitignore"), b"*\n").unwrap();
            claim(&dir, kind).unwrap();
            assert!(is_owned(&dir, kind));
            fs::create_dir_all(dir.join("objects/ab")).unwrap();
            fs::write(dir.join("objects/ab/cd"), b"x").unwrap();
            assert_eq!(remove(&dir, kind).unwrap(), Removal::Removed);
            let mut left = entry_names(&dir).unwrap();
            left.sort();
            assert_eq!(left, [".gitignore", "README.md"], "{kind:?}");
            assert_eq!(fs::read(dir.join("README.md")).unwrap(), b"The build cache lives here.");
            let beside = entry_names(tmp.path()).unwrap();
            assert!(beside.iter().all(|n| !n.contains("qairt-removing")), "nothing left beside it: {beside:?}");
            claim(&dir, kind).unwrap();
            assert!(is_owned(&dir, kind), "and the next build adopts it again");
        }
        // A placeholder name that is a directory is not a placeholder.
        let odd = tmp.path().join("odd");
        fs::create_dir_all(odd.join("README.md")).unwrap();
        assert!(claim(&odd, DirKind::Cache).is_err());
    }

    #[test]
    fn leftovers_of_dead_writers_go_and_ours_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = format!("{}-0-model.bin", std::process::id());
        // No process has pid 4194304 or above on Linux (its pid_max ceiling).
        for name in [ours.as_str(), "4194304-7-encodings.json", "garbage"] {
            fs::write(tmp.path().join(name), b"x").unwrap();
        }
        remove_leftover_temporaries(tmp.path());
        assert_eq!(entry_names(tmp.path()).unwrap(), vec![ours]);
    }
}
