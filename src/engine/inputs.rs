//! Reading input files inside stages: bytes checked against the digest the build was keyed
//! on, and raw tensors matched to the model's inputs.

use std::sync::Arc;

use crate::diag::{Diag, closest};
use std::path::{Path, PathBuf};

use crate::ir::{BoundInput, Graph, Tensor, TensorInfo};

use super::db::{DataList, Db, Failed, ProjectInput, SampleEntry, SampleFiles, SourceFile, volatile};
use super::io_files::{InputForm, input_forms};

/// Reads a file's bytes and checks them against the digest the build was keyed on: a file
/// edited mid-build is an error to retry, never a silently mixed result.
pub fn read_file(db: &dyn Db, file: SourceFile) -> Result<Arc<[u8]>, Failed> {
    let path = file.path(db);
    let bytes = std::fs::read(path).map_err(|e| {
        let diag = Diag::error("qairt::io::read", format!("cannot read {}: {e}", path.display())).in_file(path);
        volatile(db, Failed(vec![diag]))
    })?;
    if blake3::hash(&bytes) != file.digest(db) {
        return Err(volatile(db, changed_while_building(path)));
    }
    Ok(bytes.into())
}

fn changed_while_building(path: &Path) -> Failed {
    Failed(vec![
        Diag::error("qairt::io::changed", format!("{} changed while the build was running", path.display()))
            .in_file(path)
            .with_help("run the build again"),
    ])
}

/// What an input-list entry feeds: a model input (by its index in `graph.inputs`) or a graph
/// input the graph was specialized on.
#[derive(Clone, Copy)]
enum Feeds<'g> {
    Input(usize),
    Bound(&'g BoundInput),
}

/// The model's graph inputs in the model's order (the order of files on a bare line),
/// bound inputs included.
fn model_inputs(graph: &Graph) -> Vec<(&str, Feeds<'_>)> {
    let total = graph.inputs.len() + graph.bound_inputs.len();
    let mut free = graph.inputs.iter().enumerate();
    (0..total)
        .filter_map(|position| match graph.bound_inputs.iter().find(|b| b.position == position) {
            Some(bound) => Some((bound.name.as_str(), Feeds::Bound(bound))),
            None => free.next().map(|(slot, &id)| (graph.name(id), Feeds::Input(slot))),
        })
        .collect()
}

/// Reads one raw file as a tensor of `info`'s type and shape (the model's own form); a size
/// mismatch is a diagnostic pointing at the entry in its list.
pub fn read_raw(db: &dyn Db, list_path: &Path, entry: &SampleEntry, info: &TensorInfo) -> Result<Tensor, Failed> {
    let form = InputForm::model_form(info.clone());
    let bytes = read_file(db, entry.file)?;
    check_raw_size(db, list_path, entry, &form, bytes.len() as u64)?;
    decode_raw(entry.file.path(db), &form, &bytes)
}

/// A size other than `form`'s is a diagnostic pointing at the entry in its list.
fn check_raw_size(
    db: &dyn Db,
    list_path: &Path,
    entry: &SampleEntry,
    form: &InputForm,
    size: u64,
) -> Result<(), Failed> {
    let expected = form.file_bytes();
    if size == expected as u64 {
        return Ok(());
    }
    let info = &form.model;
    let (what, help) = if form.is_model_form() {
        (
            format!("input \"{}\" of shape {:?} {} needs {expected}", info.name, info.shape, info.dtype.name()),
            format!(
                "raw files are headerless little-endian {} (the input's own element type) in the model's input \
                 layout, unless [io.inputs.\"{}\"] in qairt.toml says otherwise",
                info.dtype.name(),
                info.name
            ),
        )
    } else {
        (
            format!(
                "input \"{}\" is read from {} files ([io] in qairt.toml), which need {expected}",
                info.name,
                form.describe()
            ),
            format!(
                "the files are headerless little-endian {}; check [io.inputs.\"{}\"] in qairt.toml",
                form.describe(),
                info.name
            ),
        )
    };
    Err(Failed(vec![
        Diag::error(
            "qairt::input_list::raw_size",
            format!("{} has {size} bytes, but {what}", entry.file.path(db).display()),
        )
        .in_file(list_path)
        .at(entry.span.0, entry.span.1, format!("{size} bytes, expected {expected}"))
        .with_help(help),
    ]))
}

/// The model's tensor from a raw file's bytes: the one conversion every run reads its inputs
/// through (`io_files`).
fn decode_raw(path: &Path, form: &InputForm, bytes: &[u8]) -> Result<Tensor, Failed> {
    form.decode(bytes)
        .map_err(|e| Failed(vec![Diag::error("qairt::input_list::raw_size", format!("{}: {e}", path.display()))]))
}

/// One raw file of a sample, checked (its size) but not read yet.
struct PendingRaw {
    path: PathBuf,
    digest: blake3::Hash,
    form: Arc<InputForm>,
}

impl PendingRaw {
    /// Reads it, checking the bytes against the digest the build was keyed on.
    fn read(&self) -> Result<Tensor, Failed> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            Failed(vec![
                Diag::error("qairt::io::read", format!("cannot read {}: {e}", self.path.display())).in_file(&self.path),
            ])
        })?;
        if blake3::hash(&bytes) != self.digest {
            // No database on a pool thread: the memoizing caller marks it volatile.
            return Err(changed_while_building(&self.path));
        }
        decode_raw(&self.path, &self.form, &bytes)
    }
}

