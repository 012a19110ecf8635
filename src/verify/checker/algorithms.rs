//! The six checker algorithms as pure formulas over plain slices (after the SDK's
//! qnn-quantization-checker, digest `accuracy-tools-checker-evaluator.md` §1.4).
//!
//! Every function takes data that already went through [`nan_to_num`] and computes in f64
//! (the inputs are f32, so every input value is exact in f64). None of them is called with
//! an empty slice: [`super::check_param`] and friends turn empty tensors into N/A first.

/// The SDK's `np.nan_to_num` on float32 data: NaN -> 0, +inf -> `f32::MAX`, -inf ->
/// `f32::MIN` (the largest finite values of the array's dtype). Borrowed when every value is
/// finite already (the usual case: no copy of a weight tensor or activation prefix).
pub fn nan_to_num(values: &[f32]) -> std::borrow::Cow<'_, [f32]> {
    // Blocks without an early exit inside, so that the test vectorizes.
    if values.chunks(256).all(|block| block.iter().fold(true, |all, x| all & x.is_finite())) {
        return std::borrow::Cow::Borrowed(values);
    }
    let replaced: Vec<f32> = values
        .iter()
        .map(|&x| {
            if x.is_nan() {
                0.0
            } else if x == f32::INFINITY {
                f32::MAX
            } else if x == f32::NEG_INFINITY {
                f32::MIN
            } else {
                x
            }
        })
        .collect();
    std::borrow::Cow::Owned(replaced)
}

/// `(min, max)` of a non-empty slice, in f64, skipping NaN (`(inf, -inf)` when nothing is
/// left). A zero comes back as 0.0 whatever its sign: every use subtracts and takes sizes,
/// where the sign of a zero makes no difference, and a fold of `f64::min` gave either.
pub fn min_max(values: &[f32]) -> (f64, f64) {
    // Sixteen lanes of selects on plain comparisons (false for NaN, so NaN never replaces a
    // lane's value): vector instructions, where `f64::min`'s NaN rule kept the fold scalar.
    const LANES: usize = 16;
    let (mut lo, mut hi) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
    let mut take = |lane: usize, x: f32| {
        lo[lane] = if x < lo[lane] { x } else { lo[lane] };
        hi[lane] = if x > hi[lane] { x } else { hi[lane] };
    };
    let blocks = values.chunks_exact(LANES);
    let tail = blocks.remainder();
    for block in blocks {
        for (lane, &x) in block.iter().enumerate() {
            take(lane, x);
        }
    }
    for (lane, &x) in tail.iter().enumerate() {
        take(lane, x);
    }
    let lo = lo.iter().fold(f32::INFINITY, |m, &x| if x < m { x } else { m });
    let hi = hi.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    (f64::from(lo) + 0.0, f64::from(hi) + 0.0)
}

/// `minmax`: `(|min(u) - min(d)|, |max(u) - max(d)|)`, where `(d_min, d_max)` is either the
/// dequantized tensor's range or, for activations, the encoding's representable range.
pub fn minmax(unquantized: &[f32], (d_min, d_max): (f64, f64)) -> (f64, f64) {
    let (u_min, u_max) = min_max(unquantized);
    ((u_min - d_min).abs(), (u_max - d_max).abs())
}

/// `maxdiff`: `max |u - d|` over elements (slices of equal length).
pub fn maxdiff(unquantized: &[f32], dequantized: &[f32]) -> f64 {
    unquantized.iter().zip(dequantized).map(|(&u, &d)| (u as f64 - d as f64).abs()).fold(0.0, f64::max)
}

/// `sqnr` in dB: `10 log10(mean(u^2) / mean((d - u)^2))`; `+inf` when the error is exactly
/// zero (the SDK's `sqnr: inf`), `-inf` when the signal is zero but the error is not.
pub fn sqnr(unquantized: &[f32], dequantized: &[f32]) -> f64 {
    let n = unquantized.len().min(dequantized.len());
    let (unquantized, dequantized) = (&unquantized[..n], &dequantized[..n]);
    let count = n.max(1) as f64;
    let mse = numpy_sum(n, |start, out| {
        let end = start + out.len();
        let (u, d) = (&unquantized[start..end], &dequantized[start..end]);
        for ((o, &u), &d) in out.iter_mut().zip(u).zip(d) {
            let error = f64::from(d) - f64::from(u);
            *o = error * error;
        }
    }) / count;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    let signal = sum_of(unquantized, |u| u * u) / count;
    10.0 * (signal / mse).log10()
}

