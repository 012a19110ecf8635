//! The compiled, executable plan: tensors (keeping the optimized graph's ids and names), their
//! representations and storage, the scheduled steps and the activation arena. This is what
//! `model.bin` serializes and what the runtime executes.
//!
//! **Invariants** (checked by [`Program::validate`], which `model.bin` loading and the
//! executor run, so that no file can make the executor panic):
//! - `tensors` is indexed by [`TensorId`]; every id a step or the I/O lists names exists;
//! - graph inputs and step outputs live in the arena, each defined exactly once and before any
//!   step reads it; step inputs are arena tensors or constants;
//! - every arena region fits in `arena_bytes` and has exactly the bytes its representation
//!   needs; constant data likewise;
//! - two arena tensors whose lifetimes overlap never share bytes.

use serde::{Deserialize, Serialize};

use super::memory::{Interval, live_intervals};
use super::repr::Repr;
use crate::ir::{DType, Op, TensorId, TensorInfo};

/// Where a tensor's bytes live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Storage {
    /// An activation: `bytes` at `offset` of the arena.
    Arena { offset: u64, bytes: u64 },
    /// Constant data in the tensor's representation (see [`super::repr`] for the layouts).
    Constant {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Read and written by no step (a tensor the graph kept but nothing uses).
    Unused,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramTensor {
    pub info: TensorInfo,
    pub repr: Repr,
    pub storage: Storage,
}

/// One scheduled node of the optimized graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The node's name in the optimized graph.
    pub node: String,
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// The backend this program was compiled for.
    pub backend: String,
    /// Compiled for a fixed-point backend (activations held as integer codes).
    pub quantized: bool,
    pub tensors: Vec<ProgramTensor>,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
    /// In execution order.
    pub steps: Vec<Step>,
    /// Size of the activation arena (the planned peak).
    pub arena_bytes: u64,
    /// What the activations would take with no sharing (sum of their sizes).
    pub naive_activation_bytes: u64,
}

/// A program that breaks one of the invariants listed in the module docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid program: {0}")]
pub struct InvalidProgram(pub String);

impl Program {
    /// Bytes of the activation arena: the peak memory the plan needs for activations.
    pub fn peak_activation_bytes(&self) -> u64 {
        self.arena_bytes
    }

    /// Bytes the activations would need if none shared memory.
    pub fn naive_activation_bytes(&self) -> u64 {
        self.naive_activation_bytes
    }

    pub fn tensor(&self, id: TensorId) -> Option<&ProgramTensor> {
        self.tensors.get(id.index())
    }

    pub fn tensor_name(&self, id: TensorId) -> Option<&str> {
        self.tensor(id).map(|t| t.info.name.as_str())
    }

