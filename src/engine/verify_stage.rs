//! The `verify` stage: compares a target's simulated run with the float reference, per
//! output and per layer, and checks the thresholds.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::diag::Diag;
use crate::verify::{Summary, SummaryBuilder};

use super::convert;
use super::db::{Db, Failed, ProjectInput, Stage, TargetInput};
use super::inputs::read_file;
use super::memo::{KeyBuilder, Record, encode, load, memoize};
use super::stages;

/// The headline of a verification, kept in the action record so a cached build can report
/// it without loading the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    pub passed: bool,
    pub metrics: BTreeMap<String, f64>,
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyResult {
    pub outcome: VerifyOutcome,
    pub json: String,
    pub csv: String,
}

#[salsa::tracked(returns(clone))]
pub fn verify_record(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Record, Failed> {
    let simulated = stages::simulate_record(db, project, target)?;
    let reference = stages::reference_record(db, project)?;
    let labels = project.labels(db).map(|f| f.digest(db));
    let key = KeyBuilder::new(Stage::Verify)
        .digest("simulated", &simulated.output)
        .digest("reference", &reference.output)
        .value("labels", &labels.map(|d| *d.as_bytes()))
        .value("thresholds", project.thresholds(db))
        .finish();
    let name = target.name(db).clone();
    memoize(
        db,
        Stage::Verify,
        Some(&name),
        key,
        || compute_verify(db, project, target),
        |r: &VerifyResult| encode(&r.outcome),
    )
}

#[salsa::tracked(returns(clone))]
pub fn verify_value(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<Arc<VerifyResult>, Failed> {
    let record = verify_record(db, project, target)?;
    let name = target.name(db).clone();
    load(db, Stage::Verify, Some(&name), &record, || compute_verify(db, project, target))
}

fn read_labels(db: &dyn Db, project: ProjectInput, samples: usize) -> Result<Option<Vec<usize>>, Failed> {
    let Some(file) = project.labels(db) else { return Ok(None) };
    let bytes = read_file(db, file)?;
    let path = file.path(db).clone();
    let text = String::from_utf8_lossy(&bytes);
    let mut labels = Vec::new();
    let mut offset = 0;
    for line in text.split('\n') {
        let start = offset;
        offset += line.len() + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        match trimmed.parse::<usize>() {
            Ok(label) => labels.push(label),
            Err(_) => {
                return Err(Failed(vec![
                    Diag::error("qairt::labels::syntax", format!("`{trimmed}` is not a class index"))
                        .in_file(&path)
                        .at(start, line.len(), "expected a non-negative integer")
                        .with_help("labels.txt holds one class index per line, in the order of the verify input list"),
                ]));
            }
        }
    }
    if labels.len() < samples {
        return Err(Failed(vec![
            Diag::error(
                "qairt::labels::count",
                format!("{} has {} labels, the verify input list has {samples} samples", path.display(), labels.len()),
            )
            .in_file(&path)
            .with_help("give one label per line of the verify input list"),
        ]));
    }
    Ok(Some(labels))
}

fn compute_verify(db: &dyn Db, project: ProjectInput, target: TargetInput) -> Result<VerifyResult, Failed> {
    let simulated = stages::simulate_value(db, project, target)?;
    let reference = stages::reference_value(db, project)?;
    let graph = stages::optimize_value(db, project)?;
    let samples = reference.samples.len();
    let labels = read_labels(db, project, samples)?;
    let mut builder = SummaryBuilder::from_graph(&graph, project.thresholds(db).clone()).map_err(convert::internal)?;
    let layer_names: std::collections::BTreeSet<&str> = reference.layers.iter().map(|l| l.name.as_str()).collect();
    for n in 0..samples {
        builder.begin_sample(labels.as_ref().map(|l| l[n])).map_err(convert::internal)?;
        for (r, a) in reference.layers.iter().zip(&simulated.layers) {
            let size: usize = r.shape.iter().product();
            let range = n * size..(n + 1) * size;
            let (Some(rv), Some(av)) = (r.values.get(range.clone()), a.values.get(range)) else {
                return Err(convert::internal(format!("layer {} has fewer values than samples", r.name)));
            };
            builder.add_tensor(&r.name, rv, av).map_err(convert::internal)?;
        }
        for (k, name) in reference.output_names.iter().enumerate() {
            if layer_names.contains(name.as_str()) {
                continue;
            }
            let (Some(rt), Some(at)) = (reference.samples[n].get(k), simulated.samples[n].get(k)) else {
                return Err(convert::internal(format!("output {name} is missing for sample {n}")));
            };
            builder.add_tensor(name, &rt.to_f32_vec(), &at.to_f32_vec()).map_err(convert::internal)?;
        }
    }
    let summary = builder.finish().map_err(convert::internal)?;
    Ok(VerifyResult {
        outcome: outcome(&summary),
        json: crate::verify::summary_json(&summary),
        csv: crate::verify::summary_csv(&summary),
    })
}

fn outcome(summary: &Summary) -> VerifyOutcome {
    let mut metrics = BTreeMap::new();
    if let Some(first) = summary.outputs.first() {
        metrics.insert("sqnr_db".to_string(), first.metrics.sqnr_db);
        metrics.insert("cosine".to_string(), first.metrics.cosine);
        metrics.insert("mse".to_string(), first.metrics.mse);
        metrics.insert("max_abs_error".to_string(), first.metrics.max_abs_error);
        metrics.insert("top1_agreement".to_string(), first.top1_agreement);
        if let Some(acc) = &first.accuracy {
            metrics.insert("accuracy".to_string(), acc.actual);
            metrics.insert("reference_accuracy".to_string(), acc.reference);
        }
    }
    let failures = summary
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} = {:.4} on `{}` (limit {})", c.threshold.name(), c.measured, c.output, c.limit))
        .collect();
    VerifyOutcome { passed: summary.passed, metrics, failures }
}