/// numpy's `np.add.reduce` of `n` float64 terms, in its order (numpy 2.x's `pairwise_sum`
/// on a contiguous array): runs of up to 128 terms are summed by [`block_sum`]; a longer run
/// splits after half its length rounded down to a multiple of 8, and the two halves' sums are
/// added. `fill(start, out)` writes terms `start..start + out.len()`. Taking numpy's order
/// makes every mean and variance here equal numpy's bit for bit, and its eight independent
/// accumulators vectorize, where a sequential sum waits for each addition to finish (the
/// moments of MobileNetV2's weights: 80 profile samples before, 32 with the mode's pass).
fn numpy_sum(n: usize, fill: impl Fn(usize, &mut [f64]) + Copy) -> f64 {
    fn pairwise(start: usize, n: usize, fill: impl Fn(usize, &mut [f64]) + Copy) -> f64 {
        if n <= BLOCK {
            let mut terms = [0.0; BLOCK];
            fill(start, &mut terms[..n]);
            return block_sum(&terms[..n]);
        }
        let half = n / 2 - (n / 2) % 8;
        pairwise(start, half, fill) + pairwise(start + half, n - half, fill)
    }
    const BLOCK: usize = 128;
    // The reduction starts from add's identity, 0.0 (which turns a -0.0 sum into 0.0).
    0.0 + pairwise(0, n, fill)
}

/// One run of at most 128 terms in numpy's `pairwise_sum`: fewer than 8 add one by one from
/// 0.0; otherwise eight accumulators take every eighth term, are combined as `((r0 + r1) +
/// (r2 + r3)) + ((r4 + r5) + (r6 + r7))`, and the terms past the last multiple of 8 follow
/// one by one.
fn block_sum(terms: &[f64]) -> f64 {
    let n = terms.len();
    if n < 8 {
        return terms.iter().fold(0.0, |sum, &x| sum + x);
    }
    let whole = n - n % 8;
    let mut r = [0.0; 8];
    r.copy_from_slice(&terms[..8]);
    for chunk in terms[8..whole].chunks_exact(8) {
        for (accumulator, &x) in r.iter_mut().zip(chunk) {
            *accumulator += x;
        }
    }
    let combined = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    terms[whole..].iter().fold(combined, |sum, &x| sum + x)
}

/// [`numpy_sum`] of `term(x)` over float32 values widened to f64.
fn sum_of(values: &[f32], term: impl Fn(f64) -> f64 + Copy) -> f64 {
    numpy_sum(values.len(), |start, out| {
        let end = start + out.len();
        for (o, &x) in out.iter_mut().zip(&values[start..end]) {
            *o = term(f64::from(x));
        }
    })
}

/// The `stats` algorithm's numbers (numpy's definitions: population variance, the median
/// averages the two middle values of an even count, the mode is the smallest of the most
/// frequent values).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub skew: f64,
    pub min: f64,
    pub max: f64,
    pub median: f64,
    pub mean: f64,
    pub variance: f64,
    pub std_dev: f64,
    pub mode: f64,
}

/// `stats`: `skew = mean(((x - mean) / std)^3)`, 0 when `std == 0`.
pub fn stats(values: &[f32]) -> Stats {
    stats_of_sorted(values, &sorted(values))
}

/// The values in IEEE total order (`f32::total_cmp`), sorted by integer keys: every analysis
/// that needs an order ([`stats`]' median and mode, [`data_range`]'s distinct integers,
/// [`data_distribution`]'s bins) shares one sort, since truncation and binning are monotone.
/// No two distinct bit patterns tie in that order, so any sort gives the one sorted sequence;
/// a radix sort of the keys takes a few linear passes (see Cargo.toml).
pub fn sorted(values: &[f32]) -> Vec<f32> {
    // Flipping the magnitude bits of negatives makes the signed integers order as total_cmp.
    let key = |x: f32| {
        let bits = x.to_bits() as i32;
        bits ^ ((((bits >> 31) as u32) >> 1) as i32)
    };
    let mut keys: Vec<i32> = values.iter().map(|&x| key(x)).collect();
    radsort::sort(&mut keys);
    keys.into_iter().map(|k| f32::from_bits((k ^ ((((k >> 31) as u32) >> 1) as i32)) as u32)).collect()
}

