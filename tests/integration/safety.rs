//! Nothing qairt does loses a user's data: `out_dir`/`cache_dir` stay inside the project, only
//! directories qairt made and tagged are written into or removed, outputs whose names sanitize
//! alike get distinct files, crash leftovers are cleared, and `out/` does not depend on where
//! the project was checked out.

use serde_json::Value;

use crate::util::{Project, config, copy_dir, read_f32, repo_root, tree};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn out_dir_naming_the_parent_or_the_project_is_refused_and_nothing_is_removed() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("precious.txt"), b"keep").unwrap();
    for keys in ["out_dir = \"..\"", "out_dir = \".\"", "cache_dir = \".\"", "out_dir = \"/tmp\""] {
        let p = Project::digits_with(&config(5).replace("name = \"digits-test\"", &format!("name = \"x\"\n{keys}")));
        // Put the project inside `outer`, so `..` names a directory with a file to lose.
        let project = outer.path().join("proj");
        copy_dir(p.dir.path(), &project);
        for args in [&["clean", "--cache"][..], &["build"][..]] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_qairt"))
                .args(args)
                .current_dir(&project)
                .output()
                .unwrap();
            let stderr = stderr_of(&out);
            assert_eq!(out.status.code(), Some(1), "{keys} {args:?}: {stderr}");
            assert!(stderr.contains("qairt.toml:3:"), "{keys}: {stderr}");
            assert!(stderr.contains("project"), "{keys}: {stderr}");
        }
        assert_eq!(std::fs::read(outer.path().join("precious.txt")).unwrap(), b"keep");
        assert!(project.join("qairt.toml").is_file() && project.join("digits/model.onnx").is_file(), "{keys}");
        std::fs::remove_dir_all(&project).unwrap();
    }
}

#[test]
fn a_directory_qairt_did_not_make_is_neither_written_nor_cleaned() {
    let p = Project::digits_with(&config(5));
    p.write("out/notes.txt", "my notes");
    let build = p.run(&["build"]);
    assert_eq!(build.status.code(), Some(1), "{}", stderr_of(&build));
    assert!(stderr_of(&build).contains("was not made by qairt"), "{}", stderr_of(&build));
    let clean = p.run(&["clean"]);
    assert_eq!(clean.status.code(), Some(1), "{}", stderr_of(&clean));
    assert!(stderr_of(&clean).contains("not removing it"), "{}", stderr_of(&clean));
    assert_eq!(p.read("out/notes.txt"), "my notes");
    assert_eq!(std::fs::read_dir(p.path("out")).unwrap().count(), 1, "nothing written into out/");
}

