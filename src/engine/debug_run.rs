//! The opt-in views of a target's compiled program on the verify inputs, written beside the
//! stages' outputs: `out/<target>/debug/Result_<N>/<tensor>.raw`, every tensor a step makes
//! for line N of the verify list (`[simulate] debug`, the SDK's `qnn-net-run --debug`), with
//! `debug/tensor_names.json`; and `out/<target>/profile.csv` and `profile.json`, each step's
//! time and bytes moved (`[simulate] profile`, the SDK's `--profiling_level detailed` as
//! `qnn-profile-viewer` prints it).
//!
//! Neither is a stage: no stage key depends on them, and a build with both off writes nothing
//! it did not write before (it looks up one record, the ledger below). One run serves both:
//! the program of `model.bin` sample after sample on this thread (alone, so that a step's time
//! is not shared with another sample's), each tensor written the moment its step makes it, so
//! memory holds one sample's live tensors and never the dump.
//!
//! **What the store keeps.** Not the dumps: they are samples x tensors of float32, the largest
//! thing qairt could write, and the program is deterministic, so running it again for a sample
//! gives that sample's files back bit for bit. The store keeps their manifest (path, digest),
//! keyed by `model.bin` and the verify samples: a no-op build stats the files, and a deleted or
//! edited file re-runs the program for its sample only. The profile is small, and it is a
//! measurement that another run would not repeat, so the store keeps it with its manifest:
//! deleting `out/` restores the same profile, and it is measured again when `model.bin` or the
//! verify inputs change.
//!
//! **The ledger.** A record per target, keyed by the target's name alone, lists every file
//! this module wrote last. A file of the ledger that a build does not write again (debug or
//! profile turned off, fewer samples, a tensor renamed) is removed, then the directories this
//! left empty; qairt never removes a file it did not write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::compile::Program;
use crate::diag::Diag;
use crate::ir::{Tensor, TensorId};
use crate::runtime::profile::Profile;

use super::db::{Db, Failed, ProjectInput, Stage, TargetInput};
use super::memo::{KeyBuilder, lookup_local_record};
use super::output_names::{output_file_stems, tensor_map_json};
use super::stages;
use super::stamps::Stamps;
use super::store::{ActionRecord, Digest, write_into_existing_dirs};
use super::workspace::Workspace;

/// What a build asks for (`[simulate]` with the command line's flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub dumps: bool,
    pub profile: bool,
}

/// The directory of the dumps under `out/<target>/`.
pub const DEBUG_DIR: &str = "debug";
pub const PROFILE_CSV: &str = "profile.csv";
pub const PROFILE_JSON: &str = "profile.json";

/// Files by path relative to `out/<target>/`, with their content digests.
type Manifest = Vec<(String, [u8; 32])>;

/// The profile record: the files and the measurement they render.
#[derive(Serialize, Deserialize)]
struct StoredProfile {
    files: Manifest,
    profile: Profile,
}

fn write_error(path: &Path, e: std::io::Error) -> Failed {
    Failed(vec![Diag::error("qairt::io::write", format!("cannot write {}: {e}", path.display()))])
}

/// The keys of a target's dumps and profile: what the run reads (`model.bin`, the verify
/// samples) and which target's directory the files are in. `what` keeps the two apart.
fn run_key(db: &dyn Db, project: ProjectInput, target: TargetInput, what: &str) -> Result<Digest, Failed> {
    let compiled = stages::compile_record(db, project, target)?;
    let key = KeyBuilder::new(Stage::Simulate)
        .bytes("debug run", what.as_bytes())
        .bytes("target", target.name(db).as_bytes())
        .digest("model.bin", &compiled.output);
    Ok(stages::list_key(key, db, project, project.verify(db), project.verify_max(db)).finish())
}

fn ledger_key(target_name: &str) -> Digest {
    KeyBuilder::new(Stage::Simulate).bytes("debug ledger", target_name.as_bytes()).finish()
}

/// The dumps' ledger and manifest and the profile's timings are facts of this checkout and
/// machine: kept in the local cache only.
fn record(ws: &Workspace, key: &Digest, meta: Vec<u8>) -> Result<(), Failed> {
    ws.store()
        .record_local(key, &ActionRecord { output: [0; 32], size: 0, meta })
        .map_err(|e| write_error(ws.store().root(), e))
}

