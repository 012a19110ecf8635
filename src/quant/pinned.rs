//! Settings an overrides file leaves nothing to act on: when every weight (or every
//! activation) takes its encoding from the overrides, the target's `weight_bitwidth` (or
//! `act_bitwidth`) changes no tensor. A target that asks for 16-bit weights and gets the
//! file's 8-bit ones everywhere is a silent no-op unless someone says so. (Tested with the
//! quantize stage's hand-built graph, in `quantize/tests.rs`.)

use std::collections::BTreeSet;

use super::aimet::{Overrides, resolve_overrides};
use super::encoding::{QuantizedGraph, TensorEncoding};
use super::settings::QuantSettings;
use crate::ir::TensorId;

/// A bitwidth setting no tensor follows because the overrides cover its whole class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedSetting {
    /// `weight_bitwidth` or `act_bitwidth`.
    pub key: &'static str,
    /// The value the target asked for.
    pub asked: u32,
    /// The bitwidths the overrides gave instead, ascending.
    pub given: Vec<u32>,
    /// How many tensors of the class there are (all of them overridden).
    pub tensors: usize,
}

/// The bitwidth settings of `settings` that `overrides` make a no-op in `q`: every integer
/// weight (constant operands except biases, the third input of Conv/Gemm) or every integer
/// activation has an override, and none of them is at the asked bitwidth.
pub fn pinned_settings(q: &QuantizedGraph, overrides: &Overrides, settings: &QuantSettings) -> Vec<PinnedSetting> {
    let (resolved, _) = resolve_overrides(overrides, &q.graph);
    let biases: BTreeSet<TensorId> = q.graph.nodes.iter().filter_map(|n| n.inputs.get(2).copied()).collect();
    let mut weights = Vec::new();
    let mut activations = Vec::new();
    for (&id, encoding) in &q.encodings {
        let Some(bitwidth) = integer_bitwidth(encoding) else { continue };
        if q.graph.is_constant(id) {
            if !biases.contains(&id) {
                weights.push((id, bitwidth));
            }
        } else {
            activations.push((id, bitwidth));
        }
    }
    let mut pinned = Vec::new();
    for (key, asked, class) in
        [("weight_bitwidth", settings.weight_bitwidth, &weights), ("act_bitwidth", settings.act_bitwidth, &activations)]
    {
        let all_overridden = !class.is_empty() && class.iter().all(|(id, _)| resolved.get(*id).is_some());
        let given: BTreeSet<u32> = class.iter().map(|&(_, bits)| bits).collect();
        if all_overridden && !given.contains(&asked) {
            pinned.push(PinnedSetting { key, asked, given: given.into_iter().collect(), tensors: class.len() });
        }
    }
    pinned
}

fn integer_bitwidth(encoding: &TensorEncoding) -> Option<u32> {
    match encoding {
        TensorEncoding::Float { .. } => None,
        TensorEncoding::PerTensor(e) => Some(e.bitwidth),
        TensorEncoding::PerChannel { channels: encodings, .. } | TensorEncoding::PerBlock { blocks: encodings, .. } => {
            encodings.first().map(|e| e.bitwidth)
        }
    }
}