/// [`stats`] with the values also given in [`sorted`] order.
pub fn stats_of_sorted(values: &[f32], sorted: &[f32]) -> Stats {
    // numpy's `mean`, `var` and `std` (sums in numpy's order: the same bits). numpy's `** 3`
    // calls its `power` loop, whose AVX-512 build is SVML's pow, not libm's: the skew's cube is
    // `z * z * z`, which can differ from numpy's in the last bits.
    let n = values.len().max(1) as f64;
    let mean = sum_of(values, |x| x) / n;
    let variance = sum_of(values, |x| (x - mean) * (x - mean)) / n;
    let std_dev = variance.sqrt();
    let skew = if std_dev == 0.0 {
        0.0
    } else {
        sum_of(values, |x| {
            let z = (x - mean) / std_dev;
            z * z * z
        }) / n
    };
    // Read as f64 where used (no widened copy: a weight tensor's worth of memory per profile).
    let at = |i: usize| sorted.get(i).map(|&x| f64::from(x));
    let mid = sorted.len() / 2;
    let median = match (sorted.len() % 2, at(mid)) {
        (_, None) => 0.0,
        (1, Some(m)) => m,
        (_, Some(hi)) => (at(mid.wrapping_sub(1)).unwrap_or(hi) + hi) / 2.0,
    };
    // Runs of equal values in sorted order; the first longest run is numpy's
    // `vals[argmax(counts)]` over `np.unique` (sorted), i.e. the smallest most frequent value.
    // (Two f32 are equal exactly when their f64 widenings are.)
    let (mut mode, mut best, mut run) = (at(0).unwrap_or(0.0), 0usize, 0usize);
    for (i, &x) in sorted.iter().enumerate() {
        run = if i > 0 && sorted[i - 1] == x { run + 1 } else { 1 };
        if run > best {
            best = run;
            mode = f64::from(x);
        }
    }
    Stats {
        skew,
        min: at(0).unwrap_or(0.0),
        max: sorted.last().map_or(0.0, |&x| f64::from(x)),
        median,
        mean,
        variance,
        std_dev,
        mode,
    }
}

/// `data_range_analyzer`: `(count(unique(int(x))), max(x) - min(x))`. `int(x)` truncates
/// toward zero; we count distinct `trunc(x)` as floats, which equals numpy's count of
/// distinct `astype(int)` wherever that cast is defined (`|x| < 2^63`).
pub fn data_range(values: &[f32]) -> (usize, f64) {
    data_range_of_sorted(&sorted(values))
}

/// `f64::from(x).trunc()`, up to the sign of a zero result, without a call into libm (the
/// baseline x86-64 target has no rounding instruction; a profile truncates millions of values).
/// An f32 of magnitude 2^23 or more (or not finite) is already an integer; below that the
/// value fits an i32, and the conversion truncates toward zero.
fn truncated(x: f32) -> f64 {
    if x.abs() < 8_388_608.0 { f64::from(x as i32) } else { f64::from(x) }
}

/// `f64::from(x).fract() != 0.0`: a finite non-integer, or NaN or an infinity (whose `fract`
/// is NaN), without a call into libm.
fn has_fraction(x: f32) -> bool {
    !x.is_finite() || (x.abs() < 8_388_608.0 && (x as i32) as f32 != x)
}

/// [`data_range`] of values given in [`sorted`] order (truncation keeps that order).
pub fn data_range_of_sorted(sorted: &[f32]) -> (usize, f64) {
    // Distinct truncations come in runs, each found by a galloping search: a few dozen steps
    // where a walk would visit millions of weights, most of which truncate to 0. `==` (not
    // `total_cmp`) so that -0.0 and 0.0 count once, as int 0 does; a NaN is a run of its own.
    let mut distinct = 0usize;
    let mut rest = sorted;
    while let Some(&first) = rest.first() {
        let run = truncated(first);
        distinct += 1;
        rest = &rest[run_length(rest, |x| truncated(x) == run)..];
    }
    let (lo, hi) = min_max_of_sorted(sorted);
    (distinct, hi - lo)
}

