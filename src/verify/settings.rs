//! What `verify` compares and how: the debugging [`Mode`], the per-layer metrics
//! ([`MetricSpec`]: a verifier with its parameters and an optional threshold) and their
//! evaluation on one layer's values over every verify sample.
//!
//! Pooling rule: element-wise verifiers (RtolAtol, L1Error, MAE, MSE, CosineSimilarity, SQNR,
//! ScaledDiff, MaxError) see the samples' tensors concatenated, exactly as if the debugger had
//! been given one `Result_N` directory holding them all; TopK and KL divergence compare one
//! distribution per sample, and AdjustedRtolAtol's tolerance follows one inference's range, so
//! those are computed per sample and averaged. Every metric is evaluated from a [`LayerFold`].

use serde::{Deserialize, Serialize};

use super::fold::LayerFold;
use super::summary::Thresholds;
use super::verifiers::{Verifier, VerifierError};

/// How the quantized side of each per-layer row is produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One quantized run against one float run: errors accumulate down the graph.
    #[default]
    Oneshot,
    /// The quantized run restarted from float activations after every layer whose output
    /// differs from the float run: each row is the error the layer adds to clean inputs.
    Cumulative,
    /// Each op alone on float inputs (quantized with their own encodings).
    Layerwise,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Oneshot, Mode::Cumulative, Mode::Layerwise];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Oneshot => "oneshot",
            Mode::Cumulative => "cumulative",
            Mode::Layerwise => "layerwise",
        }
    }

    /// Also accepts the debugger's spellings (`oneshot-layerwise`, `cumulative-layerwise`).
    pub fn parse(text: &str) -> Option<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "oneshot" | "oneshot-layerwise" => Some(Mode::Oneshot),
            "cumulative" | "cumulative-layerwise" => Some(Mode::Cumulative),
            "layerwise" => Some(Mode::Layerwise),
            _ => None,
        }
    }
}

/// One per-layer metric: a verifier, and the limit a layer must meet (see
/// [`MetricSpec::effective_threshold`] for the defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    pub verifier: Verifier,
    pub threshold: Option<f64>,
}

impl MetricSpec {
    pub fn new(verifier: Verifier) -> MetricSpec {
        MetricSpec { verifier, threshold: None }
    }

    /// The debugger's `name[,key,value]...` syntax, plus an optional `threshold,<value>` pair
    /// (qairt's addition: the debugger has no per-verifier threshold on its command line).
    pub fn parse(spec: &str) -> Result<MetricSpec, VerifierError> {
        let items: Vec<&str> = spec.split(',').map(str::trim).collect();
        let mut kept = vec![items.first().copied().unwrap_or_default()];
        let mut threshold = None;
        let rest = items.get(1..).unwrap_or_default();
        if rest.len().is_multiple_of(2) {
            for pair in rest.chunks_exact(2) {
                let [key, value] = pair else { continue };
                if key.eq_ignore_ascii_case("threshold") {
                    let parsed = value.parse::<f64>().ok().filter(|v| v.is_finite());
                    let Some(parsed) = parsed else {
                        let verifier = Verifier::parse(kept[0])?.name();
                        return Err(VerifierError::BadValue {
                            verifier,
                            key: "threshold".into(),
                            value: value.to_string(),
                            expected: "a finite number",
                        });
                    };
                    threshold = Some(parsed);
                } else {
                    kept.extend_from_slice(pair);
                }
            }
        } else {
            kept.extend_from_slice(rest);
        }
        let verifier = Verifier::parse(&kept.join(","))?;
        Ok(MetricSpec { verifier, threshold })
    }