/// The samples of an input list, checked against the model (arity, input names, file sizes,
/// the values of specialized inputs) and read one at a time when a run needs them: the
/// samples of a build are never all in memory. Reading needs no database, so pool threads
/// read their own samples.
pub struct SampleSource {
    /// Per sample, its model inputs in the order of `graph.inputs`.
    samples: Vec<Vec<PendingRaw>>,
}

impl SampleSource {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Sample `n`'s input tensors, in the order of `graph.inputs`.
    pub fn read(&self, n: usize) -> Result<Vec<Tensor>, Failed> {
        let Some(files) = self.samples.get(n) else {
            return Err(super::convert::internal(format!("no sample {n}")));
        };
        files.iter().map(PendingRaw::read).collect()
    }

    /// The sample numbers, to run side by side.
    pub fn numbers(&self) -> Vec<usize> {
        (0..self.len()).collect()
    }
}

/// The entry of `sample` that feeds the model input `name` at `position` (files given by
/// name, or by position on a bare line).
pub fn entry_for<'s>(sample: &'s SampleFiles, name: &str, position: usize) -> Option<&'s SampleEntry> {
    if sample.entries.iter().all(|e| e.name.is_none()) {
        sample.entries.get(position)
    } else {
        sample.entries.iter().find(|e| e.name.as_deref() == Some(name))
    }
}

/// Checks up to `max` samples of `list` against `graph` (see [`SampleSource`]), each input's
/// files in the form the project's `[io.inputs]` gives. A file given for a bound input (one
/// the graph is specialized on) must hold the value the graph was specialized on (those small
/// files are read here).
pub fn sample_source(
    db: &dyn Db,
    project: ProjectInput,
    graph: &Graph,
    list: DataList,
    max: Option<usize>,
) -> Result<SampleSource, Failed> {
    let forms: Vec<Arc<InputForm>> =
        input_forms(graph, project.io(db)).map_err(Failed)?.into_iter().map(Arc::new).collect();
    let list_path = list.list(db).path(db).clone();
    let feeds = model_inputs(graph);
    let input_names: Vec<&str> = feeds.iter().map(|(name, _)| *name).collect();
    let mut samples = Vec::new();
    let mut diags = Vec::new();
    for sample in list.samples(db).iter().take(max.unwrap_or(usize::MAX)) {
        let mut tensors: Vec<Option<PendingRaw>> = (0..graph.inputs.len()).map(|_| None).collect();
        let mut given = vec![false; feeds.len()];
        let bare = sample.entries.iter().all(|e| e.name.is_none());
        if bare && sample.entries.len() != feeds.len() {
            diags.push(
                Diag::error(
                    "qairt::input_list::arity",
                    format!(
                        "line {} gives {} file(s), the model has {} input(s)",
                        sample.line,
                        sample.entries.len(),
                        feeds.len()
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
            let index = match &entry.name {
                None => position,
                Some(name) => match input_names.iter().position(|n| n == name) {
                    Some(index) => index,
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
            given[index] = true;
            match feeds[index].1 {
                Feeds::Input(slot) => {
                    let form = &forms[slot];
                    let path = entry.file.path(db).clone();
                    // Sized by a stat: every size mismatch of the list is reported now, before
                    // any run, and a file is read only when its sample runs.
                    let size = std::fs::metadata(&path).map(|m| m.len()).map_err(|e| {
                        let diag = Diag::error("qairt::io::read", format!("cannot read {}: {e}", path.display()))
                            .in_file(&path);
                        volatile(db, Failed(vec![diag]))
                    });
                    match size.and_then(|size| check_raw_size(db, &list_path, entry, form, size)) {
                        Ok(()) => {
                            let digest = entry.file.digest(db);
                            tensors[slot] = Some(PendingRaw { path, digest, form: form.clone() })
                        }
                        Err(failed) => diags.extend(failed.0),
                    }
                }
                Feeds::Bound(bound) => {
                    let info = TensorInfo {
                        name: bound.name.clone(),
                        dtype: bound.value.dtype(),
                        shape: bound.value.shape.clone(),
                    };
                    match read_raw(db, &list_path, entry, &info) {
                        Ok(tensor) if tensor == bound.value => {}
                        Ok(_) => diags.push(
                            Diag::error(
                                "qairt::input_list::specialized_input",
                                format!(
                                    "line {} gives input \"{}\" another value than the one the model was \
                                     specialized on",
                                    sample.line, bound.name
                                ),
                            )
                            .in_file(&list_path)
                            .at(entry.span.0, entry.span.1, "a different value")
                            .with_help(format!(
                                "\"{}\" decides shapes (or the branch an If takes) in the model, so qairt \
                                 compiles it for one value; give every inference the same \"{}\"",
                                bound.name, bound.name
                            )),
                        ),
                        Err(failed) => diags.extend(failed.0),
                    }
                }
            }
        }
        let missing: Vec<&str> = given.iter().zip(&input_names).filter(|(g, _)| !**g).map(|(_, n)| *n).collect();
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
    if diags.is_empty() { Ok(SampleSource { samples }) } else { Err(Failed(diags)) }
}
