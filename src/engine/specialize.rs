//! Specializing a model on the graph inputs that decide its shapes.
//!
//! qairt compiles static-shape programs, as the SDK does. When a graph input feeds a value the
//! import must know (Reshape's shape, Expand's shape, Reduce axes, Resize scales, a TopK count
//! given as an input), the import fails with the inputs that would fix it; `parse` then
//! reads their values from the project's input lists (every inference of the calibration and
//! verify lists must give each the same value) and imports again with those inputs as
//! constants. The graph lists them in [`crate::ir::Graph::bound_inputs`]; later reads of the
//! input lists check that the files still hold the values the model was specialized on.
//!
//! Which inputs a model needs is recorded in the store under the unspecialized parse key, so
//! a later run goes straight to the specialized import.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::diag::Diag;
use crate::ir::{Tensor, TensorInfo};
use crate::onnx::RunTimeInput;

use super::db::{Db, Failed, ProjectInput, Stage};
use super::inputs::{entry_for, read_raw};
use super::memo::{KeyBuilder, encode, store_error};
use super::store::{ActionRecord, Digest};

/// The values the project's data gives the inputs in `needs`.
pub fn bind_from_data(
    db: &dyn Db,
    project: ProjectInput,
    needs: &[RunTimeInput],
) -> Result<BTreeMap<String, Tensor>, Failed> {
    let mut lists = vec![(project.verify(db), project.verify_max(db))];
    if let Some(calibration) = project.calibration(db) {
        lists.push((calibration, project.calibration_max(db)));
    }
    let mut bound = BTreeMap::new();
    let mut diags = Vec::new();
    for need in needs {
        let info = TensorInfo { name: need.name.clone(), dtype: need.dtype, shape: need.shape.clone() };
        let mut first: Option<(Tensor, PathBuf, usize)> = None;
        'lists: for (list, max) in &lists {
            let path = list.list(db).path(db).clone();
            for sample in list.samples(db).iter().take(max.unwrap_or(usize::MAX)) {
                // A line without the file is reported when the samples are read.
                let Some(entry) = entry_for(sample, &need.name, need.position) else { continue };
                let value = match read_raw(db, &path, entry, &info) {
                    Ok(value) => value,
                    Err(failed) => {
                        diags.extend(failed.0);
                        break 'lists;
                    }
                };
                match &first {
                    None => first = Some((value, path.clone(), sample.line)),
                    Some((known, known_path, known_line)) if *known != value => {
                        diags.push(
                            Diag::error(
                                "qairt::input_list::specialized_input",
                                format!(
                                    "input \"{}\" decides shapes (or the branch an If takes) in the model, so \
                                     qairt compiles the model for one value of it, but line {} gives another \
                                     value than line {known_line} of {}",
                                    need.name,
                                    sample.line,
                                    known_path.display()
                                ),
                            )
                            .in_file(&path)
                            .at(entry.span.0, entry.span.1, "a different value")
                            .with_help(format!(
                                "give every inference the same \"{}\" (one project per value), or make it a \
                                 constant of the model",
                                need.name
                            )),
                        );
                        break 'lists;
                    }
                    Some(_) => {}
                }
            }
        }
        match first {
            Some((value, ..)) => {
                bound.insert(need.name.clone(), value);
            }
            None if diags.is_empty() => diags.push(
                Diag::error(
                    "qairt::input_list::specialized_input",
                    format!(
                        "input \"{}\" decides shapes (or the branch an If takes) in the model, so the build \
                         needs its value, but no input list gives one",
                        need.name
                    ),
                )
                .with_help("list a file for it in the verify input list"),
            ),
            None => {}
        }
    }
    if diags.is_empty() { Ok(bound) } else { Err(Failed(diags)) }
}

fn needs_key(parse_key: &Digest) -> Digest {
    KeyBuilder::new(Stage::Parse).digest("run-time inputs of", parse_key).finish()
}

/// The inputs an earlier run found the model needs values of, if it recorded any.
pub fn recorded_needs(db: &dyn Db, parse_key: &Digest) -> Option<Vec<RunTimeInput>> {
    let record = super::memo::lookup_record(db, &needs_key(parse_key))?;
    postcard::from_bytes(&record.meta).ok()
}

/// Records which inputs the model needs values of (the record's object is empty).
pub fn record_needs(db: &dyn Db, parse_key: &Digest, needs: &[RunTimeInput]) -> Result<(), Failed> {
    let store = &db.services().store;
    let fail = |e: std::io::Error| super::db::volatile(db, store_error("write to", e));
    let empty = store.put(&[]).map_err(fail)?;
    let record = ActionRecord { output: *empty.as_bytes(), size: 0, meta: encode(&needs) };
    store.record(&needs_key(parse_key), &record).map_err(fail)
}
