//! `qairt watch`: build, then rebuild whenever an input changes. The watcher thread only
//! sends events; this thread owns the workspace and does every write (rust-analyzer's split).
//!
//! Events only say *when* to look; whether to build is decided by comparing the inputs on disk
//! with what the last build read (`Workspace::inputs_changed`). So a burst of events is one
//! rebuild, a failure is printed once and waits for the next edit (no retry loop on a file that
//! is still broken or missing), and a file that comes back after a delete, a rename or a
//! `git checkout` is rebuilt as soon as it is whole. Directories are watched rather than files
//! (editors save by renaming a new file over the old), watched again when they are replaced,
//! and a poll every second catches what a lost watch would miss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify_debouncer_mini::{new_debouncer, notify::RecursiveMode};

use crate::diag::Diag;

use super::MessageFormat;
use super::commands::open;
use super::output::EventPrinter;
use super::render;

/// How long the events of one save are gathered into one.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How often the inputs are compared with what the last build read even without events.
const POLL: Duration = Duration::from_secs(1);

pub fn watch(path: Option<PathBuf>, targets: &[String], format: MessageFormat) -> u8 {
    let mut ws = match open(path, format == MessageFormat::Human) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let (tx, rx) = mpsc::channel();
    let mut debouncer = match new_debouncer(DEBOUNCE, tx) {
        Ok(d) => d,
        Err(e) => {
            render::print(&Diag::error("qairt::watch::init", format!("cannot start the file watcher: {e}")));
            return 1;
        }
    };
    // Each watched directory with the identity it had when its watch was added.
    let mut watched_dirs: BTreeMap<PathBuf, Option<DirId>> = BTreeMap::new();
    loop {
        let mut printer = EventPrinter::new(format);
        let report = ws.build_with(targets, &mut |event| printer.print(event));
        printer.finish(&report);
        for dir in dirs_to_watch(&ws) {
            let id = dir_id(&dir);
            if watched_dirs.get(&dir) == Some(&id) {
                continue;
            }
            // A directory removed and made again is a new inode: its old watch is gone.
            let _ = debouncer.watcher().unwatch(&dir);
            match debouncer.watcher().watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched_dirs.insert(dir, id);
                }
                Err(e) => {
                    render::print(&Diag::warning("qairt::watch::dir", format!("cannot watch {}: {e}", dir.display())))
                }
            }
        }
        // An edit made while the build ran, or before its directory was watched, is seen here.
        if ws.inputs_changed() {
            continue;
        }
        if format == MessageFormat::Human {
            eprintln!("watching for changes (Ctrl-C to stop)");
        }
        // Wait until an input really differs from what the build read: reading a file, or
        // writing out/, can itself raise events.
        loop {
            match rx.recv_timeout(POLL) {
                Ok(Ok(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {
                    if ws.inputs_changed() {
                        break;
                    }
                }
                Ok(Err(e)) => render::print(&Diag::warning("qairt::watch::event", format!("file watcher error: {e}"))),
                Err(mpsc::RecvTimeoutError::Disconnected) => return 1,
            }
        }
        // The rest of this burst is read by the build itself.
        while rx.try_recv().is_ok() {}
    }
}

/// The directory of every input the last build read (the nearest existing ancestor of one that
/// is gone, so its return is an event), every directory whose listing is an input (the golden
/// files'), the project's `rules/` and the project directory.
fn dirs_to_watch(ws: &crate::engine::Workspace) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        ws.watched_paths().iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
    candidates.extend(ws.watched_dirs());
    candidates.push(ws.config.root.join("rules"));
    candidates.push(ws.config.root.clone());
    let mut dirs: Vec<PathBuf> = candidates.iter().filter_map(|dir| nearest_existing_dir(dir)).collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

fn nearest_existing_dir(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|d| d.is_dir()).map(Path::to_path_buf)
}

/// A directory's identity: the same path made again is another directory.
type DirId = (u64, u64);

#[cfg(unix)]
fn dir_id(dir: &Path) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn dir_id(dir: &Path) -> Option<DirId> {
    dir.is_dir().then_some((0, 0))
}
