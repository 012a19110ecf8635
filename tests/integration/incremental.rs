//! Incremental behaviour, observed through the JSON event stream (what ran), never timing.

use crate::util::{Project, config, copy_dir, pairs, repo_root};

const ALL_HTP: [&str; 7] = ["parse", "optimize", "calibrate", "quantize", "compile", "simulate", "verify"];

#[test]
fn a_second_build_in_a_new_process_is_all_cached() {
    let p = Project::digits();
    let first = p.build();
    first.assert_ok();
    assert_eq!(first.cached().len(), 0, "a cold build reuses nothing: {:?}", first.cached());
    // 7 stages for each quantized target, 5 for the float one.
    assert_eq!(first.built().len(), 7 + 7 + 5);
    let second = p.build();
    second.assert_ok();
    assert_eq!(second.built(), vec![], "stderr: {}", second.stderr);
    assert_eq!(second.cached().len(), 19);
    let finished = second.events.last().unwrap();
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["built"], 0);
}

#[test]
fn stage_keys_do_not_depend_on_where_the_project_lives() {
    // Two copies of one project (with a rules/ directory of its own, as the repository's has)
    // in two temporary directories: every stage of every target has the same action key, so a
    // cache filled in one place (or on another machine) serves the other.
    let keys = |p: &Project| -> Vec<(String, String, String)> {
        copy_dir(&repo_root().join("rules"), &p.path("rules"));
        let build = p.build();
        build.assert_ok();
        build
            .events
            .iter()
            .filter(|e| e["event"] == "stage")
            .map(|e| (e["target"].to_string(), e["stage"].to_string(), e["key"].to_string()))
            .collect()
    };
    let (here, there) = (keys(&Project::digits()), keys(&Project::digits()));
    assert_eq!(here.len(), 19);
    assert_eq!(here, there);
}

