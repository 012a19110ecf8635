//! Writes `out/<target>/` from the stage values, part by part (the exports, `model.bin`, the
//! runs' outputs, `verify/`; the opt-in dumps and profile come from `debug_run.rs`). A manifest of `(path, digest)` is kept in the store per part and
//! combination of the stage outputs it shows, so a no-op build only stats the files, an edit
//! re-renders only the parts it changed, and deleting `out/` restores it from the store
//! without running any stage.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diag::Diag;

use super::db::{Db, Failed, ProjectInput, Stage, TargetInput};
use super::debug_run;
use super::io_files::{self, OutputForm};
use super::memo::KeyBuilder;
use super::output_names::{name_map_json, output_file_stems};
use super::sensitivity_stage;
use super::stages;
use super::store::{ActionRecord, Digest, write_atomically, write_into_existing_dirs};
use super::verify_stage;
use crate::ir::Tensor;
use crate::project::OutputFiles;
use crate::project::io::OutputDtype;
use crate::runtime::profile::Profile;

/// The file `qairt suggest` writes (and every later build keeps) under `out/<target>/verify/`.
pub const SUGGESTED_OVERRIDES: &str = "suggested_overrides.json";
use super::workspace::Workspace;

fn write_error(path: &Path, e: std::io::Error) -> Failed {
    Failed(vec![Diag::error("qairt::io::write", format!("cannot write {}: {e}", path.display()))])
}

/// The files of `out/<target>/` (besides `build.json`) come in parts, each rendered from the
/// values of the stages it shows and recorded with its own manifest: an edit that re-runs only
/// `verify` re-renders only `verify/`, never the model exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// `encodings.json`, `model.qdq.onnx` (quantized targets).
    Encodings,
    /// `model.bin`.
    Model,
    /// `outputs/`, `reference/` and `output_names.json`.
    Runs,
    /// `verify/`.
    Verify,
}

impl Part {
    const ALL: [Part; 4] = [Part::Encodings, Part::Model, Part::Runs, Part::Verify];

    fn name(self) -> &'static str {
        match self {
            Part::Encodings => "encodings",
            Part::Model => "model",
            Part::Runs => "runs",
            Part::Verify => "verify",
        }
    }
}

/// The key of a part's manifest: the stages it renders, and how.
fn part_key(
    ws: &Workspace,
    project: ProjectInput,
    target: TargetInput,
    part: Part,
    profile: Option<&Profile>,
) -> Result<Digest, Failed> {
    let name = target.name(&ws.db);
    let key =
        KeyBuilder::new(Stage::Verify).bytes("materialize", name.as_bytes()).bytes("part", part.name().as_bytes());
    let key = match part {
        Part::Encodings => key.digest("quantize", &ws.stage_key(project, target, Stage::Quantize)?),
        Part::Model => key.digest("compile", &ws.stage_key(project, target, Stage::Compile)?),
        Part::Runs => {
            let key = key
                .digest("simulate", &ws.stage_key(project, target, Stage::Simulate)?)
                .digest("reference", &stages::reference_record(&ws.db, project)?.key)
                .bytes("output files", ws.config.verify.output_files.name().as_bytes())
                // Since distinct file names and output_names.json (older manifests lack the map).
                .bytes("layout", b"2");
            // The form `[io]` gives the output files (a native file's codes come from the
            // target's encodings, which the simulate key holds); none: the key as before.
            let io = &ws.config.io;
            if io.outputs_are_default() { key } else { key.value("io outputs", &(&io.outputs, io.native_outputs)) }
        }
        Part::Verify => {
            let mut key = key
                .digest("verify", &ws.stage_key(project, target, Stage::Verify)?)
                .bytes("project", ws.config.name.as_bytes());
            if let Some((digest, _)) = sensitivity_stage::cached_sensitivity(&ws.db, project, target) {
                key = key.digest("sensitivity", &digest);
            }
            // The report shows the profile when there is one (and only then: a build without
            // it renders the page it always did).
            if let Some(profile) = profile {
                key = key.value("profile", profile);
            }
            key
        }
    };
    Ok(key.finish())
}

