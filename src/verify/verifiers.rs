//! The accuracy debugger's verifier catalogue as pure functions: parse a verifier spec in the
//! debugger's comma syntax (`rtolatol,rtolmargin,0.01,atolmargin,0.01`) and compute its metric
//! between a golden (float reference) tensor and an inference tensor.
//!
//! Definitions, defaults, units and edge cases are written down in `docs/verifiers.md`; they
//! follow the vendor source digest (accuracy-tools-checker-evaluator.md section 4.5). The shared
//! rule for non-finite values: element-wise metrics are computed over the positions where both
//! tensors are finite, and the other positions are counted in [`VerifierResult::non_finite`]
//! (and in `non_finite_mismatch` when the two sides disagree), so one NaN does not hide the rest
//! of the comparison but still makes [`VerifierResult::passes`] fail.

use std::collections::BTreeSet;

/// Why a verifier spec could not be parsed or a verifier could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifierError {
    #[error("empty verifier spec (expected one of: {allowed})")]
    EmptySpec { allowed: String },
    #[error("unknown verifier {name:?} (expected one of: {allowed})")]
    UnknownVerifier { name: String, allowed: String },
    #[error("cannot pair verifier parameters of {verifier}: {count} values after the name, expected key,value pairs")]
    OddParameters { verifier: &'static str, count: usize },
    #[error("illegal parameter {key:?} for {verifier} (allowed: {allowed})")]
    UnknownParameter { verifier: &'static str, key: String, allowed: String },
    #[error("parameter {key:?} of {verifier} is given twice")]
    DuplicateParameter { verifier: &'static str, key: String },
    #[error("parameter {key:?} of {verifier}: {value:?} is not {expected}")]
    BadValue { verifier: &'static str, key: String, value: String, expected: &'static str },
    #[error("{verifier}: golden has {golden} elements but inference has {inference}")]
    SizeMismatch { verifier: &'static str, golden: usize, inference: usize },
    #[error("{verifier}: nothing to compare, the tensors are empty")]
    Empty { verifier: &'static str },
    #[error("{verifier} compares detections (boxes + classes): use evaluate_detections")]
    NeedsDetections { verifier: &'static str },
    #[error("{verifier} compares single tensors: use evaluate, not evaluate_detections")]
    NotDetections { verifier: &'static str },
    #[error("{side} detections: {boxes} box values for {classes} classes, expected 4 per class ([y0, x0, y1, x1])")]
    BadDetections { side: &'static str, boxes: usize, classes: usize },
    #[error("ScaledDiff needs the tensor's output encoding range (min, max)")]
    MissingEncoding,
    #[error("ScaledDiff encoding range [{min}, {max}] is not a finite range with max > min")]
    BadEncodingRange { min: f64, max: f64 },
}

/// One verifier with its parameters (defaults from the debugger docs, see `docs/verifiers.md`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Verifier {
    /// Percent of elements with `|i - g| > atol + rtol * |g|`.
    RtolAtol { rtol_margin: f64, atol_margin: f64 },
    /// RtolAtol with `rtol = 0.1` and `atol = levels_num * (max(g) - min(g)) / 255`.
    AdjustedRtolAtol { levels_num: f64 },
    /// Percent of the inference top-k indices that disagree with the golden top-k.
    TopK { k: usize, ordered: bool },
    /// `sum |g - i| * multiplier * scale`.
    L1Error { multiplier: f64, scale: f64 },
    /// `mean |g - i|`.
    Mae,
    /// `mean (g - i)^2`.
    Mse,
    /// `g . i / (|g| |i|)`; `multiplier` and `scale` are accepted and unused, as in the debugger.
    CosineSimilarity { multiplier: f64, scale: f64 },
    /// `10 log10(mean(i^2) / mse)` in dB (signal power from the inference tensor).
    Sqnr,
    /// `mean |g - i| * 255 / (max - min)` of the tensor's output encoding: error in 8-bit steps.
    ScaledDiff { encoding_range: Option<(f64, f64)> },
    /// Mean IOU (%) of detections (boxes + classes), see [`Verifier::evaluate_detections`].
    MeanIou { background_classification: f64 },
    /// `sum p log(p / q)` with `p = softmax(g)`, `q = softmax(i)`, in nats.
    KlDivergence,
    /// `max |g - i|`.
    MaxError,
}

/// CLI names (lower case) with the verifier they build with default parameters.
/// Builds a verifier with its default parameters.
type MakeDefault = fn() -> Verifier;

const CATALOGUE: &[(&str, MakeDefault)] = &[
    ("rtolatol", || Verifier::RtolAtol { rtol_margin: 0.01, atol_margin: 0.01 }),
    ("adjustedrtolatol", || Verifier::AdjustedRtolAtol { levels_num: 4.0 }),
    ("topk", || Verifier::TopK { k: 1, ordered: false }),
    ("l1error", || Verifier::L1Error { multiplier: 1.0, scale: 1.0 }),
    ("mae", || Verifier::Mae),
    ("mse", || Verifier::Mse),
    ("cosinesimilarity", || Verifier::CosineSimilarity { multiplier: 1.0, scale: 1.0 }),
    ("cos", || Verifier::CosineSimilarity { multiplier: 1.0, scale: 1.0 }),
    ("sqnr", || Verifier::Sqnr),
    ("scaleddiff", || Verifier::ScaledDiff { encoding_range: None }),
    ("meaniou", || Verifier::MeanIou { background_classification: 1.0 }),
    ("miou", || Verifier::MeanIou { background_classification: 1.0 }),
    ("kld", || Verifier::KlDivergence),
    ("kldivergence", || Verifier::KlDivergence),
    ("maxerror", || Verifier::MaxError),
];

fn allowed_names() -> String {
    CATALOGUE.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// Detections of one side for MeanIOU: `boxes` is N x 4 (`[y0, x0, y1, x1]`) row-major,
/// `classes` has N class ids (rounded to the nearest integer, ties to even, before comparing).
#[derive(Debug, Clone, Copy)]
pub struct Detections<'a> {
    pub boxes: &'a [f32],
    pub classes: &'a [f32],
}

/// The outcome of one verifier on one tensor pair.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifierResult {
    /// Canonical verifier name, e.g. `"RtolAtol"`.
    pub verifier: &'static str,
    /// The metric; NaN when nothing finite was left to compare.
    pub metric: f64,
    /// What the metric measures, as the debugger labels it (e.g. `"Percent Error (%)"`).
    pub units: &'static str,
    /// Direction: true when smaller metrics are better (errors), false for similarities.
    pub lower_is_better: bool,
    /// Elements (or detection rows for MeanIOU) the metric was computed over.
    pub compared: usize,
    /// Positions where golden or inference is NaN or +-Inf (left out of the metric; TopK ranks them).
    pub non_finite: usize,
    /// Of those, the positions where the two sides disagree (not both NaN, not the same infinity).
    pub non_finite_mismatch: usize,
}

impl VerifierResult {
    /// Pass iff the metric is on the good side of `threshold` (`<=` for lower-is-better,
    /// `>=` otherwise), the metric is not NaN, and no non-finite value disagrees between sides.
    pub fn passes(&self, threshold: f64) -> bool {
        if self.metric.is_nan() || self.non_finite_mismatch > 0 {
            return false;
        }
        if self.lower_is_better { self.metric <= threshold } else { self.metric >= threshold }
    }
}

impl Verifier {
    /// Parse `name[,key,value]...` (names and keys case-insensitive, spaces around items ignored).
    pub fn parse(spec: &str) -> Result<Verifier, VerifierError> {
        let mut items = spec.split(',').map(str::trim);
        let name = items.next().unwrap_or_default().to_ascii_lowercase();
        if name.is_empty() {
            return Err(VerifierError::EmptySpec { allowed: allowed_names() });
        }
        let Some((_, make)) = CATALOGUE.iter().find(|(n, _)| *n == name) else {
            return Err(VerifierError::UnknownVerifier { name, allowed: allowed_names() });
        };
        let mut verifier = make();
        let rest: Vec<&str> = items.collect();
        if !rest.len().is_multiple_of(2) {
            return Err(VerifierError::OddParameters { verifier: verifier.name(), count: rest.len() });
        }
        let mut seen = BTreeSet::new();
        for pair in rest.chunks_exact(2) {
            let [key, value] = pair else { continue };
            let key = key.to_ascii_lowercase();
            if !seen.insert(key.clone()) {
                return Err(VerifierError::DuplicateParameter { verifier: verifier.name(), key });
            }
            verifier.set(&key, value)?;
        }
        Ok(verifier)
    }

    /// The parameter keys `parse` accepts for this verifier.
    pub fn parameter_keys(&self) -> &'static [&'static str] {
        match self {
            Verifier::RtolAtol { .. } => &["rtolmargin", "atolmargin"],
            Verifier::AdjustedRtolAtol { .. } => &["levels_num"],
            Verifier::TopK { .. } => &["k", "ordered"],
            Verifier::L1Error { .. } | Verifier::CosineSimilarity { .. } => &["multiplier", "scale"],
            Verifier::MeanIou { .. } => &["background_classification"],
            Verifier::Mae
            | Verifier::Mse
            | Verifier::Sqnr
            | Verifier::ScaledDiff { .. }
            | Verifier::KlDivergence
            | Verifier::MaxError => &[],
        }
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), VerifierError> {
        let name = self.name();
        let bad = |expected: &'static str| VerifierError::BadValue {
            verifier: name,
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let number = || value.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| bad("a finite number"));
        let non_negative =
            || value.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| bad("a number >= 0"));
        match (self, key) {
            (Verifier::RtolAtol { rtol_margin, .. }, "rtolmargin") => *rtol_margin = non_negative()?,
            (Verifier::RtolAtol { atol_margin, .. }, "atolmargin") => *atol_margin = non_negative()?,
            (Verifier::AdjustedRtolAtol { levels_num }, "levels_num") => *levels_num = non_negative()?,
            (Verifier::TopK { k, .. }, "k") => {
                *k = value.parse::<usize>().ok().filter(|k| *k >= 1).ok_or_else(|| bad("an integer >= 1"))?
            }
            (Verifier::TopK { ordered, .. }, "ordered") => {
                // The vendor tool has bool("false") == True; parse the word instead.
                *ordered = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("true or false")),
                }
            }
            (Verifier::L1Error { multiplier, .. } | Verifier::CosineSimilarity { multiplier, .. }, "multiplier") => {
                *multiplier = number()?
            }
            (Verifier::L1Error { scale, .. } | Verifier::CosineSimilarity { scale, .. }, "scale") => *scale = number()?,
            (Verifier::MeanIou { background_classification }, "background_classification") => {
                *background_classification = number()?
            }
            (verifier, _) => {
                let allowed = verifier.parameter_keys();
                return Err(VerifierError::UnknownParameter {
                    verifier: name,
                    key: key.to_string(),
                    allowed: if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") },
                });
            }
        }
        Ok(())
    }

    /// Give ScaledDiff the tensor's output encoding range; other verifiers are returned unchanged.
    pub fn with_encoding_range(self, min: f64, max: f64) -> Result<Verifier, VerifierError> {
        match self {
            Verifier::ScaledDiff { .. } => {
                if !(min.is_finite() && max.is_finite() && max > min) {
                    return Err(VerifierError::BadEncodingRange { min, max });
                }
                Ok(Verifier::ScaledDiff { encoding_range: Some((min, max)) })
            }
            other => Ok(other),
        }
    }

    /// Canonical name, as the debugger spells it in its output directories.
    pub fn name(&self) -> &'static str {
        match self {
            Verifier::RtolAtol { .. } => "RtolAtol",
            Verifier::AdjustedRtolAtol { .. } => "AdjustedRtolAtol",
            Verifier::TopK { .. } => "TopK",
            Verifier::L1Error { .. } => "L1Error",
            Verifier::Mae => "MAE",
            Verifier::Mse => "MSE",
            Verifier::CosineSimilarity { .. } => "CosineSimilarity",
            Verifier::Sqnr => "SQNR",
            Verifier::ScaledDiff { .. } => "ScaledDiff",
            Verifier::MeanIou { .. } => "MeanIOU",
            Verifier::KlDivergence => "KLDivergence",
            Verifier::MaxError => "MaxError",
        }
    }

    /// Units label and direction (true = lower is better).
    pub fn units(&self) -> (&'static str, bool) {
        match self {
            Verifier::RtolAtol { .. } | Verifier::AdjustedRtolAtol { .. } => ("Percent Error (%)", true),
            Verifier::TopK { .. } => ("Percent incorrect (%)", true),
            Verifier::L1Error { .. } => ("Absolute Error", true),
            Verifier::Mae => ("Mean Absolute Error", true),
            Verifier::Mse => ("Mean Squared Error", true),
            Verifier::CosineSimilarity { .. } => ("Cosine Similarity", false),
            Verifier::Sqnr => ("dB", false),
            Verifier::ScaledDiff { .. } => ("Scaled diff (8-bit steps)", true),
            Verifier::MeanIou { .. } => ("Mean IOU (%)", false),
            Verifier::KlDivergence => ("nats", true),
            Verifier::MaxError => ("Max Absolute Error", true),
        }
    }

    /// Compare one golden tensor with one inference tensor (both flattened, same length).
    pub fn evaluate(&self, golden: &[f32], inference: &[f32]) -> Result<VerifierResult, VerifierError> {
        let verifier = self.name();
        if golden.len() != inference.len() {
            return Err(VerifierError::SizeMismatch { verifier, golden: golden.len(), inference: inference.len() });
        }
        if golden.is_empty() {
            return Err(VerifierError::Empty { verifier });
        }
        let pairs = FinitePairs::split(golden, inference);
        let (g, i) = (&pairs.golden[..], &pairs.inference[..]);
        let metric = match self {
            Verifier::RtolAtol { rtol_margin, atol_margin } => percent_not_close(g, i, *rtol_margin, *atol_margin),
            Verifier::AdjustedRtolAtol { levels_num } => {
                let step = (max(g) - min(g)) / 255.0;
                percent_not_close(g, i, 0.1, levels_num * step)
            }
            Verifier::TopK { k, ordered } => {
                let metric = top_k_percent_incorrect(golden, inference, *k, *ordered);
                return Ok(self.result(metric, golden.len(), &pairs));
            }
            Verifier::L1Error { multiplier, scale } => sum_abs_diff(g, i) * multiplier * scale,
            Verifier::Mae => mean(sum_abs_diff(g, i), g.len()),
            Verifier::Mse => mse(g, i),
            Verifier::CosineSimilarity { .. } => cosine_similarity(g, i),
            Verifier::Sqnr => sqnr(g, i),
            Verifier::ScaledDiff { encoding_range } => {
                let (lo, hi) = encoding_range.ok_or(VerifierError::MissingEncoding)?;
                mean(sum_abs_diff(g, i), g.len()) * 255.0 / (hi - lo)
            }
            Verifier::MeanIou { .. } => return Err(VerifierError::NeedsDetections { verifier }),
            Verifier::KlDivergence => kl_divergence(g, i),
            Verifier::MaxError => {
                if g.is_empty() {
                    f64::NAN
                } else {
                    g.iter().zip(i).map(|(g, i)| (g - i).abs()).fold(0.0, f64::max)
                }
            }
        };
        Ok(self.result(metric, g.len(), &pairs))
    }

    /// MeanIOU over detections: per rounded class, golden and inference boxes are paired in
    /// order; a box present on one side only scores IOU 0; pairs of the background class are
    /// true negatives and left out; the metric is 100 * mean IOU (100 when no row is left).
    /// Rows with a non-finite box or class value are dropped and counted as non-finite.
    pub fn evaluate_detections(
        &self,
        golden: Detections<'_>,
        inference: Detections<'_>,
    ) -> Result<VerifierResult, VerifierError> {
        let Verifier::MeanIou { background_classification } = self else {
            return Err(VerifierError::NotDetections { verifier: self.name() });
        };
        let (golden, dropped_golden) = detection_rows("golden", golden)?;
        let (inference, dropped_inference) = detection_rows("inference", inference)?;
        let background = background_classification.round_ties_even() as i64;
        let classes: BTreeSet<i64> = golden.iter().chain(&inference).map(|(c, _)| *c).collect();
        let mut ious = Vec::new();
        for class in classes {
            let g_boxes: Vec<&[f64; 4]> = golden.iter().filter(|(c, _)| *c == class).map(|(_, b)| b).collect();
            let i_boxes: Vec<&[f64; 4]> = inference.iter().filter(|(c, _)| *c == class).map(|(_, b)| b).collect();
            for row in 0..g_boxes.len().max(i_boxes.len()) {
                match (g_boxes.get(row), i_boxes.get(row)) {
                    (Some(_), Some(_)) if class == background => {}
                    (Some(g), Some(i)) => ious.push(box_iou(g, i)),
                    _ => ious.push(0.0),
                }
            }
        }
        let metric = if ious.is_empty() { 100.0 } else { 100.0 * ious.iter().sum::<f64>() / ious.len() as f64 };
        let dropped = dropped_golden + dropped_inference;
        let (units, lower_is_better) = self.units();
        Ok(VerifierResult {
            verifier: self.name(),
            metric,
            units,
            lower_is_better,
            compared: ious.len(),
            non_finite: dropped,
            non_finite_mismatch: dropped,
        })
    }

    fn result(&self, metric: f64, compared: usize, pairs: &FinitePairs) -> VerifierResult {
        let (units, lower_is_better) = self.units();
        VerifierResult {
            verifier: self.name(),
            metric,
            units,
            lower_is_better,
            compared,
            non_finite: pairs.non_finite,
            non_finite_mismatch: pairs.non_finite_mismatch,
        }
    }
}

