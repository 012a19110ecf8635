//! Search-based calibration: the `mse`, `sqnr` and `entropy` methods choose a tensor's
//! `(min, max)` from its histogram ([`TensorStats`]), so switching to them never re-runs the
//! float model. Parameters use the histogram of their own values ([`TensorStats::of_values`]).
//! The chosen range then goes through [`Encoding::from_range`] like any other (minimum range
//! 0.0001, exact zero). Formulas and the reasons for each choice: `docs/quantization.md`.
//!
//! Notation: bin `j` of the histogram has count `n_j` and center `x_j` (clamped to the observed
//! `[min, max]`), `N = sum n_j`, and `e = Encoding::from_range(lo, hi, bw, schema)` is the
//! encoding of a candidate range, with grid ends `a = e.min`, `b = e.max` and step `s = e.scale`.
//!
//! - **Candidates** of `mse` and `sqnr` ([`RANGE_STEPS`] = 100 of them, `k = 1..=100`):
//!   asymmetric `(k/100 * min, k/100 * max)`; symmetric `(-t_k, t_k)` with
//!   `t_k = k/100 * max(|min|, |max|)`. Ties go to the widest candidate.
//! - **Noise** of a candidate: rounding noise `s^2 / 12` (uniform rounding error) for every
//!   value inside `[a, b]`, clipping noise `(a - x)^2` or `(x - b)^2` outside:
//!   `noise_g(e) = sum_j n_j * (x_j in [a, b] ? s^2 / 12 : g * clip_j^2)`.
//! - **mse**: minimizes `noise_1(e) / N`, the expected squared error.
//! - **sqnr**: maximizes `10 log10(sum_j n_j x_j^2 / noise_g(e))` with `g =`
//!   [`SQNR_CLIP_WEIGHT`] (AIMET's `SqnrEncodingAnalyzer` default `gamma = 3`). The signal
//!   power does not depend on the candidate, so with `g = 1` this would pick exactly the mse
//!   range; the weight makes clipping three times as costly as rounding, so sqnr clips less.
//! - **entropy**: TensorRT's KL-divergence calibration, see [`entropy_range`].

use crate::quant::encoding::Encoding;
use crate::quant::math::{grid_steps, symmetric_offset_magnitude};
use crate::quant::settings::{CalibrationMethod, Schema};
use crate::quant::stats::TensorStats;

/// Number of candidate ranges of `mse` and `sqnr` (the min-max range scaled by `k / 100`).
pub const RANGE_STEPS: u32 = 100;
/// How much more clipping noise costs than rounding noise in `sqnr` (AIMET's `gamma`).
pub const SQNR_CLIP_WEIGHT: f64 = 3.0;

/// The calibration methods that search for a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    Mse,
    Sqnr,
    Entropy,
}

impl Search {
    /// The search behind a calibration method; `None` for `min-max` and `percentile`.
    pub fn of(method: CalibrationMethod) -> Option<Search> {
        match method {
            CalibrationMethod::Mse => Some(Search::Mse),
            CalibrationMethod::Sqnr => Some(Search::Sqnr),
            CalibrationMethod::Entropy => Some(Search::Entropy),
            CalibrationMethod::MinMax | CalibrationMethod::Percentile | CalibrationMethod::Adjusted => None,
        }
    }
}

/// A histogram as the searches see it: counts of bins `[(first_bin + i) * width, ... + width)`
/// and the exact observed `[min, max]`.
#[derive(Clone, Copy, Debug)]
pub struct Binned<'a> {
    pub first_bin: i64,
    pub width: f64,
    pub counts: &'a [u64],
    pub min: f64,
    pub max: f64,
}

impl<'a> Binned<'a> {
    /// The histogram of `stats`; `None` when it saw no finite value.
    pub fn of(stats: &'a TensorStats) -> Option<Binned<'a>> {
        let (min, max) = stats.range()?;
        let h = &stats.histogram;
        Some(Binned {
            first_bin: h.first_bin(),
            width: h.bin_width(),
            counts: h.counts(),
            min: min as f64,
            max: max as f64,
        })
    }

    /// `(x_j, n_j)` of the non-empty bins: centers clamped to `[min, max]`.
    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, &c)| {
            let center = ((self.first_bin + i as i64) as f64 + 0.5) * self.width;
            (center.clamp(self.min, self.max), c as f64)
        })
    }
}

