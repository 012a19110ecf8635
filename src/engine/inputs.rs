//! Reading input files inside stages: bytes checked against the digest the build was keyed
//! on, and raw tensors matched to the model's inputs.

use std::sync::Arc;

use crate::diag::{Diag, closest};
use crate::ir::{Graph, Tensor, TensorData};

use super::db::{DataList, Db, Failed, SourceFile};

/// Reads a file's bytes and checks them against the digest the build was keyed on: a file
/// edited mid-build is an error to retry, never a silently mixed result.
pub fn read_file(db: &dyn Db, file: SourceFile) -> Result<Arc<[u8]>, Failed> {
    let path = file.path(db);
    let bytes = std::fs::read(path).map_err(|e| {
        Failed(vec![Diag::error("qairt::io::read", format!("cannot read {}: {e}", path.display())).in_file(path)])
    })?;
    if blake3::hash(&bytes) != file.digest(db) {
        return Err(Failed(vec![
            Diag::error("qairt::io::changed", format!("{} changed while the build was running", path.display()))
                .with_help("run the build again"),
        ]));
    }
    Ok(bytes.into())
}

/// Reads the raw tensors of up to `max` samples of `list`, in the order of `graph.inputs`.
pub fn read_samples(
    db: &dyn Db,
    graph: &Graph,
    list: DataList,
    max: Option<usize>,
) -> Result<Vec<Vec<Tensor>>, Failed> {
    let list_path = list.list(db).path(db).clone();
    let input_names: Vec<&str> = graph.inputs.iter().map(|&id| graph.name(id)).collect();
    let mut samples = Vec::new();
    let mut diags = Vec::new();
    for sample in list.samples(db).iter().take(max.unwrap_or(usize::MAX)) {
        let mut tensors: Vec<Option<Tensor>> = vec![None; graph.inputs.len()];
        let bare = sample.entries.iter().all(|e| e.name.is_none());
        if bare && sample.entries.len() != graph.inputs.len() {
            diags.push(
                Diag::error(
                    "qairt::input_list::arity",
                    format!(
                        "line {} gives {} file(s), the model has {} input(s)",
                        sample.line,
                        sample.entries.len(),
                        graph.inputs.len()
                    ),
                )
                .in_file(&list_path)
                .at(sample.entries[0].span.0, sample.entries[0].span.1, "on this line")
                .with_help(format!(
                    "with several inputs, name each: {}",
                    input_names.iter().map(|n| format!("{n}:=<file>")).collect::<Vec<_>>().join(" ")
                )),
            );
            continue;
        }
        for (position, entry) in sample.entries.iter().enumerate() {
            let slot = match &entry.name {
                None => position,
                Some(name) => match input_names.iter().position(|n| n == name) {
                    Some(slot) => slot,
                    None => {
                        let mut help = format!("the model's inputs are: {}", input_names.join(", "));
                        if let Some(near) = closest(name, input_names.iter().copied()) {
                            help = format!("did you mean \"{near}\"? ({help})");
                        }
                        diags.push(
                            Diag::error(
                                "qairt::input_list::unknown_input",
                                format!("the model has no input named \"{name}\""),
                            )
                            .in_file(&list_path)
                            .at(entry.span.0, entry.span.1, "unknown input")
                            .with_help(help),
                        );
                        continue;
                    }
                },
            };
            let info = graph.info(graph.inputs[slot]);
            let bytes = match read_file(db, entry.file) {
                Ok(bytes) => bytes,
                Err(failed) => {
                    diags.extend(failed.0);
                    continue;
                }
            };
            // Raw files hold the input's own element type (the SDK's native input files).
            let per_byte = TensorData::per_byte(info.dtype);
            let expected = if per_byte == 1 {
                info.elements() * info.dtype.size_bytes()
            } else {
                info.elements().div_ceil(per_byte)
            };
            if bytes.len() != expected {
                diags.push(
                    Diag::error(
                        "qairt::input_list::raw_size",
                        format!(
                            "{} has {} bytes, but input \"{}\" of shape {:?} {} needs {expected}",
                            entry.file.path(db).display(),
                            bytes.len(),
                            info.name,
                            info.shape,
                            info.dtype.name()
                        ),
                    )
                    .in_file(&list_path)
                    .at(entry.span.0, entry.span.1, format!("{} bytes, expected {expected}", bytes.len()))
                    .with_help(format!(
                        "raw files are headerless little-endian {} (the input's own element type) in the \
                         model's input layout",
                        info.dtype.name()
                    )),
                );
                continue;
            }
            let data = TensorData::from_packed_bytes(info.dtype, &bytes, info.elements()).map_err(|e| {
                Failed(vec![Diag::error(
                    "qairt::input_list::raw_size",
                    format!("{}: {e}", entry.file.path(db).display()),
                )])
            })?;
            tensors[slot] = Some(Tensor { shape: info.shape.clone(), data });
        }
        let missing: Vec<&str> =
            tensors.iter().zip(&input_names).filter(|(t, _)| t.is_none()).map(|(_, n)| *n).collect();
        if diags.is_empty() && !missing.is_empty() {
            diags.push(
                Diag::error(
                    "qairt::input_list::missing_input",
                    format!("line {} gives no file for input(s) {}", sample.line, missing.join(", ")),
                )
                .in_file(&list_path)
                .at(sample.entries[0].span.0, sample.entries[0].span.1, "on this line"),
            );
        }
        if diags.len() > 20 {
            break;
        }
        if diags.is_empty() {
            samples.push(tensors.into_iter().flatten().collect());
        }
    }
    if diags.is_empty() { Ok(samples) } else { Err(Failed(diags)) }
}
