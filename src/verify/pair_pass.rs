//! The sums of one golden/inference tensor pair in one vectorized pass, for the common case
//! where every value is finite.
//!
//! [`MetricAccumulator`](super::metrics::MetricAccumulator) and
//! [`PairSums`](super::fold::PairSums) need the same five sums and four extrema of every
//! layer of every sample; folding them one element at a time into f64 accumulators was a
//! third of a float target's simulate (each sum a chain of dependent adds). Here each sum is
//! split over [`LANES`] accumulators (element `j` goes to lane `j % LANES`) that the compiler
//! turns into vector registers, and the lanes are added up in one fixed order at the end.
//! The arithmetic is the same IEEE operations whatever the vector width (Rust never contracts
//! to FMA or reassociates), so every CPU gives the same bits; only the order of the additions
//! differs from a sequential sum, within f64 rounding (at least as accurate: pairwise). Where
//! the CPU has FMA, the sums of products of two float32 values (`g²`, `i²`, `g·i`) are fused
//! multiply-adds: those products are exact in f64, so fusing rounds nothing differently.
//!
//! A NaN or an infinity on either side shows in the sums of squares (a square is never
//! negative, so nothing cancels it): the pass then returns `None` and the caller takes the
//! element-by-element path, which counts and classifies non-finite pairs.

use multiversion::multiversion;

/// Accumulators per sum: sixteen f64 fill two AVX-512 registers (four AVX ones), so each sum
/// is two independent chains of vector additions. With eight lanes, one register per sum, a
/// float target's self-comparison (one sum of squares per value) waited on the latency of
/// that register's additions: 7 % of MobileNetV2's `cpu` simulate.
const LANES: usize = 16;

/// The sums over one tensor pair (`g` golden, `i` inference, `d = i - g`), all in f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FinitePairSums {
    pub elements: usize,
    /// Σ g²
    pub golden_sq: f64,
    /// Σ i²
    pub inference_sq: f64,
    /// Σ g·i
    pub dot: f64,
    /// Σ d²
    pub error_sq: f64,
    /// Σ |d|
    pub error_abs: f64,
    /// max |d| (0 when empty)
    pub max_abs_error: f64,
    pub golden_min: f32,
    pub golden_max: f32,
    pub inference_min: f32,
    pub inference_max: f32,
}

/// The sums of `golden` against `inference`, or `None` when a value of either side is NaN or
/// infinite or the lengths differ.
pub fn finite_pair_sums(golden: &[f32], inference: &[f32]) -> Option<FinitePairSums> {
    if golden.len() != inference.len() {
        return None;
    }
    // One tensor compared with itself (a float target replaying its graph): the difference
    // is exactly 0 and `g * i` is exactly `g * g`, so one sum of squares gives every lane's
    // bits at a fraction of the pass.
    let same = std::ptr::eq(golden, inference);
    let lanes = if same { lane_squares(golden) } else { lane_sums(golden, inference) };
    let sums = FinitePairSums {
        elements: golden.len(),
        golden_sq: add_lanes(&lanes.golden_sq),
        inference_sq: add_lanes(&lanes.inference_sq),
        dot: add_lanes(&lanes.dot),
        error_sq: add_lanes(&lanes.error_sq),
        error_abs: add_lanes(&lanes.error_abs),
        max_abs_error: lanes.max_abs_error.iter().fold(0.0, |m, &v| if v > m { v } else { m }),
        golden_min: lanes.golden_min.iter().fold(f32::INFINITY, |m, &v| m.min(v)),
        golden_max: lanes.golden_max.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
        inference_min: lanes.inference_min.iter().fold(f32::INFINITY, |m, &v| m.min(v)),
        inference_max: lanes.inference_max.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
    };
    (sums.golden_sq.is_finite() && sums.inference_sq.is_finite()).then_some(sums)
}

/// Pairwise, in one fixed order: lane `l` plus lane `l + width / 2`, halving the width.
fn add_lanes(lanes: &[f64; LANES]) -> f64 {
    let mut sums = *lanes;
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            sums[l] += sums[l + width];
        }
    }
    sums[0]
}

struct Lanes {
    golden_sq: [f64; LANES],
    inference_sq: [f64; LANES],
    dot: [f64; LANES],
    error_sq: [f64; LANES],
    error_abs: [f64; LANES],
    max_abs_error: [f64; LANES],
    golden_min: [f32; LANES],
    golden_max: [f32; LANES],
    inference_min: [f32; LANES],
    inference_max: [f32; LANES],
}