/// The length of the run that starts `values` (at least 1 when `values` is not empty), where
/// `same` holds on a prefix of `values` after the first value: the run is walked in doubling
/// steps, and the step that leaves it is searched by bisection (O(log run) calls of `same`).
fn run_length(values: &[f32], same: impl Fn(f32) -> bool) -> usize {
    let (mut known, mut step) = (1, 1);
    while known + step <= values.len() && same(values[known + step - 1]) {
        known += step;
        step *= 2;
    }
    let end = (known + step - 1).min(values.len());
    known + values[known..end].partition_point(|&x| same(x))
}

/// `(min, max)` of values in [`sorted`] order: its two ends when both are numbers (a NaN sorts
/// to one end by its sign, and [`min_max`] skips it). A zero end may be -0.0 where a fold
/// of `min` could give 0.0: the same number to every use (differences, then their size).
pub fn min_max_of_sorted(sorted: &[f32]) -> (f64, f64) {
    match (sorted.first(), sorted.last()) {
        (Some(&lo), Some(&hi)) if !lo.is_nan() && !hi.is_nan() => (f64::from(lo), f64::from(hi)),
        _ => min_max(sorted),
    }
}

/// Upper bound on the histogram's bin count. Unreachable for f32 data: a value with a
/// fractional part has `|x| < 2^23`, so `max - min + 1 < 2^24 + 1`. Kept so the function is
/// total for any input; the bins are never allocated either way (see [`data_distribution`]).
pub const MAX_BINS: u64 = 1 << 25;

/// `data_distribution_analyzer`: over the values with a fractional part (`x != int(x)`),
/// the largest `(count(bin) - 1) / N` of `np.histogram(values, bins = max(int(max - min +
/// 1), 256))`; 0 when no value has a fractional part.
///
/// The SDK's `maxRatio` only depends on the fullest bin, so instead of allocating the bins
/// this computes every value's bin index exactly as numpy does (uniform bins: `floor((x -
/// first) / (last - first) * bins)`, then the one-ulp corrections against the `linspace`
/// edges) and counts equal indices after sorting: same result, O(N) memory.
pub fn data_distribution(values: &[f32]) -> f64 {
    data_distribution_of_sorted(&sorted(values))
}

/// [`data_distribution`] of values given in [`sorted`] order: a value's bin index never
/// decreases as the value grows, so equal indices come in runs without a sort of their own.
pub fn data_distribution_of_sorted(sorted: &[f32]) -> f64 {
    let finite = |x: Option<&f32>| x.is_none_or(|x| x.is_finite());
    // Sorted, the ends are finite only when every value is (NaN and the infinities sort last
    // or first): the usual case, counted run by run; anything else takes the walk.
    if finite(sorted.first()) && finite(sorted.last()) {
        distribution_of_finite(sorted)
    } else {
        distribution_by_walking(sorted)
    }
}

/// numpy's histogram bins over the fractional values `first..=last` (its `bins` count, the
/// widening of an empty range, the `linspace` edges and the bin of a value).
struct Bins {
    first: f64,
    last: f64,
    bins: u64,
    step: f64,
}

impl Bins {
    fn over(mut first: f64, mut last: f64) -> Bins {
        let bins = ((last - first + 1.0).trunc() as u64).clamp(256, MAX_BINS);
        if first == last {
            // numpy widens an empty range by 0.5 on each side.
            first -= 0.5;
            last += 0.5;
        }
        Bins { first, last, bins, step: (last - first) / bins as f64 }
    }

    fn edge(&self, i: u64) -> f64 {
        if i >= self.bins { self.last } else { i as f64 * self.step + self.first }
    }

    /// numpy's bin of `x`: a first guess (within one bin of the answer), settled against the
    /// edges: the bin whose edges hold `x`, the top edge closing the last bin.
    fn of(&self, x: f64) -> u64 {
        let mut i = (((x - self.first) / (self.last - self.first)) * self.bins as f64) as u64;
        if i >= self.bins {
            i = self.bins - 1;
        }
        if x < self.edge(i) {
            i = i.saturating_sub(1);
        }
        if x >= self.edge(i + 1) && i != self.bins - 1 {
            i += 1;
        }
        i
    }
}

