//! The shared remote cache against real servers on loopback (Redis, nginx with WebDAV, an
//! S3 server), started by scripts/remote-servers.sh (installed by scripts/setup-servers.sh;
//! without them these tests fail in CI and are skipped elsewhere). Each test builds the
//! repository's root project in one checkout and then in others, in other directories with
//! empty local caches, and compares what ran (the JSON events) and `out/` byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::util::{Build, copy_dir, repo_root, tool_or_skip, tree};

/// A set of servers of this test's own, stopped when dropped.
struct Servers {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

impl Servers {
    fn start() -> Option<Servers> {
        let dir = tempfile::tempdir().unwrap();
        let status = script(&["start", &dir.path().display().to_string()]);
        if status == Some(3) {
            tool_or_skip(false, "Redis, nginx with WebDAV or s3rver", "run scripts/setup-servers.sh");
            return None;
        }
        assert_eq!(status, Some(0), "scripts/remote-servers.sh start failed");
        let text = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let env = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Some(Servers { dir, env })
    }

    fn var(&self, name: &str) -> &str {
        &self.env[name]
    }

    /// A URL of an area of the server named `backend` (Redis: the whole server, of which
    /// each test has its own).
    fn url(&self, backend: &str, area: &str) -> String {
        match backend {
            "redis" => self.var("REDIS_URL").to_string(),
            "webdav" => format!("webdav+{}/cache/{area}", self.var("WEBDAV_ENDPOINT")),
            "s3" => format!("s3://{}/{area}?endpoint={}", self.var("S3_BUCKET"), self.var("S3_ENDPOINT")),
            other => panic!("no back end {other}"),
        }
    }

    /// What every qairt run against these servers gets: the S3 server's test keys.
    fn credentials(&self) -> Vec<(String, String)> {
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
            .iter()
            .map(|k| (k.to_string(), self.var(k).to_string()))
            .collect()
    }

    fn webdav_files(&self, area: &str) -> PathBuf {
        self.dir.path().join("webdav-root").join(area)
    }

    fn stop_one(&self, name: &str) {
        assert_eq!(script(&["stop-one", &self.dir.path().display().to_string(), name]), Some(0));
    }

    fn start_one(&self, name: &str) {
        assert_eq!(script(&["start-one", &self.dir.path().display().to_string(), name]), Some(0));
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        script(&["stop", &self.dir.path().display().to_string()]);
    }
}

fn script(args: &[&str]) -> Option<i32> {
    let status = Command::new("bash").arg(repo_root().join("scripts/remote-servers.sh")).args(args).status().unwrap();
    status.code()
}

/// A checkout of the repository's root project (qairt.toml and examples/digits) at `dir`.
fn checkout(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(repo_root().join("qairt.toml"), dir.join("qairt.toml")).unwrap();
    copy_dir(&repo_root().join("examples/digits"), &dir.join("examples/digits"));
}

/// `qairt ARGS --message-format json`-style run in `dir` with `env` added (and no remote
/// cache setting inherited from the machine running the tests).
fn qairt(dir: &Path, args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qairt"));
    command.current_dir(dir).args(args);
    for var in ["QAIRT_REMOTE_CACHE", "QAIRT_REMOTE_CACHE_MODE", "QAIRT_REMOTE_CACHE_TIMEOUT"] {
        command.env_remove(var);
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command.output().unwrap()
}

fn build(dir: &Path, env: &[(String, String)]) -> Build {
    Build::from(qairt(dir, &["build", "--message-format", "json"], env))
}

fn remote_env(servers: &Servers, url: &str) -> Vec<(String, String)> {
    let mut env = servers.credentials();
    env.push(("QAIRT_REMOTE_CACHE".into(), url.into()));
    env
}

fn finished(build: &Build) -> &Value {
    build.events.iter().find(|e| e["event"] == "finished").expect("a finished event")
}

fn stage_sources(build: &Build) -> Vec<String> {
    build
        .events
        .iter()
        .filter(|e| e["event"] == "stage")
        .map(|e| format!("{} {} {} {}", e["target"], e["stage"], e["status"], e["from"]))
        .collect()
}

fn warnings<'a>(build: &'a Build, code: &str) -> Vec<&'a Value> {
    build.events.iter().filter(|e| e["severity"] == "warning" && e["code"] == code).collect()
}

