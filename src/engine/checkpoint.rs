//! Checkpoints of a quantized target's simulate: what a full run keeps at a few cut points of
//! the program so that an edit downstream of a cut (typically an encoding of a late layer, as
//! someone tuning encodings makes) re-simulates only the steps after it.
//!
//! A checkpoint at step `c` holds, for every verify sample:
//! - the program tensors the steps from `c` on read and the steps before `c` wrote (and the
//!   program outputs written before `c`), as the executor observed them: the dequantized values
//!   of the arena, which `Prepared::run_steps` encodes back to the same codes (every seed is a
//!   float, a float16, a native tensor or a quantized tensor of at most 16 bits, where
//!   `quantize(dequantize(q)) == q`; see the test);
//! - the float graph's values of every tensor not written before `c`: the golden side of the
//!   rows after the cut, and what the checker's profiles and the report's histograms of those
//!   tensors are computed from;
//!
//! and once: the rows before the cut folded over every sample, and the profiles and histograms
//! of the tensors before the cut. A resumed run takes those as they are and runs only steps
//! `c..`, so its result is the full run's, bit for bit (test).
//!
//! The key of a checkpoint names everything its contents depend on: the float graph, the
//! verify samples, the rows and folded verifiers, the encodings of the tensors before the cut,
//! and the program's steps before the cut (ops, tensors, representations, constants; not the
//! arena offsets, which an edit after the cut may move). An edit at step `e` leaves every
//! checkpoint at `c <= e` valid; the run resumes from the latest one in the store.
//!
//! Cuts are chosen per program within `[project] checkpoint_budget_mb` (split evenly between
//! at most four cuts): the latest affordable cut before the last step and before three
//! quarters, half and a quarter of the steps (within 32 steps of each). What a cut costs grows with the float values
//! after it, so late cuts are cheap and early ones only fit small models.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::compare::{Activations, Plan, SampleFolds, kept_tensors};
use super::memo::KeyBuilder;
use super::store::Digest;
use crate::compile::program::{Program, Storage};
use crate::compile::repr::Repr;
use crate::ir::{Graph, Tensor, TensorId};
use crate::quant::QuantizedGraph;

/// At most this many cuts per program.
const MAX_CUTS: usize = 4;

/// Positions tried below each cut's limit before giving that cut up.
const SEARCH: usize = 32;

/// One cut point of a program.
pub(super) struct Cut {
    /// The first step the resumed run executes.
    pub step: usize,
    /// Program tensors to seed the resumed run with, in stored order.
    pub seeds: Vec<TensorId>,
    /// Float-graph tensors not written before the cut, in stored order.
    pub suffix_float: Vec<String>,
    /// Rows (plan order) whose layer a step before the cut writes.
    pub prefix_rows: Vec<bool>,
    pub key: Digest,
}

/// What a checkpoint stores (see the module docs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    /// `seeds[n][k]`: sample `n`'s value of `Cut::seeds[k]`.
    pub seeds: Vec<Vec<Tensor>>,
    /// `suffix_float[n][k]`: sample `n`'s float value of `Cut::suffix_float[k]` (empty when the
    /// float run did not produce it).
    pub suffix_float: Vec<Vec<Vec<f32>>>,
    /// The rows before the cut, folded over every sample; the other rows empty.
    pub prefix_folds: SampleFolds,
    /// Profiles and histograms of the graph inputs and the tensors written before the cut.
    pub prefix_activations: Option<Activations>,
}

