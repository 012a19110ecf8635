//! `qairt watch` driven for real: edits to inputs rebuild only what they touch; a broken
//! input prints its diagnostic and watching goes on.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Project, config};

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
    let mut child = p
        .command()
        .args(["watch", "--message-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(event);
            }
        }
    });
    let (etx, erx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });

    let first = next_build(&rx);
    assert_eq!(first.last().unwrap()["ok"], true, "{first:?}");

    // A real edit of the overrides file: only the target that uses it rebuilds, from quantize.
    let overrides = p.read("overrides.json");
    p.write("overrides.json", &crate::util::edit_one_encoding(&overrides));
    let second = next_build(&rx);
    let expected: Vec<(String, String)> =
        ["quantize", "compile", "simulate", "verify"].iter().map(|s| ("htp-w8a8".to_string(), s.to_string())).collect();
    assert_eq!(built(&second), expected);

    // A broken input: the diagnostic is printed and watching goes on.
    p.write("overrides.json", "{ \"activation_encodings\": ");
    let third = next_build(&rx);
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
    let fourth = next_build(&rx);
    assert_eq!(fourth.last().unwrap()["ok"], true, "{fourth:?}");
    assert!(built(&fourth).is_empty(), "the original overrides were built before: {:?}", built(&fourth));

    let _ = child.kill();
    let _ = child.wait();
}