/// Brings `out/<target>/debug/` and the profile files in line with `wanted`, running the
/// program where a file is missing or stale. Returns the profile when it is wanted, for the
/// report.
pub fn materialize(
    ws: &mut Workspace,
    project: ProjectInput,
    target: TargetInput,
    wanted: Wanted,
) -> Result<Option<Profile>, Failed> {
    let name = target.name(&ws.db).clone();
    let ledger_key = ledger_key(&name);
    let ledger: Vec<String> =
        lookup_local_record(&ws.db, &ledger_key).and_then(|r| postcard::from_bytes(&r.meta).ok()).unwrap_or_default();
    if wanted == Wanted::default() && ledger.is_empty() {
        return Ok(None);
    }
    let dir = ws.config.out_dir.join(&name);
    let tmp = ws.config.out_dir.join(".tmp");

    // What is there already: the dumps' manifest, the stored profile.
    let dumps_key = if wanted.dumps { Some(run_key(&ws.db, project, target, "dumps")?) } else { None };
    let dumps_manifest: Option<Manifest> =
        dumps_key.and_then(|key| lookup_local_record(&ws.db, &key)).and_then(|r| postcard::from_bytes(&r.meta).ok());
    let profile_key = if wanted.profile { Some(run_key(&ws.db, project, target, "profile")?) } else { None };
    let stored_profile: Option<StoredProfile> =
        profile_key.and_then(|key| lookup_local_record(&ws.db, &key)).and_then(|r| postcard::from_bytes(&r.meta).ok());

    // A no-op build stats the listed files and loads no stage value.
    let dumps_intact = dumps_manifest.as_ref().is_some_and(|files| holds_all(ws.stamps_mut(), &dir, files));
    let needs_dumps = wanted.dumps && !dumps_intact;
    let needs_timing = wanted.profile && stored_profile.is_none();
    let mut run = Run::default();
    if needs_dumps || needs_timing {
        run = Run::prepare(ws, project, target, needs_dumps, dumps_manifest.as_ref(), needs_timing)?;
    }
    // The ledger lists every file before it is written: a build killed while it writes
    // leaves no file the next build would not know to remove.
    let mut ledger = ledger;
    let planned: Vec<String> =
        run.planned_files().chain(wanted.profile.then(profile_files).into_iter().flatten()).collect();
    if planned.iter().any(|rel| !ledger.contains(rel)) {
        ledger = ledger.into_iter().chain(planned).collect::<BTreeSet<String>>().into_iter().collect();
        record(ws, &ledger_key, postcard::to_stdvec(&ledger).map_err(super::convert::internal)?)?;
    }
    let mut files: Vec<(String, [u8; 32])> = Vec::new();
    if !run.is_idle() {
        run.execute(ws, &dir, &tmp)?;
    }
    if let Some(key) = dumps_key {
        let manifest = run.dumps_manifest(dumps_manifest.clone().unwrap_or_default());
        // A no-op build writes nothing to the store.
        if dumps_manifest.as_ref() != Some(&manifest) {
            record(ws, &key, postcard::to_stdvec(&manifest).map_err(super::convert::internal)?)?;
        }
        files.extend(manifest);
    }
    let mut profile = None;
    if let Some(key) = profile_key {
        let (measured, previous_files) = match (run.times.take(), run.program.as_ref(), stored_profile) {
            (Some(times), Some(program), _) => (Profile::new(program, &times), None),
            (None, _, Some(stored)) => (stored.profile, Some(stored.files)),
            _ => return Err(super::convert::internal("the profile was neither stored nor measured")),
        };
        let rendered = [(PROFILE_CSV, measured.csv()), (PROFILE_JSON, measured.json(&name))];
        let mut manifest = Vec::new();
        for (rel, text) in rendered {
            let digest = write_if_changed(ws.stamps_mut(), &tmp, &dir.join(rel), text.as_bytes())?;
            manifest.push((rel.to_string(), *digest.as_bytes()));
        }
        if previous_files.as_ref() != Some(&manifest) {
            let stored = StoredProfile { files: manifest.clone(), profile: measured.clone() };
            record(ws, &key, postcard::to_stdvec(&stored).map_err(super::convert::internal)?)?;
        }
        files.extend(manifest);
        profile = Some(measured);
    }

    let kept: BTreeSet<&str> = files.iter().map(|(rel, _)| rel.as_str()).collect();
    remove_unkept(&dir, ledger.iter().map(String::as_str).filter(|rel| !kept.contains(rel)));
    let new_ledger: Vec<String> = kept.iter().map(|rel| rel.to_string()).collect();
    if new_ledger != ledger {
        record(ws, &ledger_key, postcard::to_stdvec(&new_ledger).map_err(super::convert::internal)?)?;
    }
    Ok(profile)
}

