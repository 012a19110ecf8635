//! `qairt watch`: build, then rebuild whenever an input changes. The watcher thread only
//! sends events; this thread owns the workspace and does every write (rust-analyzer's split).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use notify_debouncer_mini::{new_debouncer, notify::RecursiveMode};

use crate::diag::Diag;

use super::MessageFormat;
use super::commands::open;
use super::output::EventPrinter;
use super::render;

pub fn watch(path: Option<PathBuf>, targets: &[String], format: MessageFormat) -> u8 {
    let mut ws = match open(path, format == MessageFormat::Human) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let (tx, rx) = mpsc::channel();
    let mut debouncer = match new_debouncer(Duration::from_millis(150), tx) {
        Ok(d) => d,
        Err(e) => {
            render::print(&Diag::error("qairt::watch::init", format!("cannot start the file watcher: {e}")));
            return 1;
        }
    };
    let mut watched_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        let mut printer = EventPrinter::new(format);
        let report = ws.build_with(targets, &mut |event| printer.print(event));
        printer.finish(&report);
        // Watch directories, not files: editors save by writing a new file and renaming it.
        let mut dirs: BTreeSet<PathBuf> =
            ws.watched_paths().iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
        dirs.insert(ws.config.root.join("rules"));
        for dir in dirs {
            if !watched_dirs.contains(&dir) && dir.is_dir() {
                if let Err(e) = debouncer.watcher().watch(&dir, RecursiveMode::NonRecursive) {
                    render::print(&Diag::warning("qairt::watch::dir", format!("cannot watch {}: {e}", dir.display())));
                }
                watched_dirs.insert(dir);
            }
        }
        // An edit made while the build ran, or before its directory was watched, is seen here.
        if ws.inputs_changed() {
            continue;
        }
        if format == MessageFormat::Human {
            eprintln!("watching for changes (Ctrl-C to stop)");
        }
        // Wait until a relevant file really changed: reading a file can itself raise events.
        loop {
            match rx.recv() {
                Ok(Ok(_events)) => {
                    if ws.inputs_changed() {
                        break;
                    }
                }
                Ok(Err(e)) => render::print(&Diag::warning("qairt::watch::event", format!("file watcher error: {e}"))),
                Err(_) => return 1,
            }
        }
    }
}