    /// The id of the tensor called `name`.
    pub fn find_tensor(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.info.name == name).map(|i| TensorId(i as u32))
    }

    /// Bytes of constant data (weights, biases) the program carries.
    pub fn constant_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| match &t.storage {
                Storage::Constant { data } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Checks every invariant listed in the module docs.
    pub fn validate(&self) -> Result<(), InvalidProgram> {
        let fail = |msg: String| Err(InvalidProgram(msg));
        for (i, t) in self.tensors.iter().enumerate() {
            let name = &t.info.name;
            // float32 tensors are float or quantized; every other type is stored natively.
            let native_ok = match t.repr {
                Repr::Native(dtype) => dtype == t.info.dtype && dtype != DType::F32,
                _ => t.info.dtype == DType::F32,
            };
            if !native_ok {
                return fail(format!(
                    "tensor {name:?} of dtype {} has representation {:?}",
                    t.info.dtype.name(),
                    t.repr
                ));
            }
            let Some(elements) = t.info.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
                return fail(format!("tensor {name:?}: shape {:?} overflows", t.info.shape));
            };
            if let Err(msg) = t.repr.check(&t.info.shape) {
                return fail(format!("tensor {name:?}: {msg}"));
            }
            let needed = t.repr.bytes_for(elements).map(|b| b as u64);
            match &t.storage {
                Storage::Arena { offset, bytes } => {
                    if needed != Some(*bytes) {
                        return fail(format!("tensor {name:?} has {bytes} arena bytes, needs {needed:?}"));
                    }
                    if offset.checked_add(*bytes).is_none_or(|end| end > self.arena_bytes) {
                        return fail(format!("tensor {name:?} (tensor {i}) lies outside the arena"));
                    }
                }
                Storage::Constant { data } => {
                    if needed != Some(data.len() as u64) {
                        return fail(format!("constant {name:?} has {} bytes, needs {needed:?}", data.len()));
                    }
                }
                Storage::Unused => {}
            }
        }
        let tensor = |id: TensorId| self.tensors.get(id.index());
        let is_arena = |id: TensorId| matches!(tensor(id).map(|t| &t.storage), Some(Storage::Arena { .. }));
        let mut defined = vec![false; self.tensors.len()];
        for &id in &self.inputs {
            if !is_arena(id) {
                return fail(format!("graph input {id:?} is not an arena tensor"));
            }
            if std::mem::replace(&mut defined[id.index()], true) {
                return fail(format!("graph input {id:?} is listed twice"));
            }
        }
        for step in &self.steps {
            for &id in &step.inputs {
                match tensor(id).map(|t| &t.storage) {
                    Some(Storage::Constant { .. }) => {}
                    Some(Storage::Arena { .. }) if defined[id.index()] => {}
                    Some(Storage::Arena { .. }) => {
                        return fail(format!("step {:?} reads {id:?} before it is written", step.node));
                    }
                    _ => return fail(format!("step {:?} reads {id:?}, which has no data", step.node)),
                }
            }
            for &id in &step.outputs {
                if !is_arena(id) {
                    return fail(format!("step {:?} writes {id:?}, which is not in the arena", step.node));
                }
                if std::mem::replace(&mut defined[id.index()], true) {
                    return fail(format!("tensor {id:?} is written twice"));
                }
            }
        }
        for &id in &self.outputs {
            if !is_arena(id) || !defined[id.index()] {
                return fail(format!("graph output {id:?} is never written"));
            }
        }
        self.check_no_live_overlap()
    }

    /// Two arena tensors alive at the same time must not share bytes.
    fn check_no_live_overlap(&self) -> Result<(), InvalidProgram> {
        let order: Vec<(&[TensorId], &[TensorId])> =
            self.steps.iter().map(|s| (s.inputs.as_slice(), s.outputs.as_slice())).collect();
        let live = live_intervals(self.tensors.len(), &self.inputs, &order, &self.outputs);
        let mut regions: Vec<(u64, u64, Interval, usize)> = Vec::new();
        for (i, interval) in live.iter().enumerate() {
            if let (Some(interval), Some(Storage::Arena { offset, bytes })) =
                (interval, self.tensors.get(i).map(|t| &t.storage))
                && *bytes > 0
            {
                regions.push((*offset, offset + bytes, *interval, i));
            }
        }
        // A sweep over time with the live regions ordered by address (O(n log n); comparing
        // every pair that shares an address range was quadratic on long chains, where all
        // tensors alternate between two offsets). The live set is pairwise disjoint so far, so
        // a new region collides with one of them exactly when it collides with its neighbour
        // below or above in address order.
        let mut by_start: Vec<usize> = (0..regions.len()).collect();
        by_start.sort_by_key(|&k| (regions[k].2.start, regions[k].3));
        let mut by_end: Vec<usize> = (0..regions.len()).collect();
        by_end.sort_by_key(|&k| (regions[k].2.end, regions[k].3));
        let mut live: std::collections::BTreeMap<(u64, usize), u64> = std::collections::BTreeMap::new();
        let mut ended = 0;
        let collision = |a: usize, b: usize| {
            let name = |i: usize| self.tensors.get(i).map_or("?", |t| t.info.name.as_str());
            Err(InvalidProgram(format!("live tensors {:?} and {:?} share arena bytes", name(a), name(b))))
        };
        for &k in &by_start {
            let (begin, end, interval, id) = regions[k];
            while let Some(&gone) = by_end.get(ended).filter(|&&g| regions[g].2.end < interval.start) {
                live.remove(&(regions[gone].0, regions[gone].3));
                ended += 1;
            }
            if let Some((&(_, below), &below_end)) = live.range(..=(begin, usize::MAX)).next_back()
                && below_end > begin
            {
                return collision(below, id);
            }
            if let Some((&(above_begin, above), _)) = live.range((begin, 0)..).next()
                && above_begin < end
            {
                return collision(id, above);
            }
            live.insert((begin, id), end);
        }
        Ok(())
    }
}
