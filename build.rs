//! Hashes qairt's own source (`src/`, the standard `rules/` compiled into it, and `Cargo.lock`,
//! whose crate versions decide numerics too) into `QAIRT_SOURCE_HASH`, which every stage's
//! cache key includes (`engine/memo.rs`). With a shared remote cache, two runners on different
//! commits of the same version would otherwise reuse each other's results, though a change
//! in between may have changed what a stage computes; a hand-bumped salt is easy to forget.
//!
//! FNV-1a over the files' repository-relative paths and bytes in sorted order: the same
//! checkout gives the same hash on every machine, whatever directory it is in.

use std::path::{Path, PathBuf};

fn files(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, into);
        } else {
            into.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    for dir in ["src", "rules"] {
        files(&root.join(dir), &mut paths);
        println!("cargo:rerun-if-changed={dir}");
    }
    paths.push(root.join("Cargo.lock"));
    println!("cargo:rerun-if-changed=Cargo.lock");
    paths.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for path in &paths {
        let relative = path.strip_prefix(&root).unwrap_or(path).to_string_lossy().replace('\\', "/");
        add(relative.as_bytes());
        add(&[0]);
        add(&std::fs::read(path).unwrap_or_default());
        add(&[0]);
    }
    println!("cargo:rustc-env=QAIRT_SOURCE_HASH={hash:016x}");
}
