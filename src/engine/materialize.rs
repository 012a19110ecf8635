//! Writes `out/<target>/` from the stage values. A manifest of `(path, digest)` is kept in the
//! store per combination of stage outputs, so a no-op build only stats the files; deleting
//! `out/` restores it from the store without running any stage.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diag::Diag;
use crate::quant::aimet::sanitize_name;

use super::db::{Db, Failed, ProjectInput, Stage, TargetInput};
use super::memo::KeyBuilder;
use super::sensitivity_stage;
use super::stages;
use super::store::{ActionRecord, Digest, write_atomically, write_into_existing_dirs};
use super::verify_stage;
use crate::project::OutputFiles;

/// The file `qairt suggest` writes (and every later build keeps) under `out/<target>/verify/`.
pub const SUGGESTED_OVERRIDES: &str = "suggested_overrides.json";
use super::workspace::Workspace;

fn write_error(path: &Path, e: std::io::Error) -> Failed {
    Failed(vec![Diag::error("qairt::io::write", format!("cannot write {}: {e}", path.display()))])
}

/// Every file of `out/<target>/` except `build.json`, rendered from the stage values.
fn render(
    db: &dyn Db,
    project: ProjectInput,
    target: TargetInput,
    quantized: bool,
    project_name: &str,
    output_files: OutputFiles,
) -> Result<Vec<(String, Vec<u8>)>, Failed> {
    let mut files = Vec::new();
    if quantized {
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
    files.push(("model.bin".to_string(), stages::compile_value(db, project, target)?.bytes.clone()));
    let simulated = stages::simulate_value(db, project, target)?;
    let reference = stages::reference_value(db, project)?;
    for (dir, run) in [("outputs", &simulated.outputs), ("reference", &*reference)] {
        for (n, sample) in run.samples.iter().enumerate() {
            for (name, tensor) in run.output_names.iter().zip(sample) {
                // Each output in its own element type (the SDK's native output files), or
                // float32 for every output (the SDK's default form).
                let bytes = match output_files {
                    OutputFiles::Native => tensor.data.to_packed_bytes(),
                    OutputFiles::Float32 => tensor.to_f32_vec().iter().flat_map(|v| v.to_le_bytes()).collect(),
                };
                files.push((format!("{dir}/Result_{n}/{}.raw", sanitize_name(name)), bytes));
            }
        }
    }
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
    });
    files.push(("verify/report.html".to_string(), crate::verify::html::render_report(&page).into_bytes()));
    Ok(files)
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
            let shown = path.strip_prefix(root).unwrap_or(&path).display().to_string();
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
    let name = target.name(&ws.db).clone();
    let dir = ws.config.out_dir.join(&name);
    let tmp = ws.config.out_dir.join(".tmp");
    let quantized = stages::is_quantized(&ws.db, project, target)?;

    let output_files = ws.config.verify.output_files;
    let mut key = KeyBuilder::new(Stage::Verify)
        .bytes("materialize", name.as_bytes())
        .bytes("output files", output_files.name().as_bytes());
    for stage in ws.stages_of(&name)? {
        key = key.digest(stage.name(), &ws.stage_key(project, target, stage)?);
    }
    if let Some((digest, _)) = sensitivity_stage::cached_sensitivity(&ws.db, project, target) {
        key = key.digest("sensitivity", &digest);
    }
    let key = key.finish();
    let manifest: Option<Vec<(String, [u8; 32])>> =
        ws.store().lookup(&key).ok().flatten().and_then(|r| postcard::from_bytes(&r.meta).ok());
    let complete = manifest.as_ref().is_some_and(|files| {
        files.iter().all(|(rel, digest)| ws.stamps_mut().holds(&dir.join(rel), &Digest::from_bytes(*digest)))
    });
    if !complete {
        let files = render(&ws.db, project, target, quantized, &ws.config.name, output_files)?;
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
        ws.store()
            .record(&key, &ActionRecord { output: [0; 32], size: 0, meta })
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