/// The files of one part, rendered from the stage values.
fn render(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
    part: Part,
    project_name: &str,
    output_files: OutputFiles,
    profile: Option<&Profile>,
) -> Result<Vec<(String, Vec<u8>)>, Failed> {
    let mut files = Vec::new();
    match part {
        Part::Encodings => {
            let q = stages::quantize_value(db, project, target)?;
            files.push(("encodings.json".to_string(), crate::quant::write_encodings_json(&q).into_bytes()));
            let qdq = crate::onnx::export::export_qdq(&q).map_err(|e| {
                Failed(vec![Diag::error("qairt::export::qdq", format!("cannot export model.qdq.onnx: {e}")).with_help(
                    "model.qdq.onnx can hold only what ONNX opset 21 expresses: integer activations of up \
                         to 16 bits, float16 and float32 tensors",
                )])
            })?;
            files.push(("model.qdq.onnx".to_string(), qdq));
        }
        Part::Model => {
            files.push(("model.bin".to_string(), stages::compile_value(db, project, target)?.bytes.clone()));
        }
        Part::Runs => {
            let simulated = stages::simulate_value(db, project, target)?;
            let reference = stages::reference_value(db, project)?;
            let names = &simulated.outputs.output_names;
            let stems = output_file_stems(names);
            files.push(("output_names.json".to_string(), name_map_json(names, &stems).into_bytes()));
            let forms = output_forms(db, project, target, &simulated.outputs)?;
            // Each output in its own element type (the SDK's native output files), or float32
            // for every output (the SDK's default form), unless `[io]` says otherwise.
            let own = |tensor: &Tensor| match output_files {
                OutputFiles::Native => tensor.data.to_packed_bytes(),
                OutputFiles::Float32 => tensor.to_f32_vec().iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            for (dir, run) in [("outputs", &simulated.outputs), ("reference", &*reference)] {
                debug_assert_eq!(run.output_names, simulated.outputs.output_names);
                for (n, sample) in run.samples.iter().enumerate() {
                    for ((stem, tensor), form) in stems.iter().zip(sample).zip(&forms) {
                        let bytes = if dir == "outputs" {
                            form.output_bytes(tensor, own)
                        } else {
                            form.reference_bytes(tensor, own)
                        };
                        let bytes = bytes.map_err(super::convert::internal)?;
                        files.push((format!("{dir}/Result_{n}/{stem}.raw"), bytes));
                    }
                }
            }
        }
        Part::Verify => render_verify(db, project, target, project_name, profile, &mut files)?,
    }
    Ok(files)
}

/// The form `[io]` gives each output's files; the target's encodings are read only when an
/// output is written native.
fn output_forms(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
    run: &stages::RunOutputs,
) -> Result<Vec<OutputForm>, Failed> {
    let io = project.io(db);
    let names = &run.output_names;
    let Some(first) = run.samples.first().filter(|_| !io.outputs_are_default()) else {
        return Ok(vec![OutputForm::default(); names.len()]);
    };
    let shapes: Vec<Vec<usize>> = first.iter().map(|t| t.shape.clone()).collect();
    let native = names.iter().any(|name| io.output_dtype(name) == Some(OutputDtype::Native));
    let quantized = if native && stages::is_quantized(db, project, target)? {
        Some(stages::quantize_value(db, project, target)?)
    } else {
        None
    };
    let encoding = |name: &str| {
        let q = quantized.as_ref()?;
        let id = q.graph.outputs.iter().copied().find(|&id| q.graph.name(id) == name)?;
        q.encodings.get(&id).cloned()
    };
    io_files::output_forms(io, names, &shapes, encoding).map_err(Failed)
}

/// `verify/`: the summaries, the checker's report, the suggested overrides and `report.html`.
fn render_verify(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
    project_name: &str,
    profile: Option<&Profile>,
    files: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), Failed> {
    let summary = verify_stage::verify_value(db, project, target)?;
    files.push(("verify/summary.json".to_string(), summary.json.clone().into_bytes()));
    files.push(("verify/summary.csv".to_string(), summary.csv.clone().into_bytes()));
    if let Some(checker) = &summary.checker {
        let document = CheckerJson {
            report: checker,
            activation_samples: summary.activation_samples.map(|(analysed, of)| ActivationSamples { analysed, of }),
        };
        let mut json = serde_json::to_string_pretty(&document).map_err(super::convert::internal)?;
        json.push('\n');
        files.push(("verify/checker.json".to_string(), json.into_bytes()));
    }
    let sensitivity = sensitivity_stage::cached_sensitivity(db, project, target).map(|(_, r)| r);
    let mut overrides_path = None;
    if let Some(result) = sensitivity.as_deref().filter(|r| !r.chosen.is_empty()) {
        let (base, graph) = sensitivity_stage::suggest_inputs(db, project, target)?;
        let suggested = sensitivity_stage::suggested_overrides(base.as_ref(), &graph, result);
        let json =
            crate::quant::aimet::write_overrides_json(&suggested, crate::quant::aimet::AimetVersion::V0_6_1, None)
                .map_err(super::convert::internal)?;
        let rel = format!("verify/{SUGGESTED_OVERRIDES}");
        overrides_path = Some(format!("out/{}/{rel}", target.name(db)));
        files.push((rel, json.into_bytes()));
    }
    let page = crate::verify::report_page::report_data(crate::verify::report_page::ReportInput {
        project: project_name,
        target: target.name(db),
        summary: &summary.summary,
        checker: summary.checker.as_ref(),
        activation_samples: summary.activation_samples,
        histograms: summary.histograms.clone(),
        sensitivity: sensitivity.as_deref(),
        overrides_path,
        profile,
    });
    files.push(("verify/report.html".to_string(), crate::verify::html::render_report(&page).into_bytes()));
    Ok(())
}

#[derive(Serialize)]
struct Provenance<'a> {
    tool: &'static str,
    version: &'static str,
    project: &'a str,
    target: &'a str,
    backend: &'a str,
    inputs: Vec<(String, String)>,
    stages: Vec<(&'static str, String)>,
}

fn provenance(ws: &Workspace, project: ProjectInput, target: TargetInput, name: &str) -> Result<Vec<u8>, Failed> {
    let root = &ws.config.root;
    let inputs = ws
        .input_digests()
        .into_iter()
        .map(|(path, digest)| {
            // Relative even when outside the project (`../data/x.raw`): out/ does not depend
            // on where the project was checked out.
            let shown = crate::project::paths::relative_to(root, &path).display().to_string();
            (shown, digest.to_hex().to_string())
        })
        .collect();
    let mut stage_keys = Vec::new();
    for stage in ws.stages_of(name)? {
        stage_keys.push((stage.name(), ws.stage_key(project, target, stage)?.to_hex().to_string()));
    }
    let record = Provenance {
        tool: "qairt",
        version: env!("CARGO_PKG_VERSION"),
        project: &ws.config.name,
        target: name,
        backend: target.backend(&ws.db),
        inputs,
        stages: stage_keys,
    };
    let mut json = serde_json::to_string_pretty(&record).map_err(super::convert::internal)?;
    json.push('\n');
    Ok(json.into_bytes())
}

pub fn materialize(ws: &mut Workspace, project: ProjectInput, target: TargetInput) -> Result<(), Failed> {
    super::owned_dir::claim(&ws.config.out_dir, super::owned_dir::DirKind::Out).map_err(|diag| Failed(vec![diag]))?;
    let name = target.name(&ws.db).clone();
    let dir = ws.config.out_dir.join(&name);
    let tmp = ws.config.out_dir.join(".tmp");
    let quantized = stages::is_quantized(&ws.db, project, target)?;

    let output_files = ws.config.verify.output_files;
    // The dumps and the profile first: the report shows the profile.
    let wanted = ws.simulate_wanted();
    let profile = debug_run::materialize(ws, project, target, wanted)?;
    for part in Part::ALL {
        if part == Part::Encodings && !quantized {
            continue;
        }
        let key = part_key(ws, project, target, part, profile.as_ref())?;
        let manifest: Option<Vec<(String, [u8; 32])>> =
            super::memo::lookup_local_record(&ws.db, &key).and_then(|r| postcard::from_bytes(&r.meta).ok());
        let complete = manifest.as_ref().is_some_and(|files| {
            files.iter().all(|(rel, digest)| ws.stamps_mut().holds(&dir.join(rel), &Digest::from_bytes(*digest)))
        });
        if complete {
            continue;
        }
        let files = render(&ws.db, project, target, part, &ws.config.name, output_files, profile.as_ref())?;
        let mut manifest = Vec::with_capacity(files.len());
        std::fs::create_dir_all(&tmp).map_err(|e| write_error(&tmp, e))?;
        let mut made_dirs = std::collections::HashSet::new();
        for (rel, bytes) in files {
            let digest = blake3::hash(&bytes);
            let path: PathBuf = dir.join(&rel);
            if !ws.stamps_mut().holds(&path, &digest) {
                if let Some(parent) = path.parent()
                    && made_dirs.insert(parent.to_path_buf())
                {
                    std::fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
                }
                write_into_existing_dirs(&tmp, &path, &bytes).map_err(|e| write_error(&path, e))?;
                ws.stamps_mut().wrote(&path, digest);
            }
            manifest.push((rel, *digest.as_bytes()));
        }
        let meta = postcard::to_stdvec(&manifest).map_err(super::convert::internal)?;
        // What this checkout's out/ holds: a local fact.
        ws.store()
            .record_local(&key, &ActionRecord { output: [0; 32], size: 0, meta })
            .map_err(|e| write_error(ws.store().root(), e))?;
    }
    let build_json = provenance(ws, project, target, &name)?;
    let digest = blake3::hash(&build_json);
    let path = dir.join("build.json");
    if !ws.stamps_mut().holds(&path, &digest) {
        write_atomically(&tmp, &path, &build_json).map_err(|e| write_error(&path, e))?;
        ws.stamps_mut().wrote(&path, digest);
    }
    let _ = std::fs::remove_dir(&tmp);
    Ok(())
}

/// `checker.json`: the report, and when the activation analyses saw only the first verify
/// samples, how many of how many.
#[derive(serde::Serialize)]
struct CheckerJson<'a> {
    #[serde(flatten)]
    report: &'a crate::verify::checker::CheckerReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    activation_samples: Option<ActivationSamples>,
}

#[derive(serde::Serialize)]
struct ActivationSamples {
    analysed: usize,
    of: usize,
}
