//! Calibration statistics: per activation tensor, the min, max and a histogram of every float
//! value seen while running the float model over the calibration samples.
//!
//! Statistics are **mergeable exactly**: the stats of samples A and B merged equal the stats
//! of one run over A and B, whatever the order, bit for bit. That is what lets the engine
//! keep one result per sample and add a sample without re-running the others.
//!
//! The histogram achieves that with bins on a global power-of-two grid instead of bins over the
//! data's own range: bin `g` at exponent `e` covers `[g * 2^e, (g + 1) * 2^e)`. Widening the
//! range doubles the bin width (`e + 1`), which merges bins `2k` and `2k + 1` into bin `k`
//! (`floor(floor(x / 2^e) / 2) = floor(x / 2^(e+1))`), so re-binning loses nothing that the
//! coarser grid could hold. The exponent is always the smallest one (not below
//! [`MIN_BIN_EXPONENT`]) at which every value fits in [`HISTOGRAM_BINS`] bins, and the stored
//! bins run from the first to the last non-empty one: a canonical function of the multiset of
//! values, hence order-independent. The price: the bins are up to 2x wider than
//! `range / 2048`, i.e. at least 1024 bins span the data.

use std::collections::{BTreeMap, BTreeSet};

use multiversion::multiversion;
use serde::{Deserialize, Serialize};

use crate::ir::{DType, Graph, Tensor, TensorId};

/// At most this many bins span the data.
pub const HISTOGRAM_BINS: usize = 2048;
/// Bins are never narrower than `2^MIN_BIN_EXPONENT` (about 1e-12); below the SDK's 0.0001
/// minimum range such detail cannot change an encoding.
pub const MIN_BIN_EXPONENT: i32 = -40;
/// Global bin indices stay within +-2^53 so that they are exact in f64 and fit i64.
const MAX_BIN_INDEX: f64 = 9_007_199_254_740_992.0;

/// A histogram of finite f32 values on the global power-of-two grid (module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    exponent: i32,
    first_bin: i64,
    /// `counts[i]` counts bin `first_bin + i`; empty, or first and last entries non-zero.
    counts: Vec<u64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { exponent: MIN_BIN_EXPONENT, first_bin: 0, counts: Vec::new() }
    }
}

/// `2^e` for the exponents a histogram uses (well inside f64's normal range).
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `floor(g / 2^shift)`: arithmetic shift, saturating the shift (indices stay within 2^53, so
/// any shift from 63 up gives the same 0 or -1).
fn shr(g: i64, shift: i32) -> i64 {
    g >> shift.clamp(0, 63)
}

/// Global bin index of `x` at exponent `e`, when it is within +-2^53.
fn bin_of(x: f32, e: i32) -> Option<i64> {
    // Scaling by a power of two is exact, so the floor is exactly floor(x / 2^e).
    let scaled = (x as f64 * pow2(-e)).floor();
    (scaled.abs() <= MAX_BIN_INDEX).then_some(scaled as i64)
}

/// Adds each of `values` (finite, inside the stored bins) to its bin: what [`bin_of`] gives
/// at the exponent whose `pow2(-e)` is `scale`, less `first_bin`. Compiled for AVX2 (whose
/// SSE4.1 rounds in one instruction) besides the x86-64 baseline, where `floor` is a libm call
/// that was a third of calibration.
///
/// Consecutive values go to [`PARTIAL_COUNTS`] separate counters per bin, added up at the end
/// (counts are exact, so the order does not matter): a run of values in one bin, as the zeros
/// after a ReLU are, otherwise makes each increment wait on the store of the one before.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn count_bins(values: &[f32], scale: f64, first_bin: i64, counts: &mut [u64]) {
    // Bin indices a block at a time (a loop the compiler vectorizes: no stores that depend
    // on the data), then the increments; out-of-range values get an index past every bin.
    //
    // The index is worked out in float64 and converted by the magic-number trick: a
    // saturating `as i64` compiled to a scalar conversion, with a NaN test, per value (most
    // of calibration's time). `bin - first` is exact wherever it is a stored bin's index
    // (both are integers within 2^53, and the exact difference is small), and rounding
    // keeps any other difference outside `0..bins`; NaN and infinities fail the range test.
    let mut indices = [0usize; INDEX_BLOCK];
    let (first, bins) = (first_bin as f64, counts.len() as f64);
    let index_block = |block: &[f32], indices: &mut [usize; INDEX_BLOCK]| {
        for (index, &x) in indices.iter_mut().zip(block) {
            let relative = (f64::from(x) * scale).floor() - first;
            *index = if relative >= 0.0 && relative < bins {
                // `relative` is an integer below 2^51: added to 1.5 · 2^52 it is the low bits
                // of the sum's mantissa, exactly.
                ((relative + MAGIC).to_bits() - MAGIC.to_bits()) as usize
            } else {
                usize::MAX
            };
        }
    };
    if values.len() < PARTIAL_COUNTS * counts.len() {
        // Too few values for the partial counters to pay for their zeroing.
        for block in values.chunks(INDEX_BLOCK) {
            index_block(block, &mut indices);
            for &index in &indices[..block.len()] {
                if let Some(count) = counts.get_mut(index) {
                    *count += 1;
                }
            }
        }
        return;
    }
    let mut partial = vec![[0u64; PARTIAL_COUNTS]; counts.len()];
    for block in values.chunks(INDEX_BLOCK) {
        index_block(block, &mut indices);
        for (k, &index) in indices[..block.len()].iter().enumerate() {
            if let Some(bin) = partial.get_mut(index) {
                bin[k % PARTIAL_COUNTS] += 1;
            }
        }
    }
    for (count, bin) in counts.iter_mut().zip(&partial) {
        *count += bin.iter().sum::<u64>();
    }
}