/// The data distribution of finite sorted values, a run of positions per bin: a bin's values
/// are those below its upper edge from where it starts, found by a galloping search, and its
/// count is the run's length less the integers in it ([`integer_ranges`]). A few hundred
/// searches where a walk visits every one of millions of weights.
fn distribution_of_finite(sorted: &[f32]) -> f64 {
    let integers = integer_ranges(sorted);
    let mut before = Vec::with_capacity(integers.len() + 1);
    before.push(0usize);
    for range in &integers {
        before.push(before[before.len() - 1] + range.len());
    }
    let integers_before = |p: usize| {
        let k = integers.partition_point(|r| r.end <= p);
        before[k] + integers.get(k).map_or(0, |r| p.saturating_sub(r.start))
    };
    let count = sorted.len() - before[integers.len()];
    if count == 0 {
        return 0.0;
    }
    // The first and last fractional values: past the integer ranges that touch either end.
    let mut lo = 0;
    for range in &integers {
        if range.start != lo {
            break;
        }
        lo = range.end;
    }
    let mut hi = sorted.len();
    for range in integers.iter().rev() {
        if range.end != hi {
            break;
        }
        hi = range.start;
    }
    let bins = Bins::over(f64::from(sorted[lo]), f64::from(sorted[hi - 1]));
    let (mut fullest, mut run, mut bin) = (0usize, 0usize, None);
    let mut start = lo;
    while start < hi {
        let b = bins.of(f64::from(sorted[start]));
        let end = if b == bins.bins - 1 {
            hi
        } else {
            let upper = bins.edge(b + 1);
            start + run_length(&sorted[start..hi], |x| f64::from(x) < upper)
        };
        let fractional = (end - start) - (integers_before(end) - integers_before(start));
        run = if bin == Some(b) { run + fractional } else { fractional };
        bin = Some(b);
        fullest = fullest.max(run);
        start = end;
    }
    (fullest.saturating_sub(1)) as f64 / count as f64
}

/// The positions of the integers (values without a fractional part) among finite sorted
/// values, as ranges in order. Within a run of equal truncations `t` ([`run_length`]), the
/// values equal to `t` are the run's first ones when `t > 0` (the run is `[t, t + 1)`), its
/// last ones when `t < 0`, and its zeros, between the negatives and the positives, when `t`
/// is 0: a bisection each.
fn integer_ranges(sorted: &[f32]) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let t = truncated(sorted[start]);
        let run = &sorted[start..start + run_length(&sorted[start..], |x| truncated(x) == t)];
        let equal = if t > 0.0 {
            0..run.partition_point(|&x| f64::from(x) == t)
        } else if t < 0.0 {
            run.partition_point(|&x| f64::from(x) != t)..run.len()
        } else {
            run.partition_point(|&x| x < 0.0)..run.partition_point(|&x| x <= 0.0)
        };
        if !equal.is_empty() {
            ranges.push(start + equal.start..start + equal.end);
        }
        start += run.len();
    }
    ranges
}

