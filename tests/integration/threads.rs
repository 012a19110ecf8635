//! Samples run side by side (`--threads`, `QAIRT_THREADS`): the artifacts do not depend on the
//! thread count.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::Project;

/// Every file under `dir`, by path relative to it.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                files.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn one_thread_and_several_give_the_same_bytes() {
    let (one, several) = (Project::digits(), Project::digits());
    // Every debugging mode runs its own sample loop.
    for mode in ["oneshot", "cumulative", "layerwise"] {
        let out = one.run(&["build", "--threads", "1", "--mode", mode]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let out = several.command().args(["build", "--mode", mode]).env("QAIRT_THREADS", "3").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

        let (a, b) = (files_under(&one.path("out")), files_under(&several.path("out")));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        assert!(a.len() > 20, "{:?}", a.keys());
        for (name, bytes) in &a {
            assert!(bytes == &b[name], "{mode}: {name} differs between 1 and 3 threads");
        }
    }
}

#[test]
fn a_thread_count_of_zero_is_refused() {
    let p = Project::digits();
    let out = p.run(&["build", "--threads", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--threads"), "{stderr}");
}
