//! The driver: reads `qairt.toml` and every input file, keeps the salsa inputs in step with
//! the disk (the only writer of inputs), runs the stages of each target and materializes
//! `out/`.
//!
//! **Invariant:** an input is set only when its content digest changed; identical bytes
//! (a touched file, a re-saved editor buffer) never start a new revision.
//!
//! Besides the targets of `qairt.toml`, a workspace can hold *generated* targets (the
//! configurations of `qairt sweep`): an in-memory overlay applied on every [`Workspace::load`].
//! They go through the same stages and share every cached value, but are never materialized
//! under `out/` (see [`Workspace::set_generated_targets`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use salsa::Setter;

use crate::compile::BackendRules;
use crate::diag::Diag;
use crate::project::{ProjectConfig, TargetConfig, parse_config, parse_input_list};

use super::db::{
    BuiltEvent, DataList, Database, Db, Failed, GoldenInput, ModelInput, Progress, ProjectInput, RulesInput,
    SampleEntry, SampleFiles, SourceFile, Stage, TargetInput,
};
use super::materialize;
use super::stages;
use super::stamps::Stamps;
use super::store::{ActionRecord, Digest, Store};
use super::verify_stage::{self, VerifyOutcome};

/// One line of the build's progress, as `--message-format json` prints it.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Stage {
        target: String,
        stage: Stage,
        built: bool,
        /// Reused from the remote cache (a local miss the remote answered).
        remote: bool,
        key: Digest,
        ms: f64,
        /// `compile` only: the planned peak activation memory of `model.bin`.
        peak_activation_bytes: Option<u64>,
    },
    Verify {
        target: String,
        outcome: VerifyOutcome,
    },
    Warning(Diag),
}

/// What one build did.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    pub events: Vec<Event>,
    pub errors: Vec<Diag>,
    pub built: usize,
    pub cached: usize,
    pub thresholds_met: bool,
    pub ms: f64,
    /// What the remote cache did in this build, when there is one.
    pub remote: Option<RemoteReport>,
}

/// One build's use of the remote cache.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteReport {
    /// The remote's URL, without credentials.
    pub url: String,
    pub mode: crate::project::remote::RemoteMode,
    pub stats: super::remote::RemoteStats,
}

/// Where a build's events go: the caller's callback first, then the report.
struct Sink<'a> {
    report: &'a mut BuildReport,
    on_event: &'a mut dyn FnMut(&Event),
}

impl Sink<'_> {
    fn emit(&mut self, event: Event) {
        (self.on_event)(&event);
        self.report.events.push(event);
    }
}

pub struct Workspace {
    pub db: Database,
    pub config: ProjectConfig,
    config_digest: Digest,
    stamps: Stamps,
    files: HashMap<PathBuf, SourceFile>,
    project: Option<ProjectInput>,
    targets: BTreeMap<String, TargetInput>,
    /// Targets built in addition to those of `qairt.toml`, never materialized.
    generated: Vec<TargetConfig>,
    /// Every path the last load read (or tried to), with the content digest it saw (`None`:
    /// missing or unreadable then). The watcher rebuilds when what is on disk differs from
    /// this, so a file that is still missing, or a `qairt.toml` that is still broken, is no
    /// reason to build again, and a file that comes back is.
    seen: BTreeMap<PathBuf, Option<Digest>>,
    /// The digest of `qairt.toml` as the last load read it (valid or not).
    seen_config: Option<Digest>,
    /// Every directory the last load took a whole tree of files from (`[verify] golden`),
    /// with what it listed: a file added or removed there is an edit, though no file the load
    /// read has changed.
    listed: BTreeMap<PathBuf, Tree>,
    /// Command-line replacements for `[verify] mode`, `metrics` and `suggest_precision`.
    debug_override: DebugOverride,
    /// What the command line turns on in `[simulate]`.
    simulate_override: SimulateOverride,
    /// The last build failed on the machine (a file changed under it, a full disk): the next
    /// starts a new salsa revision so the queries that failed run again (see `db::volatile`).
    retry_environmental: bool,
}

/// What the command line replaces in `[verify]` (each `None` keeps qairt.toml's value).
#[derive(Clone, Debug, Default)]
pub struct DebugOverride {
    pub mode: Option<crate::verify::Mode>,
    pub metrics: Option<Vec<crate::verify::MetricSpec>>,
    pub precision: Option<crate::verify::sensitivity::Precision>,
}

/// What the command line turns on in `[simulate]` (`qairt build --debug --profile`): a flag
/// adds to qairt.toml's key, it never turns one off.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimulateOverride {
    pub debug: bool,
    pub profile: bool,
}

/// What `qairt suggest` found for one target.
#[derive(Clone, Debug)]
pub struct SuggestReport {
    pub result: Arc<crate::verify::sensitivity::SensitivityResult>,
    /// `out/<target>/verify/suggested_overrides.json`, when a layer was suggested.
    pub overrides_path: Option<PathBuf>,
    pub report_path: PathBuf,
    pub built: bool,
}

fn io_diag(path: &Path, e: &std::io::Error, what: &str) -> Diag {
    Diag::error("qairt::io::read", format!("cannot read {what} {}: {e}", path.display()))
        .with_help("check the path in qairt.toml (paths are relative to qairt.toml)")
}

/// [`io_diag`] pointing at the line of `qairt.toml` that names `path`.
fn missing(config: &ProjectConfig, path: &Path, e: &std::io::Error, what: &str) -> Diag {
    let diag = io_diag(path, e, what);
    match config.path_spans.get(path) {
        Some(&(start, len)) => diag.in_file(&config.file).at(start, len, format!("{what} named here")),
        None => diag,
    }
}

impl Workspace {
    /// Opens the project whose `qairt.toml` is `config_path`.
    pub fn open(config_path: &Path, progress: Option<Box<dyn Progress>>) -> Result<Workspace, Vec<Diag>> {
        Workspace::open_with(config_path, |store| Database::new(store, progress))
    }

    /// A workspace whose database logs every query salsa executes (see `Database::logged`).
    #[cfg(test)]
    pub(super) fn open_logged(
        config_path: &Path,
        log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) -> Result<Workspace, Vec<Diag>> {
        Workspace::open_with(config_path, |store| Database::logged(store, log))
    }

    fn open_with(config_path: &Path, database: impl FnOnce(Store) -> Database) -> Result<Workspace, Vec<Diag>> {
        let text =
            std::fs::read_to_string(config_path).map_err(|e| vec![io_diag(config_path, &e, "the project file")])?;
        let config = parse_config(config_path, &text)?;
        let mut store = Store::open(&config.cache_dir).map_err(|diag| vec![diag])?;
        if let Some(settings) = super::remote::connect::settings(&config).map_err(|diag| vec![diag])? {
            store = store.with_remote(super::remote::RemoteCache::open(&settings).map_err(|diag| vec![diag])?);
        }
        let stamps = Stamps::load(&config.cache_dir.join("stamps"));
        Ok(Workspace {
            db: database(store),
            config_digest: blake3::hash(text.as_bytes()),
            config,
            stamps,
            files: HashMap::new(),
            project: None,
            targets: BTreeMap::new(),
            generated: Vec::new(),
            seen: BTreeMap::new(),
            seen_config: None,
            listed: BTreeMap::new(),
            debug_override: DebugOverride::default(),
            simulate_override: SimulateOverride::default(),
            retry_environmental: false,
        })
    }

