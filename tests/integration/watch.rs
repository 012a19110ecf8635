//! `qairt watch` driven for real: edits to inputs rebuild only what they touch; a broken
//! input prints its diagnostic once and watching goes on; a storm of rewrites, deletes and
//! broken files ends in the state a fresh build makes.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Project, config, tree};

/// Collects the events of one build (up to its `finished` line).
fn next_build(rx: &mpsc::Receiver<Value>) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        // A generous guard against a hung watcher, not a performance limit.
        let event = rx.recv_timeout(Duration::from_secs(300)).expect("watch produced no build");
        let done = event["event"] == "finished";
        events.push(event);
        if done {
            return events;
        }
    }
}

fn built(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "stage" && e["status"] == "built")
        .map(|e| (e["target"].as_str().unwrap().to_string(), e["stage"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn watch_rebuilds_what_an_edit_touches_and_survives_a_broken_input() {
    let p = Project::digits_with(&config(10));
    let watch = Watch::start(&p);
    let (rx, erx) = (&watch.events, &watch.stderr);

    let first = next_build(rx);
    assert_eq!(first.last().unwrap()["ok"], true, "{first:?}");

    // A real edit of the overrides file: only the target that uses it rebuilds, from quantize.
    let overrides = p.read("overrides.json");
    p.write("overrides.json", &crate::util::edit_one_encoding(&overrides));
    let second = next_build(rx);
    let expected: Vec<(String, String)> =
        ["quantize", "compile", "simulate", "verify"].iter().map(|s| ("htp-w8a8".to_string(), s.to_string())).collect();
    assert_eq!(built(&second), expected);

    // A broken input: the diagnostic is printed and watching goes on.
    p.write("overrides.json", "{ \"activation_encodings\": ");
    let third = next_build(rx);
    assert_eq!(third.last().unwrap()["ok"], false);
    let mut saw_diagnostic = false;
    while let Ok(line) = erx.recv_timeout(Duration::from_secs(5)) {
        if line.contains("overrides.json") {
            saw_diagnostic = true;
            break;
        }
    }
    assert!(saw_diagnostic, "the broken file's diagnostic is printed");

    // Fixing it builds again; the earlier edited content is already in the cache.
    p.write("overrides.json", &overrides);
    let fourth = next_build(rx);
    assert_eq!(fourth.last().unwrap()["ok"], true, "{fourth:?}");
    assert!(built(&fourth).is_empty(), "the original overrides were built before: {:?}", built(&fourth));
}

/// A running `qairt watch --message-format json` with its events and stderr lines.
struct Watch {
    child: std::process::Child,
    events: mpsc::Receiver<Value>,
    /// Events read ahead of the build being looked at.
    pending: std::collections::VecDeque<Value>,
    stderr: mpsc::Receiver<String>,
}

impl Watch {
    fn start(p: &Project) -> Watch {
        let mut child = p
            .command()
            .args(["watch", "--message-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                let _ = tx.send(event);
            }
        });
        let (etx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        Watch { child, events, pending: Default::default(), stderr }
    }
}

impl Watch {
    /// The events of the next build, and whether it is the newest the watch has finished (no
    /// later event written yet).
    fn next_build(&mut self) -> (Vec<Value>, bool) {
        let mut events = Vec::new();
        loop {
            let event = match self.pending.pop_front() {
                Some(event) => event,
                None => match self.events.recv_timeout(Duration::from_secs(300)) {
                    Ok(event) => event,
                    // Seen once, on a machine running three other jobs: say what the watch
                    // printed, so the next failure says why it stopped building.
                    Err(e) => {
                        let stderr: Vec<String> = self.stderr.try_iter().collect();
                        panic!(
                            "watch produced no build ({e:?}); events of this build so far: {events:?}\nits stderr:\n{}",
                            stderr.join("\n")
                        )
                    }
                },
            };
            let done = event["event"] == "finished";
            events.push(event);
            if done {
                self.pending.extend(self.events.try_iter());
                return (events, self.pending.is_empty());
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_golden_dump_completed_while_watching_rebuilds() {
    // `[verify] golden` reads a whole directory: the last `Result_N/` of a dump arriving while
    // watching is an edit, though no file the last build read has changed.
    let toml = r#"[project]
name = "golden-watch"

[model]
path = "digits/model.onnx"

[[target]]
name = "cpu"
backend = "cpu"

[verify]
input_list = "digits/test/input_list.txt"
max_samples = 3
golden = "goldens"
"#;
    let p = Project::digits_with(toml);
    let dump = crate::util::repo_root().join("tests/data/goldens/digits_ort");
    for n in 0..2 {
        crate::util::copy_dir(&dump.join(format!("Result_{n}")), &p.path(&format!("goldens/Result_{n}")));
    }
    let mut watch = Watch::start(&p);
    let first = next_build(&watch.events);
    assert_eq!(first.last().unwrap()["ok"], false, "{first:?}");
    assert!(first.iter().any(|e| e["code"] == "qairt::golden::layout"), "two of three samples: {first:?}");

    // The dump's files land one by one, as a runtime writes them: a build may start before the
    // last one and fail on the layout again (seen in CI), or read a file while it is being
    // written and fail on the changed digest (seen under load). The watch must then build once
    // more, so the builds go on until one succeeds; one that never does is a watch missing the
    // last files, and `next_build` says so.
    crate::util::copy_dir(&dump.join("Result_2"), &p.path("goldens/Result_2"));
    let mut after_copy = Vec::new();
    let second = loop {
        let (events, _) = watch.next_build();
        let ok = events.last().unwrap()["ok"] == true;
        if !ok {
            let transient = |e: &Value| e["code"] == "qairt::golden::layout" || e["code"] == "qairt::io::changed";
            assert!(events.iter().any(transient), "{events:?}");
        }
        after_copy.extend(built(&events));
        if ok {
            break events;
        }
    };
    assert!(after_copy.contains(&("cpu".to_string(), "verify".to_string())), "{after_copy:?}");
    let verify = second.iter().find(|e| e["event"] == "verify" && e["target"] == "cpu").expect("a verify event");
    let golden = &verify["golden"];
    assert_eq!(golden["matched"], 9, "every tensor of the dump is compared: {golden}");
    assert_eq!(golden["unmatched_files"], serde_json::json!([]), "{golden}");
}

#[test]
fn a_broken_qairt_toml_is_reported_once_and_its_fix_rebuilds() {
    let p = Project::digits_with(&config(3));
    let watch = Watch::start(&p);
    assert_eq!(next_build(&watch.events).last().unwrap()["ok"], true);
    let good = p.read("qairt.toml");
    p.write("qairt.toml", &good.replace("[verify]", "[verify"));
    assert_eq!(next_build(&watch.events).last().unwrap()["ok"], false);
    // Three polls' worth of quiet: a watcher that rebuilt a still-broken file would print here.
    let more = watch.events.recv_timeout(Duration::from_secs(3));
    assert!(more.is_err(), "rebuilt with nothing changed: {more:?}");
    let reported = watch.stderr.try_iter().filter(|line| line.contains("invalid qairt.toml")).count();
    assert_eq!(reported, 1);
    p.write("qairt.toml", &good);
    let fixed = next_build(&watch.events);
    assert_eq!(fixed.last().unwrap()["ok"], true, "{fixed:?}");
}

#[test]
fn a_storm_of_rewrites_deletes_and_broken_files_ends_as_a_fresh_build() {
    let p = Project::digits_with(&config(3));
    let mut watch = Watch::start(&p);
    assert_eq!(next_build(&watch.events).last().unwrap()["ok"], true);
    let overrides = p.read("overrides.json");
    let edited = crate::util::edit_one_encoding(&overrides);
    let toml = p.read("qairt.toml");
    let labels = p.read("digits/test/labels.txt");
    for i in 0..200 {
        match i % 10 {
            0 => p.write("overrides.json", &edited),
            1 => p.write("overrides.json", "{ \"activation_encodings\": "),
            2 => std::fs::remove_file(p.path("overrides.json")).unwrap(),
            // An editor's atomic save: a new file renamed over the old name.
            3 => {
                p.write("overrides.json.swp", &overrides);
                std::fs::rename(p.path("overrides.json.swp"), p.path("overrides.json")).unwrap();
            }
            4 => p.write("qairt.toml", &toml.replace("[verify]", "[verify")),
            5 => p.write("qairt.toml", &toml.replace("min_sqnr_db = 20.0", "min_sqnr_db = 21.0")),
            6 => p.write("qairt.toml", &toml),
            // A checkout that replaces a whole directory.
            7 => std::fs::remove_file(p.path("digits/test/labels.txt")).unwrap(),
            8 => p.write("digits/test/labels.txt", "not labels"),
            _ => p.write("digits/test/labels.txt", &labels),
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    // The final state, with bytes no build has seen (a trailing newline more), each file
    // renamed into place whole: a build that reads it half-written would fail and be followed
    // by another, which is right, but would make "nothing more is built" below untestable.
    let last = format!("{edited}\n");
    for (rel, text) in [("overrides.json", last.as_str()), ("qairt.toml", &toml), ("digits/test/labels.txt", &labels)] {
        p.write("whole.tmp", text);
        std::fs::rename(p.path("whole.tmp"), p.path(rel)).unwrap();
    }

    // A fresh build of the final state elsewhere; out/ does not depend on where a project is.
    let fresh = Project::digits_with(&config(3));
    fresh.write("overrides.json", &last);
    fresh.build().assert_ok();
    let expected = tree(&fresh.path("out"));
    // Builds that read a mix of old and new files (a build reads qairt.toml first and the
    // overrides last) are followed by another; the watch must end with out/ as the fresh one.
    // Events are read behind the watch: only the newest build says what out/ holds now.
    let mut builds = 1;
    loop {
        let (events, newest) = watch.next_build();
        builds += 1;
        if newest && events.last().unwrap()["ok"] == true && tree(&p.path("out")) == expected {
            break;
        }
    }
    assert!(builds <= 202, "{builds} builds for 200 writes");
    // Settled: nothing more is built.
    let more = watch.events.recv_timeout(Duration::from_secs(2));
    assert!(more.is_err(), "built again with nothing changed: {more:?}");
}