/// The range `search` chooses for the values summarized by `stats`; `None` when there were no
/// finite values.
pub fn search_range(search: Search, stats: &TensorStats, bitwidth: u32, schema: Schema) -> Option<(f32, f32)> {
    let data = Binned::of(stats)?;
    Some(match search {
        Search::Mse => mse_range(&data, bitwidth, schema),
        Search::Sqnr => sqnr_range(&data, bitwidth, schema),
        Search::Entropy => entropy_range(&data, bitwidth, schema),
    })
}

/// The candidate range minimizing the expected squared error (module docs).
pub fn mse_range(data: &Binned, bitwidth: u32, schema: Schema) -> (f32, f32) {
    least_noise_range(data, bitwidth, schema, 1.0)
}

/// The candidate range maximizing the SQNR with clipping weighted by [`SQNR_CLIP_WEIGHT`]
/// (module docs).
pub fn sqnr_range(data: &Binned, bitwidth: u32, schema: Schema) -> (f32, f32) {
    least_noise_range(data, bitwidth, schema, SQNR_CLIP_WEIGHT)
}

/// The candidate ranges of `mse` and `sqnr`, widest first.
fn scaled_candidates(data: &Binned, schema: Schema) -> impl Iterator<Item = (f32, f32)> + use<> {
    let (min, max) = (data.min, data.max);
    let magnitude = min.abs().max(max.abs());
    (1..=RANGE_STEPS).rev().map(move |k| {
        let f = k as f64 / RANGE_STEPS as f64;
        match schema {
            Schema::Asymmetric => ((min * f) as f32, (max * f) as f32),
            Schema::Symmetric => ((-magnitude * f) as f32, (magnitude * f) as f32),
        }
    })
}

fn least_noise_range(data: &Binned, bitwidth: u32, schema: Schema, clip_weight: f64) -> (f32, f32) {
    let mut best: Option<((f32, f32), f64)> = None;
    for (lo, hi) in scaled_candidates(data, schema) {
        let noise = noise(data, &Encoding::from_range(lo, hi, bitwidth, schema), clip_weight);
        // Strictly smaller: ties keep the wider candidate (they come first).
        if best.is_none_or(|(_, least)| noise < least) {
            best = Some(((lo, hi), noise));
        }
    }
    best.map_or((data.min as f32, data.max as f32), |(range, _)| range)
}

/// `noise_g(e)` of the module docs: rounding noise inside the grid, weighted clipping noise
/// outside.
fn noise(data: &Binned, e: &Encoding, clip_weight: f64) -> f64 {
    let (a, b, s) = (e.min as f64, e.max as f64, e.scale as f64);
    let rounding = s * s / 12.0;
    data.points()
        .map(|(x, n)| {
            let clipped = if x < a { a - x } else { (x - b).max(0.0) };
            let per_value = if x < a || x > b { clip_weight * clipped * clipped } else { rounding };
            n * per_value
        })
        .sum()
}

/// TensorRT's entropy calibration (KL divergence), on the histogram `h` of the schema:
/// - symmetric: the histogram of `|x|` (bins folded around 0, exact on the power-of-two grid),
///   `L = 2^(bw-1)` levels, result `(-T, T)`;
/// - asymmetric: the histogram of the values as is (from the first non-empty bin up),
///   `L = 2^bw - 1` levels, result `(min, T)`: only the upper end is searched, like TensorRT's
///   one-sided threshold; the lower end stays at the observed min.
///
/// The bin of exact zeros (global bin 0) counts as its upper neighbour (see the code).
///
/// For each candidate `i` in `L..=len(h)`: `P = h[0..i]` with the outliers `sum h[i..]` added to
/// `P[i-1]`; `Q` merges `h[0..i]` into `L` groups (bin `j` in group `floor(j * L / i)`) and
/// spreads each group's total evenly over its non-empty bins (empty bins stay 0); both are
/// normalized and `KL(P || Q) = sum_j P_j ln(P_j / Q_j)` (infinite when `P_j > 0 = Q_j`). The
/// threshold is the upper edge of bin `i - 1` of the least-divergence `i` (ties: the largest
/// `i`). With no more bins than levels (16-bit grids: 2048 bins at most) nothing is clipped.
///
/// Cost: `O(len(h) * L)` via prefix sums of `n`, `n ln n` and the non-empty-bin count.
pub fn entropy_range(data: &Binned, bitwidth: u32, schema: Schema) -> (f32, f32) {
    let magnitude = data.min.abs().max(data.max.abs());
    let (mut bins, levels, zero_bin) = match schema {
        Schema::Symmetric => (folded_abs(data), symmetric_offset_magnitude(bitwidth) as usize, Some(0)),
        Schema::Asymmetric => {
            (data.counts.to_vec(), grid_steps(bitwidth) as usize, usize::try_from(-data.first_bin).ok())
        }
    };
    // The bin holding exact zeros (a Relu's output is mostly zeros) would dominate P and make
    // every merge of it with its neighbour look costly; like pytorch-quantization's
    // `bins[0] = bins[1]`, it counts as its upper neighbour.
    if let Some(z) = zero_bin
        && let Some(&next) = bins.get(z + 1)
        && let Some(zero) = bins.get_mut(z)
    {
        *zero = next;
    }
    let i = least_divergence_bins(&bins, levels);
    match schema {
        Schema::Symmetric => {
            let t = (i as f64 * data.width).min(magnitude);
            (-t as f32, t as f32)
        }
        Schema::Asymmetric => {
            let t = ((data.first_bin + i as i64) as f64 * data.width).min(data.max);
            (data.min as f32, t as f32)
        }
    }
}

