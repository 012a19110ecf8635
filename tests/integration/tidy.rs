//! Conventions checked by `cargo test`: every source file says what it owns, and the layering
//! rules of docs/architecture.md hold (salsa only in `engine`, printing only in `cli`).

use std::path::{Path, PathBuf};

use crate::util::repo_root;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Whether `path` is a unit-test file: `tests.rs`, or `<name>_tests.rs` that a sibling declares
/// with `#[cfg(test)] #[path = "<name>_tests.rs"]`.
fn is_test_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    if name == "tests.rs" {
        return true;
    }
    if !name.ends_with("_tests.rs") {
        return false;
    }
    let declaration = format!("#[cfg(test)]\n#[path = \"{name}\"]");
    let dir = path.parent().unwrap();
    let declared = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .any(|text| text.contains(&declaration));
    assert!(declared, "{name} looks like a test file but no sibling declares it under #[cfg(test)]");
    true
}

/// The part of a file before its unit tests (tests may read fixtures and print).
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    if is_test_file(path) {
        return String::new();
    }
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let src = repo_root().join("src");
    let generated = src.join("onnx/proto.rs");
    let undocumented: Vec<PathBuf> = rust_files(&src)
        .into_iter()
        .filter(|p| *p != generated)
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .collect();
    assert!(undocumented.is_empty(), "files without a //! doc: {undocumented:?}");
}

#[test]
fn layering_rules_hold() {
    let src = repo_root().join("src");
    for path in rust_files(&src) {
        let rel = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let code = non_test_code(&path);
        if !rel.starts_with("engine/") {
            assert!(!code.contains("salsa::"), "{rel}: only the engine names salsa");
        }
        if !rel.starts_with("cli/") {
            for printer in ["println!", "eprintln!", "print!(", "eprint!("] {
                assert!(!code.contains(printer), "{rel}: only the cli prints ({printer})");
            }
        }
        let below_engine = ["ir/", "onnx/", "ops/", "passes/", "quant/", "compile/", "runtime/", "verify/", "project/"];
        if below_engine.iter().any(|m| rel.starts_with(m)) {
            assert!(!code.contains("std::fs"), "{rel}: layers below the engine do no file IO");
        }
    }
}