impl Lanes {
    /// Folds one pair into `lane`. With `fused`, the three sums of products of two float32
    /// values are fused multiply-adds: such a product is exact in f64 (48 significant bits of
    /// 53), so rounding it with the addition or before gives the same bits, in fewer
    /// instructions. `d * d` is not always exact, so its sum never fuses.
    #[inline(always)]
    fn add(&mut self, lane: usize, g: f32, i: f32, fused: bool) {
        let (g64, i64) = (f64::from(g), f64::from(i));
        let d = i64 - g64;
        self.golden_sq[lane] = exact_product_add(g64, g64, self.golden_sq[lane], fused);
        self.inference_sq[lane] = exact_product_add(i64, i64, self.inference_sq[lane], fused);
        self.dot[lane] = exact_product_add(g64, i64, self.dot[lane], fused);
        self.error_sq[lane] += d * d;
        self.error_abs[lane] += d.abs();
        // Selects on plain comparisons (not `min`/`max`, which must skip NaN, and not
        // conditional stores, which become masked stores that stall the next load) compile
        // to one vector instruction each; a NaN input is caught by the caller through the
        // sums of squares.
        let abs = d.abs();
        self.max_abs_error[lane] = if abs > self.max_abs_error[lane] { abs } else { self.max_abs_error[lane] };
        self.golden_min[lane] = if g < self.golden_min[lane] { g } else { self.golden_min[lane] };
        self.golden_max[lane] = if g > self.golden_max[lane] { g } else { self.golden_max[lane] };
        self.inference_min[lane] = if i < self.inference_min[lane] { i } else { self.inference_min[lane] };
        self.inference_max[lane] = if i > self.inference_max[lane] { i } else { self.inference_max[lane] };
    }
}

/// `acc + a * b` for a product `a * b` that f64 holds exactly (of two float32 values): one
/// fused multiply-add where the instruction set has it (`fused`), the same bits either way.
#[inline(always)]
fn exact_product_add(a: f64, b: f64, acc: f64, fused: bool) -> f64 {
    if fused { a.mul_add(b, acc) } else { acc + a * b }
}

/// The per-lane sums, compiled for AVX-512 and AVX2 besides the baseline and picked at run
/// time (all give the same bits: see the module docs).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn lane_sums(golden: &[f32], inference: &[f32]) -> Lanes {
    let mut lanes = Lanes {
        golden_sq: [0.0; LANES],
        inference_sq: [0.0; LANES],
        dot: [0.0; LANES],
        error_sq: [0.0; LANES],
        error_abs: [0.0; LANES],
        max_abs_error: [0.0; LANES],
        golden_min: [f32::INFINITY; LANES],
        golden_max: [f32::NEG_INFINITY; LANES],
        inference_min: [f32::INFINITY; LANES],
        inference_max: [f32::NEG_INFINITY; LANES],
    };
    // Without FMA (the baseline), `mul_add` would be a call into libm per element.
    let fused = multiversion::target::target_cfg_f!(target_feature = "fma");
    let chunks = golden.chunks_exact(LANES).zip(inference.chunks_exact(LANES));
    for (g, i) in chunks {
        for lane in 0..LANES {
            lanes.add(lane, g[lane], i[lane], fused);
        }
    }
    let tail = golden.len().min(inference.len()) / LANES * LANES;
    for (lane, (&g, &i)) in golden[tail..].iter().zip(&inference[tail..]).enumerate() {
        lanes.add(lane, g, i, fused);
    }
    lanes
}