/// The profile's files.
fn profile_files() -> impl Iterator<Item = String> {
    [PROFILE_CSV, PROFILE_JSON].into_iter().map(str::to_string)
}

/// Whether every file of `files` under `dir` holds its digest.
fn holds_all(stamps: &mut Stamps, dir: &Path, files: &[(String, [u8; 32])]) -> bool {
    files.iter().all(|(rel, digest)| stamps.holds(&dir.join(rel), &Digest::from_bytes(*digest)))
}

/// Writes `bytes` to `path` (through `tmp`) unless it holds them already; their digest.
fn write_if_changed(stamps: &mut Stamps, tmp: &Path, path: &Path, bytes: &[u8]) -> Result<Digest, Failed> {
    let digest = blake3::hash(bytes);
    if !stamps.holds(path, &digest) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
        }
        std::fs::create_dir_all(tmp).map_err(|e| write_error(tmp, e))?;
        write_into_existing_dirs(tmp, path, bytes).map_err(|e| write_error(path, e))?;
        stamps.wrote(path, digest);
    }
    Ok(digest)
}

/// Removes the files `rels` of `dir` (those already gone are fine), then each directory
/// below `dir` they were in that is empty now, deepest first.
fn remove_unkept<'a>(dir: &Path, rels: impl Iterator<Item = &'a str>) {
    let mut parents: BTreeSet<PathBuf> = BTreeSet::new();
    for rel in rels {
        let path = dir.join(rel);
        // Best effort: a file that cannot be removed stays, as a file of the user's would.
        let _ = std::fs::remove_file(&path);
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| p.starts_with(dir) && *p != dir) {
            parents.insert(p.to_path_buf());
            parent = p.parent();
        }
    }
    // Longer paths first: a Result_<N> directory before debug/.
    let mut parents: Vec<PathBuf> = parents.into_iter().collect();
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in parents {
        let _ = std::fs::remove_dir(&p);
    }
}

/// The run this build needs: which samples dump their tensors, whether every sample is timed.
#[derive(Default)]
struct Run {
    /// Some sample's dump files are missing or stale.
    dumps: bool,
    program: Option<Program>,
    samples: Option<super::inputs::SampleSource>,
    /// The tensors a dump writes, in program order, with their file stems.
    dumped: Vec<(TensorId, String)>,
    names: Vec<String>,
    /// The samples whose dump files are missing or stale.
    dump_samples: BTreeSet<usize>,
    /// Time every sample (the profile is not stored).
    timed: bool,
    /// Per sample, per step: filled by [`Run::execute`] when `timed`.
    times: Option<Vec<Vec<Duration>>>,
    /// The dump files written (or found intact) by sample.
    written: BTreeMap<usize, Manifest>,
    map_file: Option<(String, [u8; 32])>,
}

