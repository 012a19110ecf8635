//! Where the directories qairt writes may be: lexical path arithmetic (no file system access),
//! so `qairt.toml` is checked before anything is created or removed.
//!
//! The checks are lexical on purpose: `out_dir = "../x"` is refused for what it says, whatever
//! exists on disk. What the file system holds (a symlink, a directory qairt did not make) is the
//! job of the ownership tags (`engine::owned_dir`), which every write and every `clean` checks.

use std::path::{Component, Path, PathBuf};

/// `path` with `.` removed and every `..` applied to the component before it, made absolute
/// against the current directory first. Symlinks are not followed (the result names what the
/// text names).
pub fn normalize(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            // `..` at the root stays at the root, as the kernel resolves it.
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// How a directory qairt writes (and `qairt clean` removes) relates to the project directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Strictly inside the project directory.
    Inside,
    /// The project directory itself.
    ProjectRoot,
    /// A directory that contains the project (removing it removes the project).
    Ancestor,
    /// Anywhere else.
    Outside,
}

/// Where `dir` is relative to `root` (both normalized first).
pub fn placement(root: &Path, dir: &Path) -> Placement {
    let (root, dir) = (normalize(root), normalize(dir));
    if dir == root {
        Placement::ProjectRoot
    } else if dir.starts_with(&root) {
        Placement::Inside
    } else if root.starts_with(&dir) {
        Placement::Ancestor
    } else {
        Placement::Outside
    }
}

/// Whether one of the two directories is the other or contains it.
pub fn overlap(a: &Path, b: &Path) -> bool {
    let (a, b) = (normalize(a), normalize(b));
    a.starts_with(&b) || b.starts_with(&a)
}

/// `path` relative to `root` when it is inside it, else the relative path that climbs out of
/// `root` to it (`../data/x.raw`): never an absolute path, so what qairt records about a path
/// does not depend on where the project was checked out. Paths on another drive (Windows)
/// stay absolute.
pub fn relative_to(root: &Path, path: &Path) -> PathBuf {
    let (root, path) = (normalize(root), normalize(path));
    let common = root.components().zip(path.components()).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return path;
    }
    let mut out = PathBuf::new();
    for _ in root.components().skip(common) {
        out.push("..");
    }
    for component in path.components().skip(common) {
        out.push(component.as_os_str());
    }
    out
}

/// Why a target name cannot name the directory `out/<target>/`, if it cannot: empty, only
/// letters, digits, `-`, `_` and `.` allowed (so no separators), no leading `.` (which also
/// rules out `.` and `..`, and keeps clear of qairt's own `out/.tmp`), at most 100 characters.
pub fn target_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a target name cannot be empty")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        Some("a target name may use only letters, digits, '-', '_' and '.'")
    } else if name.starts_with('.') {
        Some("a target name cannot start with '.'")
    } else if name.len() > 100 {
        Some("a target name can be at most 100 characters long")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_applies_dots_lexically() {
        assert_eq!(normalize(Path::new("/p/./a/../b")), PathBuf::from("/p/b"));
        assert_eq!(normalize(Path::new("/p/../../..")), PathBuf::from("/"));
        assert_eq!(normalize(Path::new("/p/out/")), PathBuf::from("/p/out"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(normalize(Path::new("x/..")), cwd);
    }

    #[test]
    fn placement_of_the_dangerous_directories() {
        let root = Path::new("/home/u/proj");
        assert_eq!(placement(root, Path::new("/home/u/proj/out")), Placement::Inside);
        assert_eq!(placement(root, Path::new("/home/u/proj/a/../out")), Placement::Inside);
        assert_eq!(placement(root, Path::new("/home/u/proj/.")), Placement::ProjectRoot);
        assert_eq!(placement(root, Path::new("/home/u/proj/out/..")), Placement::ProjectRoot);
        assert_eq!(placement(root, Path::new("/home/u/proj/..")), Placement::Ancestor);
        assert_eq!(placement(root, Path::new("/")), Placement::Ancestor);
        assert_eq!(placement(root, Path::new("/home/u/proj-out")), Placement::Outside);
        assert_eq!(placement(root, Path::new("/tmp/out")), Placement::Outside);
    }

    #[test]
    fn overlap_is_containment_either_way() {
        assert!(overlap(Path::new("/p/out"), Path::new("/p/out/cache")));
        assert!(overlap(Path::new("/p/out/cache"), Path::new("/p/out")));
        assert!(overlap(Path::new("/p/out"), Path::new("/p/x/../out")));
        assert!(!overlap(Path::new("/p/out"), Path::new("/p/outer")));
    }

    #[test]
    fn relative_paths_never_depend_on_the_checkout() {
        assert_eq!(relative_to(Path::new("/a/proj"), Path::new("/a/proj/m.onnx")), PathBuf::from("m.onnx"));
        assert_eq!(relative_to(Path::new("/a/proj"), Path::new("/a/data/x.raw")), PathBuf::from("../data/x.raw"));
        assert_eq!(relative_to(Path::new("/a/proj"), Path::new("/b/x")), PathBuf::from("../../b/x"));
    }

    #[test]
    fn target_names_are_file_names() {
        for good in ["cpu", "htp-w8a8", "a.b", "v_1"] {
            assert_eq!(target_name_problem(good), None, "{good}");
        }
        for bad in ["", ".", "..", ".tmp", "a/b", "a\\b", "a b", "é", &"x".repeat(101)] {
            assert!(target_name_problem(bad).is_some(), "{bad}");
        }
    }
}