/// The cut points of `program` that fit `budget` bytes for `samples` samples, earliest first.
/// `base` is the key every cut's key extends (float graph, samples, folded verifiers).
pub(super) fn cuts(
    program: &Program,
    graph: &Graph,
    q: &QuantizedGraph,
    plan: &Plan,
    base: &dyn Fn() -> KeyBuilder,
    samples: usize,
    budget: u64,
) -> Vec<Cut> {
    let steps = program.steps.len();
    if steps < 2 || samples == 0 || budget == 0 {
        return Vec::new();
    }
    let written_at: HashMap<TensorId, usize> =
        program.steps.iter().enumerate().flat_map(|(k, s)| s.outputs.iter().map(move |&id| (id, k))).collect();
    let per_cut = budget / MAX_CUTS as u64;
    let names = graph.names();
    let mut chosen: Vec<usize> = Vec::new();
    for limit in [steps - 1, steps * 3 / 4, steps / 2, steps / 4] {
        // Earlier cuts keep more float values, so the search gives up after a few positions
        // (which also bounds the planning of a graph of thousands of steps).
        let found = (1..=limit.min(steps - 1)).rev().take(SEARCH).find(|&c| {
            !chosen.contains(&c)
                && chosen.iter().all(|&other| c < other)
                && cut_cost(program, graph, &names, &written_at, c)
                    .is_some_and(|per_sample| per_sample * samples as u64 <= per_cut)
        });
        if let Some(c) = found {
            chosen.push(c);
        }
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|c| cut_at(program, graph, q, plan, &written_at, c, base)).collect()
}

/// The program tensors a run from step `c` must be seeded with: read by a step from `c` on
/// (or a program output) and written by a step before `c`.
fn seeds_at(program: &Program, written_at: &HashMap<TensorId, usize>, c: usize) -> Vec<TensorId> {
    let before = |id: &TensorId| written_at.get(id).is_some_and(|&k| k < c);
    let mut seeds: Vec<TensorId> = Vec::new();
    let read_later = program.steps[c..].iter().flat_map(|s| s.inputs.iter());
    for &id in read_later.chain(program.outputs.iter()) {
        if before(&id) && !seeds.contains(&id) {
            seeds.push(id);
        }
    }
    seeds
}

/// Names the steps before `c` write.
fn written_before(program: &Program, c: usize) -> BTreeSet<&str> {
    program.steps[..c].iter().flat_map(|s| s.outputs.iter().filter_map(|&id| program.tensor_name(id))).collect()
}

/// The float-graph tensors a checkpoint at `c` keeps: every kept tensor (graph inputs aside)
/// that no step before `c` writes.
fn suffix_float_at(program: &Program, graph: &Graph, c: usize) -> Vec<String> {
    let before = written_before(program, c);
    kept_tensors(graph)
        .filter(|id| !graph.inputs.contains(id))
        .map(|id| graph.name(id))
        .filter(|name| !before.contains(name))
        .map(str::to_string)
        .collect()
}

/// Bytes per sample of a checkpoint at `c`, or `None` when a seed would not come back exactly.
fn cut_cost(
    program: &Program,
    graph: &Graph,
    names: &HashMap<&str, TensorId>,
    written_at: &HashMap<TensorId, usize>,
    c: usize,
) -> Option<u64> {
    let mut bytes = 0u64;
    for id in seeds_at(program, written_at, c) {
        let t = program.tensor(id)?;
        let exact = match &t.repr {
            Repr::Native(_) | Repr::Float { .. } => true,
            Repr::Quant(q) => q.bitwidth <= 16,
        };
        if !exact || matches!(t.storage, Storage::Unused) {
            return None;
        }
        bytes += t.info.elements() as u64 * 8;
    }
    for name in suffix_float_at(program, graph, c) {
        let id = names.get(name.as_str())?;
        bytes += graph.info(*id).elements() as u64 * 4;
    }
    Some(bytes)
}