impl Run {
    fn prepare(
        ws: &mut Workspace,
        project: ProjectInput,
        target: TargetInput,
        dumps: bool,
        manifest: Option<&Manifest>,
        timed: bool,
    ) -> Result<Run, Failed> {
        let bin = stages::compile_value(&ws.db, project, target)?;
        let program = Program::from_bytes(&bin.bytes).map_err(super::convert::internal)?;
        let graph = stages::target_optimize_value(&ws.db, project, target)?;
        let samples =
            super::inputs::sample_source(&ws.db, project, &graph, project.verify(&ws.db), project.verify_max(&ws.db))?;
        let mut dumped_ids: Vec<TensorId> = Vec::new();
        for step in &program.steps {
            for &id in &step.outputs {
                if !dumped_ids.contains(&id) {
                    dumped_ids.push(id);
                }
            }
        }
        let names: Vec<String> =
            dumped_ids.iter().map(|&id| program.tensor_name(id).unwrap_or_default().to_string()).collect();
        let stems = output_file_stems(&names);
        let dumped: Vec<(TensorId, String)> = dumped_ids.into_iter().zip(stems).collect();
        let dir = ws.config.out_dir.join(target.name(&ws.db));
        let mut written: BTreeMap<usize, Manifest> = BTreeMap::new();
        let mut dump_samples = BTreeSet::new();
        if dumps {
            // A manifest is written whole, so a sample it lists is intact when each of its
            // files holds its digest.
            let mut listed: BTreeMap<usize, Manifest> = BTreeMap::new();
            for (rel, digest) in manifest.into_iter().flatten() {
                if let Some(n) = sample_of(rel) {
                    listed.entry(n).or_default().push((rel.clone(), *digest));
                }
            }
            for n in 0..samples.len() {
                let intact = listed.get(&n).is_some_and(|files| holds_all(ws.stamps_mut(), &dir, files));
                match listed.remove(&n).filter(|_| intact) {
                    Some(files) => {
                        written.insert(n, files);
                    }
                    None => {
                        dump_samples.insert(n);
                    }
                }
            }
        }
        let mut run = Run {
            dumps,
            program: Some(program),
            samples: Some(samples),
            dumped,
            names,
            dump_samples,
            timed,
            times: None,
            written,
            map_file: None,
        };
        if dumps {
            let stems: Vec<String> = run.dumped.iter().map(|(_, stem)| stem.clone()).collect();
            let map = tensor_map_json(&run.names, &stems);
            let path = dir.join(DEBUG_DIR).join("tensor_names.json");
            let tmp = ws.config.out_dir.join(".tmp");
            let digest = write_if_changed(ws.stamps_mut(), &tmp, &path, map.as_bytes())?;
            run.map_file = Some((format!("{DEBUG_DIR}/tensor_names.json"), *digest.as_bytes()));
        }
        Ok(run)
    }

