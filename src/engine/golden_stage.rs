//! `[verify] golden`: reads another tool's dump (a directory of `Result_<N>/<name>.raw`, or a
//! flat one for a single sample) and lines its files up with the graph's tensors
//! ([`crate::verify::golden`]), so that verify compares against it instead of qairt's own
//! float run. Not cached on disk: reading the files is the whole cost.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::Diag;
use crate::verify::GoldenReport;
use crate::verify::golden::{self, GoldenFile, GoldenMatch, Wanted};

use super::db::{Db, Failed, GoldenInput, ProjectInput};
use super::inputs::read_file;

/// The golden values of every matched tensor, samples back to back.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalGolden {
    pub values: BTreeMap<String, Vec<f32>>,
    pub report: GoldenReport,
}

/// The dump's files and mapping by content: part of the key of every action that reads it.
pub type DumpKey = Option<(Vec<(String, [u8; 32])>, Option<[u8; 32]>)>;

pub fn dump_key(db: &dyn Db, project: ProjectInput) -> DumpKey {
    project.golden(db).map(|g| {
        let files: Vec<(String, [u8; 32])> =
            g.files(db).iter().map(|(p, f)| (p.clone(), *f.digest(db).as_bytes())).collect();
        (files, g.mapping(db).map(|m| *m.digest(db).as_bytes()))
    })
}

/// The tensors an external golden dump may provide: every float layer and graph output, graph
/// order, with their element counts.
pub fn wanted(graph: &crate::ir::Graph) -> Vec<Wanted> {
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let ids = graph.nodes.iter().flat_map(|n| n.outputs.iter().copied()).chain(graph.outputs.iter().copied());
    for id in ids {
        let info = graph.info(id);
        if info.dtype == crate::ir::DType::F32 && seen.insert(id) {
            wanted.push(Wanted { name: info.name.clone(), elements: info.shape.iter().product() });
        }
    }
    wanted
}

fn layout_error(dir: &std::path::Path, message: String, help: &str) -> Failed {
    Failed(vec![Diag::error("qairt::golden::layout", message).in_file(dir).with_help(help.to_string())])
}

/// Reads and matches the dump for `wanted` tensors (graph order), expecting `samples` samples.
pub fn read_golden(
    db: &dyn Db,
    input: GoldenInput,
    wanted: &[Wanted],
    samples: usize,
) -> Result<Arc<ExternalGolden>, Failed> {
    let dir = input.dir(db).clone();
    let files = input.files(db);
    let top: Vec<String> = {
        let mut names: Vec<String> = files.iter().map(|(p, _)| p.split('/').next().unwrap_or(p).to_string()).collect();
        names.dedup();
        names
    };
    let sample_dirs = golden::sample_dirs(&top).map_err(|e| {
        layout_error(
            &dir,
            e.to_string(),
            "a golden dump holds Result_0, Result_1, ... (one per verify sample), or only .raw files for one sample",
        )
    })?;
    let count = sample_dirs.len().max(1);
    if count != samples {
        return Err(layout_error(
            &dir,
            format!("the golden dump has {count} sample(s), the verify input list has {samples}"),
            "give one Result_<N> per line of the verify input list (set [verify] max_samples or input_list to match the dump)",
        ));
    }
    let mapping = match input.mapping(db) {
        Some(file) => {
            let bytes = read_file(db, file)?;
            let path = file.path(db).clone();
            let text = String::from_utf8_lossy(&bytes);
            let parsed = golden::parse_mapping(&text).map_err(|e| {
                Failed(vec![
                    Diag::error("qairt::golden::mapping", e.message.clone())
                        .in_file(&path)
                        .at(e.span.offset, e.span.len, format!("expected {}", e.expected))
                        .with_help("a tensor mapping is a JSON object {\"<graph tensor>\": \"<golden name>\", ...}"),
                ])
            })?;
            Some(parsed)
        }
        None => None,
    };
    // Files of one sample directory, relative to it.
    let in_sample = |sample: Option<&str>| -> BTreeMap<String, super::db::SourceFile> {
        files
            .iter()
            .filter_map(|(path, file)| match sample {
                Some(s) => path.strip_prefix(s).and_then(|rest| rest.strip_prefix('/')).map(|r| (r.to_string(), *file)),
                None => Some((path.clone(), *file)),
            })
            .collect()
    };
    let first = in_sample(sample_dirs.first().map(String::as_str));
    let mut listed = Vec::with_capacity(first.len());
    for (path, file) in &first {
        let bytes = std::fs::metadata(file.path(db)).map(|m| m.len()).unwrap_or(0);
        listed.push(GoldenFile { relative_path: path.clone(), bytes });
    }
    let GoldenMatch { matched, unmatched_tensors, unmatched_files, wrong_size, collisions, closest } =
        golden::match_goldens(wanted, &listed, mapping.as_ref());
    if let Some((tensor, file, expected, got)) = wrong_size.first() {
        return Err(layout_error(
            &dir,
            format!("golden file {file} for tensor {tensor} has {got} bytes, expected {expected} (float32, its shape)"),
            "golden files are raw little-endian float32 of the tensor's whole shape",
        ));
    }
    if matched.is_empty() {
        let files: Vec<&str> = listed.iter().map(|f| f.relative_path.as_str()).take(5).collect();
        return Err(layout_error(
            &dir,
            format!("no golden file matches a tensor of the model (files: {}, ...)", files.join(", ")),
            "files are named <tensor>.raw, with the SDK's sanitized name, or / as sub-directories; \
             otherwise give [verify] tensor_mapping = \"<json: graph tensor -> golden name>\"",
        ));
    }
    let mut unmatched_tensors = unmatched_tensors;
    for c in &collisions {
        unmatched_tensors
            .extend(c.tensors.iter().filter(|t| !unmatched_tensors.contains(t)).cloned().collect::<Vec<_>>());
    }
    let mut values: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let sample_names: Vec<Option<&str>> =
        if sample_dirs.is_empty() { vec![None] } else { sample_dirs.iter().map(|s| Some(s.as_str())).collect() };
    for sample in sample_names {
        let here = in_sample(sample);
        for (tensor, path, _) in &matched {
            let Some(file) = here.get(path) else {
                return Err(layout_error(
                    &dir,
                    format!("{} has no {path} (tensor {tensor})", sample.unwrap_or(".")),
                    "every Result_<N> directory must hold the same files",
                ));
            };
            let bytes = read_file(db, *file)?;
            let decoded = golden::decode_raw(&bytes)
                .map_err(|e| Failed(vec![Diag::error("qairt::golden::raw", e.to_string()).in_file(file.path(db))]))?;
            let expected = wanted.iter().find(|w| &w.name == tensor).map_or(0, |w| w.elements);
            if decoded.len() != expected {
                return Err(Failed(vec![
                    Diag::error(
                        "qairt::golden::raw",
                        format!("{} values for tensor {tensor}, expected {expected}", decoded.len()),
                    )
                    .in_file(file.path(db)),
                ]));
            }
            values.entry(tensor.clone()).or_default().extend(decoded);
        }
    }
    Ok(Arc::new(ExternalGolden {
        values,
        report: GoldenReport {
            dir: dir.display().to_string(),
            samples: count,
            matched,
            unmatched_tensors,
            unmatched_files,
            closest,
        },
    }))
}