/// [`lane_sums`] of a slice against itself, with the same lanes and the same operations.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn lane_squares(values: &[f32]) -> Lanes {
    let mut squares = [0.0f64; LANES];
    let mut min = [f32::INFINITY; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    let fused = multiversion::target::target_cfg_f!(target_feature = "fma");
    let mut add = |lane: usize, g: f32| {
        let g64 = f64::from(g);
        squares[lane] = exact_product_add(g64, g64, squares[lane], fused);
        min[lane] = if g < min[lane] { g } else { min[lane] };
        max[lane] = if g > max[lane] { g } else { max[lane] };
    };
    for chunk in values.chunks_exact(LANES) {
        for (lane, &g) in chunk.iter().enumerate() {
            add(lane, g);
        }
    }
    let tail = values.len() / LANES * LANES;
    for (lane, &g) in values[tail..].iter().enumerate() {
        add(lane, g);
    }
    Lanes {
        golden_sq: squares,
        inference_sq: squares,
        dot: squares,
        error_sq: [0.0; LANES],
        error_abs: [0.0; LANES],
        max_abs_error: [0.0; LANES],
        golden_min: min,
        golden_max: max,
        inference_min: min,
        inference_max: max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element-by-element f64 sums, the definition the lanes must agree with.
    fn sequential(golden: &[f32], inference: &[f32]) -> [f64; 6] {
        let mut s = [0.0f64; 6];
        for (&g, &i) in golden.iter().zip(inference) {
            let (g, i) = (f64::from(g), f64::from(i));
            let d = i - g;
            s[0] += g * g;
            s[1] += i * i;
            s[2] += g * i;
            s[3] += d * d;
            s[4] += d.abs();
            s[5] = s[5].max(d.abs());
        }
        s
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 8.0 - 4.0
            })
            .collect()
    }

    #[test]
    fn lane_sums_agree_with_sequential_sums_for_every_tail_length() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 63, 1000, 4099] {
            let g = pseudo_random(n, 1);
            let i: Vec<f32> = g.iter().zip(pseudo_random(n, 2)).map(|(g, e)| g + e / 64.0).collect();
            let s = finite_pair_sums(&g, &i).unwrap();
            let want = sequential(&g, &i);
            let got = [s.golden_sq, s.inference_sq, s.dot, s.error_sq, s.error_abs, s.max_abs_error];
            for (k, (got, want)) in got.iter().zip(want).enumerate() {
                assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "n {n} sum {k}: {got} vs {want}");
            }
            assert_eq!(s.max_abs_error, want[5], "the maximum is exact");
            assert_eq!(s.elements, n);
            let min = |v: &[f32]| v.iter().copied().fold(f32::INFINITY, f32::min);
            let max = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!((s.golden_min, s.golden_max), (min(&g), max(&g)));
            assert_eq!((s.inference_min, s.inference_max), (min(&i), max(&i)));
        }
    }

    #[test]
    fn a_slice_against_itself_gives_the_bits_of_an_equal_copy() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 1000, 4099] {
            let g = pseudo_random(n, 4);
            let copy = g.clone();
            assert_eq!(finite_pair_sums(&g, &g), finite_pair_sums(&g, &copy), "n {n}");
        }
        let mut bad = pseudo_random(9, 5);
        bad[3] = f32::INFINITY;
        assert_eq!(finite_pair_sums(&bad, &bad), None);
    }

    #[test]
    fn a_non_finite_value_on_either_side_falls_back() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 5, 12] {
                let g = pseudo_random(13, 3);
                let mut i = g.clone();
                i[at] = bad;
                assert_eq!(finite_pair_sums(&g, &i), None, "{bad} at {at} in inference");
                assert_eq!(finite_pair_sums(&i, &g), None, "{bad} at {at} in golden");
            }
        }
    }

    /// A product of two float32 values is exact in f64, so fusing it with the addition
    /// changes no bit: checked on values of every magnitude, both signs and zeros, against
    /// sums of every size (what the baseline, which has no FMA, computes on the other path).
    #[test]
    fn fused_and_separate_exact_product_adds_agree() {
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            state
        };
        for _ in 0..200_000 {
            let (a, b) = (f32::from_bits((next() >> 32) as u32), f32::from_bits((next() >> 32) as u32));
            if !a.is_finite() || !b.is_finite() {
                continue;
            }
            // Half the sums near the products' own size (where roundings could differ),
            // half anywhere in f64.
            let random = f64::from_bits(next());
            let near = f64::from(f32::from_bits((next() >> 32) as u32)) * f64::from(a);
            let acc = if next() % 2 == 0 { near } else { random };
            let acc = if acc.is_finite() { acc } else { 0.0 };
            let (a, b) = (f64::from(a), f64::from(b));
            let fused = exact_product_add(a, b, acc, true);
            let separate = exact_product_add(a, b, acc, false);
            assert!(
                fused.to_bits() == separate.to_bits() || (fused.is_nan() && separate.is_nan()),
                "{a} * {b} + {acc}"
            );
        }
    }

    /// The largest finite values square to about 1.2e77, far inside f64: finite data never
    /// overflows into a false fallback.
    #[test]
    fn extreme_finite_values_stay_on_the_fast_path() {
        let g = vec![f32::MAX; 20];
        let i = vec![f32::MIN; 20];
        let s = finite_pair_sums(&g, &i).unwrap();
        assert_eq!(s.max_abs_error, 2.0 * f64::from(f32::MAX));
    }
}
