//! How many bytes of results a run holds at once, when each result is dropped after the last
//! step reading it: what one sample needs, known before it runs. Shared by the interpreter
//! (steps are graph nodes) and the executor (steps are a program's steps).

use crate::ir::TensorId;

/// The peak, over `steps` (each a step's inputs and outputs, in run order), of the bytes
/// (`size`) of outputs produced and not yet dead; `kept` results (the run's outputs) are never
/// dropped. A result counts from its step until after the last step reading it.
pub fn peak_held_bytes<'a>(
    tensor_count: usize,
    steps: impl Iterator<Item = (&'a [TensorId], &'a [TensorId])> + Clone,
    kept: &[TensorId],
    size: impl Fn(TensorId) -> u64,
) -> u64 {
    let mut last_use: Vec<Option<usize>> = vec![None; tensor_count];
    for (index, (inputs, _)) in steps.clone().enumerate() {
        for &id in inputs {
            if let Some(slot) = last_use.get_mut(id.index()) {
                *slot = Some(index);
            }
        }
    }
    let kept: std::collections::HashSet<TensorId> = kept.iter().copied().collect();
    let mut held = vec![false; tensor_count];
    let (mut live, mut peak) = (0u64, 0u64);
    for (index, (inputs, outputs)) in steps.enumerate() {
        for &id in outputs {
            if let Some(slot) = held.get_mut(id.index())
                && !*slot
            {
                *slot = true;
                live = live.saturating_add(size(id));
            }
        }
        peak = peak.max(live);
        for &id in inputs.iter().chain(outputs) {
            let dead = last_use.get(id.index()).copied().flatten().is_none_or(|last| last <= index);
            if dead && !kept.contains(&id) && held.get(id.index()).copied().unwrap_or(false) {
                held[id.index()] = false;
                live = live.saturating_sub(size(id));
            }
        }
    }
    peak
}
