//! Activation memory planning: liveness intervals from a schedule, and offsets in one arena
//! so that tensors whose lifetimes do not overlap share bytes (greedy by size, first fit, as
//! TFLite's arena planner does).
//!
//! Time is counted in schedule slots: graph inputs are written at time 0, step `k` runs at
//! time `k + 1` (reading its inputs and writing its outputs, which therefore never share
//! bytes), and graph outputs are read at time `steps + 1`.

use crate::ir::TensorId;

/// Every offset in the arena is a multiple of this many bytes.
pub const ARENA_ALIGN: u64 = 16;

/// An inclusive range of schedule slots during which a tensor's bytes must stay intact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    pub start: u32,
    pub end: u32,
}

impl Interval {
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// The lifetime of every tensor that the inputs or a step define (others: `None`), for the
/// steps in execution order given as `(inputs, outputs)`.
pub fn live_intervals(
    tensor_count: usize,
    inputs: &[TensorId],
    steps: &[(&[TensorId], &[TensorId])],
    outputs: &[TensorId],
) -> Vec<Option<Interval>> {
    let mut live: Vec<Option<Interval>> = vec![None; tensor_count];
    for id in inputs {
        if let Some(slot) = live.get_mut(id.index()) {
            *slot = Some(Interval { start: 0, end: 0 });
        }
    }
    for (k, (reads, writes)) in steps.iter().enumerate() {
        let time = k as u32 + 1;
        for id in reads.iter() {
            if let Some(Some(interval)) = live.get_mut(id.index()) {
                interval.end = interval.end.max(time);
            }
        }
        for id in writes.iter() {
            if let Some(slot) = live.get_mut(id.index()) {
                *slot = Some(Interval { start: time, end: time });
            }
        }
    }
    let end = steps.len() as u32 + 1;
    for id in outputs {
        if let Some(Some(interval)) = live.get_mut(id.index()) {
            interval.end = end;
        }
    }
    live
}

/// One tensor to place: its size and lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub bytes: u64,
    pub live: Interval,
}

/// Offsets for a list of blocks, and the arena size they need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub offsets: Vec<u64>,
    pub arena_bytes: u64,
}

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align).saturating_mul(align)
}