    /// The column name in `summary.csv`: the debugger's lower-case verifier name.
    pub fn column(&self) -> &'static str {
        match self.verifier {
            Verifier::RtolAtol { .. } => "rtolatol",
            Verifier::AdjustedRtolAtol { .. } => "adjustedrtolatol",
            Verifier::TopK { .. } => "topk",
            Verifier::L1Error { .. } => "l1error",
            Verifier::Mae => "mae",
            Verifier::Mse => "mse",
            Verifier::CosineSimilarity { .. } => "cosinesimilarity",
            Verifier::Sqnr => "sqnr",
            Verifier::ScaledDiff { .. } => "scaleddiff",
            Verifier::MeanIou { .. } => "meaniou",
            Verifier::KlDivergence => "kld",
            Verifier::MaxError => "maxerror",
        }
    }

    /// The limit a layer is held to: the one given, else for SQNR `min_sqnr_db` (or 20 dB) and
    /// for cosine similarity `min_cosine` (or 0.99), else none (the column is informative). The
    /// debugger's own pass rule ("match": 0 % error, cosine 1) would fail every layer of any
    /// quantized model, so it is not the default.
    pub fn effective_threshold(&self, thresholds: &Thresholds) -> Option<f64> {
        self.threshold.or(match self.verifier {
            Verifier::Sqnr => Some(thresholds.min_sqnr_db.unwrap_or(20.0)),
            Verifier::CosineSimilarity { .. } => Some(thresholds.min_cosine.unwrap_or(0.99)),
            _ => None,
        })
    }

    /// Whether the metric needs the values themselves, not only the sums every layer keeps
    /// ([`LayerFold`]): those are folded only when configured, so selecting one re-runs the
    /// samples, while selecting among the others re-renders from the folds.
    pub fn needs_values(&self) -> bool {
        matches!(
            self.verifier,
            Verifier::RtolAtol { .. }
                | Verifier::AdjustedRtolAtol { .. }
                | Verifier::TopK { .. }
                | Verifier::KlDivergence
        )
    }

    /// Evaluates the metric on one layer: `golden` and `target` hold `samples` equal-sized
    /// samples back to back. ScaledDiff needs the layer's encoding range. A verifier that
    /// cannot be computed gives a NaN metric and the reason in `note` (and fails its threshold).
    pub fn evaluate(
        &self,
        golden: &[f32],
        target: &[f32],
        samples: usize,
        encoding_range: Option<(f64, f64)>,
        thresholds: &Thresholds,
    ) -> MetricValue {
        let fold = LayerFold::over_samples(std::slice::from_ref(self), golden, target, samples);
        self.evaluate_fold(&fold, encoding_range, thresholds)
    }

    /// Evaluates the metric from a layer's fold (see [`evaluate`](Self::evaluate)).
    pub fn evaluate_fold(
        &self,
        fold: &LayerFold,
        encoding_range: Option<(f64, f64)>,
        thresholds: &Thresholds,
    ) -> MetricValue {
        let threshold = self.effective_threshold(thresholds);
        let (_, lower_is_better) = self.verifier.units();
        let verifier = match (&self.verifier, encoding_range) {
            (Verifier::ScaledDiff { encoding_range: None }, Some((lo, hi))) => {
                self.verifier.clone().with_encoding_range(lo, hi).map_err(|e| e.to_string())
            }
            _ => Ok(self.verifier.clone()),
        };
        let (metric, note) = match verifier.and_then(|v| fold.metric(&v)) {
            Ok(metric) => (metric, None),
            Err(e) => (f64::NAN, Some(e)),
        };
        let passed =
            threshold.map(|limit| !metric.is_nan() && if lower_is_better { metric <= limit } else { metric >= limit });
        MetricValue { column: self.column().to_string(), metric, threshold, passed, lower_is_better, note }
    }
}

/// The metrics used when `[verify] metrics` is not set: the columns of the debugger's summary
/// most users script against.
pub fn default_metrics() -> Vec<MetricSpec> {
    vec![
        MetricSpec::new(Verifier::Sqnr),
        MetricSpec::new(Verifier::CosineSimilarity { multiplier: 1.0, scale: 1.0 }),
        MetricSpec::new(Verifier::Mse),
        MetricSpec::new(Verifier::MaxError),
    ]
}

/// One metric of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    /// The `summary.csv` column (the verifier's lower-case name).
    pub column: String,
    /// NaN when it could not be computed (see `note`).
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub metric: f64,
    #[serde(serialize_with = "crate::verify::json_float::option_f64")]
    pub threshold: Option<f64>,
    /// `None` when the metric has no threshold.
    pub passed: Option<bool>,
    pub lower_is_better: bool,
    pub note: Option<String>,
}

/// Everything that decides how `verify` compares, besides the thresholds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DebugSettings {
    pub mode: Mode,
    /// Empty means [`default_metrics`].
    pub metrics: Vec<MetricSpec>,
    /// What `qairt suggest` raises layers to.
    pub precision: super::sensitivity::Precision,
    /// `[verify.checker]`: the quantization checker's algorithms and thresholds.
    pub checker: super::checker::CheckerConfig,
}

impl DebugSettings {
    /// The metrics in effect.
    pub fn metrics(&self) -> Vec<MetricSpec> {
        if self.metrics.is_empty() { default_metrics() } else { self.metrics.clone() }
    }

