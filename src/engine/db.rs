//! The salsa database, its inputs, and the services stages use: the store, the event log
//! and the in-process hand-off of freshly built values.
//!
//! **Invariant:** this is the only place that defines salsa inputs; only `workspace.rs` sets
//! them, and only after comparing digests (a salsa setter always starts a new revision).

use std::any::Any;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::diag::Diag;
use crate::project::Thresholds;
use crate::quant::settings::QuantSettings;

use super::store::{Digest, Store};

/// One file the build reads, identified by path and content digest. Bytes are read on
/// demand by the stage that needs them and checked against `digest`.
#[salsa::input(debug)]
pub struct SourceFile {
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(copy)]
    pub digest: Digest,
}

/// One inference of an input list: the raw files feeding the model inputs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SampleFiles {
    pub line: usize,
    pub entries: Vec<SampleEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SampleEntry {
    pub name: Option<String>,
    pub file: SourceFile,
    /// Byte span of the entry in its input list.
    pub span: (usize, usize),
}

/// A parsed input list with every raw file it names.
#[salsa::input(debug)]
pub struct DataList {
    #[returns(copy)]
    pub list: SourceFile,
    #[returns(ref)]
    pub samples: Vec<SampleFiles>,
}

#[salsa::input(debug)]
pub struct ModelInput {
    #[returns(copy)]
    pub file: SourceFile,
    /// External-data files (location as written in the model, file).
    #[returns(ref)]
    pub externals: Vec<(String, SourceFile)>,
    /// `[model] define_symbols` and `input_dims`.
    #[returns(ref)]
    pub shapes: crate::onnx::InputShapes,
}

/// Backend rule files: the standard set shipped in the binary plus the project's `rules/`.
#[salsa::input(debug)]
pub struct RulesInput {
    #[returns(ref)]
    pub files: Vec<(String, Arc<str>)>,
}

#[salsa::input(debug)]
pub struct TargetInput {
    #[returns(ref)]
    pub name: String,
    #[returns(ref)]
    pub backend: String,
    #[returns(ref)]
    pub settings: QuantSettings,
    #[returns(copy)]
    pub overrides: Option<SourceFile>,
}

/// `[verify] golden`: another tool's dump to compare against, every file under it by path
/// relative to the directory ('/'-separated), and `[verify] tensor_mapping`.
#[salsa::input(debug)]
pub struct GoldenInput {
    #[returns(ref)]
    pub dir: PathBuf,
    #[returns(ref)]
    pub files: Vec<(String, SourceFile)>,
    #[returns(copy)]
    pub mapping: Option<SourceFile>,
}

/// Project-wide inputs shared by every target.
#[salsa::input(debug)]
pub struct ProjectInput {
    #[returns(copy)]
    pub model: ModelInput,
    #[returns(copy)]
    pub calibration: Option<DataList>,
    #[returns(copy)]
    pub calibration_max: Option<usize>,
    #[returns(copy)]
    pub verify: DataList,
    #[returns(copy)]
    pub verify_max: Option<usize>,
    #[returns(copy)]
    pub labels: Option<SourceFile>,
    #[returns(ref)]
    pub thresholds: Thresholds,
    /// `[verify] mode` and `metrics`.
    #[returns(ref)]
    pub debug: crate::verify::DebugSettings,
    #[returns(copy)]
    pub golden: Option<GoldenInput>,
    #[returns(copy)]
    pub rules: RulesInput,
    /// `[project] checkpoint_budget_mb`, in bytes.
    #[returns(copy)]
    pub checkpoint_budget: u64,
    /// `[io]`: the form of the input files every run reads and of the output files written.
    #[returns(ref)]
    pub io: crate::project::io::IoConfig,
}

/// A stage could not produce its value; the diagnostics say why. Never cached on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed(pub Vec<Diag>);

/// The codes of failures that come from the machine rather than from what the inputs say: a
/// file that changed or vanished while the build read it, a cache that could not be written.
const ENVIRONMENTAL: [&str; 3] = ["qairt::io::read", "qairt::io::changed", "qairt::cache::io"];

impl Failed {
    /// Whether the same inputs may well succeed on another try.
    pub fn is_environmental(&self) -> bool {
        self.0.iter().any(|d| ENVIRONMENTAL.contains(&d.code))
    }
}

/// Returns `failed`, first telling salsa not to reuse the running query's result if the
/// failure is environmental. Salsa memoizes errors like any value, keyed on the inputs'
/// digests; `qairt watch` keeps one database, so a read that failed because a file changed
/// mid-build would otherwise be replayed when the file is back to the content the build was
/// keyed on, and the watch would wait for an edit with a failed build on screen. The
/// workspace starts a new revision before the build after such a failure, which re-runs
/// exactly these queries.
pub fn volatile(db: &dyn Db, failed: Failed) -> Failed {
    if failed.is_environmental() {
        db.report_untracked_read();
    }
    failed
}