/// The data distribution by a walk over every fractional value (for data with a NaN or an
/// infinity, which count as fractional).
fn distribution_by_walking(sorted: &[f32]) -> f64 {
    // Passes over the sorted values instead of copies of them (a profile holds a weight
    // tensor's worth of values).
    let fractional = || sorted.iter().filter(|&&x| has_fraction(x)).map(|&x| f64::from(x));
    // Sorted: the smallest and largest fractional values are the first and the last found.
    // (A NaN counts as fractional, as its `fract` is NaN, and then is the extreme it would
    // be in a fold of `min`/`max`, which skip it: keep the fold for that case.)
    let (first, last) = match (fractional().next(), fractional().next_back()) {
        (None, _) | (_, None) => return 0.0,
        (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() => (lo, hi),
        _ => fractional().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x))),
    };
    let bins = Bins::over(first, last);
    // Bin indices never decrease along sorted values, so the fullest bin is the longest run,
    // and a value below the current bin's upper edge is in that bin: only a value that
    // leaves it needs its bin worked out (a division). Thousands of values share a bin.
    let (mut count, mut fullest, mut run) = (0usize, 0usize, 0usize);
    let (mut bin, mut upper) = (None, f64::NEG_INFINITY);
    for x in fractional() {
        count += 1;
        // (A NaN, sorted last and binned by the guess alone, takes the long way.)
        let stays = !x.is_nan() && bin.is_some_and(|b| x < upper || b == bins.bins - 1);
        if stays {
            run += 1;
        } else {
            let b = bins.of(x);
            run = if bin == Some(b) { run + 1 } else { 1 };
            bin = Some(b);
            upper = bins.edge(b + 1);
        }
        fullest = fullest.max(run);
    }
    (fullest.saturating_sub(1)) as f64 / count as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sorted-order analyses against their definitions written with copies (unique
    /// truncations by dedup, bins collected then grouped), on values with repeats, integers,
    /// signed zeros and fractions.
    #[test]
    fn truncation_and_fraction_tests_agree_with_libm_on_edge_values() {
        let two_23 = 8_388_608.0f32;
        let edges = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            1.5,
            -2.5,
            two_23 - 0.5,
            -(two_23 - 0.5),
            two_23,
            -two_23,
            two_23 + 1.0,
            16_777_218.0,
            2_147_483_648.0,
            -2_147_483_904.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for x in edges {
            let wide = f64::from(x);
            assert_eq!(has_fraction(x), wide.fract() != 0.0, "{x}");
            let (ours, libm) = (truncated(x), wide.trunc());
            assert!(ours == libm || (ours.is_nan() && libm.is_nan()), "{x}: {ours} vs {libm}");
        }
    }

    #[test]
    fn sorted_analyses_match_their_definitions_with_copies() {
        let mut values: Vec<f32> = (0..3000).map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.37).collect();
        values.extend([0.0, -0.0, 2.0, 2.0, -3.0, 0.37, 0.37, 0.37]);
        let sorted = sorted(&values);
        let mut truncated: Vec<f64> = sorted.iter().map(|&x| f64::from(x).trunc()).collect();
        truncated.dedup_by(|a, b| a == b);
        assert_eq!(data_range_of_sorted(&sorted).0, truncated.len());
        assert_eq!(data_distribution_of_sorted(&sorted), distribution_by_definition(&sorted));
        assert_eq!(min_max_of_sorted(&sorted), min_max(&values));
        let stats = stats_of_sorted(&values, &sorted);
        let mid = sorted.len() / 2;
        assert_eq!(stats.median, (f64::from(sorted[mid - 1]) + f64::from(sorted[mid])) / 2.0);
        assert_eq!((stats.min, stats.max), (f64::from(sorted[0]), f64::from(sorted[sorted.len() - 1])));
        assert_eq!(stats.mode, f64::from(0.37f32), "0.37 appears more often than any other value");
    }

    /// The lanes' `(min, max)` against a fold of `f64::min`/`f64::max` (which skip NaN): every
    /// length from empty to a few blocks plus a tail, with NaN, infinities and signed zeros
    /// placed in every lane; zeros compare equal, whatever their signs.
    #[test]
    fn lane_min_max_is_the_fold_that_skips_nan() {
        let fold = |values: &[f32]| {
            values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(f64::from(x)), hi.max(f64::from(x))))
        };
        let specials = [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY, -3.5, 7.25];
        for len in 0..70 {
            for (k, &special) in specials.iter().enumerate() {
                let values: Vec<f32> =
                    (0..len).map(|i| if i % 7 == k { special } else { ((i * 37 % 23) as f32 - 11.0) * 0.5 }).collect();
                let (got, want) = (min_max(&values), fold(&values));
                assert!(got.0 == want.0 && got.1 == want.1, "len {len}, {special}: {got:?} vs {want:?}");
            }
        }
        assert_eq!(min_max(&[f32::NAN; 20]), (f64::INFINITY, f64::NEG_INFINITY));
        assert_eq!(min_max(&[-0.0; 3]).0.to_bits(), 0.0f64.to_bits());
    }

    /// Distinct truncations by galloping over runs, against a walk over every value: runs of
    /// every length up to the whole slice, at either end, NaNs of both signs (each its own
    /// run), infinities and signed zeros; and the sorted ends as `(min, max)`, skipping NaN.
    #[test]
    fn galloped_runs_and_sorted_ends_match_a_walk() {
        let walk = |sorted: &[f32]| {
            let mut truncations: Vec<f64> = sorted.iter().map(|&x| truncated(x)).collect();
            truncations.dedup_by(|a, b| a == b);
            truncations.len()
        };
        let mut values = vec![f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 0.0];
        for run in [1usize, 2, 3, 5, 8, 13, 64, 100] {
            values.extend(std::iter::repeat_n(run as f32 + 0.25, run));
            values.extend(std::iter::repeat_n(-(run as f32) - 0.5, run));
        }
        values.extend((0..1000).map(|i| i as f32 * 0.001));
        for slice in [&values[..], &values[2..], &values[4..], &values[7..], &values[7..8], &[] as &[f32]] {
            let sorted = sorted(slice);
            assert_eq!(data_range_of_sorted(&sorted).0, walk(&sorted), "{slice:?}");
            let (ends, fold) = (min_max_of_sorted(&sorted), min_max(slice));
            assert!(ends.0 == fold.0 && ends.1 == fold.1, "{ends:?} vs {fold:?}");
        }
        let zeros = sorted(&[0.3; 10_000]);
        assert_eq!((data_range_of_sorted(&zeros).0, run_length(&zeros, |x| x == 0.3)), (1, 10_000));
    }

    /// The data distribution by its definition: numpy's `linspace` edges over the fractional
    /// values (256 bins at least, a zero-width range widened by 0.5 each side), each value in
    /// the bin of the last edge at or below it (the top edge closing the last bin), and the
    /// fullest bin's count less one over the fractional values. NaN counts as fractional.
    fn distribution_by_definition(sorted: &[f32]) -> f64 {
        let fractional: Vec<f64> =
            sorted.iter().map(|&x| f64::from(x)).filter(|x| x.fract() != 0.0 || !x.is_finite()).collect();
        // `min`/`max` skip NaN; the infinities take part.
        let numbers = fractional.iter().copied().filter(|x| !x.is_nan());
        let (mut first, mut last) = numbers.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        if fractional.is_empty() {
            return 0.0;
        }
        let bins = ((last - first + 1.0).trunc() as u64).clamp(256, MAX_BINS);
        if first == last {
            first -= 0.5;
            last += 0.5;
        }
        let step = (last - first) / bins as f64;
        let edges: Vec<f64> = (0..bins).map(|i| i as f64 * step + first).collect();
        let mut counts = std::collections::BTreeMap::new();
        for &x in &fractional {
            // A NaN compares below no edge: numpy's bin 0, as its guess gives.
            let bin = if x.is_nan() { 0 } else { edges.partition_point(|&e| e <= x).saturating_sub(1) };
            *counts.entry(bin).or_insert(0usize) += 1;
        }
        let fullest = counts.values().copied().max().unwrap_or(0);
        (fullest.saturating_sub(1)) as f64 / fractional.len() as f64
    }

    #[test]
    fn walking_the_bins_gives_the_distribution_by_its_definition() {
        let mut next = crate::runtime::kernels::test_values::xorshift(0x9e37_79b9u32);
        let mut cases: Vec<Vec<f32>> = vec![
            vec![],
            vec![1.0, 2.0, 3.0],
            vec![0.5],
            vec![0.25, 0.25, 0.25],
            vec![-0.5, 0.5, f32::INFINITY],
            vec![f32::NEG_INFINITY, -1.5, 2.5, 2.5, f32::NAN, f32::NAN],
        ];
        for round in 0..40u32 {
            let len = 1 + (next() % 20_000) as usize;
            // Ranges from a fraction of one bin to far more than 256 bins; a third of the
            // values integers (ReLU's zeros, a ReLU6's sixes), runs of equal values.
            let range = [0.001f32, 1.0, 6.0, 300.0, 70_000.0][(round % 5) as usize];
            let values: Vec<f32> = (0..len)
                .map(|_| match next() % 6 {
                    0 => 0.0,
                    1 => 6.0,
                    2 => (next() % 10) as f32 * range / 10.0,
                    _ => (next() % 1_000_000) as f32 / 1_000_000.0 * range - range / 3.0,
                })
                .collect();
            cases.push(values);
        }
        for (k, values) in cases.iter().enumerate() {
            let mut sorted = values.clone();
            sorted.sort_by(f32::total_cmp);
            let (counted, defined) = (data_distribution_of_sorted(&sorted), distribution_by_definition(&sorted));
            assert_eq!(counted.to_bits(), defined.to_bits(), "case {k}: {counted} vs {defined}");
            let walked = distribution_by_walking(&sorted);
            assert_eq!(walked.to_bits(), defined.to_bits(), "case {k}: walked {walked} vs {defined}");
        }
    }

    #[test]
    fn nan_to_num_follows_numpy_for_float32() {
        assert_eq!(*nan_to_num(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5]), [0.0, f32::MAX, f32::MIN, 1.5]);
        assert!(matches!(nan_to_num(&[1.0, -0.0]), std::borrow::Cow::Borrowed(_)));
    }

    /// u = [0, 1, 2, 3], d = [0, 1, 2, 2.5]: |0-0| = 0, |3-2.5| = 0.5, maxdiff 0.5,
    /// mse = 0.25/4 = 0.0625, mean(u^2) = 14/4 = 3.5, sqnr = 10 log10(56) = 17.4818803 dB.
    #[test]
    fn comparisons_by_hand() {
        let u = [0.0, 1.0, 2.0, 3.0];
        let d = [0.0, 1.0, 2.0, 2.5];
        assert_eq!(minmax(&u, min_max(&d)), (0.0, 0.5));
        assert_eq!(maxdiff(&u, &d), 0.5);
        assert!((sqnr(&u, &d) - 17.481_880_270_062_005).abs() < 1e-12);
        assert_eq!(sqnr(&u, &u), f64::INFINITY);
        assert_eq!(sqnr(&[0.0, 0.0], &[0.0, 1.0]), f64::NEG_INFINITY);
    }

    /// [1, 2, 2, 10]: mean 3.75, deviations -2.75 -1.75 -1.75 6.25, variance
    /// (7.5625 + 3.0625 + 3.0625 + 39.0625) / 4 = 13.1875, std 3.6314597; sum of cubed
    /// deviations -20.796875 - 2 * 5.359375 + 244.140625 = 212.625, so
    /// skew = 212.625 / 4 / 13.1875^1.5 = 53.15625 / 47.88988 = 1.109968;
    /// median (2 + 2) / 2 = 2, mode 2.
    #[test]
    fn stats_by_hand() {
        let s = stats(&[10.0, 2.0, 1.0, 2.0]);
        assert_eq!((s.min, s.max, s.median, s.mean, s.mode), (1.0, 10.0, 2.0, 3.75, 2.0));
        assert!((s.variance - 13.1875).abs() < 1e-12);
        let z = |dev: f64| dev / 13.1875f64.sqrt();
        let skew = (z(-2.75).powi(3) + 2.0 * z(-1.75).powi(3) + z(6.25).powi(3)) / 4.0;
        assert!((s.skew - skew).abs() < 1e-12 && (s.skew - 1.109968).abs() < 1e-6, "{}", s.skew);
        // Constant data: std 0 -> skew 0; ties for the mode go to the smallest value.
        assert_eq!(stats(&[4.0; 3]).skew, 0.0);
        assert_eq!(stats(&[3.0, 1.0, 3.0, 1.0]).mode, 1.0);
        assert_eq!(stats(&[3.0, 1.0, 2.0]).median, 2.0);
    }

    /// trunc: [-0.5, 0.5, 1.9, 2.0, -1.2] -> [-0, 0, 1, 2, -1]: 4 distinct; range 2.0 + 1.2 = 3.2.
    #[test]
    fn data_range_by_hand() {
        let (uniques, range) = data_range(&[-0.5, 0.5, 1.9, 2.0, -1.2]);
        assert_eq!(uniques, 4);
        assert!((range - (2.0 + 1.2f32 as f64)).abs() < 1e-12);
    }

    /// Fractional values [0.25, 0.25, 0.25, 10.5]; integers are dropped.
    /// bins = max(int(10.25 + 1), 256) = 256 over [0.25, 10.5]: the three 0.25 share bin 0,
    /// so (3 - 1) / 4 = 0.5. One fractional value: the range is widened to [x - 0.5, x + 0.5],
    /// one bin holds it, (1 - 1) / 1 = 0. Only integers: 0.
    #[test]
    fn data_distribution_by_hand() {
        assert_eq!(data_distribution(&[0.25, 0.25, 3.0, 0.25, 10.5, 7.0]), 0.5);
        assert_eq!(data_distribution(&[0.5]), 0.0);
        assert_eq!(data_distribution(&[1.0, -2.0]), 0.0);
        // Wide range: [0.5, 4000000.5], bins = int(4e6 + 1) = 4000001 > 256, width =
        // 4e6 / 4000001 = 0.99999975; (1000.5 - 0.5) / width = 1000.00025 and (1000.6 - 0.5) /
        // width = 1000.10025: both in bin 1000, so 2 of the 4 share a bin -> (2 - 1) / 4.
        assert_eq!(data_distribution(&[0.5, 1000.5, 1000.6, 4_000_000.5]), 0.25);
    }
}