/// `out/` of `dir`, asserting it equals `expected` file by file.
fn assert_same_out(expected: &BTreeMap<String, Vec<u8>>, dir: &Path) {
    let got = tree(&dir.join("out"));
    assert_eq!(expected.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (path, bytes) in expected {
        assert!(bytes == &got[path], "{path} differs from the first checkout's");
    }
}

/// The root project built once into `area` of `backend`; returns the checkouts' parent, the
/// first checkout's `out/` and its build.
fn first_build(servers: &Servers, url: &str) -> (tempfile::TempDir, BTreeMap<String, Vec<u8>>, Build) {
    let machines = tempfile::tempdir().unwrap();
    let first = machines.path().join("runner-1/checkout");
    checkout(&first);
    let cold = build(&first, &remote_env(servers, url));
    cold.assert_ok();
    assert!(cold.cached().is_empty(), "an empty remote has nothing: {:?}", cold.cached());
    let remote = &finished(&cold)["remote"];
    assert_eq!(remote["errors"], 0, "{remote}\n{}", cold.stderr);
    assert!(remote["objects_up"].as_u64().unwrap() > 10 && remote["records_up"].as_u64().unwrap() > 10, "{remote}");
    let out = tree(&first.join("out"));
    (machines, out, cold)
}

#[test]
fn a_checkout_elsewhere_with_an_empty_cache_reuses_every_stage_from_each_back_end() {
    let Some(servers) = Servers::start() else { return };
    for backend in ["redis", "webdav", "s3"] {
        let url = servers.url(backend, &format!("every-stage-{backend}"));
        let (machines, out, cold) = first_build(&servers, &url);
        // Another runner: another directory, nothing in its local cache.
        let second = machines.path().join("runner-2/somewhere/else/checkout");
        checkout(&second);
        // `explain` already knows: every stage is fresh, from the remote.
        let explain = qairt(&second, &["explain", "--message-format", "json"], &remote_env(&servers, &url));
        let verdicts: Vec<Value> = String::from_utf8(explain.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["event"] == "explain")
            .collect();
        assert_eq!(verdicts.len(), cold.built().len());
        assert!(verdicts.iter().all(|v| v["status"] == "fresh" && v["from"] == "remote"), "{backend}: {verdicts:?}");
        let warm = build(&second, &remote_env(&servers, &url));
        warm.assert_ok();
        assert!(warm.built().is_empty(), "{backend}: rebuilt {:?}", warm.built());
        let stages = stage_sources(&warm);
        assert_eq!(stages.len(), cold.built().len());
        assert!(stages.iter().all(|s| s.ends_with("\"cached\" \"remote\"")), "{backend}: {stages:?}");
        let remote = &finished(&warm)["remote"];
        // The records came down with `explain`; the objects with the build.
        assert!(remote["objects_down"].as_u64().unwrap() > 0, "{backend}: {remote}");
        assert_eq!((remote["damaged"].as_u64(), remote["errors"].as_u64()), (Some(0), Some(0)), "{remote}");
        assert_same_out(&out, &second);
        // Its next build downloads nothing. What out/ was made from came down and is local now;
        // intermediates no one read (parse's graph, say) are still only on the remote.
        let again = build(&second, &remote_env(&servers, &url));
        assert!(again.built().is_empty());
        let sources = stage_sources(&again);
        for stage in ["compile", "simulate"] {
            let local = format!("\"{stage}\" \"cached\" \"local\"");
            assert!(sources.iter().any(|s| s.contains(&local)), "{backend}: {sources:?}");
        }
        assert_eq!(finished(&again)["remote"]["bytes_down"], 0);
        // `cache stats` adds the builds up.
        let stats = qairt(&second, &["cache", "stats", "--message-format", "json"], &remote_env(&servers, &url));
        let stats: Value = String::from_utf8(stats.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|e| e["event"] == "cache_stats")
            .unwrap();
        assert_eq!(stats["remote"]["bytes_down"], remote["bytes_down"], "{stats}");
        assert_eq!(
            (stats["remote"]["url"].as_str(), stats["remote"]["mode"].as_str()),
            (Some(url.as_str()), Some("read-write"))
        );
    }
}

#[test]
fn the_remote_named_in_qairt_toml_is_used_with_credentials_from_the_environment() {
    let Some(servers) = Servers::start() else { return };
    let url = servers.url("s3", "from-the-file");
    let machines = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for runner in ["a", "b"] {
        let dir = machines.path().join(runner);
        checkout(&dir);
        let toml = std::fs::read_to_string(dir.join("qairt.toml")).unwrap();
        std::fs::write(dir.join("qairt.toml"), format!("{toml}\n[cache]\nremote = \"{url}\"\n")).unwrap();
        let b = build(&dir, &servers.credentials());
        b.assert_ok();
        outs.push((tree(&dir.join("out")), b));
    }
    assert!(outs[1].1.built().is_empty(), "{:?}", outs[1].1.built());
    assert!(stage_sources(&outs[1].1).iter().all(|s| s.ends_with("\"remote\"")));
    assert_eq!(outs[0].0, outs[1].0);
    // QAIRT_REMOTE_CACHE=off turns the file's remote off.
    let third = machines.path().join("c");
    checkout(&third);
    let toml = std::fs::read_to_string(third.join("qairt.toml")).unwrap();
    std::fs::write(third.join("qairt.toml"), format!("{toml}\n[cache]\nremote = \"{url}\"\n")).unwrap();
    let off = build(&third, &[("QAIRT_REMOTE_CACHE".into(), "off".into())]);
    off.assert_ok();
    assert!(off.cached().is_empty() && finished(&off)["remote"].is_null());
}

#[test]
fn damaged_remote_entries_are_warnings_and_rebuilds_and_are_replaced() {
    let Some(servers) = Servers::start() else { return };
    let area = "damaged";
    let url = servers.url("webdav", area);
    let (machines, out, _) = first_build(&servers, &url);
    // Every object on the server altered by one byte, and every action record cut short.
    let files = servers.webdav_files(area);
    let mut objects = 0;
    for entry in std::fs::read_dir(files.join("v1/cas")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(last) = bytes.last_mut() {
            *last ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            objects += 1;
        }
    }
    assert!(objects > 10);
    let records: Vec<PathBuf> = std::fs::read_dir(files.join("v1/ac")).unwrap().map(|e| e.unwrap().path()).collect();
    let (cut, kept) = records.split_at(records.len() / 2);
    for path in cut {
        let bytes = std::fs::read(path).unwrap();
        std::fs::write(path, &bytes[..bytes.len() - 1]).unwrap();
    }
    assert!(!kept.is_empty());

    let second = machines.path().join("runner-2/checkout");
    checkout(&second);
    let b = build(&second, &remote_env(&servers, &url));
    b.assert_ok();
    assert!(!warnings(&b, "qairt::cache::remote_corrupt").is_empty(), "{}", b.stderr);
    assert!(!b.built().is_empty(), "damaged entries are rebuilt");
    let remote = &finished(&b)["remote"];
    assert!(remote["damaged"].as_u64().unwrap() > 0 && remote["errors"] == 0, "{remote}");
    assert_same_out(&out, &second);

    // Each runner replaces what it found damaged. An object is found damaged only when it is
    // downloaded (an upload finds it there and leaves it), so a runner that needs an object
    // the one before did not fetch finds and replaces it; the output is right every time, and
    // once every needed object was fetched once, a runner reuses everything.
    for runner in ["runner-3", "runner-4"] {
        let next = machines.path().join(runner).join("checkout");
        checkout(&next);
        let c = build(&next, &remote_env(&servers, &url));
        c.assert_ok();
        assert_same_out(&out, &next);
        if runner == "runner-4" {
            assert!(c.built().is_empty(), "{:?}\n{}", c.built(), c.stderr);
            assert!(warnings(&c, "qairt::cache::remote_corrupt").is_empty(), "{}", c.stderr);
        }
    }
}

#[test]
fn a_stopped_server_costs_one_warning_and_a_local_build() {
    let Some(servers) = Servers::start() else { return };
    let url = servers.url("redis", "stopped");
    let (machines, out, cold) = first_build(&servers, &url);
    servers.stop_one("redis");
    let second = machines.path().join("runner-2/checkout");
    checkout(&second);
    let b = build(&second, &remote_env(&servers, &url));
    b.assert_ok();
    assert_eq!(warnings(&b, "qairt::cache::remote_unavailable").len(), 1, "{}", b.stderr);
    assert_eq!(b.built().len(), cold.built().len());
    assert_same_out(&out, &second);
    // Back up (with its data): the next runner reuses everything again.
    servers.start_one("redis");
    let third = machines.path().join("runner-3/checkout");
    checkout(&third);
    let c = build(&third, &remote_env(&servers, &url));
    c.assert_ok();
    assert!(c.built().is_empty(), "{:?}", c.built());
    assert_same_out(&out, &third);
}

/// A TCP proxy to `target` that holds every chunk `delay` before passing it on.
fn delaying_proxy(target: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let (Ok(client), Ok(server)) = (client, TcpStream::connect(target)) else { continue };
            let (client_in, server_in) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            pump(client_in, server, delay);
            pump(server_in, client, delay);
        }
    });
    address
}

fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    std::thread::spawn(move || {
        let mut buffer = vec![0; 1 << 16];
        while let Ok(n @ 1..) = from.read(&mut buffer) {
            std::thread::sleep(delay);
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

#[test]
fn a_slow_server_is_used_within_the_timeout_and_dropped_beyond_it() {
    let Some(servers) = Servers::start() else { return };
    let url = servers.url("redis", "slow");
    let (machines, out, _) = first_build(&servers, &url);
    let redis: SocketAddr = servers.var("REDIS_URL").trim_start_matches("redis://").parse().unwrap();
    for (runner, delay, timeout, reused) in [("slow", 20, "10", true), ("too-slow", 1500, "0.3", false)] {
        let proxy = delaying_proxy(redis, Duration::from_millis(delay));
        let dir = machines.path().join(runner);
        checkout(&dir);
        let mut env = remote_env(&servers, &format!("redis://{proxy}"));
        env.push(("QAIRT_REMOTE_CACHE_TIMEOUT".into(), timeout.into()));
        let b = build(&dir, &env);
        b.assert_ok();
        let unavailable = warnings(&b, "qairt::cache::remote_unavailable");
        if reused {
            assert!(b.built().is_empty() && unavailable.is_empty(), "{:?}\n{}", b.built(), b.stderr);
        } else {
            assert_eq!(unavailable.len(), 1, "{}", b.stderr);
            assert!(unavailable[0]["message"].as_str().unwrap().contains("no answer within"), "{}", unavailable[0]);
            assert!(b.cached().is_empty(), "{:?}", b.cached());
        }
        assert_same_out(&out, &dir);
    }
}

#[test]
fn a_read_only_runner_reads_and_never_writes() {
    let Some(servers) = Servers::start() else { return };
    let url = servers.url("webdav", "read-only");
    let machines = tempfile::tempdir().unwrap();
    let untrusted = machines.path().join("untrusted");
    checkout(&untrusted);
    let mut env = remote_env(&servers, &url);
    env.push(("QAIRT_REMOTE_CACHE_MODE".into(), "read".into()));
    let b = build(&untrusted, &env);
    b.assert_ok();
    assert_eq!(finished(&b)["remote"]["bytes_up"], 0);
    assert!(!servers.webdav_files("read-only").exists(), "nothing was written to the server");
    let push = qairt(&untrusted, &["cache", "push"], &env);
    assert_eq!(push.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&push.stderr).contains("read-only"));
    // A trusted runner fills the remote; the read-only one then reads from it.
    let (_, out, _) = first_build(&servers, &url);
    let reader = machines.path().join("reader");
    checkout(&reader);
    let r = build(&reader, &env);
    r.assert_ok();
    assert!(r.built().is_empty(), "{:?}", r.built());
    assert_same_out(&out, &reader);
}

#[test]
fn push_and_pull_move_a_whole_build_for_an_offline_runner() {
    let Some(servers) = Servers::start() else { return };
    let url = servers.url("s3", "push-pull");
    let machines = tempfile::tempdir().unwrap();
    // Built before any remote was set up: nothing shared.
    let first = machines.path().join("first");
    checkout(&first);
    build(&first, &[]).assert_ok();
    let push = qairt(&first, &["cache", "push"], &remote_env(&servers, &url));
    assert_eq!(push.status.code(), Some(0), "{}", String::from_utf8_lossy(&push.stderr));
    let said = String::from_utf8_lossy(&push.stdout).to_string();
    assert!(said.starts_with("pushed s3://"), "{said}");
    // A runner pulls everything it will need, then builds with the network gone.
    let offline = machines.path().join("offline");
    checkout(&offline);
    let pull = qairt(&offline, &["cache", "pull"], &remote_env(&servers, &url));
    assert_eq!(pull.status.code(), Some(0), "{}", String::from_utf8_lossy(&pull.stderr));
    let said = String::from_utf8_lossy(&pull.stdout).to_string();
    assert!(said.starts_with("pulled s3://") && !said.contains("has no result"), "{said}");
    let b = build(&offline, &[("QAIRT_REMOTE_CACHE".into(), "off".into())]);
    b.assert_ok();
    assert!(b.built().is_empty(), "{:?}", b.built());
    assert_same_out(&tree(&first.join("out")), &offline);
    // Pulling from an empty area names the stages the remote lacks.
    let fresh = machines.path().join("fresh");
    checkout(&fresh);
    let empty = qairt(&fresh, &["cache", "pull"], &remote_env(&servers, &servers.url("s3", "nothing-here")));
    assert!(String::from_utf8_lossy(&empty.stdout).contains("has no result for `parse`"));
}

#[test]
fn runners_building_side_by_side_share_one_remote_safely() {
    let Some(servers) = Servers::start() else { return };
    let url = servers.url("webdav", "side-by-side");
    let machines = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..3).map(|i| machines.path().join(format!("runner-{i}"))).collect();
    let env = remote_env(&servers, &url);
    let outs: Vec<BTreeMap<String, Vec<u8>>> = std::thread::scope(|scope| {
        let runs: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let env = env.clone();
                scope.spawn(move || {
                    checkout(dir);
                    build(dir, &env).assert_ok();
                    tree(&dir.join("out"))
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(outs.iter().all(|o| *o == outs[0]));
    let last = machines.path().join("runner-late");
    checkout(&last);
    let b = build(&last, &env);
    b.assert_ok();
    assert!(b.built().is_empty(), "{:?}\n{}", b.built(), b.stderr);
    assert!(warnings(&b, "qairt::cache::remote_corrupt").is_empty());
    assert_same_out(&outs[0], &last);
}