#[test]
fn clean_removes_what_build_made_and_the_cache_only_when_asked() {
    let p = Project::digits_with(&config(5));
    p.build().assert_ok();
    assert!(p.path("out/.qairt-out").is_file() && p.path("cache/CACHEDIR.TAG").is_file());
    let clean = p.run(&["clean"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr_of(&clean));
    assert!(!p.path("out").exists() && p.path("cache/objects").is_dir());
    // The cache restores out/ without running a stage.
    let rebuilt = p.build();
    rebuilt.assert_ok();
    assert!(rebuilt.built().is_empty(), "{:?}", rebuilt.built());
    let clean = p.run(&["clean", "--cache"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr_of(&clean));
    assert!(!p.path("out").exists() && !p.path("cache").exists());
    assert!(p.path("qairt.toml").is_file() && p.path("overrides.json").is_file());
}

#[test]
fn a_target_named_like_a_path_is_refused() {
    for name in ["..", ".", "a/b", ".tmp"] {
        let p = Project::digits_with(&config(5).replace("name = \"cpu\"", &format!("name = \"{name}\"")));
        let build = p.run(&["build"]);
        assert_eq!(build.status.code(), Some(1), "{name}: {}", stderr_of(&build));
        assert!(stderr_of(&build).contains("out/<target>/"), "{name}: {}", stderr_of(&build));
        assert_eq!(
            p.read("overrides.json"),
            std::fs::read_to_string(repo_root().join("examples/digits/overrides.json")).unwrap()
        );
        assert!(!p.path("model.bin").exists() && !p.path("encodings.json").exists());
    }
}

#[test]
fn leftovers_of_a_killed_build_are_removed_by_the_next() {
    let p = Project::digits_with(&config(5));
    p.build().assert_ok();
    // What a build killed between writing a temporary and renaming it leaves (pid 4194304 is
    // beyond Linux's pid_max, so no process of that id is running).
    p.write("out/.tmp/4194304-3-model.bin", "half a model");
    p.write("cache/tmp/4194304-9-0123abcd", "half an object");
    p.build().assert_ok();
    assert!(!p.path("out/.tmp").exists(), "out/.tmp is removed once empty");
    assert_eq!(std::fs::read_dir(p.path("cache/tmp")).unwrap().count(), 0);
}

/// Starts a build of `p`, runs `clean` (with `clean_args`) while it runs, and returns both
/// processes' outputs (the clean's first).
fn clean_beside_a_build(p: &Project, clean_args: &[&str]) -> (std::process::Output, std::process::Output) {
    let build = p
        .command()
        .args(["build", "--message-format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let clean = p.command().args(clean_args).output().unwrap();
    (clean, build.wait_with_output().unwrap())
}

#[test]
fn clean_and_build_side_by_side_both_succeed() {
    let p = Project::digits_with(&config(3));
    p.build().assert_ok();
    for round in 0..8 {
        let (clean, build) = clean_beside_a_build(&p, &["clean", "--cache"]);
        assert_eq!(clean.status.code(), Some(0), "round {round}: {}", stderr_of(&clean));
        assert_eq!(build.status.code(), Some(0), "round {round}: {}", stderr_of(&build));
    }
    p.build().assert_ok();
    assert!(p.path("out/cpu/model.bin").is_file());
}

#[test]
fn clean_without_a_cache_leaves_none_behind() {
    // Clean takes the cache's lock even when there is no cache (making one to lock, so that a
    // build starting meanwhile waits); the cache made for that goes again.
    let p = Project::digits_with(&config(3));
    for args in [&["clean"][..], &["clean", "--cache"]] {
        let clean = p.run(args);
        assert_eq!(clean.status.code(), Some(0), "{args:?}: {}", stderr_of(&clean));
        assert!(!p.path("cache").exists() && !p.path("out").exists(), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&clean.stdout), "", "{args:?}: nothing was there to remove");
    }
    // out/ of a build whose cache was deleted by hand: removed, and no cache is left.
    p.build().assert_ok();
    std::fs::remove_dir_all(p.path("cache")).unwrap();
    let clean = p.run(&["clean"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr_of(&clean));
    assert!(!p.path("out").exists() && !p.path("cache").exists());
}

#[test]
fn a_build_starting_with_no_cache_beside_a_clean_both_succeed() {
    // Each round starts without a cache, the case where a clean once found nothing to lock
    // and removed out/ while the build that had just made the cache was writing it.
    let p = Project::digits_with(&config(3));
    for round in 0..6 {
        let reset = p.run(&["clean", "--cache"]);
        assert_eq!(reset.status.code(), Some(0), "round {round}: {}", stderr_of(&reset));
        let (clean, build) = clean_beside_a_build(&p, &["clean"]);
        assert_eq!(clean.status.code(), Some(0), "round {round}: {}", stderr_of(&clean));
        assert_eq!(build.status.code(), Some(0), "round {round}: {}", stderr_of(&build));
        // Whichever ran first, what is left is whole: out/ as the build wrote it, or none.
        if p.path("out").exists() {
            assert!(p.path("out/cpu/model.bin").is_file(), "round {round}");
        }
    }
}

#[test]
fn colliding_output_names_get_distinct_files_and_a_name_map() {
    let p = Project::empty();
    let model = "colliding_outputs";
    copy_dir(&repo_root().join("tests/data/models").join(model), &p.path(model));
    let manifest: Value = serde_json::from_str(&p.read(&format!("{model}/manifest.json"))).unwrap();
    let list: String = (0..3).map(|k| format!("{model}/inputs/{k}/x.raw\n")).collect();
    p.write("list.txt", &list);
    p.write(
        "qairt.toml",
        &format!(
            "[project]\nname = \"names\"\n[model]\npath = \"{model}/{model}.onnx\"\n[calibration]\ninput_list = \"list.txt\"\n\
             [[target]]\nname = \"cpu\"\nbackend = \"cpu\"\n[[target]]\nname = \"htp\"\nbackend = \"htp\"\n\
             [verify]\ninput_list = \"list.txt\"\n"
        ),
    );
    p.build().assert_ok();
    let outputs = manifest["outputs"].as_array().unwrap();
    for target in ["cpu", "htp"] {
        let map: Value = serde_json::from_str(&p.read(&format!("out/{target}/output_names.json"))).unwrap();
        let entries = map["outputs"].as_array().unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e["name"].as_str().unwrap()).collect();
        let expected: Vec<&str> = outputs.iter().map(|o| o["name"].as_str().unwrap()).collect();
        assert_eq!(names, expected);
        let files: Vec<&str> = entries.iter().map(|e| e["file"].as_str().unwrap()).collect();
        assert_eq!(files, ["a_b_2.raw", "a_b_3.raw", "a_b.raw", "a_b_4.raw", "Y.raw", "y_2.raw"]);
        for k in 0..3 {
            let written = std::fs::read_dir(p.path(&format!("out/{target}/outputs/Result_{k}"))).unwrap().count();
            assert_eq!(written, outputs.len(), "one file per output");
        }
    }
    // Each file holds its own output: the float target against onnxruntime.
    for k in 0..3 {
        for (output, file) in outputs.iter().zip(["a_b_2.raw", "a_b_3.raw", "a_b.raw", "a_b_4.raw", "Y.raw", "y_2.raw"])
        {
            let ours = read_f32(&p.path(&format!("out/cpu/outputs/Result_{k}/{file}")));
            let reference =
                read_f32(&p.path(&format!("{model}/outputs/{k}/{}", output["reference"].as_str().unwrap())));
            assert_eq!(ours.len(), reference.len());
            let worst = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "{} in {file}: off by {worst}", output["name"]);
        }
    }
}

#[test]
fn out_is_byte_identical_wherever_the_project_is_checked_out() {
    // The same project (with its data beside it, outside the project directory) at two places.
    let outer = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for place in ["a", "somewhere/much/deeper/b"] {
        let base = outer.path().join(place);
        let p = Project::digits_with(&config(4));
        copy_dir(&p.path("digits"), &base.join("data/digits"));
        let toml = config(4).replace("\"digits/", "\"../data/digits/");
        std::fs::create_dir_all(base.join("proj")).unwrap();
        std::fs::write(base.join("proj/qairt.toml"), toml).unwrap();
        std::fs::copy(p.path("overrides.json"), base.join("proj/overrides.json")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_qairt"))
            .args(["build", "--message-format", "json"])
            .current_dir(base.join("proj"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        trees.push(tree(&base.join("proj/out")));
    }
    let build_json = String::from_utf8(trees[0]["cpu/build.json"].clone()).unwrap();
    assert!(build_json.contains("../data/digits/model.onnx"), "{build_json}");
    assert_eq!(trees[0].keys().collect::<Vec<_>>(), trees[1].keys().collect::<Vec<_>>());
    for (path, bytes) in &trees[0] {
        assert!(bytes == &trees[1][path], "{path} differs between the two checkouts");
    }
}

#[cfg(unix)]
#[test]
fn a_reader_that_stops_early_ends_qairt_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    // `qairt explain | head -n 1`, `qairt build 2>&1 | head -n 1`: a write after the reader is
    // gone ends qairt by SIGPIPE, as it ends cargo, never with a panic (exit 101). The reader
    // is gone before qairt starts, so every run meets it at its first write.
    let p = Project::digits_with(&config(5));
    p.build().assert_ok();
    for args in [&["explain"][..], &["build"][..], &["build", "--message-format", "json"][..]] {
        for merged in [false, true] {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            let (mut err_reader, err_writer) = std::io::pipe().unwrap();
            let stderr = if merged { writer.try_clone().unwrap() } else { err_writer.try_clone().unwrap() };
            let mut child = p.command().args(args).stdout(writer).stderr(stderr).spawn().unwrap();
            drop(err_writer);
            let status = child.wait().unwrap();
            let mut stderr = String::new();
            err_reader.read_to_string(&mut stderr).unwrap();
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            assert!(status.signal() == Some(13) || status.code() == Some(0), "{args:?} merged {merged}: {status:?}");
        }
    }
}

/// The repository as a fresh clone has it: `cache/` holds only the committed `cache/README.md`
/// (git keeps no empty directory). The README's first command builds there, and
/// `qairt clean --cache` brings the directory back to what was committed.
#[test]
fn the_repository_root_builds_as_checked_out_and_cleans_back_to_it() {
    let p = Project::empty();
    std::fs::copy(repo_root().join("qairt.toml"), p.path("qairt.toml")).unwrap();
    copy_dir(&repo_root().join("examples/digits"), &p.path("examples/digits"));
    let committed: Vec<String> = String::from_utf8(
        std::process::Command::new("git").args(["ls-files", "cache"]).current_dir(repo_root()).output().unwrap().stdout,
    )
    .unwrap()
    .lines()
    .map(str::to_string)
    .collect();
    assert!(!committed.is_empty(), "the repository commits a placeholder in cache/");
    for file in &committed {
        std::fs::create_dir_all(p.path(file).parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(file), p.path(file)).unwrap();
    }
    let build = p.run(&["build"]);
    assert_eq!(build.status.code(), Some(0), "{}", stderr_of(&build));
    let clean = p.run(&["clean", "--cache"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr_of(&clean));
    let left: Vec<String> = tree(&p.path("cache")).into_keys().map(|rel| format!("cache/{rel}")).collect();
    assert_eq!(left, committed, "clean --cache leaves what the checkout had");
    for file in &committed {
        assert_eq!(std::fs::read(p.path(file)).unwrap(), std::fs::read(repo_root().join(file)).unwrap());
    }
}