#[test]
fn touching_every_input_without_changing_it_rebuilds_nothing() {
    let p = Project::digits();
    p.build().assert_ok();
    for entry in walk(p.dir.path()) {
        if entry.starts_with(p.path("out")) || entry.starts_with(p.path("cache")) {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        std::fs::write(&entry, bytes).unwrap();
    }
    let again = p.build();
    again.assert_ok();
    assert_eq!(again.built(), vec![]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn changing_one_override_rebuilds_quantize_onwards_only_for_its_target() {
    let p = Project::digits();
    p.build().assert_ok();
    let text = p.read("overrides.json");
    let edited = crate::util::edit_one_encoding(&text);
    assert_ne!(text, edited, "the fixture has the value this test edits");
    p.write("overrides.json", &edited);
    let b = p.build();
    b.assert_ok();
    let expected: Vec<(&str, &str)> = ALL_HTP[3..].iter().map(|s| ("htp-w8a8", *s)).collect();
    assert_eq!(b.built(), pairs(&expected));
}

#[test]
fn reindenting_the_overrides_or_commenting_the_config_builds_nothing() {
    let p = Project::digits();
    p.build().assert_ok();
    let value: serde_json::Value = serde_json::from_str(&p.read("overrides.json")).unwrap();
    p.write("overrides.json", &serde_json::to_string(&value).unwrap());
    let toml = p.read("qairt.toml");
    p.write("qairt.toml", &format!("# a comment\n{}\n# another\n", toml.replace("\n[verify]", "\n\n\n[verify]")));
    let b = p.build();
    b.assert_ok();
    assert_eq!(b.built(), vec![]);
}

#[test]
fn changing_one_targets_act_bitwidth_rebuilds_only_that_target() {
    let p = Project::digits();
    p.build().assert_ok();
    let toml = p.read("qairt.toml").replace("act_bitwidth = 16", "act_bitwidth = 8\nact_calibration = \"min-max\"");
    p.write("qairt.toml", &toml);
    let b = p.build();
    b.assert_ok();
    let expected: Vec<(&str, &str)> = ALL_HTP[3..].iter().map(|s| ("htp-w8a16", *s)).collect();
    assert_eq!(b.built(), pairs(&expected));

    // Switching the calibration method reuses the histograms: calibrate stays cached.
    p.write(
        "qairt.toml",
        &p.read("qairt.toml").replace("act_calibration = \"min-max\"", "act_calibration = \"percentile\""),
    );
    let b = p.build();
    b.assert_ok();
    assert_eq!(b.built(), pairs(&expected));
}

#[test]
fn changing_only_a_threshold_rebuilds_only_verify() {
    let p = Project::digits();
    p.build().assert_ok();
    p.write("qairt.toml", &p.read("qairt.toml").replace("min_sqnr_db = 20.0", "min_sqnr_db = 21.0"));
    let b = p.build();
    b.assert_ok();
    assert_eq!(b.built(), pairs(&[("htp-w8a8", "verify"), ("htp-w8a16", "verify"), ("cpu", "verify")]));
}

#[test]
fn deleting_out_builds_nothing_and_restores_it_byte_for_byte() {
    let p = Project::digits();
    p.build().assert_ok();
    let before: Vec<(std::path::PathBuf, Vec<u8>)> =
        walk(&p.path("out")).into_iter().map(|f| (f.clone(), std::fs::read(&f).unwrap())).collect();
    assert!(before.len() > 100, "out/ holds every Result_N file");
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let b = p.build();
    b.assert_ok();
    assert_eq!(b.built(), vec![]);
    for (path, bytes) in before {
        assert_eq!(std::fs::read(&path).unwrap_or_default(), bytes, "{} differs", path.display());
    }
}

#[test]
fn a_corrupt_cache_object_is_a_warning_and_a_rebuild_with_the_right_result() {
    let p = Project::digits();
    p.build().assert_ok();
    let model_bin = std::fs::read(p.path("out/htp-w8a8/model.bin")).unwrap();
    // Damage every object in the store (the empty one, of records that carry only facts,
    // cannot be); keep the action records.
    for object in walk(&p.path("cache/objects")) {
        let mut bytes = std::fs::read(&object).unwrap();
        if let Some(last) = bytes.last_mut() {
            *last ^= 0x55;
            std::fs::write(&object, bytes).unwrap();
        }
    }
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let b = p.build();
    b.assert_ok();
    assert!(b.stderr.contains("damaged cache entry"), "stderr: {}", b.stderr);
    assert!(!b.built().is_empty(), "damaged stages are rebuilt");
    assert_eq!(std::fs::read(p.path("out/htp-w8a8/model.bin")).unwrap(), model_bin);
}

#[test]
fn a_truncated_cache_object_is_warned_about_and_repaired_in_the_same_build() {
    let p = Project::digits_with(&config(5));
    p.build().assert_ok();
    let out = crate::util::tree(&p.path("out"));
    // What a crash or a full disk leaves: objects cut short under their final names. out/ is
    // intact, so a build that trusted its action records would read none of them.
    for object in walk(&p.path("cache/objects")) {
        let size = std::fs::metadata(&object).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&object).unwrap().set_len(size / 2).unwrap();
    }
    let b = p.build();
    b.assert_ok();
    assert!(b.stderr.contains("damaged cache entry"), "stderr: {}", b.stderr);
    assert!(b.stderr.contains("bytes where"), "the warning says what is wrong: {}", b.stderr);
    assert!(!b.built().is_empty(), "the stages whose objects were damaged are rebuilt");
    assert_eq!(crate::util::tree(&p.path("out")), out, "out/ is what it was");
    let verify = p.run(&["cache", "verify"]);
    let report = String::from_utf8_lossy(&verify.stdout).into_owned() + &String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && report.contains(", 0 corrupt"),
        "the cache was repaired in that build: {report}"
    );
    let again = p.build();
    assert_eq!(again.assert_ok().built(), vec![], "and the next build reuses everything");
    assert!(!again.stderr.contains("damaged"), "{}", again.stderr);
}

#[test]
fn two_builds_at_once_both_succeed_and_leave_a_valid_cache() {
    let p = Project::digits();
    let mut a = p.command();
    let mut b = p.command();
    let a = a.args(["build", "--message-format", "json"]).spawn().unwrap();
    let b = b.args(["build", "--message-format", "json"]).spawn().unwrap();
    assert!(a.wait_with_output().unwrap().status.success());
    assert!(b.wait_with_output().unwrap().status.success());
    let verify = p.run(&["cache", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    assert_eq!(p.build().assert_ok().built(), vec![]);
}

#[test]
fn explain_names_the_input_whose_change_invalidates_a_stage() {
    let p = Project::digits();
    p.build().assert_ok();
    let fresh = p.run(&["explain", "--target", "htp-w8a8"]);
    let text = String::from_utf8(fresh.stdout).unwrap();
    assert!(text.contains("quantize") && !text.contains("rebuilds"), "{text}");
    p.write("overrides.json", &crate::util::edit_one_encoding(&p.read("overrides.json")));
    let stale = p.run(&["explain", "--target", "htp-w8a8"]);
    let text = String::from_utf8(stale.stdout).unwrap();
    let quantize = text.lines().find(|l| l.trim_start().starts_with("quantize")).unwrap();
    assert!(quantize.contains("overrides overrides.json changed"), "{text}");
    let verify = text.lines().find(|l| l.trim_start().starts_with("verify")).unwrap();
    assert!(verify.contains("rebuilds"), "{text}");
    assert!(text.lines().find(|l| l.trim_start().starts_with("calibrate")).unwrap().contains("fresh"), "{text}");
}

#[test]
fn explain_names_a_verifier_that_needs_values_as_what_reruns_simulate() {
    let p = Project::digits();
    p.build().assert_ok();
    let toml = p.read("qairt.toml").replace("[verify]\n", "[verify]\nmetrics = [\"sqnr\", \"rtolatol\"]\n");
    assert!(toml.contains("rtolatol"), "{toml}");
    p.write("qairt.toml", &toml);
    let text = String::from_utf8(p.run(&["explain", "--target", "htp-w8a8"]).stdout).unwrap();
    let simulate = text.lines().find(|l| l.trim_start().starts_with("simulate")).unwrap();
    assert!(simulate.contains("[verify] metrics that need values changed"), "{text}");
    assert!(text.lines().find(|l| l.trim_start().starts_with("compile")).unwrap().contains("fresh"), "{text}");
}

#[test]
fn cache_gc_to_zero_bytes_leaves_a_cache_that_rebuilds_correctly() {
    let p = Project::digits();
    p.build().assert_ok();
    let model_bin = std::fs::read(p.path("out/htp-w8a8/model.bin")).unwrap();
    let stats = String::from_utf8(p.run(&["cache", "stats"]).stdout).unwrap();
    assert!(stats.contains("objects: "), "{stats}");
    let gc = p.run(&["cache", "gc", "--max-size", "0"]);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    assert!(walk(&p.path("cache/objects")).is_empty(), "every object was collected");
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let b = p.build();
    b.assert_ok();
    assert_eq!(b.cached(), vec![], "nothing survives a gc to zero bytes");
    assert_eq!(std::fs::read(p.path("out/htp-w8a8/model.bin")).unwrap(), model_bin);
}
