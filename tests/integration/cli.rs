//! The command line as people and scripts use it: `qairt init` writing a project that builds,
//! `-q`/`-v`, `--color`, shell completions and manual pages, sizes like `--max-size 1G`.

use std::path::Path;

use crate::util::{Project, config, copy_dir, repo_root};

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An empty directory holding a copy of the digits model and its data under `digits/`.
fn digits_without_config() -> Project {
    let p = Project::empty();
    let example = repo_root().join("examples/digits");
    std::fs::create_dir_all(p.path("digits")).unwrap();
    std::fs::copy(example.join("model.onnx"), p.path("digits/model.onnx")).unwrap();
    copy_dir(&example.join("calib"), &p.path("digits/calib"));
    copy_dir(&example.join("test"), &p.path("digits/test"));
    p
}

#[test]
fn init_writes_a_project_that_builds_and_never_replaces_it() {
    let p = digits_without_config();
    let init = p.run(&[
        "init",
        "digits/model.onnx",
        "--dir",
        ".",
        "--calibration",
        "digits/calib/input_list.txt",
        "--verify",
        "digits/test/input_list.txt",
        "--labels",
        "digits/test/labels.txt",
    ]);
    assert_eq!(init.status.code(), Some(0), "{}", stderr_of(&init));
    let toml = p.read("qairt.toml");
    assert!(toml.contains("path = \"digits/model.onnx\""), "{toml}");
    assert!(toml.contains("# input \"input\": float32 [1, 1, 8, 8], 256 bytes"), "{toml}");
    let build = p.build();
    build.assert_ok();
    for target in ["cpu", "htp-w8a8"] {
        let verify = build.verify(target);
        assert!(verify["metrics"]["accuracy"].as_f64().unwrap() > 0.9, "{target}: {verify}");
    }
    let again = p.run(&["init", "digits/model.onnx", "--dir", "."]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr_of(&again).contains("exists already"), "{}", stderr_of(&again));
    assert_eq!(p.read("qairt.toml"), toml, "the first qairt.toml is untouched");
}

#[test]
fn init_without_data_writes_templates_that_build_once_filled_in() {
    let p = digits_without_config();
    let init = p.run(&["init", "digits/model.onnx"]);
    assert_eq!(init.status.code(), Some(0), "{}", stderr_of(&init));
    let said = stdout_of(&init);
    assert!(said.contains("wrote verify/input_list.txt"), "{said}");
    assert!(said.contains("using the input lists that exist already: calib/input_list.txt"), "{said}");
    let template = std::fs::read_to_string(p.path("digits/calib/input_list.txt"));
    // The copied calibration list is the user's: it is kept, not replaced by a template.
    assert!(template.unwrap().starts_with("raw/calib_000.raw"), "an existing list is never replaced");
    let verify_template = p.read("digits/verify/input_list.txt");
    assert!(verify_template.contains("#   \"input\": float32 [1, 1, 8, 8], 256 bytes"), "{verify_template}");
    assert!(verify_template.contains("input:=sample_0/input.raw"), "{verify_template}");

    // An empty verify list is a diagnostic naming the file, not a crash.
    let build = p.command().args(["build", "digits"]).output().unwrap();
    assert_eq!(build.status.code(), Some(1), "{}", stderr_of(&build));
    assert!(stderr_of(&build).contains("verify/input_list.txt"), "{}", stderr_of(&build));

    // Filled in as the template says, the project builds.
    let mut filled = verify_template.clone();
    for i in 0..5 {
        filled.push_str(&format!("input:=../test/raw/test_{i:03}.raw\n"));
    }
    std::fs::write(p.path("digits/verify/input_list.txt"), filled).unwrap();
    let build = p.command().args(["build", "digits"]).output().unwrap();
    assert_eq!(build.status.code(), Some(0), "{}", stderr_of(&build));
}

#[test]
fn init_refuses_a_file_that_is_not_a_model() {
    let p = Project::empty();
    p.write("model.onnx", "not a protobuf at all");
    let init = p.run(&["init", "model.onnx"]);
    assert_eq!(init.status.code(), Some(1));
    assert!(stderr_of(&init).contains("model.onnx"), "{}", stderr_of(&init));
    assert!(!p.path("qairt.toml").exists(), "nothing is written for a model qairt cannot read");
}