/// 1.5 · 2^52: an integer `n` with `|n| < 2^51` added to it sits, exactly, in the low bits of
/// the sum's mantissa (`(n + MAGIC).to_bits() - MAGIC.to_bits() == n`).
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// Values whose bin indices [`count_bins`] computes before counting them.
const INDEX_BLOCK: usize = 256;

/// Counters per bin in [`count_bins`].
const PARTIAL_COUNTS: usize = 4;

/// `(min, max)` of `values` when every one is finite (and there is one), in one vectorized
/// pass: [`RANGE_LANES`] running minima and maxima by select, and a sum of `x * 0` that turns
/// NaN at the first infinity or NaN. `None` sends the caller to the path that counts and
/// drops non-finite values. A zero's sign may come out either way (callers canonicalize it).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn finite_range(values: &[f32]) -> Option<(f32, f32)> {
    let first = *values.first()?;
    let (mut lo, mut hi, mut poison) = ([first; RANGE_LANES], [first; RANGE_LANES], [0.0f32; RANGE_LANES]);
    let mut add = |lane: usize, x: f32| {
        lo[lane] = if x < lo[lane] { x } else { lo[lane] };
        hi[lane] = if x > hi[lane] { x } else { hi[lane] };
        poison[lane] += x * 0.0;
    };
    let chunks = values.chunks_exact(RANGE_LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in chunk.iter().enumerate() {
            add(lane, x);
        }
    }
    for &x in tail {
        add(0, x);
    }
    if poison.iter().any(|&p| p != 0.0) {
        return None;
    }
    let lo = lo.iter().fold(first, |m, &x| if x < m { x } else { m });
    let hi = hi.iter().fold(first, |m, &x| if x > m { x } else { m });
    Some((lo, hi))
}

/// Lanes of [`finite_range`]: one AVX-512 register of f32 per running value.
const RANGE_LANES: usize = 16;

impl Histogram {
    /// Bin width is `2^exponent`.
    pub fn exponent(&self) -> i32 {
        self.exponent
    }

    pub fn bin_width(&self) -> f64 {
        pow2(self.exponent)
    }

    /// Global index of the first stored bin (it covers `[first_bin * w, (first_bin + 1) * w)`).
    pub fn first_bin(&self) -> i64 {
        self.first_bin
    }