    /// Replaces `[verify]` settings for every later load (the command line's `--mode`,
    /// `--metric` and `--precision`).
    pub fn set_debug_override(&mut self, debug: DebugOverride) {
        self.debug_override = debug;
    }

    /// Turns on `[simulate]` views for every later build (`--debug`, `--profile`).
    pub fn set_simulate_override(&mut self, simulate: SimulateOverride) {
        self.simulate_override = simulate;
    }

    /// The dumps and profile a build writes: `[simulate]` with the command line's flags.
    pub(super) fn simulate_wanted(&self) -> super::debug_run::Wanted {
        let config = self.config.simulate;
        super::debug_run::Wanted {
            dumps: config.debug || self.simulate_override.debug,
            profile: config.profile || self.simulate_override.profile,
        }
    }

    /// `[verify]`'s debug settings with the command-line replacements applied.
    fn debug_settings(&self) -> crate::verify::DebugSettings {
        let mut debug = self.config.verify.debug.clone();
        if let Some(mode) = self.debug_override.mode {
            debug.mode = mode;
        }
        if let Some(metrics) = &self.debug_override.metrics {
            debug.metrics = metrics.clone();
        }
        if let Some(precision) = self.debug_override.precision {
            debug.precision = precision;
        }
        debug
    }

    /// Temporaries that a killed writer left in the cache's `tmp/` and `out/.tmp/` (called
    /// with the cache's lock held, which every writer holds).
    fn remove_crash_leftovers(&self) {
        super::owned_dir::remove_leftover_temporaries(&self.config.cache_dir.join("tmp"));
        super::owned_dir::remove_leftover_temporaries(&self.config.out_dir.join(".tmp"));
    }

    /// Runs (or reads from the cache) the sensitivity analysis of a quantized target, then
    /// re-materializes `out/<target>/`, which then holds the suggested overrides and a
    /// `report.html` that shows them.
    pub fn suggest(&mut self, target: &str) -> Result<SuggestReport, Vec<Diag>> {
        let lock = self
            .store()
            .lock()
            .map_err(|e| vec![Diag::error("qairt::cache::lock", format!("cannot lock the cache: {e}"))])?;
        self.remove_crash_leftovers();
        self.load()?;
        let (project, input) = self.inputs_of(target).map_err(|f| f.0)?;
        // The build first, so the report has the verify summary it shows the suggestion beside.
        super::verify_stage::verify_record(&self.db, project, input).map_err(|f| f.0)?;
        let result = super::sensitivity_stage::sensitivity_value(&self.db, project, input).map_err(|f| f.0);
        let (built, _warnings) = self.db.drain_log();
        let result = result?;
        let built = built.iter().any(|e| e.stage == Stage::Verify);
        if !self.is_generated(target) {
            materialize::materialize(self, project, input).map_err(|f| f.0)?;
        }
        let dir = self.config.out_dir.join(target).join("verify");
        let overrides_path = (!result.chosen.is_empty()).then(|| dir.join(materialize::SUGGESTED_OVERRIDES));
        let stamps_path = self.config.cache_dir.join("stamps");
        let tmp = self.config.cache_dir.join("tmp");
        // Stamps only save work for the next build; failing to save them is not an error here.
        let _ = self.stamps.save(&stamps_path, &tmp);
        drop(lock);
        self.db.forget_fresh_values();
        Ok(SuggestReport { result, overrides_path, report_path: dir.join("report.html"), built })
    }

    /// Adds targets that `qairt.toml` does not name (the configurations of `qairt sweep`),
    /// replacing any set before; every later [`load`](Self::load) applies them after the
    /// file's own targets. They build like any target and reuse every cached stage (stage
    /// keys depend on settings, never on target names), but `out/<name>/` is not written for
    /// them: their values stay in the cache, so a generated configuration later written into
    /// `qairt.toml` materializes without running a stage, and `out/` keeps holding only the
    /// targets the user declared. A name used twice, or already used by `qairt.toml`, is an
    /// error of the next load.
    pub fn set_generated_targets(&mut self, targets: Vec<TargetConfig>) {
        self.generated = targets;
    }

    /// Whether `name` is one of the generated targets (and not a target of `qairt.toml`).
    pub fn is_generated(&self, name: &str) -> bool {
        self.generated.iter().any(|t| t.name == name)
    }

    /// The backend rules of a target (`rules/` of the project merged over the standard set),
    /// after loading the project. Errors: unreadable inputs, an unknown target or backend.
    pub fn backend_rules(&mut self, target: &str) -> Result<Arc<BackendRules>, Vec<Diag>> {
        let _lock = self
            .store()
            .lock()
            .map_err(|e| vec![Diag::error("qairt::cache::lock", format!("cannot lock the cache: {e}"))])?;
        self.load()?;
        let (project, input) = self.inputs_of(target).map_err(|failed| failed.0)?;
        let rules = stages::backend(&self.db, project, input).map_err(|failed| failed.0);
        let _ = self.db.drain_log();
        rules
    }

