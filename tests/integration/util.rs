//! Test helpers: a temporary copy of the digits project, the real `qairt` binary run on it,
//! and its JSON event stream parsed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default project used by tests: the digits example with the verify set cut to
/// `max_samples` so that every test builds in a few seconds.
pub fn config(max_samples: usize) -> String {
    format!(
        r#"[project]
name = "digits-test"

[model]
path = "digits/model.onnx"

[calibration]
input_list = "digits/calib/input_list.txt"

[quantization]
act_bitwidth = 8
per_channel = true

[[target]]
name = "htp-w8a8"
backend = "htp"
overrides = "overrides.json"

[[target]]
name = "htp-w8a16"
backend = "htp"
act_bitwidth = 16

[[target]]
name = "cpu"
backend = "cpu"

[verify]
input_list = "digits/test/input_list.txt"
labels = "digits/test/labels.txt"
max_samples = {max_samples}

[verify.thresholds]
min_sqnr_db = 20.0
"#
    )
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl Project {
    /// An empty project directory (the test writes its qairt.toml).
    pub fn empty() -> Project {
        Project { dir: tempfile::tempdir().unwrap() }
    }

    /// A fresh project directory holding a copy of examples/digits (model, calibration and
    /// test data, overrides) and `config(40)` as its qairt.toml.
    pub fn digits() -> Project {
        Project::digits_with(&config(40))
    }

    pub fn digits_with(toml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let example = repo_root().join("examples/digits");
        let digits = dir.path().join("digits");
        std::fs::create_dir_all(&digits).unwrap();
        std::fs::copy(example.join("model.onnx"), digits.join("model.onnx")).unwrap();
        copy_dir(&example.join("calib"), &digits.join("calib"));
        copy_dir(&example.join("test"), &digits.join("test"));
        std::fs::copy(example.join("overrides.json"), dir.path().join("overrides.json")).unwrap();
        let project = Project { dir };
        project.write("qairt.toml", toml);
        project
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qairt"));
        cmd.current_dir(self.dir.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// `qairt build --message-format json`, parsed.
    pub fn build(&self) -> Build {
        Build::from(self.run(&["build", "--message-format", "json"]))
    }
}

pub struct Build {
    pub status: i32,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl From<Output> for Build {
    fn from(output: Output) -> Build {
        let stdout = String::from_utf8(output.stdout).unwrap();
        let events = stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}")))
            .collect();
        Build { status: output.status.code().unwrap_or(-1), events, stderr: String::from_utf8(output.stderr).unwrap() }
    }
}

impl Build {
    /// (target, stage) of every stage event with the given status, in order.
    pub fn with_status(&self, status: &str) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter(|e| e["event"] == "stage" && e["status"] == status)
            .map(|e| (e["target"].as_str().unwrap().to_string(), e["stage"].as_str().unwrap().to_string()))
            .collect()
    }

    pub fn built(&self) -> Vec<(String, String)> {
        self.with_status("built")
    }

    pub fn cached(&self) -> Vec<(String, String)> {
        self.with_status("cached")
    }

    pub fn verify(&self, target: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["event"] == "verify" && e["target"] == target)
            .unwrap_or_else(|| panic!("no verify event for {target}: {:?}\n{}", self.events, self.stderr))
    }

    pub fn assert_ok(&self) -> &Build {
        assert_eq!(self.status, 0, "build failed:\nstderr:\n{}\nevents: {:?}", self.stderr, self.events);
        self
    }
}

/// Pairs `(target, stage)` for readable assertions.
pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(t, s)| (t.to_string(), s.to_string())).collect()
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Changes the encoding of `/relu1/Relu_output_0` in the example overrides file: a new scale
/// (6e-5 instead of 5.77e-5) with the max that goes with it on the 16-bit grid.
pub fn edit_one_encoding(overrides: &str) -> String {
    let edited = overrides.replacen("\"max\": 3.7817842960357666", "\"max\": 3.9321", 1).replacen(
        "\"scale\": 5.770632938179242e-05",
        "\"scale\": 6.0e-05",
        1,
    );
    assert_eq!(edited.matches("3.9321").count() + edited.matches("6.0e-05").count(), 2, "fixture changed");
    edited
}

/// Every file under `dir` (relative path -> bytes).
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = std::collections::BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

/// What a test does when a tool it needs (Chromium, the test venv's Python) is missing: in CI
/// (`CI` set, as CI sets it; .ci/run installs every tool first) that is a failure, on a
/// developer's machine the test is skipped with a line saying how to get the tool. Tests never
/// install anything themselves. Returns whether the test can go on.
pub fn tool_or_skip(available: bool, tool: &str, how_to_get_it: &str) -> bool {
    if available {
        return true;
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "{tool} is missing in CI: {how_to_get_it}");
    // Straight to the process's stderr: libtest would swallow eprintln! of a passing test, and
    // a skip nobody sees is a test nobody knows is not running.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: {tool} is missing ({how_to_get_it})");
    false
}