    /// Lower edge of the first stored bin.
    pub fn start(&self) -> f64 {
        self.first_bin as f64 * self.bin_width()
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `[lo, hi)` of stored bin `i`.
    pub fn bin_range(&self, i: usize) -> (f64, f64) {
        let w = self.bin_width();
        let lo = (self.first_bin + i as i64) as f64 * w;
        (lo, lo + w)
    }

    fn last_bin(&self) -> i64 {
        self.first_bin + self.counts.len() as i64 - 1
    }

    /// Adds finite values (the caller filters NaN and infinities).
    fn add_finite(&mut self, values: &[f32], lo: f32, hi: f32) {
        if values.is_empty() {
            return;
        }
        let mut e = self.exponent.max(MIN_BIN_EXPONENT);
        loop {
            let fits = match (bin_of(lo, e), bin_of(hi, e)) {
                (Some(a), Some(b)) => {
                    let (mut first, mut last) = (a, b);
                    if !self.counts.is_empty() {
                        let shift = e - self.exponent;
                        first = first.min(shr(self.first_bin, shift));
                        last = last.max(shr(self.last_bin(), shift));
                    }
                    last - first < HISTOGRAM_BINS as i64
                }
                _ => false,
            };
            if fits {
                break;
            }
            e += 1;
        }
        self.coarsen_to(e);
        // Both indices exist: `e` was chosen so that they do.
        let (Some(first_new), Some(last_new)) = (bin_of(lo, e), bin_of(hi, e)) else { return };
        self.cover(first_new, last_new);
        count_bins(values, pow2(-e), self.first_bin, &mut self.counts);
    }

    /// Re-bins to a coarser exponent (exact: bins only merge).
    fn coarsen_to(&mut self, e: i32) {
        if e <= self.exponent {
            return;
        }
        if self.counts.is_empty() {
            self.exponent = e;
            return;
        }
        let shift = e - self.exponent;
        let first = shr(self.first_bin, shift);
        let last = shr(self.last_bin(), shift);
        let mut counts = vec![0u64; (last - first + 1) as usize];
        for (i, &c) in self.counts.iter().enumerate() {
            let g = shr(self.first_bin + i as i64, shift);
            counts[(g - first) as usize] += c;
        }
        self.exponent = e;
        self.first_bin = first;
        self.counts = counts;
    }

    /// Extends the stored bins (with zeros) to cover global bins `first..=last`.
    fn cover(&mut self, first: i64, last: i64) {
        if self.counts.is_empty() {
            self.first_bin = first;
            self.counts = vec![0; (last - first + 1) as usize];
            return;
        }
        if first < self.first_bin {
            let extra = (self.first_bin - first) as usize;
            let mut counts = vec![0u64; extra];
            counts.extend_from_slice(&self.counts);
            self.counts = counts;
            self.first_bin = first;
        }
        if last > self.last_bin() {
            let extra = (last - self.last_bin()) as usize;
            self.counts.extend(std::iter::repeat_n(0, extra));
        }
    }

    /// Adds `other`'s counts; exact (see module docs).
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        let mut e = self.exponent.max(other.exponent);
        loop {
            let (sa, sb) = (e - self.exponent, e - other.exponent);
            let first = shr(self.first_bin, sa).min(shr(other.first_bin, sb));
            let last = shr(self.last_bin(), sa).max(shr(other.last_bin(), sb));
            if last - first < HISTOGRAM_BINS as i64 {
                break;
            }
            e += 1;
        }
        self.coarsen_to(e);
        let mut theirs = other.clone();
        theirs.coarsen_to(e);
        self.cover(theirs.first_bin, theirs.last_bin());
        for (i, &c) in theirs.counts.iter().enumerate() {
            let g = theirs.first_bin + i as i64;
            self.counts[(g - self.first_bin) as usize] += c;
        }
    }

    /// The value below which `rank` of the counted values lie (`0 <= rank <= total`),
    /// interpolating linearly inside a bin. `None` when empty.
    pub fn value_at_rank(&self, rank: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = rank.clamp(0.0, total as f64);
        let mut before = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (before + c) as f64 >= rank {
                let (lo, hi) = self.bin_range(i);
                let frac = ((rank - before as f64) / c as f64).clamp(0.0, 1.0);
                return Some(lo + frac * (hi - lo));
            }
            before += c;
        }
        let (_, hi) = self.bin_range(self.counts.len() - 1);
        Some(hi)
    }
}

/// Statistics of one activation tensor over all observed samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TensorStats {
    /// Smallest finite value seen (0.0 when `count == 0`).
    pub min: f32,
    /// Largest finite value seen (0.0 when `count == 0`).
    pub max: f32,
    /// Number of finite values seen.
    pub count: u64,
    /// Number of NaN or infinite values seen (they are left out of min, max and histogram).
    pub nonfinite: u64,
    pub histogram: Histogram,
}

/// -0.0 becomes 0.0, so that merge order cannot change the serialized bytes.
fn canonical_zero(x: f32) -> f32 {
    if x == 0.0 { 0.0 } else { x }
}