    pub fn watched_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.seen.keys().cloned().collect();
        paths.push(self.config.file.clone());
        paths
    }

    /// The directories whose listing is an input (the golden directory and every directory
    /// under it): a watcher must watch each itself, since a file may arrive in one that holds
    /// no file yet.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        self.listed.values().flat_map(|tree| tree.dirs.iter().cloned()).collect()
    }

    pub fn store(&self) -> &Store {
        &self.db.services().store
    }

    /// The salsa input for `path`, created or updated from its current content.
    fn file(&mut self, path: &Path) -> std::io::Result<SourceFile> {
        let digest = self.stamps.digest(path);
        self.seen.insert(path.to_path_buf(), digest.as_ref().ok().copied());
        let digest = digest?;
        if let Some(&file) = self.files.get(path) {
            if file.digest(&self.db) != digest {
                file.set_digest(&mut self.db).to(digest);
            }
            return Ok(file);
        }
        let file = SourceFile::new(&self.db, path.to_path_buf(), digest);
        self.files.insert(path.to_path_buf(), file);
        Ok(file)
    }

    /// Re-reads `qairt.toml` and every input it names, updating salsa inputs that changed.
    pub fn load(&mut self) -> Result<(), Vec<Diag>> {
        self.seen.clear();
        self.listed.clear();
        let config_path = self.config.file.clone();
        let bytes = std::fs::read(&config_path);
        self.seen_config = bytes.as_ref().ok().map(|b| blake3::hash(b));
        let text = bytes
            .and_then(|b| String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
            .map_err(|e| vec![io_diag(&config_path, &e, "the project file")])?;
        let digest = blake3::hash(text.as_bytes());
        if digest != self.config_digest {
            let config = parse_config(&config_path, &text)?;
            if config.cache_dir != self.config.cache_dir || config.out_dir != self.config.out_dir {
                return Err(vec![
                    Diag::error("qairt::watch::dirs_changed", "out_dir or cache_dir changed while qairt was running")
                        .in_file(&config_path)
                        .with_help("restart qairt watch to use the new directories"),
                ]);
            }
            self.config = config;
            self.config_digest = digest;
        }
        let config = self.config.clone();
        let mut diags = Vec::new();

        let model_file =
            self.file(&config.model.path).map_err(|e| vec![missing(&config, &config.model.path, &e, "the model")])?;
        let externals = self.externals(model_file, &config.model.path)?;
        let shapes = crate::onnx::InputShapes {
            symbols: config.model.define_symbols.clone(),
            inputs: config.model.input_dims.clone(),
        };
        let model = match self.project {
            Some(p) => {
                let m = p.model(&self.db);
                if m.file(&self.db) != model_file {
                    m.set_file(&mut self.db).to(model_file);
                }
                if *m.externals(&self.db) != externals {
                    m.set_externals(&mut self.db).to(externals);
                }
                if *m.shapes(&self.db) != shapes {
                    m.set_shapes(&mut self.db).to(shapes);
                }
                m
            }
            None => ModelInput::new(&self.db, model_file, externals, shapes),
        };

        let calibration = match &config.calibration {
            Some(c) => match self.data_list(&c.input_list, self.project.and_then(|p| p.calibration(&self.db))) {
                Ok(list) => Some(list),
                Err(mut d) => {
                    diags.append(&mut d);
                    None
                }
            },
            None => None,
        };
        let verify = match self.data_list(&config.verify.input_list, self.project.map(|p| p.verify(&self.db))) {
            Ok(list) => Some(list),
            Err(mut d) => {
                diags.append(&mut d);
                None
            }
        };
        let labels = match &config.verify.labels {
            Some(path) => match self.file(path) {
                Ok(f) => Some(f),
                Err(e) => {
                    diags.push(missing(&config, path, &e, "the labels file"));
                    None
                }
            },
            None => None,
        };
        let golden = match &config.verify.golden {
            Some(dir) => self.golden(dir, config.verify.tensor_mapping.as_deref(), &mut diags),
            None => None,
        };
        let rule_files = self.rule_files(&mut diags);
        let all_targets = self.all_targets(&config, &mut diags);
        let mut target_overrides = Vec::new();
        for t in &all_targets {
            let overrides = match &t.overrides {
                Some(path) => match self.file(path) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        diags.push(missing(&config, path, &e, "the overrides file"));
                        None
                    }
                },
                None => None,
            };
            target_overrides.push(overrides);
        }
        let Some(verify) = verify else { return Err(diags) };
        if !diags.is_empty() {
            return Err(diags);
        }
        let debug = self.debug_settings();

        let project = match self.project {
            Some(p) => {
                let db = &mut self.db;
                if p.calibration(db) != calibration {
                    p.set_calibration(db).to(calibration);
                }
                let cmax = config.calibration.as_ref().and_then(|c| c.max_samples);
                if p.calibration_max(db) != cmax {
                    p.set_calibration_max(db).to(cmax);
                }
                if p.verify(db) != verify {
                    p.set_verify(db).to(verify);
                }
                if *p.io(db) != config.io {
                    p.set_io(db).to(config.io.clone());
                }
                if p.checkpoint_budget(db) != config.checkpoint_budget {
                    p.set_checkpoint_budget(db).to(config.checkpoint_budget);
                }
                if p.verify_max(db) != config.verify.max_samples {
                    p.set_verify_max(db).to(config.verify.max_samples);
                }
                if p.labels(db) != labels {
                    p.set_labels(db).to(labels);
                }
                if *p.thresholds(db) != config.verify.thresholds {
                    p.set_thresholds(db).to(config.verify.thresholds.clone());
                }
                if *p.debug(db) != debug {
                    p.set_debug(db).to(debug);
                }
                if p.golden(db) != golden {
                    p.set_golden(db).to(golden);
                }
                let rules = p.rules(db);
                if *rules.files(db) != rule_files {
                    rules.set_files(db).to(rule_files);
                }
                p
            }
            None => {
                let rules = RulesInput::new(&self.db, rule_files);
                ProjectInput::new(
                    &self.db,
                    model,
                    calibration,
                    config.calibration.as_ref().and_then(|c| c.max_samples),
                    verify,
                    config.verify.max_samples,
                    labels,
                    config.verify.thresholds.clone(),
                    debug,
                    golden,
                    rules,
                    config.checkpoint_budget,
                    config.io.clone(),
                )
            }
        };
        self.project = Some(project);

        let mut targets = BTreeMap::new();
        for (t, overrides) in all_targets.iter().zip(target_overrides) {
            let input = match self.targets.get(&t.name) {
                Some(&input) => {
                    let db = &mut self.db;
                    if *input.backend(db) != t.backend {
                        input.set_backend(db).to(t.backend.clone());
                    }
                    if *input.settings(db) != t.quant {
                        input.set_settings(db).to(t.quant.clone());
                    }
                    if input.overrides(db) != overrides {
                        input.set_overrides(db).to(overrides);
                    }
                    input
                }
                None => TargetInput::new(&self.db, t.name.clone(), t.backend.clone(), t.quant.clone(), overrides),
            };
            targets.insert(t.name.clone(), input);
        }
        self.targets = targets;
        Ok(())
    }

    /// The targets of `qairt.toml` followed by the generated ones; a generated target whose
    /// name is taken is reported and left out.
    fn all_targets(&self, config: &ProjectConfig, diags: &mut Vec<Diag>) -> Vec<TargetConfig> {
        let mut targets = config.targets.clone();
        for t in &self.generated {
            if targets.iter().any(|other| other.name == t.name) {
                diags.push(
                    Diag::error("qairt::sweep::name_taken", format!("a target named \"{}\" already exists", t.name))
                        .in_file(&config.file)
                        .with_help("generated target names must differ from each other and from qairt.toml's targets"),
                );
                continue;
            }
            targets.push(t.clone());
        }
        targets
    }

    /// The external-data files of the model, remembered per model digest in the store so a
    /// no-op build does not decode the model to find them.
    fn externals(&mut self, model: SourceFile, path: &Path) -> Result<Vec<(String, SourceFile)>, Vec<Diag>> {
        let model_digest = model.digest(&self.db);
        let key = blake3::hash(&[b"qairt externals 1 ".as_slice(), model_digest.as_bytes()].concat());
        let store = &self.db.services().store;
        let locations: Vec<String> =
            match super::memo::lookup_record(&self.db, &key).and_then(|r| postcard::from_bytes(&r.meta).ok()) {
                Some(locations) => locations,
                None => {
                    let bytes = std::fs::read(path).map_err(|e| vec![io_diag(path, &e, "the model")])?;
                    let proto =
                        crate::onnx::decode_model(&bytes).map_err(|e| vec![super::convert::import_error(path, e)])?;
                    let locations = crate::onnx::external_data_files(&proto);
                    let meta = postcard::to_stdvec(&locations).unwrap_or_default();
                    let _ = store.record(&key, &ActionRecord { output: [0; 32], size: 0, meta });
                    locations
                }
            };
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut files = Vec::new();
        for location in locations {
            let ext_path = dir.join(&location);
            let file = self.file(&ext_path).map_err(|e| {
                vec![
                    Diag::error(
                        "qairt::onnx::missing_external_data",
                        format!("the model's external data file {} cannot be read: {e}", ext_path.display()),
                    )
                    .with_help("ONNX external data is found relative to the model file; keep it beside the model"),
                ]
            })?;
            files.push((location, file));
        }
        Ok(files)
    }

    fn data_list(&mut self, path: &Path, existing: Option<DataList>) -> Result<DataList, Vec<Diag>> {
        let list_file = self.file(path).map_err(|e| vec![missing(&self.config, path, &e, "the input list")])?;
        if let Some(list) = existing
            && list.list(&self.db) == list_file
            && !self.list_files_changed(list)
        {
            return Ok(list);
        }
        let text = std::fs::read_to_string(path).map_err(|e| vec![io_diag(path, &e, "the input list")])?;
        let parsed = parse_input_list(path, &text)?;
        let mut diags = Vec::new();
        let mut samples = Vec::new();
        for sample in parsed.samples {
            let mut entries = Vec::new();
            for entry in sample.entries {
                match self.file(&entry.path) {
                    Ok(file) => entries.push(SampleEntry { name: entry.name, file, span: entry.span }),
                    Err(e) => diags.push(
                        Diag::error(
                            "qairt::input_list::missing_file",
                            format!("cannot read {}: {e}", entry.path.display()),
                        )
                        .in_file(path)
                        .at(entry.span.0, entry.span.1, "this file")
                        .with_help("paths in an input list are relative to the list's own directory"),
                    ),
                }
            }
            samples.push(SampleFiles { line: sample.line, entries });
        }
        if !diags.is_empty() {
            diags.truncate(20);
            return Err(diags);
        }
        Ok(match existing {
            Some(list) => {
                if list.list(&self.db) != list_file {
                    list.set_list(&mut self.db).to(list_file);
                }
                if *list.samples(&self.db) != samples {
                    list.set_samples(&mut self.db).to(samples);
                }
                list
            }
            None => DataList::new(&self.db, list_file, samples),
        })
    }

    /// Re-stats every raw file of an unchanged list (updating the inputs of changed ones);
    /// true if one could not be read.
    fn list_files_changed(&mut self, list: DataList) -> bool {
        let files: Vec<PathBuf> = list
            .samples(&self.db)
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| e.file.path(&self.db).clone()))
            .collect();
        files.iter().any(|path| self.file(path).is_err())
    }

    /// Every file under the golden directory (sorted, '/'-separated relative paths) and the
    /// mapping file, as a salsa input (the existing one updated in place).
    fn golden(&mut self, dir: &Path, mapping: Option<&Path>, diags: &mut Vec<Diag>) -> Option<GoldenInput> {
        let config = self.config.clone();
        if !dir.is_dir() {
            let e = std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory");
            diags.push(missing(&config, dir, &e, "the golden directory"));
            return None;
        }
        self.seen.insert(dir.to_path_buf(), None);
        let tree = match Tree::list(dir) {
            Ok(tree) => tree,
            Err((current, e)) => {
                diags.push(io_diag(&current, &e, "the golden directory"));
                return None;
            }
        };
        let paths = tree.files.clone();
        self.listed.insert(dir.to_path_buf(), tree);
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            let name: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            let file = match self.file(&path) {
                Ok(f) => f,
                Err(e) => {
                    diags.push(io_diag(&path, &e, "the golden file"));
                    continue;
                }
            };
            files.push((name.join("/"), file));
        }
        let mapping = match mapping {
            Some(path) => match self.file(path) {
                Ok(f) => Some(f),
                Err(e) => {
                    diags.push(missing(&config, path, &e, "the tensor mapping file"));
                    return None;
                }
            },
            None => None,
        };
        let existing = self.project.and_then(|p| p.golden(&self.db));
        Some(match existing {
            Some(g) => {
                let db = &mut self.db;
                if *g.dir(db) != dir {
                    g.set_dir(db).to(dir.to_path_buf());
                }
                if *g.files(db) != files {
                    g.set_files(db).to(files);
                }
                if g.mapping(db) != mapping {
                    g.set_mapping(db).to(mapping);
                }
                g
            }
            None => GoldenInput::new(&self.db, dir.to_path_buf(), files, mapping),
        })
    }

    fn rule_files(&mut self, diags: &mut Vec<Diag>) -> Vec<(String, Arc<str>)> {
        let mut files: Vec<(String, Arc<str>)> = Vec::new();
        let dir = self.config.root.join("rules");
        let Ok(entries) = std::fs::read_dir(&dir) else { return files };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    self.seen.insert(path.clone(), Some(blake3::hash(text.as_bytes())));
                    files.push((path.display().to_string(), Arc::from(text)));
                }
                Err(e) => {
                    self.seen.insert(path.clone(), None);
                    diags.push(io_diag(&path, &e, "the rules file"));
                }
            }
        }
        files
    }

    pub fn target_names(&self) -> Vec<String> {
        self.config.targets.iter().map(|t| t.name.clone()).collect()
    }

    /// The stages a target goes through (float backends skip calibrate and quantize).
    pub fn stages_of(&self, target: &str) -> Result<Vec<Stage>, Failed> {
        let (project, input) = self.inputs_of(target)?;
        let quantized = stages::is_quantized(&self.db, project, input)?;
        // float_fallback quantizes from encodings alone: no calibration data is read.
        let calibrated = quantized && !input.settings(&self.db).float_fallback;
        Ok(Stage::VISIBLE
            .into_iter()
            .filter(|s| match s {
                Stage::Calibrate => calibrated,
                Stage::Quantize => quantized,
                _ => true,
            })
            .collect())
    }

    fn inputs_of(&self, target: &str) -> Result<(ProjectInput, TargetInput), Failed> {
        let project =
            self.project.ok_or_else(|| Failed(vec![Diag::error("qairt::internal", "the project is not loaded")]))?;
        let input = self.targets.get(target).copied().ok_or_else(|| {
            let names = self.target_names();
            let mut help = format!("targets in qairt.toml: {}", names.join(", "));
            if let Some(near) = crate::diag::closest(target, names.iter().map(String::as_str)) {
                help = format!("did you mean \"{near}\"? ({help})");
            }
            Failed(vec![
                Diag::error("qairt::cli::unknown_target", format!("no target named \"{target}\"")).with_help(help),
            ])
        })?;
        Ok((project, input))
    }

    /// Builds the selected targets (all when empty): every out-of-date stage runs, then
    /// `out/<target>/` is materialized.
    pub fn build(&mut self, selected: &[String]) -> BuildReport {
        self.build_with(selected, &mut |_| {})
    }

    /// [`Workspace::build`], handing every event to `on_event` the moment it happens (each
    /// stage as it finishes, target by target), before it goes into the report.
    pub fn build_with(&mut self, selected: &[String], on_event: &mut dyn FnMut(&Event)) -> BuildReport {
        let started = Instant::now();
        let mut report = BuildReport { thresholds_met: true, ..BuildReport::default() };
        let lock = match self.store().lock() {
            Ok(lock) => lock,
            Err(e) => {
                report.errors.push(Diag::error("qairt::cache::lock", format!("cannot lock the cache: {e}")));
                return report;
            }
        };
        self.remove_crash_leftovers();
        if std::mem::take(&mut self.retry_environmental) {
            salsa::Database::synthetic_write(&mut self.db, salsa::Durability::LOW);
        }
        if let Err(diags) = self.load() {
            report.errors = diags;
            return report;
        }
        let names = if selected.is_empty() { self.target_names() } else { selected.to_vec() };
        self.build_targets(&names, &mut report, on_event);
        let (_, warnings) = self.db.drain_log();
        self.db.forget_fresh_values();
        let mut sink = Sink { report: &mut report, on_event };
        for warning in warnings {
            sink.emit(Event::Warning(warning));
        }
        let stamps_path = self.config.cache_dir.join("stamps");
        let tmp = self.config.cache_dir.join("tmp");
        if let Err(e) = self.stamps.save(&stamps_path, &tmp) {
            sink.emit(Event::Warning(Diag::warning("qairt::cache::io", format!("cannot save file stamps: {e}"))));
        }
        if let Some(remote) = self.db.services().store.remote() {
            // The uploads this build started end before it does (each bounded by the timeout).
            let (stats, warnings) = remote.finish();
            for warning in warnings {
                sink.emit(Event::Warning(warning));
            }
            if let Err(e) = super::remote::add_to_totals(&self.config.cache_dir, remote.shown(), &stats) {
                let message = format!("cannot save the remote cache's figures: {e}");
                sink.emit(Event::Warning(Diag::warning("qairt::cache::io", message)));
            }
            sink.report.remote = Some(RemoteReport { url: remote.shown().to_string(), mode: remote.mode(), stats });
        }
        drop(lock);
        report.ms = started.elapsed().as_secs_f64() * 1000.0;
        report
    }

    /// Builds the loaded project's targets `names`, their errors into `report`.
    fn build_targets(&mut self, names: &[String], report: &mut BuildReport, on_event: &mut dyn FnMut(&Event)) {
        let mut shared_built: HashMap<Stage, BuiltEvent> = HashMap::new();
        for name in names {
            let mut sink = Sink { report: &mut *report, on_event: &mut *on_event };
            if let Err(failed) = self.build_target(name, &mut shared_built, &mut sink) {
                self.retry_environmental |= failed.is_environmental();
                // A shared stage fails the same way for every target: say it once.
                for diag in failed.0 {
                    if !report.errors.contains(&diag) {
                        report.errors.push(diag);
                    }
                }
            }
        }
    }

    /// Runs `name`'s stages in pipeline order, reporting each as it finishes (salsa runs what
    /// a stage needs on first demand, so asking for the records in order runs them in order).
    fn build_target(
        &mut self,
        name: &str,
        shared_built: &mut HashMap<Stage, BuiltEvent>,
        sink: &mut Sink<'_>,
    ) -> Result<(), Failed> {
        let (project, target) = self.inputs_of(name)?;
        let stages = self.stages_of(name)?;
        // Report every stage that succeeds, up to the one that fails (if any).
        for &stage in &stages {
            let step = self.run_stage(project, target, stage);
            let (built, warnings) = self.db.drain_log();
            for warning in warnings {
                sink.emit(Event::Warning(warning));
            }
            // Everything that ran in this step is this stage's work (its inputs ran in earlier
            // steps); for `simulate` that includes the float reference and the layer runs.
            let ran_here = !built.is_empty();
            let ms_here: f64 = built.iter().map(|e| e.ms).sum();
            for event in built.into_iter().filter(|e| e.target.is_none()) {
                let stage = if event.stage == Stage::Reference { Stage::Simulate } else { event.stage };
                shared_built.insert(stage, event);
            }
            let key = step?;
            // A shared stage that ran for an earlier target of this build counts as built here
            // too (it ran in this process), if it is this target's stage (a CLE target has an
            // optimize and calibrate of its own).
            let (built, ms) = if ran_here {
                (true, ms_here)
            } else {
                match shared_built.get(&stage).filter(|e| e.key == key) {
                    Some(e) => (true, e.ms),
                    None => (false, 0.0),
                }
            };
            if built {
                sink.report.built += 1;
            } else {
                sink.report.cached += 1;
            }
            let peak_activation_bytes = match stage {
                Stage::Compile => postcard::from_bytes(&stages::compile_record(&self.db, project, target)?.meta).ok(),
                _ => None,
            };
            let remote = !built && self.store().remote().is_some_and(|r| r.served(&key));
            sink.emit(Event::Stage { target: name.to_string(), stage, built, remote, key, ms, peak_activation_bytes });
        }
        let record = verify_stage::verify_record(&self.db, project, target)?;
        let outcome: VerifyOutcome = postcard::from_bytes(&record.meta).map_err(super::convert::internal)?;
        sink.report.thresholds_met &= outcome.passed;
        // Generated targets are not in qairt.toml: nothing for `explain` or `out/`.
        if !self.is_generated(name) {
            super::explain::remember(self, project, target, &stages);
            materialize::materialize(self, project, target)?;
        }
        sink.emit(Event::Verify { target: name.to_string(), outcome });
        Ok(())
    }

    /// Runs one stage of a target (and, for `simulate`, every run the verify stage reads: the
    /// float reference and, in the layerwise and cumulative modes, the layer runs) and returns
    /// its action key. The target's own run goes first: it records the reference when its
    /// float graph is the model's.
    fn run_stage(&self, project: ProjectInput, target: TargetInput, stage: Stage) -> Result<Digest, Failed> {
        let key = self.stage_key(project, target, stage)?;
        if stage == Stage::Simulate {
            stages::reference_record(&self.db, project)?;
            if project.debug(&self.db).mode != crate::verify::Mode::Oneshot {
                super::snoop::snoop_record(&self.db, project, target)?;
            }
        }
        Ok(key)
    }

    /// The action key of one stage of a target (records are memoized, so this is cheap).
    pub fn stage_key(&self, project: ProjectInput, target: TargetInput, stage: Stage) -> Result<Digest, Failed> {
        let db = &self.db;
        Ok(match stage {
            Stage::Parse => stages::parse_record(db, project)?.key,
            Stage::Optimize => stages::target_optimize_record(db, project, target)?.key,
            Stage::Calibrate => match stages::target_calibrate_record(db, project, target)? {
                Some(record) => record.key,
                None => stages::calibrate_record(db, project)?.key,
            },
            Stage::Quantize => stages::quantize_record(db, project, target)?.key,
            Stage::Compile => stages::compile_record(db, project, target)?.key,
            Stage::Simulate => stages::simulate_record(db, project, target)?.key,
            Stage::Verify => verify_stage::verify_record(db, project, target)?.key,
            Stage::Reference => stages::reference_record(db, project)?.key,
        })
    }

    /// The project's optimized graph (the `optimize` stage's value, from the cache when it is
    /// there), for commands that check a file against the model (`qairt encodings validate`).
    pub fn optimized_graph(&mut self) -> Result<Arc<crate::ir::Graph>, Vec<Diag>> {
        let _lock = self
            .store()
            .lock()
            .map_err(|e| vec![Diag::error("qairt::cache::lock", format!("cannot lock the cache: {e}"))])?;
        self.load()?;
        let project = self.project.ok_or_else(|| super::convert::internal("the project was not loaded").0)?;
        let graph = stages::optimize_value(&self.db, project).map_err(|failed| failed.0);
        let _ = self.db.drain_log();
        self.db.forget_fresh_values();
        graph
    }

    pub(super) fn stamps_mut(&mut self) -> &mut Stamps {
        &mut self.stamps
    }

    /// The database and the stamps at once: a writer that reads stage values (or reports
    /// progress) while it records what it wrote.
    pub(super) fn db_and_stamps(&mut self) -> (&Database, &mut Stamps) {
        (&self.db, &mut self.stamps)
    }

    pub(super) fn project_input(&self) -> Option<ProjectInput> {
        self.project
    }

    pub(super) fn target_input(&self, name: &str) -> Option<TargetInput> {
        self.targets.get(name).copied()
    }

    /// Every input file the project reads, with its content digest.
    pub fn input_digests(&self) -> BTreeMap<PathBuf, Digest> {
        self.files
            .iter()
            .filter(|(p, _)| self.seen.get(*p).is_some_and(Option::is_some))
            .map(|(p, f)| (p.clone(), f.digest(&self.db)))
            .collect()
    }
}