fn cut_at(
    program: &Program,
    graph: &Graph,
    q: &QuantizedGraph,
    plan: &Plan,
    written_at: &HashMap<TensorId, usize>,
    c: usize,
    base: &dyn Fn() -> KeyBuilder,
) -> Cut {
    let seeds = seeds_at(program, written_at, c);
    let suffix_float = suffix_float_at(program, graph, c);
    let before = written_before(program, c);
    let prefix_rows = plan.row_names().map(|name| before.contains(name)).collect();
    let key = base()
        .value("cut rows", &plan.describe())
        .value("cut prefix", &prefix_description(program, c))
        .value("cut prefix encodings", &prefix_encodings(q, &before))
        .value("cut seeds", &seeds.iter().map(|&id| program.tensor_name(id)).collect::<Vec<_>>())
        .value("cut suffix float", &suffix_float)
        .finish();
    Cut { step: c, seeds, suffix_float, prefix_rows, key }
}

/// The steps before `c` as what they compute: op, and each tensor's name, type, shape,
/// representation and (for constants) data; not where the arena holds it.
fn prefix_description(program: &Program, c: usize) -> Vec<u8> {
    #[derive(Serialize)]
    struct TensorDesc<'a> {
        name: &'a str,
        info: &'a crate::ir::TensorInfo,
        repr: &'a Repr,
        constant: Option<&'a [u8]>,
    }
    let desc = |id: TensorId| {
        program.tensor(id).map(|t| TensorDesc {
            name: &t.info.name,
            info: &t.info,
            repr: &t.repr,
            constant: match &t.storage {
                Storage::Constant { data } => Some(data.as_slice()),
                _ => None,
            },
        })
    };
    let inputs: Vec<_> = program.inputs.iter().map(|&id| desc(id)).collect();
    let steps: Vec<_> = program.steps[..c]
        .iter()
        .map(|s| {
            let ins: Vec<_> = s.inputs.iter().map(|&id| desc(id)).collect();
            let outs: Vec<_> = s.outputs.iter().map(|&id| desc(id)).collect();
            (&s.node, &s.op, ins, outs)
        })
        .collect();
    postcard::to_stdvec(&(&program.backend, program.quantized, inputs, steps)).unwrap_or_default()
}

/// The encodings the checker and the histograms read for the tensors before the cut.
fn prefix_encodings<'a>(
    q: &'a QuantizedGraph,
    before: &BTreeSet<&'a str>,
) -> Vec<(&'a str, Option<&'a crate::quant::TensorEncoding>)> {
    let names = q.graph.names();
    before.iter().map(|&name| (name, names.get(name).and_then(|id| q.encodings.get(id)))).collect()
}

/// The profiles and histograms of `all` that belong before the cut (those not in `suffix`).
pub(super) fn prefix_activations(all: &Activations, suffix: &[String]) -> Activations {
    let suffix: BTreeSet<&str> = suffix.iter().map(String::as_str).collect();
    let keep = |name: &String| !suffix.contains(name.as_str());
    Activations {
        samples: all.samples,
        profiles: all.profiles.iter().filter(|(n, _)| keep(n)).map(|(n, p)| (n.clone(), p.clone())).collect(),
        histograms: all.histograms.iter().filter(|(n, _)| keep(n)).map(|(n, h)| (n.clone(), h.clone())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::repr::{dequantize_value, quantize_value};

    /// The seeds' exactness: a code dequantized to float32 and quantized again is the same
    /// code, for every code of every grid up to 16 bits (what `cut_cost` admits), here over
    /// scales from 1e-8 to 1e4 and offsets across the grid.
    #[test]
    fn codes_survive_dequantize_then_quantize_up_to_16_bits() {
        for bitwidth in [4u32, 8, 16] {
            let top = (1u32 << bitwidth) - 1;
            for scale in [1e-8f32, 3.3e-5, 0.0071, 0.5, 1.0, 13.7, 9_999.0] {
                for offset in [0i32, -1, -(1 << (bitwidth - 1)), -(top as i32), 7] {
                    for code in 0..=top {
                        let back =
                            quantize_value(dequantize_value(code, scale, offset, bitwidth), scale, offset, bitwidth);
                        assert_eq!(back, code, "{bitwidth} bits, scale {scale}, offset {offset}");
                    }
                }
            }
        }
    }
}