/// The positions where both sides are finite, widened to f64, plus the counts of the others.
struct FinitePairs {
    golden: Vec<f64>,
    inference: Vec<f64>,
    non_finite: usize,
    non_finite_mismatch: usize,
}

impl FinitePairs {
    fn split(golden: &[f32], inference: &[f32]) -> FinitePairs {
        let mut pairs =
            FinitePairs { golden: Vec::new(), inference: Vec::new(), non_finite: 0, non_finite_mismatch: 0 };
        for (&g, &i) in golden.iter().zip(inference) {
            if g.is_finite() && i.is_finite() {
                pairs.golden.push(f64::from(g));
                pairs.inference.push(f64::from(i));
            } else {
                pairs.non_finite += 1;
                // Both NaN, or the same infinity, is agreement; anything else is a mismatch.
                if !((g.is_nan() && i.is_nan()) || g == i) {
                    pairs.non_finite_mismatch += 1;
                }
            }
        }
        pairs
    }
}

fn mean(sum: f64, n: usize) -> f64 {
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

fn min(x: &[f64]) -> f64 {
    x.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(x: &[f64]) -> f64 {
    x.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn sum_abs_diff(g: &[f64], i: &[f64]) -> f64 {
    if g.is_empty() {
        return f64::NAN;
    }
    g.iter().zip(i).map(|(g, i)| (g - i).abs()).sum()
}

fn mse(g: &[f64], i: &[f64]) -> f64 {
    mean(g.iter().zip(i).map(|(g, i)| (g - i) * (g - i)).sum(), g.len())
}

/// numpy `isclose(i, g, rtol, atol)` negated, as a percentage: `|i - g| <= atol + rtol * |g|`.
fn percent_not_close(g: &[f64], i: &[f64], rtol: f64, atol: f64) -> f64 {
    // Inputs are finite and the margins finite (checked at parse), so `>` is isclose's negation.
    let not_close = g.iter().zip(i).filter(|(g, i)| (*i - *g).abs() > atol + rtol * g.abs()).count();
    mean(100.0 * not_close as f64, g.len())
}

/// Both all-zero -> 1 (identical); one side all-zero -> 0 (no common direction).
fn cosine_similarity(g: &[f64], i: &[f64]) -> f64 {
    if g.is_empty() {
        return f64::NAN;
    }
    let dot: f64 = g.iter().zip(i).map(|(g, i)| g * i).sum();
    let norm_g = g.iter().map(|g| g * g).sum::<f64>().sqrt();
    let norm_i = i.iter().map(|i| i * i).sum::<f64>().sqrt();
    match (norm_g == 0.0, norm_i == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        (false, false) => dot / (norm_g * norm_i),
    }
}

/// `10 log10(mean(i^2) / mse)`: +inf when identical (the debugger prints "SAME"), -inf when the
/// inference is all zero but differs from the golden.
fn sqnr(g: &[f64], i: &[f64]) -> f64 {
    if g.is_empty() {
        return f64::NAN;
    }
    let noise = mse(g, i);
    if noise == 0.0 {
        return f64::INFINITY;
    }
    let signal = mean(i.iter().map(|i| i * i).sum(), i.len());
    if signal == 0.0 {
        return f64::NEG_INFINITY;
    }
    10.0 * (signal / noise).log10()
}

fn log_softmax(x: &[f64]) -> Vec<f64> {
    let m = max(x);
    let log_sum = m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    x.iter().map(|v| v - log_sum).collect()
}

fn kl_divergence(g: &[f64], i: &[f64]) -> f64 {
    if g.is_empty() {
        return f64::NAN;
    }
    let (lp, lq) = (log_softmax(g), log_softmax(i));
    lp.iter().zip(&lq).map(|(p, q)| p.exp() * (p - q)).sum()
}

/// Indices of the k largest values: descending, ties to the lower index, NaN last
/// (numpy `argsort(-x, kind="stable")[:k]`).
fn top_k(x: &[f32], k: usize) -> Vec<usize> {
    let mut ranked: Vec<(usize, f32)> = x.iter().copied().enumerate().collect();
    ranked.sort_by(|(_, a), (_, b)| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal),
    });
    ranked.into_iter().take(k).map(|(index, _)| index).collect()
}

fn top_k_percent_incorrect(golden: &[f32], inference: &[f32], k: usize, ordered: bool) -> f64 {
    let (g, i) = (top_k(golden, k), top_k(inference, k));
    let wrong = if ordered {
        g.iter().zip(&i).filter(|(g, i)| g != i).count()
    } else {
        i.iter().filter(|index| !g.contains(index)).count()
    };
    mean(100.0 * wrong as f64, k.min(golden.len()))
}

type DetectionRow = (i64, [f64; 4]);

fn detection_rows(side: &'static str, d: Detections<'_>) -> Result<(Vec<DetectionRow>, usize), VerifierError> {
    if d.boxes.len() != 4 * d.classes.len() {
        return Err(VerifierError::BadDetections { side, boxes: d.boxes.len(), classes: d.classes.len() });
    }
    let mut rows = Vec::new();
    let mut dropped = 0;
    for (class, b) in d.classes.iter().zip(d.boxes.chunks_exact(4)) {
        let &[y0, x0, y1, x1] = b else { continue };
        if !(class.is_finite() && b.iter().all(|v| v.is_finite())) {
            dropped += 1;
            continue;
        }
        let bbox = [y0, x0, y1, x1].map(f64::from);
        rows.push((f64::from(*class).round_ties_even() as i64, bbox));
    }
    Ok((rows, dropped))
}

/// IOU of `[y0, x0, y1, x1]` boxes; a zero union scores 1 for identical boxes, else 0.
fn box_iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let inter = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: &[f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { if a == b { 1.0 } else { 0.0 } } else { inter / union }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Written by scripts/python/verifier_reference.py (numpy), an independent implementation.
    const REFERENCE: &str = include_str!("../../tests/data/verifiers/reference.json");

    fn number(v: &Value) -> f64 {
        match v {
            Value::String(s) if s == "nan" => f64::NAN,
            Value::String(s) if s == "inf" => f64::INFINITY,
            Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
            v => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
        }
    }

    fn tensor(v: &Value) -> Vec<f32> {
        v.as_array().expect("array").iter().map(|x| number(x) as f32).collect()
    }

    fn assert_close(got: f64, want: f64, what: &str) {
        let ok = if want.is_nan() {
            got.is_nan()
        } else if want.is_infinite() {
            got == want
        } else {
            (got - want).abs() <= 1e-6 * want.abs() + 1e-12
        };
        assert!(ok, "{what}: got {got}, numpy says {want}");
    }

    #[test]
    fn every_verifier_matches_numpy_on_every_case() {
        let doc: Value = serde_json::from_str(REFERENCE).expect("reference.json parses");
        let mut checked = 0;
        for case in doc["cases"].as_array().expect("cases") {
            let name = case["name"].as_str().expect("name");
            let (g, i) = (tensor(&case["golden"]), tensor(&case["inference"]));
            for row in case["results"].as_array().expect("results") {
                let spec = row["spec"].as_str().expect("spec");
                let mut verifier = Verifier::parse(spec).expect("spec parses");
                if let (Some(lo), Some(hi)) = (row.get("encoding_min"), row.get("encoding_max")) {
                    verifier = verifier.with_encoding_range(number(lo), number(hi)).expect("range");
                }
                let result = verifier.evaluate(&g, &i).expect("evaluates");
                assert_close(result.metric, number(&row["metric"]), &format!("{name} / {spec}"));
                assert_eq!(result.non_finite as u64, row["non_finite"].as_u64().expect("count"), "{name} / {spec}");
                checked += 1;
            }
        }
        assert_eq!(checked, 8 * 16);
    }

    #[test]
    fn mean_iou_matches_numpy() {
        let doc: Value = serde_json::from_str(REFERENCE).expect("reference.json parses");
        let cases = doc["detections"].as_array().expect("detections");
        assert_eq!(cases.len(), 4);
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let verifier = Verifier::parse(case["spec"].as_str().expect("spec")).expect("parses");
            let (gb, gc) = (tensor(&case["golden_boxes"]), tensor(&case["golden_classes"]));
            let (ib, ic) = (tensor(&case["inference_boxes"]), tensor(&case["inference_classes"]));
            let result = verifier
                .evaluate_detections(Detections { boxes: &gb, classes: &gc }, Detections { boxes: &ib, classes: &ic })
                .expect("evaluates");
            assert_close(result.metric, number(&case["metric"]), name);
        }
    }

    #[test]
    fn mean_iou_drops_non_finite_rows_and_fails() {
        // Golden: class 2 box [0,0,1,1], class 3 box [0,0,2,2] with a NaN corner.
        // Inference: class 2 box [0,0,1,0.5] (IOU 0.5). The NaN row is dropped, so only the
        // class-2 pair is left: metric = 100 * 0.5 = 50, one non-finite row -> fails.
        let v = Verifier::parse("miou").expect("parses");
        let r = v
            .evaluate_detections(
                Detections { boxes: &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, f32::NAN, 2.0], classes: &[2.0, 3.0] },
                Detections { boxes: &[0.0, 0.0, 1.0, 0.5], classes: &[2.0] },
            )
            .expect("evaluates");
        assert_close(r.metric, 50.0, "miou");
        assert_eq!((r.compared, r.non_finite), (1, 1));
        assert!(!r.passes(10.0));
    }

    #[test]
    fn parse_defaults_and_parameters() {
        assert_eq!(Verifier::parse("RtolAtol"), Ok(Verifier::RtolAtol { rtol_margin: 0.01, atol_margin: 0.01 }));
        assert_eq!(
            Verifier::parse("rtolatol,rtolmargin,0.05,ATOLMARGIN, 0.2"),
            Ok(Verifier::RtolAtol { rtol_margin: 0.05, atol_margin: 0.2 })
        );
        assert_eq!(Verifier::parse("TOPK,k,5,ordered,False"), Ok(Verifier::TopK { k: 5, ordered: false }));
        assert_eq!(Verifier::parse("topk,ordered,true"), Ok(Verifier::TopK { k: 1, ordered: true }));
        assert_eq!(Verifier::parse("adjustedrtolatol"), Ok(Verifier::AdjustedRtolAtol { levels_num: 4.0 }));
        assert_eq!(Verifier::parse("cos"), Verifier::parse("CosineSimilarity"));
        assert_eq!(Verifier::parse("miou"), Ok(Verifier::MeanIou { background_classification: 1.0 }));
        assert_eq!(Verifier::parse("scaleddiff"), Ok(Verifier::ScaledDiff { encoding_range: None }));
        assert_eq!(Verifier::parse("kld").map(|v| v.name()), Ok("KLDivergence"));
        assert_eq!(Verifier::parse("MaxError").map(|v| v.name()), Ok("MaxError"));
    }

    #[test]
    fn parse_errors_are_typed_and_list_what_is_allowed() {
        match Verifier::parse("rtol") {
            Err(VerifierError::UnknownVerifier { name, allowed }) => {
                assert_eq!(name, "rtol");
                assert!(allowed.contains("rtolatol") && allowed.contains("meaniou"), "{allowed}");
            }
            other => panic!("{other:?}"),
        }
        match Verifier::parse("rtolatol,rtol,0.1") {
            Err(VerifierError::UnknownParameter { verifier, key, allowed }) => {
                assert_eq!((verifier, key.as_str(), allowed.as_str()), ("RtolAtol", "rtol", "rtolmargin, atolmargin"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Verifier::parse("mse,scale,2"),
            Err(VerifierError::UnknownParameter { allowed, .. }) if allowed == "none"
        ));
        assert_eq!(
            Verifier::parse("rtolatol,rtolmargin"),
            Err(VerifierError::OddParameters { verifier: "RtolAtol", count: 1 })
        );
        // The help text's typo `atolmargin,0,01` is three values: odd, so rejected.
        assert!(matches!(Verifier::parse("rtolatol,atolmargin,0,01"), Err(VerifierError::OddParameters { .. })));
        assert!(matches!(Verifier::parse("topk,ordered,yes"), Err(VerifierError::BadValue { .. })));
        assert!(matches!(Verifier::parse("topk,k,0"), Err(VerifierError::BadValue { .. })));
        assert!(matches!(Verifier::parse("rtolatol,atolmargin,-1"), Err(VerifierError::BadValue { .. })));
        assert!(matches!(Verifier::parse("l1error,scale,nan"), Err(VerifierError::BadValue { .. })));
        assert!(matches!(Verifier::parse("topk,k,2,K,3"), Err(VerifierError::DuplicateParameter { .. })));
        assert!(matches!(Verifier::parse(" "), Err(VerifierError::EmptySpec { .. })));
    }

    #[test]
    fn evaluate_rejects_bad_inputs() {
        let mse = Verifier::Mse;
        assert_eq!(
            mse.evaluate(&[1.0, 2.0], &[1.0]),
            Err(VerifierError::SizeMismatch { verifier: "MSE", golden: 2, inference: 1 })
        );
        assert_eq!(mse.evaluate(&[], &[]), Err(VerifierError::Empty { verifier: "MSE" }));
        assert_eq!(
            Verifier::parse("scaleddiff").and_then(|v| v.evaluate(&[1.0], &[1.0])),
            Err(VerifierError::MissingEncoding)
        );
        assert!(matches!(
            Verifier::parse("scaleddiff").and_then(|v| v.with_encoding_range(1.0, 1.0)),
            Err(VerifierError::BadEncodingRange { .. })
        ));
        assert!(matches!(
            Verifier::parse("miou").and_then(|v| v.evaluate(&[1.0], &[1.0])),
            Err(VerifierError::NeedsDetections { .. })
        ));
        let d = Detections { boxes: &[0.0; 3], classes: &[1.0] };
        assert!(matches!(
            Verifier::parse("miou").and_then(|v| v.evaluate_detections(d, d)),
            Err(VerifierError::BadDetections { .. })
        ));
        assert!(matches!(Verifier::Mse.evaluate_detections(d, d), Err(VerifierError::NotDetections { .. })));
    }

    #[test]
    fn passes_follows_direction_and_non_finite_rules() {
        // MSE of [0,0] vs [0.1,0.1] is 0.01 (hand-computed): passes 0.01, fails 0.005.
        let r = Verifier::Mse.evaluate(&[0.0, 0.0], &[0.1, 0.1]).expect("evaluates");
        assert!(r.lower_is_better && r.passes(0.011) && !r.passes(0.005));
        // Cosine of identical tensors is 1: passes 0.99 (higher is better).
        let r = Verifier::parse("cos").and_then(|v| v.evaluate(&[1.0, 2.0], &[1.0, 2.0])).expect("evaluates");
        assert!(!r.lower_is_better && r.passes(0.99) && !r.passes(1.5));
        // Same infinity on both sides agrees; NaN vs a number does not.
        let r = Verifier::Mse.evaluate(&[f32::INFINITY, 1.0, f32::NAN], &[f32::INFINITY, 1.0, f32::NAN]).expect("ok");
        assert_eq!((r.non_finite, r.non_finite_mismatch, r.compared), (2, 0, 1));
        assert!(r.passes(0.0));
        let r = Verifier::Mse.evaluate(&[1.0, 1.0], &[f32::NAN, 1.0]).expect("ok");
        assert_eq!((r.non_finite, r.non_finite_mismatch), (1, 1));
        assert!(!r.passes(1.0));
        // Nothing finite left: NaN metric, never passes.
        let r = Verifier::Mae.evaluate(&[f32::NAN], &[f32::NAN]).expect("ok");
        assert!(r.metric.is_nan() && !r.passes(f64::INFINITY));
    }
}