/// The histogram of `|x|` from 0: global bin `g >= 0` covers `[g w, (g+1) w)` and `g < 0`
/// covers `[g w, (g+1) w)`, whose magnitudes lie in `(-(g+1) w, -g w]`, i.e. bin `-g - 1`.
fn folded_abs(data: &Binned) -> Vec<u64> {
    let index = |i: usize| {
        let g = data.first_bin + i as i64;
        (if g >= 0 { g } else { -g - 1 }) as usize
    };
    let len = (0..data.counts.len()).map(index).max().map_or(0, |m| m + 1);
    let mut folded = vec![0u64; len];
    for (i, &c) in data.counts.iter().enumerate() {
        folded[index(i)] += c;
    }
    while folded.last() == Some(&0) {
        folded.pop();
    }
    folded
}

/// The number of leading bins `i` whose `KL(P || Q)` is least (see [`entropy_range`]);
/// `bins.len()` when there are no more bins than levels.
fn least_divergence_bins(bins: &[u64], levels: usize) -> usize {
    let n = bins.len();
    if levels == 0 || n <= levels {
        return n;
    }
    // Prefix sums: counts, n ln n, non-empty bins.
    let mut count = vec![0.0f64; n + 1];
    let mut n_ln_n = vec![0.0f64; n + 1];
    let mut non_empty = vec![0usize; n + 1];
    for (j, &c) in bins.iter().enumerate() {
        let c = c as f64;
        count[j + 1] = count[j] + c;
        n_ln_n[j + 1] = n_ln_n[j] + if c > 0.0 { c * c.ln() } else { 0.0 };
        non_empty[j + 1] = non_empty[j] + usize::from(c > 0.0);
    }
    let total = count[n];
    let mut best: Option<(usize, f64)> = None;
    for i in (levels..=n).rev() {
        let kept = count[i];
        let outliers = total - kept;
        let last = bins[i - 1] as f64;
        if kept <= 0.0 || (last == 0.0 && outliers > 0.0) {
            continue; // Q has no mass, or P_(i-1) > 0 = Q_(i-1): infinite divergence.
        }
        let p_last = last + outliers;
        let p_ln_p = n_ln_n[i - 1] + if p_last > 0.0 { p_last * p_last.ln() } else { 0.0 };
        // Group g is bins [ceil(g i / L), ceil((g + 1) i / L)); the bounds are stepped by
        // i / L (quotient and remainder) instead of dividing for each group.
        let (step, step_rem) = (i / levels, i % levels);
        let (mut lo, mut quotient, mut rem) = (0, 0, 0);
        let mut p_ln_q = 0.0;
        for _ in 0..levels {
            quotient += step;
            rem += step_rem;
            if rem >= levels {
                rem -= levels;
                quotient += 1;
            }
            let hi = quotient + usize::from(rem > 0);
            let group = count[hi] - count[lo];
            if group > 0.0 {
                let q = group / (non_empty[hi] - non_empty[lo]) as f64;
                let p_mass = if hi == i { group + outliers } else { group };
                p_ln_q += p_mass * q.ln();
            }
            lo = hi;
        }
        let kl = (p_ln_p - p_ln_q) / total - total.ln() + kept.ln();
        if best.is_none_or(|(_, least)| kl < least) {
            best = Some((i, kl));
        }
    }
    best.map_or(n, |(i, _)| i)
}

#[cfg(test)]
mod tests;