impl TensorStats {
    /// The statistics of one set of values (a parameter tensor or one channel of it), so that
    /// parameters can use the same histogram-based calibration as activations.
    pub fn of_values(values: &[f32]) -> TensorStats {
        let mut stats = TensorStats::default();
        stats.observe(values);
        stats
    }

    /// Adds every value of one observed tensor.
    pub fn observe(&mut self, values: &[f32]) {
        // Activations are almost always all finite: then no copy, and one vectorized pass for
        // the range instead of a serial fold of `f32::min` (the copy and the fold were most of
        // calibrate's own time).
        if let Some((lo, hi)) = finite_range(values) {
            self.histogram.add_finite(values, lo, hi);
            self.widen(canonical_zero(lo), canonical_zero(hi), values.len() as u64);
            return;
        }
        let mut finite = Vec::with_capacity(values.len());
        for &x in values {
            if x.is_finite() {
                finite.push(x);
            } else {
                self.nonfinite += 1;
            }
        }
        let Some(&first) = finite.first() else { return };
        let (lo, hi) = finite.iter().fold((first, first), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        self.histogram.add_finite(&finite, lo, hi);
        self.widen(canonical_zero(lo), canonical_zero(hi), finite.len() as u64);
    }

    fn widen(&mut self, lo: f32, hi: f32, count: u64) {
        if count == 0 {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (lo, hi);
        } else {
            self.min = self.min.min(lo);
            self.max = self.max.max(hi);
        }
        self.count += count;
    }

    /// Adds another run's statistics of the same tensor.
    pub fn merge(&mut self, other: &TensorStats) {
        self.histogram.merge(&other.histogram);
        self.nonfinite += other.nonfinite;
        self.widen(other.min, other.max, other.count);
    }

    /// `(min, max)` of the finite values, if there were any.
    pub fn range(&self) -> Option<(f32, f32)> {
        (self.count > 0).then_some((self.min, self.max))
    }

    /// The range that drops the `(100 - percentile)`% outermost values on each side: the
    /// `(100 - p)`-th and `p`-th percentiles of the histogram (AIMET's percentile scheme),
    /// clamped to `[min, max]`. Accurate to about one bin width (`(max - min) / 1024`).
    pub fn percentile_range(&self, percentile: f64) -> Option<(f32, f32)> {
        let (min, max) = self.range()?;
        let total = self.histogram.total() as f64;
        let p = (percentile / 100.0).clamp(0.0, 1.0);
        let hi = self.histogram.value_at_rank(total * p)?;
        let lo = self.histogram.value_at_rank(total * (1.0 - p))?;
        let clamp = |v: f64| (v as f32).clamp(min, max);
        Some((clamp(lo), clamp(hi)))
    }
}

/// The statistics of every observed activation tensor: the output of the calibrate stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationStats {
    pub tensors: BTreeMap<TensorId, TensorStats>,
}

impl CalibrationStats {
    pub fn get(&self, id: TensorId) -> Option<&TensorStats> {
        self.tensors.get(&id)
    }

    /// Adds the statistics of other samples; exact and order-independent.
    pub fn merge(&mut self, other: &CalibrationStats) {
        for (&id, stats) in &other.tensors {
            self.tensors.entry(id).or_default().merge(stats);
        }
    }
}

/// Accumulates [`CalibrationStats`] while the float model runs, one observed tensor at a
/// time. Only the graph's float activations (graph inputs and node outputs of dtype f32) are
/// recorded; anything else passed to [`StatsCollector::observe`] is ignored.
#[derive(Clone, Debug)]
pub struct StatsCollector {
    tracked: BTreeSet<TensorId>,
    stats: CalibrationStats,
}

impl StatsCollector {
    pub fn new(graph: &Graph) -> StatsCollector {
        let produced = graph.nodes.iter().flat_map(|n| n.outputs.iter());
        let tracked = graph
            .inputs
            .iter()
            .chain(produced)
            .copied()
            .filter(|&id| {
                !graph.is_constant(id) && graph.tensors.get(id.index()).is_some_and(|t| t.dtype == DType::F32)
            })
            .collect();
        StatsCollector { tracked, stats: CalibrationStats::default() }
    }

    /// Records the values of tensor `id` for one sample (ignored unless `id` is a float
    /// activation of the graph and `t` holds f32 data).
    pub fn observe(&mut self, id: TensorId, t: &Tensor) {
        if !self.tracked.contains(&id) {
            return;
        }
        if let Some(values) = t.as_f32() {
            self.stats.tensors.entry(id).or_default().observe(values);
        }
    }

