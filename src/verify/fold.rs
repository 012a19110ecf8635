//! One layer's comparison folded sample by sample, so that verify never holds more than one
//! sample's tensors: the summary row's sums ([`MetricAccumulator`]), the sums every
//! parameter-free verifier is a function of ([`PairSums`]), and a running state for each
//! verifier that needs the values themselves ([`SpecFold`]).
//!
//! Folds of disjoint samples [merge](LayerFold::merge); merged in sample order they give the
//! same result whatever the thread count. A threshold, label or metric-selection change among
//! the parameter-free verifiers re-evaluates from the folds without touching a sample; the
//! verifiers in [`MetricSpec::needs_values`] are folded only when configured.
//!
//! Pooling (as in `settings.rs`): the element-wise verifiers pool every sample's elements
//! (sums and counts add up exactly that way); TopK, KL divergence and AdjustedRtolAtol are
//! computed per sample and averaged (AdjustedRtolAtol's tolerance comes from the golden
//! tensor's range, which is one inference's range, as the debugger sees one inference at a
//! time).

use serde::{Deserialize, Serialize};

use super::metrics::MetricAccumulator;
use super::pair_pass::{FinitePairSums, finite_pair_sums};
use super::settings::MetricSpec;
use super::verifiers::Verifier;

/// Sums over the element pairs where both sides are finite, and counts of the others: what
/// L1Error, MAE, MSE, CosineSimilarity, SQNR, ScaledDiff and MaxError are computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairSums {
    /// Element pairs seen, finite or not.
    pub elements: usize,
    /// Pairs with both sides finite.
    pub finite: usize,
    pub sum_abs: f64,
    pub sum_sq: f64,
    pub dot: f64,
    pub golden_sq: f64,
    pub inference_sq: f64,
    pub max_abs: f64,
    /// Pairs with a NaN or an infinity on either side.
    pub non_finite: usize,
    /// Of those, the ones where the sides disagree (not both NaN, not the same infinity).
    pub non_finite_mismatch: usize,
}

impl PairSums {
    /// Adds one element pair (`LayerFold::add` hands them over in the summary's pass).
    #[inline]
    fn add_pair(&mut self, g: f32, i: f32) {
        self.elements += 1;
        if g.is_finite() && i.is_finite() {
            let (g, i) = (f64::from(g), f64::from(i));
            let d = g - i;
            self.finite += 1;
            self.sum_abs += d.abs();
            self.sum_sq += d * d;
            self.dot += g * i;
            self.golden_sq += g * g;
            self.inference_sq += i * i;
            self.max_abs = self.max_abs.max(d.abs());
        } else {
            self.non_finite += 1;
            if !((g.is_nan() && i.is_nan()) || g == i) {
                self.non_finite_mismatch += 1;
            }
        }
    }

    /// Adds one tensor pair from the sums of its vectorized pass (every value finite).
    fn add_finite(&mut self, sums: &FinitePairSums) {
        self.elements += sums.elements;
        self.finite += sums.elements;
        self.sum_abs += sums.error_abs;
        self.sum_sq += sums.error_sq;
        self.dot += sums.dot;
        self.golden_sq += sums.golden_sq;
        self.inference_sq += sums.inference_sq;
        self.max_abs = self.max_abs.max(sums.max_abs_error);
    }

    pub fn merge(&mut self, other: &PairSums) {
        self.elements += other.elements;
        self.finite += other.finite;
        self.sum_abs += other.sum_abs;
        self.sum_sq += other.sum_sq;
        self.dot += other.dot;
        self.golden_sq += other.golden_sq;
        self.inference_sq += other.inference_sq;
        self.max_abs = self.max_abs.max(other.max_abs);
        self.non_finite += other.non_finite;
        self.non_finite_mismatch += other.non_finite_mismatch;
    }