#[test]
fn quiet_prints_nothing_for_a_passing_build_and_the_reasons_for_a_failing_one() {
    let p = Project::digits_with(&config(5));
    let quiet = p.run(&["-q", "build"]);
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr_of(&quiet));
    assert_eq!(stdout_of(&quiet), "", "a passing quiet build prints nothing");

    let strict = config(5).replace("min_sqnr_db = 20.0", "min_sqnr_db = 200.0");
    assert_ne!(strict, config(5), "the fixture has a thresholds table to tighten");
    p.write("qairt.toml", &strict);
    let failing = p.run(&["build", "--quiet"]);
    assert_eq!(failing.status.code(), Some(2));
    let text = stdout_of(&failing);
    assert!(text.contains("htp-w8a8: verify FAILED") && text.contains("threshold not met"), "{text}");
    assert!(!text.contains("parse"), "no stage lines: {text}");
}

#[test]
fn verbose_shows_each_stage_key_as_the_json_messages_give_it() {
    let p = Project::digits_with(&config(5));
    let json = p.build();
    let verbose = stdout_of(&p.run(&["build", "-v"]));
    for event in json.events.iter().filter(|e| e["event"] == "stage") {
        let key = &event["key"].as_str().unwrap()[..16];
        assert!(verbose.contains(&format!("key {key}")), "{key} missing from:\n{verbose}");
    }
}

#[test]
fn colour_follows_the_color_flag_and_never_reaches_json() {
    let p = Project::digits_with(&config(5));
    p.build().assert_ok();
    let escape = "\u{1b}[";
    let always = stdout_of(&p.run(&["build", "--color", "always"]));
    assert!(always.contains(escape), "--color always colours even a pipe: {always:?}");
    // A test's stdout is a pipe: auto means no colour, and so does never (even when forced).
    let auto = stdout_of(&p.run(&["build"]));
    assert!(!auto.contains(escape), "{auto:?}");
    let never =
        stdout_of(&p.command().args(["build", "--color", "never"]).env("CLICOLOR_FORCE", "1").output().unwrap());
    assert!(!never.contains(escape), "{never:?}");
    let forced = stdout_of(&p.command().arg("build").env("CLICOLOR_FORCE", "1").output().unwrap());
    assert!(forced.contains(escape), "auto honours CLICOLOR_FORCE: {forced:?}");
    let json = stdout_of(&p.run(&["build", "--color", "always", "--message-format", "json"]));
    assert!(!json.contains(escape), "JSON is never coloured");
}

#[test]
fn completions_and_manual_pages_cover_every_command() {
    let p = Project::empty();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = p.run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr_of(&out));
        let script = stdout_of(&out);
        for word in ["build", "watch", "encodings", "max-size", "message-format"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let page = stdout_of(&p.run(&["man"]));
    assert!(page.starts_with(".ie") || page.contains(".TH qairt"), "{page}");
    assert!(page.contains("build") && page.contains("init"), "{page}");
    let gc = p.run(&["man", "cache", "gc"]);
    assert_eq!(gc.status.code(), Some(0), "{}", stderr_of(&gc));
    let gc = stdout_of(&gc);
    assert!(gc.contains(".TH qairt-cache-gc") && gc.contains("max\\-size"), "{gc}");
    assert!(gc.contains("quiet"), "global options are on every page: {gc}");
    let wrong = p.run(&["man", "biuld"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr_of(&wrong).contains("did you mean `build`"), "{}", stderr_of(&wrong));
}

#[test]
fn cache_gc_takes_sizes_with_units() {
    let p = Project::digits_with(&config(5));
    p.build().assert_ok();
    let bad = p.run(&["cache", "gc", "--max-size", "12X"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr_of(&bad).contains("is not a size"), "{}", stderr_of(&bad));
    let gc = p.run(&["cache", "gc", "--max-size", "1K"]);
    assert_eq!(gc.status.code(), Some(0), "{}", stderr_of(&gc));
    let size: u64 = walk_size(&p.path("cache/objects"));
    assert!(size <= 1024, "the cache was shrunk to 1 KiB: {size} bytes left");
    // What gc removed is rebuilt without a word about damage: it was removed on purpose.
    let rebuilt = p.build();
    rebuilt.assert_ok();
    assert!(!rebuilt.built().is_empty());
    assert!(!rebuilt.stderr.contains("damaged"), "{}", rebuilt.stderr);
    let large = p.run(&["cache", "gc", "--max-size", "1.5GiB"]);
    assert_eq!(large.status.code(), Some(0), "{}", stderr_of(&large));
}

fn walk_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .map(|e| e.unwrap())
        .map(|e| if e.file_type().unwrap().is_dir() { walk_size(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}