/// Greedy by size, first fit: the largest blocks are placed first, each at the lowest aligned
/// offset where it does not touch any already placed block that is alive at the same time.
/// Deterministic: ties are broken by start time, then by position in `blocks`.
pub fn place(blocks: &[Block], align: u64) -> Placement {
    let align = align.max(1);
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(blocks[i].bytes), blocks[i].live.start, i));
    let mut offsets = vec![0u64; blocks.len()];
    // The placed blocks alive at each step (indices into `blocks`): a block is checked only
    // against the placed blocks its lifetime meets, not against every placed block (which was
    // quadratic on graphs of thousands of steps).
    let steps = blocks.iter().filter(|b| b.bytes > 0).map(|b| b.live.end as usize + 1).max().unwrap_or(0);
    let mut alive_at: Vec<Vec<usize>> = vec![Vec::new(); steps];
    let mut last_seen = vec![usize::MAX; blocks.len()];
    let mut arena_bytes = 0u64;
    for (rank, i) in order.into_iter().enumerate() {
        let block = blocks[i];
        if block.bytes == 0 {
            continue;
        }
        // The overlapping placed blocks as (offset, bytes), in address order.
        let mut neighbours: Vec<(u64, u64)> = Vec::new();
        for step in block.live.start..=block.live.end {
            for &j in &alive_at[step as usize] {
                if std::mem::replace(&mut last_seen[j], rank) != rank {
                    neighbours.push((offsets[j], blocks[j].bytes));
                }
            }
        }
        neighbours.sort_unstable();
        let mut candidate = 0u64;
        for (offset, bytes) in neighbours {
            if candidate.saturating_add(block.bytes) <= offset {
                break; // fits in the gap before this block
            }
            candidate = candidate.max(align_up(offset.saturating_add(bytes), align));
        }
        offsets[i] = candidate;
        for step in block.live.start..=block.live.end {
            alive_at[step as usize].push(i);
        }
        arena_bytes = arena_bytes.max(candidate.saturating_add(block.bytes));
    }
    Placement { offsets, arena_bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(bytes: u64, start: u32, end: u32) -> Block {
        Block { bytes, live: Interval { start, end } }
    }

    /// The property every plan must have: blocks alive at the same time never share a byte,
    /// offsets are aligned, and everything fits in the arena.
    fn assert_valid(blocks: &[Block], plan: &Placement, align: u64) {
        for (i, a) in blocks.iter().enumerate() {
            let oa = plan.offsets[i];
            assert_eq!(oa % align, 0, "block {i} is misaligned");
            assert!(oa + a.bytes <= plan.arena_bytes, "block {i} exceeds the arena");
            for (j, b) in blocks.iter().enumerate().skip(i + 1) {
                let ob = plan.offsets[j];
                let disjoint = oa + a.bytes <= ob || ob + b.bytes <= oa;
                if a.bytes > 0 && b.bytes > 0 && a.live.overlaps(&b.live) {
                    assert!(disjoint, "blocks {i} {a:?}@{oa} and {j} {b:?}@{ob} overlap while both live");
                }
            }
        }
    }

    #[test]
    fn a_chain_reuses_the_bytes_of_dead_tensors() {
        // x -> a -> b -> c: 100 bytes each. x [0,1], a [1,2], b [2,3], c [3,4].
        // x at 0; a overlaps x -> 112 (100 aligned up to 16); b overlaps only a -> 0;
        // c overlaps only b -> 112. Arena 212 instead of 400.
        let blocks = [block(100, 0, 1), block(100, 1, 2), block(100, 2, 3), block(100, 3, 4)];
        let plan = place(&blocks, 16);
        assert_eq!(plan.offsets, [0, 112, 0, 112]);
        assert_eq!(plan.arena_bytes, 212);
        assert_valid(&blocks, &plan, 16);
    }

    #[test]
    fn first_fit_fills_a_gap_between_placed_blocks() {
        // Big blocks A (64) and B (64) live [0,2]; C (32) lives [0,0] and D (32) [1,2].
        // A@0, B@64, C@128; D overlaps A, B (not C) -> first gap after B is 128.
        // Then E (16) lives [2,2]: overlaps A, B, D -> 160.
        let blocks = [block(64, 0, 2), block(64, 0, 2), block(32, 0, 0), block(32, 1, 2), block(16, 2, 2)];
        let plan = place(&blocks, 16);
        assert_eq!(plan.offsets, [0, 64, 128, 128, 160]);
        assert_eq!(plan.arena_bytes, 176);
        assert_valid(&blocks, &plan, 16);
    }

    #[test]
    fn zero_sized_blocks_take_no_space() {
        let blocks = [block(0, 0, 5), block(8, 0, 5)];
        let plan = place(&blocks, 16);
        assert_eq!(plan.arena_bytes, 8);
    }

    #[test]
    fn random_plans_never_overlap_live_tensors() {
        // A small deterministic LCG (Knuth's MMIX constants) drives 200 random problems.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |bound: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % bound
        };
        for _ in 0..200 {
            let n = 1 + next(40) as usize;
            let blocks: Vec<Block> = (0..n)
                .map(|_| {
                    let start = next(30) as u32;
                    let len = next(10) as u32;
                    block(next(5000), start, start + len)
                })
                .collect();
            let plan = place(&blocks, ARENA_ALIGN);
            assert_valid(&blocks, &plan, ARENA_ALIGN);
            let naive: u64 = blocks.iter().map(|b| align_up(b.bytes, ARENA_ALIGN)).sum();
            assert!(plan.arena_bytes <= naive);
            // Never below the largest set of simultaneously live bytes.
            let peak_live = (0..40u32)
                .map(|t| blocks.iter().filter(|b| b.live.start <= t && t <= b.live.end).map(|b| b.bytes).sum())
                .max()
                .unwrap_or(0);
            assert!(plan.arena_bytes >= peak_live);
        }
    }

    #[test]
    fn liveness_follows_the_schedule() {
        let (x, a, b, w, y) = (TensorId(0), TensorId(1), TensorId(2), TensorId(3), TensorId(4));
        // step 0: a = f(x, w); step 1: b = g(a); step 2: y = h(a, b).  w is a constant.
        let (xw, a1, b1, ab, y1) = ([x, w], [a], [b], [a, b], [y]);
        let steps: Vec<(&[TensorId], &[TensorId])> = vec![(&xw, &a1), (&a1, &b1), (&ab, &y1)];
        let live = live_intervals(5, &[x], &steps, &[y]);
        let iv = |start, end| Some(Interval { start, end });
        assert_eq!(live, [iv(0, 1), iv(1, 3), iv(2, 3), None, iv(3, 4)]);
    }
}