    /// The metric of a parameter-free verifier (the formulas of `verifiers.rs`), `None` for
    /// the others.
    fn metric(&self, verifier: &Verifier) -> Option<f64> {
        let n = self.finite;
        let mean = |sum: f64| if n == 0 { f64::NAN } else { sum / n as f64 };
        let metric = match verifier {
            Verifier::L1Error { multiplier, scale } => {
                if n == 0 {
                    f64::NAN
                } else {
                    self.sum_abs * multiplier * scale
                }
            }
            Verifier::Mae => mean(self.sum_abs),
            Verifier::Mse => mean(self.sum_sq),
            Verifier::CosineSimilarity { .. } => {
                if n == 0 {
                    f64::NAN
                } else {
                    match (self.golden_sq == 0.0, self.inference_sq == 0.0) {
                        (true, true) => 1.0,
                        (true, false) | (false, true) => 0.0,
                        (false, false) => self.dot / (self.golden_sq.sqrt() * self.inference_sq.sqrt()),
                    }
                }
            }
            Verifier::Sqnr => {
                let noise = mean(self.sum_sq);
                let signal = mean(self.inference_sq);
                if n == 0 {
                    f64::NAN
                } else if noise == 0.0 {
                    f64::INFINITY
                } else if signal == 0.0 {
                    f64::NEG_INFINITY
                } else {
                    10.0 * (signal / noise).log10()
                }
            }
            Verifier::ScaledDiff { encoding_range: Some((lo, hi)) } => mean(self.sum_abs) * 255.0 / (hi - lo),
            Verifier::MaxError => {
                if n == 0 {
                    f64::NAN
                } else {
                    self.max_abs
                }
            }
            _ => return None,
        };
        Some(metric)
    }
}

/// The running state of a verifier that needs the values themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SpecFold {
    /// RtolAtol: elements outside the tolerance, out of the finite pairs (pooled).
    Count { outside: usize, finite: usize, non_finite_mismatch: usize },
    /// TopK, KL divergence, AdjustedRtolAtol: the sum of the per-sample metrics.
    PerSample { total: f64, samples: usize },
    /// The verifier cannot be computed on this layer (the first sample's reason).
    Failed(String),
}

impl SpecFold {
    fn new(verifier: &Verifier) -> SpecFold {
        match verifier {
            Verifier::RtolAtol { .. } => SpecFold::Count { outside: 0, finite: 0, non_finite_mismatch: 0 },
            _ => SpecFold::PerSample { total: 0.0, samples: 0 },
        }
    }

    fn add(&mut self, verifier: &Verifier, golden: &[f32], inference: &[f32]) {
        match self {
            SpecFold::Failed(_) => {}
            SpecFold::Count { outside, finite, non_finite_mismatch } => {
                let Verifier::RtolAtol { rtol_margin, atol_margin } = verifier else { return };
                for (&g, &i) in golden.iter().zip(inference) {
                    if g.is_finite() && i.is_finite() {
                        let (g, i) = (f64::from(g), f64::from(i));
                        *finite += 1;
                        // numpy `isclose(i, g, rtol, atol)` negated (the margins are finite).
                        if (i - g).abs() > atol_margin + rtol_margin * g.abs() {
                            *outside += 1;
                        }
                    } else if !((g.is_nan() && i.is_nan()) || g == i) {
                        *non_finite_mismatch += 1;
                    }
                }
            }
            SpecFold::PerSample { total, samples } => match verifier.evaluate(golden, inference) {
                Ok(r) => {
                    *total += if r.non_finite_mismatch > 0 { f64::NAN } else { r.metric };
                    *samples += 1;
                }
                Err(e) => *self = SpecFold::Failed(e.to_string()),
            },
        }
    }

    fn merge(&mut self, other: &SpecFold) {
        match (&mut *self, other) {
            (SpecFold::Failed(_), _) => {}
            (_, SpecFold::Failed(reason)) => *self = SpecFold::Failed(reason.clone()),
            (
                SpecFold::Count { outside, finite, non_finite_mismatch },
                SpecFold::Count { outside: o, finite: f, non_finite_mismatch: m },
            ) => {
                *outside += o;
                *finite += f;
                *non_finite_mismatch += m;
            }
            (SpecFold::PerSample { total, samples }, SpecFold::PerSample { total: t, samples: s }) => {
                *total += t;
                *samples += s;
            }
            (mine, _) => *mine = SpecFold::Failed("folds of different verifiers merged".into()),
        }
    }

    fn metric(&self) -> Result<f64, String> {
        match self {
            SpecFold::Failed(reason) => Err(reason.clone()),
            SpecFold::Count { non_finite_mismatch, .. } if *non_finite_mismatch > 0 => Ok(f64::NAN),
            SpecFold::Count { finite: 0, .. } => Ok(f64::NAN),
            SpecFold::Count { outside, finite, .. } => Ok(100.0 * *outside as f64 / *finite as f64),
            SpecFold::PerSample { samples: 0, .. } => Ok(f64::NAN),
            SpecFold::PerSample { total, samples } => Ok(total / *samples as f64),
        }
    }
}