    pub fn finish(self) -> CalibrationStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Node, Op, TensorInfo};

    fn stats_of(batches: &[&[f32]]) -> TensorStats {
        let mut s = TensorStats::default();
        for b in batches {
            s.observe(b);
        }
        s
    }

    #[test]
    fn min_max_and_counts() {
        let s = stats_of(&[&[1.0, -2.0, f32::NAN], &[3.5, f32::INFINITY]]);
        assert_eq!((s.min, s.max, s.count, s.nonfinite), (-2.0, 3.5, 3, 2));
        assert_eq!(s.histogram.total(), 3);
    }

    /// Values [0, 1, 2, 3] need 4 bins of width 1 at most; the smallest power of two at which
    /// 0..=3 spans fewer than 2048 bins is 2^-9 (3 / 2^-9 = 1536 -> bins 0..=1536), so
    /// exponent -9, first bin 0, 1537 stored bins with counts at 0, 512, 1024, 1536.
    #[test]
    fn histogram_uses_the_finest_grid_that_fits() {
        let s = stats_of(&[&[0.0, 1.0, 2.0, 3.0]]);
        let h = &s.histogram;
        assert_eq!(h.exponent(), -9);
        assert_eq!(h.start(), 0.0);
        assert_eq!(h.counts().len(), 1537);
        let nonzero: Vec<usize> = h.counts().iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, _)| i).collect();
        assert_eq!(nonzero, vec![0, 512, 1024, 1536]);
    }

    #[test]
    fn the_vectorized_range_is_the_fold_and_refuses_non_finite_values() {
        for n in [1, 2, 15, 16, 17, 40, 1001] {
            let values: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.125).collect();
            let fold = values.iter().fold((values[0], values[0]), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            assert_eq!(finite_range(&values), Some(fold), "n {n}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in [0, n / 2, n - 1] {
                    let mut with_bad = values.clone();
                    with_bad[at] = bad;
                    assert_eq!(finite_range(&with_bad), None, "n {n}: {bad} at {at}");
                }
            }
        }
        assert_eq!(finite_range(&[]), None);
    }

    #[test]
    fn bins_count_every_value_once_however_runs_fall() {
        // Runs of one value (a ReLU's zeros) with a spread after them, enough values for the
        // partial counters; and the spread alone, counted directly.
        let spread: Vec<f32> = (0..517).map(|i| i as f32 * 0.5 - 60.0).collect();
        let mut runs = vec![0.0f32; 3003];
        runs.extend(&spread);
        for values in [runs, spread] {
            let mut counts = vec![0u64; 600];
            count_bins(&values, 2.0, -150, &mut counts);
            let mut want = vec![0u64; 600];
            for &x in &values {
                let bin = (f64::from(x) * 2.0).floor() as i64 + 150;
                if let Some(c) = usize::try_from(bin).ok().and_then(|b| want.get_mut(b)) {
                    *c += 1;
                }
            }
            assert_eq!(counts, want, "{} values", values.len());
            assert_eq!(counts.iter().sum::<u64>(), values.len() as u64, "every value lands in a stored bin");
        }
    }

    /// A value is counted exactly when its global bin is a stored one, however far the
    /// stored bins and the values are from zero and from each other (differences up to 2^53
    /// bins); NaN and infinities never are. Checked against the definition in 128-bit
    /// integers, with few values (counted directly) and many (partial counters).
    #[test]
    fn only_values_in_stored_bins_are_counted_however_far_apart() {
        let p52 = 4_503_599_627_370_496.0f32; // 2^52, exact in f32
        let special = [0.0, -0.0, 1.5, -1.5, p52, -p52, p52 * 2.0, -p52 * 2.0, 1e30, -1e30, f32::NAN];
        let special = special.into_iter().chain([f32::INFINITY, f32::NEG_INFINITY, f32::MIN, f32::MAX]);
        let special: Vec<f32> = special.collect();
        for (scale, first_bin) in [(1.0, -(1i64 << 52)), (1.0, 1i64 << 52), (1.0, -2), (0.5, -(1i64 << 51)), (4.0, 3)] {
            for copies in [1, 2000] {
                let values: Vec<f32> = special.iter().copied().cycle().take(special.len() * copies).collect();
                let mut counts = vec![0u64; 8];
                count_bins(&values, scale, first_bin, &mut counts);
                let mut want = vec![0u64; 8];
                for &x in &values {
                    let scaled = (f64::from(x) * scale).floor();
                    if !scaled.is_finite() {
                        continue;
                    }
                    let relative = (scaled as i128).saturating_sub(i128::from(first_bin));
                    if (0..8).contains(&relative) {
                        want[relative as usize] += 1;
                    }
                }
                assert_eq!(counts, want, "scale {scale}, first bin {first_bin}, {} values", values.len());
            }
        }
    }

    /// Observing in pieces, merging in any order, or all at once give identical stats.
    #[test]
    fn merging_is_exact_and_order_independent() {
        let a: Vec<f32> = (0..500).map(|i| (i as f32 * 0.37).sin() * 0.01).collect();
        let b: Vec<f32> = (0..300).map(|i| (i as f32 * 0.11).cos() * 40.0 - 7.0).collect();
        let c: Vec<f32> = vec![-0.0, 1e-7, 123.25, -99.5];
        let all: Vec<f32> = a.iter().chain(&b).chain(&c).copied().collect();
        let whole = stats_of(&[&all]);
        let sequential = stats_of(&[&a, &b, &c]);
        let mut merged = stats_of(&[&c]);
        merged.merge(&stats_of(&[&b]));
        merged.merge(&stats_of(&[&a]));
        assert_eq!(whole, sequential);
        assert_eq!(whole, merged);
        assert_eq!(whole.count, 804);
        assert_eq!((whole.min, whole.max), (-99.5, 123.25));
        // Wide data: 222.75 / 2^e < 2048 -> e = -3 (bins of 0.125).
        assert_eq!(whole.histogram.exponent(), -3);
    }

    /// Percentile from the histogram: 1000 values 0.0, 0.001, ..., 0.999 plus one outlier at
    /// 100. Range 100 needs bins of 2^-4 = 0.0625 (2^-5 would need 3200 bins). The 99.9th
    /// percentile (rank 999.999 of 1001) falls in the last dense bin [0.9375, 1.0); the 0.1th
    /// (rank 1.001) in the first, [0, 0.0625).
    #[test]
    fn percentile_range_clips_outliers() {
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32 * 0.001).collect();
        v.push(100.0);
        let s = stats_of(&[&v]);
        let (lo, hi) = s.percentile_range(99.9).unwrap();
        assert!((0.0..0.0625).contains(&lo), "{lo}");
        assert!((0.9375..=1.0).contains(&hi), "{hi}");
        assert_eq!(s.histogram.exponent(), -4);
        assert_eq!(s.percentile_range(100.0).unwrap(), (0.0, 100.0));
    }

    #[test]
    fn collector_tracks_float_activations_only() {
        let mut g = Graph::default();
        let f = |name: &str, dtype| TensorInfo { name: name.into(), dtype, shape: vec![2] };
        let x = g.add_tensor(f("x", DType::F32));
        let w = g.add_tensor(f("w", DType::F32));
        let y = g.add_tensor(f("y", DType::F32));
        g.constants.insert(w, Tensor::from_f32(vec![2], vec![1.0, 2.0]));
        g.inputs = vec![x];
        g.outputs = vec![y];
        g.nodes.push(Node {
            name: "m".into(),
            op: Op::Binary(crate::ops::Binary::Mul),
            inputs: vec![x, w],
            outputs: vec![y],
        });
        let mut c = StatsCollector::new(&g);
        c.observe(x, &Tensor::from_f32(vec![2], vec![-1.0, 4.0]));
        c.observe(w, &Tensor::from_f32(vec![2], vec![1.0, 2.0]));
        c.observe(y, &Tensor::from_i64(vec![2], vec![1, 2]));
        let stats = c.finish();
        assert_eq!(stats.tensors.keys().copied().collect::<Vec<_>>(), vec![x]);
        assert_eq!(stats.get(x).unwrap().range(), Some((-1.0, 4.0)));
    }

    #[test]
    fn stats_serialize_round_trip() {
        let mut stats = CalibrationStats::default();
        stats.tensors.insert(TensorId(3), stats_of(&[&[0.5, -0.25, 2.0]]));
        let bytes = postcard::to_allocvec(&stats).unwrap();
        let back: CalibrationStats = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, stats);
    }
}