    /// The dump files this run writes (besides those of intact samples).
    fn planned_files(&self) -> impl Iterator<Item = String> + '_ {
        let map = self.map_file.iter().map(|(rel, _)| rel.clone());
        let dumps = self
            .dump_samples
            .iter()
            .flat_map(move |n| self.dumped.iter().map(move |(_, stem)| format!("{DEBUG_DIR}/Result_{n}/{stem}.raw")));
        map.chain(dumps)
    }

    /// Nothing to run: no sample to dump, nothing to time.
    fn is_idle(&self) -> bool {
        self.dump_samples.is_empty() && !self.timed
    }

    /// Runs the samples that dump or are timed, in order, on this thread.
    fn execute(&mut self, ws: &mut Workspace, dir: &Path, tmp: &Path) -> Result<(), Failed> {
        let program = self.program.as_ref().ok_or_else(|| super::convert::internal("no model.bin was loaded"))?;
        let prepared = crate::runtime::exec::prepare(program).map_err(super::convert::internal)?;
        let samples = self.samples.take().ok_or_else(|| super::convert::internal("no verify samples were read"))?;
        let mut stem_of: Vec<Option<&str>> = vec![None; program.tensors.len()];
        for (id, stem) in &self.dumped {
            if let Some(slot) = stem_of.get_mut(id.index()) {
                *slot = Some(stem);
            }
        }
        let order: Vec<usize> =
            if self.timed { (0..samples.len()).collect() } else { self.dump_samples.iter().copied().collect() };
        let mut times = Vec::with_capacity(if self.timed { samples.len() } else { 0 });
        std::fs::create_dir_all(tmp).map_err(|e| write_error(tmp, e))?;
        let (db, stamps) = ws.db_and_stamps();
        let progress = &*db.services().progress;
        progress
            .start(&format!("debug run {}", dir.file_name().unwrap_or_default().to_string_lossy()), order.len() as u64);
        for n in order {
            let inputs = samples.read(n)?;
            let dumping = self.dump_samples.contains(&n);
            let sample_dir = dir.join(DEBUG_DIR).join(format!("Result_{n}"));
            if dumping {
                std::fs::create_dir_all(&sample_dir).map_err(|e| write_error(&sample_dir, e))?;
            }
            let mut files: Manifest = Vec::new();
            let mut failure: Option<Failed> = None;
            let mut observe = |id: TensorId, tensor: &Tensor| {
                let Some(stem) = stem_of.get(id.index()).copied().flatten() else { return };
                if !dumping || failure.is_some() {
                    return;
                }
                let path = sample_dir.join(format!("{stem}.raw"));
                match write_if_changed(stamps, tmp, &path, &float32_bytes(tensor)) {
                    Ok(digest) => files.push((format!("{DEBUG_DIR}/Result_{n}/{stem}.raw"), *digest.as_bytes())),
                    Err(failed) => failure = Some(failed),
                }
            };
            let mut sample_times = vec![Duration::ZERO; program.steps.len()];
            let result = if self.timed {
                prepared.run_timed(&inputs, &mut observe, &mut |index, elapsed| {
                    if let Some(slot) = sample_times.get_mut(index) {
                        *slot = elapsed;
                    }
                })
            } else {
                prepared.run(&inputs, &mut observe)
            };
            result.map_err(super::convert::internal)?;
            if let Some(failed) = failure {
                return Err(failed);
            }
            if dumping {
                self.written.insert(n, files);
            }
            if self.timed {
                times.push(sample_times);
            }
            progress.advance();
        }
        progress.finish();
        if self.timed {
            self.times = Some(times);
        }
        Ok(())
    }

    /// Every dump file of every sample, and the name map: the new manifest. `previous` is
    /// the manifest the build found, which stands when nothing ran.
    fn dumps_manifest(&mut self, previous: Manifest) -> Manifest {
        if !self.dumps {
            return previous;
        }
        let mut manifest: Manifest = self.map_file.take().into_iter().collect();
        for files in std::mem::take(&mut self.written).into_values() {
            manifest.extend(files);
        }
        manifest
    }
}

/// The sample number of a dump file, `debug/Result_<N>/...`.
fn sample_of(rel: &str) -> Option<usize> {
    rel.strip_prefix(DEBUG_DIR)?.strip_prefix("/Result_")?.split('/').next()?.parse().ok()
}

/// A tensor as the SDK's float output files hold it: float32, little-endian (a quantized
/// tensor dequantized, an integer one converted).
fn float32_bytes(tensor: &Tensor) -> Vec<u8> {
    match tensor.as_f32() {
        Some(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        None => tensor.to_f32_vec().iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_files_know_their_sample() {
        assert_eq!(sample_of("debug/Result_12/_conv1_Conv_output_0.raw"), Some(12));
        assert_eq!(sample_of("debug/tensor_names.json"), None);
        assert_eq!(sample_of("outputs/Result_3/logits.raw"), None);
    }

    #[test]
    fn removing_unkept_files_leaves_other_files_and_the_target_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("htp");
        for rel in ["debug/Result_0/a.raw", "debug/Result_1/a.raw", "debug/Result_1/mine.txt", "profile.csv"] {
            std::fs::create_dir_all(dir.join(rel).parent().unwrap()).unwrap();
            std::fs::write(dir.join(rel), b"x").unwrap();
        }
        remove_unkept(
            &dir,
            ["debug/Result_0/a.raw", "debug/Result_1/a.raw", "profile.csv", "debug/gone.raw"].into_iter(),
        );
        // Result_0 emptied and removed; Result_1 keeps a file qairt did not write, so it and
        // debug/ stay; out/<target>/ itself is never removed.
        assert!(!dir.join("debug/Result_0").exists());
        assert!(dir.join("debug/Result_1/mine.txt").is_file());
        assert!(!dir.join("debug/Result_1/a.raw").exists() && !dir.join("profile.csv").exists());
        remove_unkept(&dir, ["debug/Result_1/mine.txt"].into_iter());
        assert!(!dir.join("debug").exists());
        assert!(dir.is_dir());
    }
}