impl From<Diag> for Failed {
    fn from(diag: Diag) -> Failed {
        Failed(vec![diag])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Parse,
    Optimize,
    Calibrate,
    Quantize,
    Compile,
    Simulate,
    Verify,
    /// The float reference run over the verify inputs; shown to users as part of `simulate`.
    Reference,
}

impl Stage {
    pub const VISIBLE: [Stage; 7] = [
        Stage::Parse,
        Stage::Optimize,
        Stage::Calibrate,
        Stage::Quantize,
        Stage::Compile,
        Stage::Simulate,
        Stage::Verify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Parse => "parse",
            Stage::Optimize => "optimize",
            Stage::Calibrate => "calibrate",
            Stage::Quantize => "quantize",
            Stage::Compile => "compile",
            Stage::Simulate => "simulate",
            Stage::Verify => "verify",
            Stage::Reference => "reference",
        }
    }

    pub fn parse(name: &str) -> Option<Stage> {
        Stage::VISIBLE.into_iter().find(|s| s.name() == name)
    }
}

/// A stage's work actually ran in this process.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltEvent {
    pub stage: Stage,
    /// `None` for stages shared by every target.
    pub target: Option<String>,
    pub key: Digest,
    pub ms: f64,
}

/// Receives progress of long stages (calibrate, simulate); the CLI draws bars with it.
pub trait Progress: Send + Sync {
    fn start(&self, label: &str, total: u64);
    fn advance(&self);
    fn finish(&self);
}

/// Reports nothing (no terminal, or a run whose progress is counted another way).
pub(super) struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self) {}
    fn finish(&self) {}
}

/// Services shared by every clone of the database.
pub struct Services {
    pub store: Store,
    pub built: Mutex<Vec<BuiltEvent>>,
    pub warnings: Mutex<Vec<Diag>>,
    /// Values built in this process, by object digest, so a consumer does not deserialize
    /// what was just serialized.
    pub fresh: Mutex<HashMap<Digest, Arc<dyn Any + Send + Sync>>>,
    pub progress: Box<dyn Progress>,
    /// Set by `explain`: a cache miss reports the stage as stale instead of building it.
    pub dry_run: std::sync::atomic::AtomicBool,
}

#[salsa::db]
#[derive(Clone)]
pub struct Database {
    storage: salsa::Storage<Self>,
    services: Arc<Services>,
}

#[salsa::db]
impl salsa::Database for Database {}

impl Database {
    pub fn new(store: Store, progress: Option<Box<dyn Progress>>) -> Database {
        Database::with_storage(store, progress, salsa::Storage::default())
    }

    /// A database that records the query each salsa execution runs (`name(input)`, in the
    /// order they start) into `log`: for tests that assert what an edit re-ran.
    #[cfg(test)]
    pub fn logged(store: Store, log: Arc<Mutex<Vec<String>>>) -> Database {
        let storage = salsa::Storage::new(Some(Box::new(move |event: salsa::Event| {
            if let salsa::EventKind::WillExecute { database_key } = event.kind {
                lock(&log).push(format!("{database_key:?}"));
            }
        })));
        Database::with_storage(store, None, storage)
    }

    fn with_storage(store: Store, progress: Option<Box<dyn Progress>>, storage: salsa::Storage<Self>) -> Database {
        let services = Services {
            store,
            built: Mutex::new(Vec::new()),
            warnings: Mutex::new(Vec::new()),
            fresh: Mutex::new(HashMap::new()),
            progress: progress.unwrap_or_else(|| Box::new(NoProgress)),
            dry_run: std::sync::atomic::AtomicBool::new(false),
        };
        Database { storage, services: Arc::new(services) }
    }

    /// Takes the events and warnings recorded since the last call.
    pub fn drain_log(&self) -> (Vec<BuiltEvent>, Vec<Diag>) {
        let built = std::mem::take(&mut *lock(&self.services.built));
        let mut warnings = std::mem::take(&mut *lock(&self.services.warnings));
        if let Some(remote) = self.services.store.remote() {
            warnings.extend(remote.take_warnings());
        }
        (built, warnings)
    }

    /// Drops the values handed over within a build (salsa keeps what is still needed).
    pub fn forget_fresh_values(&self) {
        lock(&self.services.fresh).clear();
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the data here are
/// logs, valid at every step).
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The database as stages see it.
#[salsa::db]
pub trait Db: salsa::Database {
    fn services(&self) -> &Services;
}

#[salsa::db]
impl Db for Database {
    fn services(&self) -> &Services {
        &self.services
    }
}