    /// The metrics in effect that the runs must fold themselves ([`MetricSpec::needs_values`]),
    /// without thresholds: what a run's result, and so its cache key, depends on.
    pub fn folded_metrics(&self) -> Vec<MetricSpec> {
        let mut folded: Vec<MetricSpec> = Vec::new();
        for spec in self.metrics().into_iter().filter(MetricSpec::needs_values) {
            if !folded.iter().any(|f| f.verifier == spec.verifier) {
                folded.push(MetricSpec::new(spec.verifier));
            }
        }
        folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_an_optional_threshold() {
        let spec = MetricSpec::parse("RtolAtol,rtolmargin,0.02,threshold,5,atolmargin,0.1").unwrap();
        assert_eq!(spec.verifier, Verifier::RtolAtol { rtol_margin: 0.02, atol_margin: 0.1 });
        assert_eq!(spec.threshold, Some(5.0));
        assert_eq!(spec.column(), "rtolatol");
        let plain = MetricSpec::parse("sqnr").unwrap();
        assert_eq!((plain.verifier, plain.threshold), (Verifier::Sqnr, None));
        assert!(matches!(MetricSpec::parse("sqnr,threshold,high"), Err(VerifierError::BadValue { .. })));
        assert!(matches!(MetricSpec::parse("sqnr,threshold"), Err(VerifierError::OddParameters { .. })));
        assert!(matches!(MetricSpec::parse("snr"), Err(VerifierError::UnknownVerifier { .. })));
        assert!(matches!(MetricSpec::parse("mse,k,3"), Err(VerifierError::UnknownParameter { .. })));
    }

    #[test]
    fn default_thresholds_follow_the_project_thresholds() {
        let t = Thresholds { min_sqnr_db: Some(30.0), ..Default::default() };
        assert_eq!(MetricSpec::new(Verifier::Sqnr).effective_threshold(&t), Some(30.0));
        assert_eq!(MetricSpec::new(Verifier::Sqnr).effective_threshold(&Thresholds::default()), Some(20.0));
        let cos = MetricSpec::new(Verifier::CosineSimilarity { multiplier: 1.0, scale: 1.0 });
        assert_eq!(cos.effective_threshold(&t), Some(0.99));
        assert_eq!(MetricSpec::new(Verifier::Mse).effective_threshold(&t), None);
        let given = MetricSpec { verifier: Verifier::Sqnr, threshold: Some(12.0) };
        assert_eq!(given.effective_threshold(&t), Some(12.0));
    }

    #[test]
    fn pooled_and_per_sample_evaluation() {
        // Two samples of 2 elements. g = [1, 0 | 0, 1], t = [1, 0 | 1, 0].
        let g = [1.0, 0.0, 0.0, 1.0];
        let t = [1.0, 0.0, 1.0, 0.0];
        let none = Thresholds::default();
        // TopK k=1 per sample: sample 0 argmax agree (0 %), sample 1 disagree (100 %) -> 50 %.
        let topk = MetricSpec { verifier: Verifier::TopK { k: 1, ordered: false }, threshold: Some(10.0) };
        let v = topk.evaluate(&g, &t, 2, None, &none);
        assert_eq!(v.metric, 50.0);
        assert_eq!(v.passed, Some(false));
        // MSE pooled: errors [0, 0, 1, -1] -> 2 / 4 = 0.5 (no threshold -> no verdict).
        let v = MetricSpec::new(Verifier::Mse).evaluate(&g, &t, 2, None, &none);
        assert_eq!((v.metric, v.passed, v.lower_is_better), (0.5, None, true));
        // ScaledDiff without an encoding range cannot be computed: NaN, a note, a failed verdict.
        let scaled = MetricSpec { verifier: Verifier::ScaledDiff { encoding_range: None }, threshold: Some(1.0) };
        let v = scaled.evaluate(&g, &t, 2, None, &none);
        assert!(v.metric.is_nan() && v.note.is_some() && v.passed == Some(false));
        // With the range [0, 2.55]: mean |e| = 0.5 -> 0.5 * 255 / 2.55 = 50 steps.
        let v = scaled.evaluate(&g, &t, 2, Some((0.0, 2.55)), &none);
        assert!((v.metric - 50.0).abs() < 1e-9, "{}", v.metric);
    }

    #[test]
    fn modes_accept_the_debugger_spellings() {
        assert_eq!(Mode::parse("cumulative-layerwise"), Some(Mode::Cumulative));
        assert_eq!(Mode::parse("Oneshot"), Some(Mode::Oneshot));
        assert_eq!(Mode::parse("layerwise"), Some(Mode::Layerwise));
        assert_eq!(Mode::parse("partial"), None);
        assert_eq!(Mode::default(), Mode::Oneshot);
    }
}