impl Workspace {
    /// Whether any input now differs from what the last load saw: `qairt.toml`, every file it
    /// read or tried to read (one that was missing and exists now counts, one that is still
    /// missing does not), and the set of rule files. Stats first; hashes only files whose
    /// stamp moved.
    pub fn inputs_changed(&mut self) -> bool {
        let config_now = std::fs::read(&self.config.file).ok().map(|bytes| blake3::hash(&bytes));
        if config_now != self.seen_config {
            return true;
        }
        let rules_dir = self.config.root.join("rules");
        let rules_now: BTreeSet<PathBuf> = std::fs::read_dir(&rules_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        let rules_before: BTreeSet<PathBuf> = self.seen.keys().filter(|p| p.starts_with(&rules_dir)).cloned().collect();
        if rules_now != rules_before {
            return true;
        }
        if self.listed.iter().any(|(dir, before)| Tree::list(dir).ok().as_ref() != Some(before)) {
            return true;
        }
        let seen: Vec<(PathBuf, Option<Digest>)> = self.seen.iter().map(|(p, d)| (p.clone(), *d)).collect();
        seen.into_iter().any(|(path, before)| self.stamps.digest(&path).ok() != before)
    }
}

/// The files and directories under a directory, itself included among the directories; both
/// sorted.
#[derive(Debug, PartialEq, Eq)]
struct Tree {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Tree {
    /// Walks `dir`; the error names the directory that could not be read.
    fn list(dir: &Path) -> Result<Tree, (PathBuf, std::io::Error)> {
        let (mut files, mut dirs) = (Vec::new(), vec![dir.to_path_buf()]);
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            let entries = std::fs::read_dir(&current).map_err(|e| (current.clone(), e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path.clone());
                    pending.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.sort();
        dirs.sort();
        Ok(Tree { files, dirs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project with two targets on the digits example's model and a few samples.
    fn digits_project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digits");
        std::fs::copy(example.join("model.onnx"), dir.path().join("model.onnx")).unwrap();
        fn copy_tree(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let path = entry.unwrap().path();
                let target = to.join(path.file_name().unwrap());
                if path.is_dir() {
                    copy_tree(&path, &target);
                } else {
                    std::fs::copy(&path, target).unwrap();
                }
            }
        }
        for list in ["calib", "test"] {
            copy_tree(&example.join(list), &dir.path().join(list));
        }
        let toml = r#"[project]
name = "events"

[model]
path = "model.onnx"

[calibration]
input_list = "calib/input_list.txt"
max_samples = 4

[[target]]
name = "htp-w8a8"
backend = "htp"

[[target]]
name = "cpu"
backend = "cpu"

[verify]
input_list = "test/input_list.txt"
max_samples = 4
"#;
        std::fs::write(dir.path().join("qairt.toml"), toml).unwrap();
        dir
    }

    /// The digits model quantizes with no Convert: its quantize entry holds the encodings and
    /// the float graph's digest, not a second copy of the weights, and the graph read back
    /// from a fresh process is the float graph with those encodings.
    #[test]
    fn a_quantize_entry_does_not_store_the_float_graph_again() {
        let dir = digits_project();
        let config = dir.path().join("qairt.toml");
        let mut ws = Workspace::open(&config, None).unwrap();
        let report = ws.build_with(&["htp-w8a8".to_string()], &mut |_| {});
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let computed = {
            let (project, target) = ws.inputs_of("htp-w8a8").unwrap();
            (*stages::quantize_value(&ws.db, project, target).unwrap()).clone()
        };
        let mut ws = Workspace::open(&config, None).unwrap();
        let report = ws.build_with(&["htp-w8a8".to_string()], &mut |_| {});
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let (project, target) = ws.inputs_of("htp-w8a8").unwrap();
        let size = |record: crate::engine::memo::Record| ws.store().get(&record.output).unwrap().unwrap().len();
        let graph_bytes = size(stages::target_optimize_record(&ws.db, project, target).unwrap());
        let quantize_bytes = size(stages::quantize_record(&ws.db, project, target).unwrap());
        assert!(
            quantize_bytes * 4 < graph_bytes,
            "quantize stored {quantize_bytes} bytes beside a float graph of {graph_bytes}"
        );
        let loaded = stages::quantize_value(&ws.db, project, target).unwrap();
        assert_eq!(*loaded, computed, "read back from the store");
        assert_eq!(loaded.graph, *stages::target_optimize_value(&ws.db, project, target).unwrap());
    }

    #[test]
    fn events_reach_the_callback_as_stages_finish() {
        let dir = digits_project();
        let mut ws = Workspace::open(&dir.path().join("qairt.toml"), None).unwrap();
        // For each event: (what it is, whether each target's out/ existed when it arrived).
        let mut seen: Vec<(String, bool, bool)> = Vec::new();
        let out = dir.path().join("out");
        let report = ws.build_with(&[], &mut |event| {
            let what = match event {
                Event::Stage { target, stage, .. } => format!("{target} {}", stage.name()),
                Event::Verify { target, .. } => format!("{target} verified"),
                Event::Warning(d) => format!("warning {}", d.message),
            };
            seen.push((what, out.join("htp-w8a8").exists(), out.join("cpu").exists()));
        });
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let names: Vec<&str> = seen.iter().map(|(w, _, _)| w.as_str()).collect();
        assert_eq!(names.first(), Some(&"htp-w8a8 parse"), "{names:?}");
        assert_eq!(names.len(), report.events.len());
        // The first target's stages arrive before it is materialized, the second target's
        // after the first is and before its own is: each event is handed over when it happens,
        // not when the build ends.
        for (what, first_out, second_out) in seen.iter().map(|(w, a, b)| (w, *a, *b)) {
            if what.starts_with("htp-w8a8") && what != "htp-w8a8 verified" {
                assert!(!first_out && !second_out, "{what} arrived after out/ was written");
            }
            if what.starts_with("cpu") && what != "cpu verified" {
                assert!(first_out && !second_out, "{what}: first out/ {first_out}, second {second_out}");
            }
        }
        assert!(names.contains(&"cpu simulate") && names.contains(&"htp-w8a8 calibrate"), "{names:?}");
    }

    /// The queries salsa executed during `build`, by name (`simulate_value`, ...).
    fn executed(log: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
        let mut names: Vec<String> = std::mem::take(&mut *super::super::db::lock(log))
            .into_iter()
            .map(|q| q.split('(').next().unwrap_or(&q).to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn a_threshold_edit_re_executes_only_the_verdict_and_an_encoding_edit_only_what_follows_it() {
        let dir = digits_project();
        let config = dir.path().join("qairt.toml");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut ws = Workspace::open_logged(&config, log.clone()).unwrap();
        let report = ws.build_with(&[], &mut |_| {});
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let cold = executed(&log);
        assert!(cold.iter().any(|q| q == "simulate_record"), "the log sees queries: {cold:?}");

        // A threshold: the verify records and values of both targets, nothing upstream, and
        // no run (no sample is read again: the folds are reused).
        let toml = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, format!("{toml}\n[verify.thresholds]\nmin_sqnr_db = 5.0\n")).unwrap();
        let report = ws.build_with(&[], &mut |_| {});
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let after_threshold = executed(&log);
        assert!(after_threshold.iter().any(|q| q == "verify_record"), "{after_threshold:?}");
        for upstream in ["parse_record", "calibrate_record", "quantize_record", "compile_record", "simulate_record"] {
            assert!(!after_threshold.iter().any(|q| q == upstream), "{upstream} re-ran: {after_threshold:?}");
        }
        assert!(!after_threshold.iter().any(|q| q == "checker_record"), "the checker re-ran: {after_threshold:?}");

        // The quantized target's encodings: quantize onwards, and the float target not at all.
        let toml = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, toml.replace("backend = \"htp\"\n", "backend = \"htp\"\nact_bitwidth = 16\n")).unwrap();
        let report = ws.build_with(&[], &mut |_| {});
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let after_encoding = executed(&log);
        for rerun in ["quantize_record", "compile_record", "simulate_record", "checker_record", "verify_record"] {
            assert!(after_encoding.iter().any(|q| q == rerun), "{rerun} did not re-run: {after_encoding:?}");
        }
        for kept in ["parse_record", "calibrate_record", "reference_record"] {
            assert!(!after_encoding.iter().any(|q| q == kept), "{kept} re-ran: {after_encoding:?}");
        }
    }

    #[test]
    fn a_threshold_labels_or_metrics_edit_in_a_new_process_loads_no_graph_and_runs_no_sample() {
        // What a `qairt build` after such an edit does: a fresh database over the cache. Every
        // value it needs is a query execution here (a load from the store), so the log shows
        // exactly what was read.
        let dir = digits_project();
        let config = dir.path().join("qairt.toml");
        let report = Workspace::open(&config, None).unwrap().build_with(&[], &mut |_| {});
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let toml = std::fs::read_to_string(&config).unwrap();
        let edits = [
            format!("{toml}\n[verify.thresholds]\nmin_sqnr_db = 5.0\n"),
            toml.replace("[verify]\n", "[verify]\nmetrics = [\"sqnr\", \"mse\"]\n"),
            toml.replace("[verify]\n", "[verify]\nlabels = \"labels.txt\"\n"),
        ];
        std::fs::write(dir.path().join("labels.txt"), "3\n1\n4\n1\n").unwrap();
        for (edit, text) in edits.iter().enumerate() {
            assert_ne!(*text, toml, "edit {edit} changed nothing");
            std::fs::write(&config, text).unwrap();
            let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let mut ws = Workspace::open_logged(&config, log.clone()).unwrap();
            let report = ws.build_with(&[], &mut |_| {});
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            let ran = executed(&log);
            assert!(ran.iter().any(|q| q == "verify_value"), "edit {edit}: verify did not re-run: {ran:?}");
            for graph in ["parse_value", "optimize_value", "target_optimize_value", "quantize_value", "compile_value"] {
                assert!(!ran.iter().any(|q| q == graph), "edit {edit} loaded {graph}: {ran:?}");
            }
            let built: Vec<(&str, Stage)> = report
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Stage { target, stage, built: true, .. } => Some((target.as_str(), *stage)),
                    _ => None,
                })
                .collect();
            assert!(built.iter().all(|&(_, stage)| stage == Stage::Verify), "edit {edit} built {built:?}");
            assert_eq!(built.len(), 2, "edit {edit}: verify of each target: {built:?}");
        }
    }