/// One layer's comparison over the samples folded so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerFold {
    /// The summary row (output-referenced SQNR, cosine, MSE, max error, both sides' ranges).
    pub metrics: MetricAccumulator,
    pub pairs: PairSums,
    /// One per verifier of `needs_values` specs, in the order they were given.
    pub specs: Vec<(Verifier, SpecFold)>,
    /// A sample whose sides differ in length (a caller bug): every verifier then fails.
    pub size_mismatch: Option<(usize, usize)>,
}

impl LayerFold {
    /// An empty fold that also folds the verifiers of `specs` that need values.
    pub fn new(specs: &[MetricSpec]) -> LayerFold {
        let mut folded: Vec<(Verifier, SpecFold)> = Vec::new();
        for spec in specs.iter().filter(|s| s.needs_values()) {
            if !folded.iter().any(|(v, _)| *v == spec.verifier) {
                folded.push((spec.verifier.clone(), SpecFold::new(&spec.verifier)));
            }
        }
        LayerFold { metrics: MetricAccumulator::new(), pairs: PairSums::default(), specs: folded, size_mismatch: None }
    }

    /// A fold of the same verifiers holding nothing yet.
    pub fn empty(&self) -> LayerFold {
        LayerFold {
            metrics: MetricAccumulator::new(),
            pairs: PairSums::default(),
            specs: self.specs.iter().map(|(v, _)| (v.clone(), SpecFold::new(v))).collect(),
            size_mismatch: None,
        }
    }

    /// Folds one sample's golden and inference tensors (flattened, equal lengths).
    pub fn add(&mut self, golden: &[f32], inference: &[f32]) {
        if golden.len() != inference.len() {
            self.size_mismatch.get_or_insert((golden.len(), inference.len()));
        }
        // One pass over the tensors for both sets of sums: vectorized when every value is
        // finite (the sums are then the same for both), element by element otherwise.
        match finite_pair_sums(golden, inference) {
            Some(sums) => {
                self.metrics.add_finite(&sums);
                self.pairs.add_finite(&sums);
            }
            None => {
                let pairs = &mut self.pairs;
                self.metrics.add_each(golden, inference, |g, i| pairs.add_pair(g, i));
            }
        }
        for (verifier, fold) in &mut self.specs {
            fold.add(verifier, golden, inference);
        }
    }

    /// Folds `other` (later samples) into this one.
    pub fn merge(&mut self, other: &LayerFold) {
        if self.size_mismatch.is_none() {
            self.size_mismatch = other.size_mismatch;
        }
        self.metrics.merge(&other.metrics);
        self.pairs.merge(&other.pairs);
        for ((_, mine), (_, theirs)) in self.specs.iter_mut().zip(&other.specs) {
            mine.merge(theirs);
        }
    }

    /// `samples` tensors of `golden.len() / samples` elements each, back to back on both sides.
    pub fn over_samples(specs: &[MetricSpec], golden: &[f32], inference: &[f32], samples: usize) -> LayerFold {
        let mut fold = LayerFold::new(specs);
        if golden.len() != inference.len() || samples == 0 || !golden.len().is_multiple_of(samples) {
            fold.size_mismatch = Some((golden.len(), inference.len()));
            return fold;
        }
        let size = golden.len() / samples;
        if size == 0 {
            return fold;
        }
        for (g, i) in golden.chunks_exact(size).zip(inference.chunks_exact(size)) {
            fold.add(g, i);
        }
        fold
    }