    /// Records the label of every progress bar a build starts.
    struct Started(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl Progress for Started {
        fn start(&self, label: &str, _: u64) {
            self.0.lock().unwrap().push(label.to_string());
        }
        fn advance(&self) {}
        fn finish(&self) {}
    }

    fn runs_of_a_build(dir: &Path) -> Vec<String> {
        let started = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut ws = Workspace::open(&dir.join("qairt.toml"), Some(Box::new(Started(started.clone())))).unwrap();
        let report = ws.build_with(&[], &mut |_| {});
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        started.lock().unwrap().clone()
    }

    /// The float reference is the golden run of a target whose float graph is the model's, so
    /// it does not run on its own; with only equalized (CLE) targets it does.
    #[test]
    fn the_reference_rides_on_a_targets_golden_run() {
        let dir = digits_project();
        let runs = runs_of_a_build(dir.path());
        assert!(runs.iter().any(|r| r == "simulate htp-w8a8"), "{runs:?}");
        assert!(!runs.iter().any(|r| r == "reference"), "{runs:?}");
        let out = |target: &str| std::fs::read(dir.path().join(format!("out/{target}/reference/Result_3/logits.raw")));
        let (htp, cpu) = (out("htp-w8a8"), out("cpu"));
        assert!(htp.is_ok(), "{htp:?}");

        // Same project, only CLE targets: the reference runs by itself, with the same bits.
        let toml = std::fs::read_to_string(dir.path().join("qairt.toml")).unwrap();
        let cle = toml
            .replace("backend = \"htp\"\n", "backend = \"htp\"\nalgorithms = [\"cle\"]\n")
            .replace("[[target]]\nname = \"cpu\"\nbackend = \"cpu\"\n", "");
        assert_ne!(cle, toml);
        std::fs::write(dir.path().join("qairt.toml"), cle).unwrap();
        std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
        std::fs::remove_dir_all(dir.path().join("out")).unwrap();
        let runs = runs_of_a_build(dir.path());
        assert!(runs.iter().any(|r| r == "reference"), "{runs:?}");
        assert_eq!(out("htp-w8a8").unwrap(), htp.unwrap());
        assert!(cpu.is_ok());
    }

    /// Every file under `dir`, by relative path (build.json aside: it names the project's
    /// directory), with its bytes.
    fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(at) = stack.pop() {
            for entry in std::fs::read_dir(&at).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().is_some_and(|n| n != "build.json") {
                    let name = path.strip_prefix(dir).unwrap().display().to_string();
                    files.insert(name, std::fs::read(&path).unwrap());
                }
            }
        }
        files
    }

    /// An encoding edit of the last layer re-runs the program from the checkpoint before its
    /// last step, and the target's `out/` is byte for byte what a cold build of the edited
    /// project writes (outputs, summary, checker, report, encodings).
    #[test]
    fn an_edit_after_a_checkpoint_resumes_from_it_with_the_cold_builds_bytes() {
        let dir = digits_project();
        let toml = std::fs::read_to_string(dir.path().join("qairt.toml")).unwrap();
        let htp_only = toml
            .replace("backend = \"htp\"\n", "backend = \"htp\"\noverrides = \"edit.json\"\n")
            .replace("[[target]]\nname = \"cpu\"\nbackend = \"cpu\"\n", "");
        assert_ne!(htp_only, toml);
        std::fs::write(dir.path().join("qairt.toml"), &htp_only).unwrap();
        let empty = r#"{"version": "0.6.1", "activation_encodings": {}, "param_encodings": {}}"#;
        std::fs::write(dir.path().join("edit.json"), empty).unwrap();
        let runs = runs_of_a_build(dir.path());
        assert!(runs.iter().any(|r| r == "simulate htp-w8a8"), "{runs:?}");

        // The logits' grid moved: 8 bits over [-32, 31.75].
        let edit = r#"{"version": "0.6.1", "param_encodings": {}, "activation_encodings": {"logits": [
            {"bitwidth": 8, "dtype": "int", "is_symmetric": "False", "min": -32.0, "max": 31.75,
             "offset": -128, "scale": 0.25}]}}"#;
        std::fs::write(dir.path().join("edit.json"), edit).unwrap();
        let runs = runs_of_a_build(dir.path());
        let resumed: Vec<&String> = runs.iter().filter(|r| r.starts_with("simulate htp-w8a8 from step ")).collect();
        assert_eq!(resumed.len(), 1, "{runs:?}");
        let (step, of) = resumed[0].trim_start_matches("simulate htp-w8a8 from step ").split_once(" of ").unwrap();
        assert_eq!(step, of, "the edit is in the last step: {runs:?}");

        // The same edited project, built cold elsewhere.
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let path = entry.unwrap().path();
                let target = to.join(path.file_name().unwrap());
                if path.is_dir() {
                    copy(&path, &target);
                } else {
                    std::fs::copy(&path, target).unwrap();
                }
            }
        }
        let cold = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap();
            if path.is_dir() && name != "cache" && name != "out" {
                copy(&path, &cold.path().join(name));
            } else if path.is_file() {
                std::fs::copy(&path, cold.path().join(name)).unwrap();
            }
        }
        let runs = runs_of_a_build(cold.path());
        assert!(runs.iter().any(|r| r == "simulate htp-w8a8"), "{runs:?}");
        let (resumed, cold) = (files_under(&dir.path().join("out")), files_under(&cold.path().join("out")));
        assert_eq!(resumed.keys().collect::<Vec<_>>(), cold.keys().collect::<Vec<_>>());
        for (name, bytes) in &resumed {
            assert!(bytes == &cold[name], "{name} differs from the cold build's");
        }
        assert!(
            resumed.keys().any(|k| k.ends_with("checker.json")) && resumed.keys().any(|k| k.ends_with("report.html"))
        );
    }

    /// Loads the project, then rewrites `rel` (keeping its size) before the targets run, as an
    /// editor saving mid-build does: the build fails reading it. Returns that build's errors.
    fn build_while_rewriting(ws: &mut Workspace, dir: &Path, rel: &str) -> Vec<Diag> {
        ws.load().unwrap();
        let path = dir.join(rel);
        let bytes = std::fs::read(&path).unwrap();
        let mut edited = bytes.clone();
        edited[bytes.len() / 2] ^= 0x55;
        std::fs::write(&path, &edited).unwrap();
        let mut report = BuildReport::default();
        let names = ws.target_names();
        ws.build_targets(&names, &mut report, &mut |_| {});
        std::fs::write(&path, &bytes).unwrap();
        report.errors
    }

    #[test]
    fn a_golden_file_added_or_removed_is_an_edit() {
        // `qairt watch` asks `inputs_changed` after every event: a new file in the golden
        // directory (or in a new directory under it) changes what the load reads, though no
        // file it read has changed; removing it again is back to what the build read.
        let dir = digits_project();
        let goldens = dir.path().join("goldens");
        std::fs::create_dir_all(goldens.join("Result_0")).unwrap();
        std::fs::write(goldens.join("Result_0/logits.raw"), [0u8; 40]).unwrap();
        let config = dir.path().join("qairt.toml");
        let toml = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, toml.replace("[verify]\n", "[verify]\ngolden = \"goldens\"\n")).unwrap();
        let mut ws = Workspace::open(&config, None).unwrap();
        ws.load().unwrap();
        assert!(!ws.inputs_changed());
        assert!(ws.watched_dirs().contains(&goldens.join("Result_0")), "{:?}", ws.watched_dirs());
        let added = goldens.join("Result_1/logits.raw");
        std::fs::create_dir_all(added.parent().unwrap()).unwrap();
        assert!(ws.inputs_changed(), "an empty directory under the golden one is an edit");
        std::fs::write(&added, [0u8; 40]).unwrap();
        assert!(ws.inputs_changed());
        ws.load().unwrap();
        assert!(!ws.inputs_changed(), "loaded again: nothing new");
        assert!(ws.watched_dirs().contains(&goldens.join("Result_1")));
        std::fs::remove_file(&added).unwrap();
        assert!(ws.inputs_changed(), "a removed golden file is an edit");
    }

    #[test]
    fn a_read_that_failed_mid_build_is_not_remembered_once_the_file_is_back() {
        // `qairt watch` keeps one database: a stage that failed because its input changed
        // under it must run again when the input is back to what the build was keyed on, with
        // no edit in between (the watch sees inputs equal to what the build read and waits).
        for rel in ["model.onnx", "calib/raw/calib_000.raw"] {
            let dir = digits_project();
            let mut ws = Workspace::open(&dir.path().join("qairt.toml"), None).unwrap();
            let errors = build_while_rewriting(&mut ws, dir.path(), rel);
            assert!(errors.iter().any(|d| d.code == "qairt::io::changed"), "{rel}: {errors:?}");
            assert!(!ws.inputs_changed(), "{rel}: the file is back as the build read it");
            let report = ws.build(&[]);
            assert!(report.errors.is_empty(), "{rel}: {:?}", report.errors);
        }
    }
}