    /// The metric `verifier` gives over the folded samples, or why it cannot be computed.
    /// A disagreement on a non-finite value makes the metric NaN (it then fails).
    pub fn metric(&self, verifier: &Verifier) -> Result<f64, String> {
        let name = verifier.name();
        if let Some((golden, inference)) = self.size_mismatch {
            return Err(format!("{name}: golden has {golden} elements, inference {inference}"));
        }
        if let Verifier::MeanIou { .. } = verifier {
            return Err(format!("{name} compares detections (boxes and classes), not one tensor"));
        }
        if let Some((_, fold)) = self.specs.iter().find(|(v, _)| v == verifier) {
            return fold.metric();
        }
        if self.pairs.elements == 0 {
            return Err(format!("{name}: nothing to compare"));
        }
        if let Verifier::ScaledDiff { encoding_range: None } = verifier {
            return Err("ScaledDiff needs the tensor's encoding range (min, max)".into());
        }
        match self.pairs.metric(verifier) {
            Some(_) if self.pairs.non_finite_mismatch > 0 => Ok(f64::NAN),
            Some(metric) => Ok(metric),
            None => Err(format!("{name} was not folded for this layer (it needs the values themselves)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values with a spread of magnitudes, signs and exact zeros.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|k| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                if k % 7 == 0 { 0.0 } else { (u - 0.4) * 8.0 }
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        if a.is_nan() || b.is_nan() { a.is_nan() && b.is_nan() } else { a == b || (a - b).abs() <= 1e-9 * b.abs() }
    }

    #[test]
    fn pooled_verifiers_match_the_verifier_on_the_concatenated_samples() {
        let (samples, size) = (5, 64);
        let golden = values(1, samples * size);
        let mut inference: Vec<f32> = golden.iter().zip(values(2, samples * size)).map(|(g, e)| g + e * 0.05).collect();
        // A shared infinity and a shared NaN: left out of the sums, no mismatch.
        let mut golden = golden;
        golden[3] = f32::INFINITY;
        inference[3] = f32::INFINITY;
        golden[70] = f32::NAN;
        inference[70] = f32::NAN;
        let specs: Vec<MetricSpec> =
            ["rtolatol,rtolmargin,0.02,atolmargin,0.05", "l1error,scale,2", "mae", "mse", "cos", "sqnr", "maxerror"]
                .iter()
                .map(|s| MetricSpec::parse(s).expect("parses"))
                .collect();
        let mut fold = LayerFold::new(&specs);
        for n in 0..samples {
            let mut one = fold.empty();
            one.add(&golden[n * size..(n + 1) * size], &inference[n * size..(n + 1) * size]);
            fold.merge(&one);
        }
        for spec in &specs {
            let pooled = spec.verifier.evaluate(&golden, &inference).expect("evaluates").metric;
            let folded = fold.metric(&spec.verifier).expect("folds");
            assert!(close(folded, pooled), "{}: folded {folded}, pooled {pooled}", spec.column());
        }
        let ranged = Verifier::ScaledDiff { encoding_range: Some((-2.0, 3.1)) };
        let pooled = ranged.evaluate(&golden, &inference).expect("evaluates").metric;
        assert!(close(fold.metric(&ranged).expect("folds"), pooled));
    }

    #[test]
    fn per_sample_verifiers_average_each_sample() {
        let (samples, size) = (3, 10);
        let golden = values(3, samples * size);
        let inference: Vec<f32> = golden.iter().rev().copied().collect();
        for spec in ["topk,k,3", "kld", "adjustedrtolatol"] {
            let spec = MetricSpec::parse(spec).expect("parses");
            let fold = LayerFold::over_samples(std::slice::from_ref(&spec), &golden, &inference, samples);
            let expected = (0..samples)
                .map(|n| {
                    let r = (n * size)..((n + 1) * size);
                    spec.verifier.evaluate(&golden[r.clone()], &inference[r]).expect("evaluates").metric
                })
                .sum::<f64>()
                / samples as f64;
            assert!(close(fold.metric(&spec.verifier).expect("folds"), expected), "{}", spec.column());
        }
    }

    #[test]
    fn a_disagreeing_nan_makes_every_metric_nan_and_missing_inputs_explain_themselves() {
        let specs = [MetricSpec::parse("rtolatol").expect("parses")];
        let fold = LayerFold::over_samples(&specs, &[1.0, f32::NAN], &[1.0, 2.0], 1);
        assert!(fold.metric(&Verifier::Mse).expect("folds").is_nan());
        assert!(fold.metric(&specs[0].verifier).expect("folds").is_nan());
        let unfolded = Verifier::RtolAtol { rtol_margin: 0.5, atol_margin: 0.5 };
        assert!(fold.metric(&unfolded).unwrap_err().contains("not folded"));
        assert!(fold.metric(&Verifier::ScaledDiff { encoding_range: None }).unwrap_err().contains("encoding range"));
        assert!(fold.metric(&Verifier::MeanIou { background_classification: 1.0 }).is_err());
        let uneven = LayerFold::over_samples(&specs, &[1.0, 2.0], &[1.0], 1);
        assert!(uneven.metric(&Verifier::Mse).unwrap_err().contains("2 elements"));
    }
}
