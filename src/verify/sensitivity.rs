//! Sensitivity analysis: which layers, kept at higher precision, bring the final outputs up to
//! the project's thresholds.
//!
//! Pure: the caller supplies `measure`, which builds and runs the model with a given set of
//! layers raised and returns what the final outputs measure. The search:
//!
//! 1. ranks every candidate by the output SQNR gain of raising it alone;
//! 2. raises layers in rank order until the thresholds are met (greedy);
//! 3. drops, least useful first, every chosen layer whose removal still meets them, so the
//!    set is irreducible: no layer of it can be left out.
//!
//! It costs `n + 2k` measurements for `n` candidates and `k` chosen layers. The greedy set is
//! minimal in the sense of step 3, not guaranteed to be the globally smallest one (that would
//! take up to 2^n builds); `docs/accuracy-debugging.md` says so.

use serde::{Deserialize, Serialize};

use super::summary::Thresholds;

/// What a raised layer is kept at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 16-bit integer output activation (and weights, where the op has them).
    #[default]
    Int16,
    /// float16 output activation and weights: the op runs in floating point.
    Float16,
}

impl Precision {
    pub const ALL: [Precision; 2] = [Precision::Int16, Precision::Float16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Int16 => "int16",
            Precision::Float16 => "float16",
        }
    }

    pub fn parse(text: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(text.trim()))
    }
}

/// What the final outputs measure for one configuration (first graph output).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Output SQNR in dB (reference as signal, as `[verify.thresholds] min_sqnr_db`).
    pub sqnr_db: f64,
    pub cosine: f64,
    pub top1_agreement: f64,
    /// `reference accuracy - accuracy` when labels are known.
    pub accuracy_drop: Option<f64>,
}

impl Measurement {
    /// Whether every threshold that is set is met (a NaN measurement fails).
    pub fn meets(&self, t: &Thresholds) -> bool {
        let at_least = |limit: Option<f64>, value: f64| limit.is_none_or(|l| value >= l);
        at_least(t.min_sqnr_db, self.sqnr_db)
            && at_least(t.min_cosine, self.cosine)
            && at_least(t.min_top1_agreement, self.top1_agreement)
            && t.max_accuracy_drop.is_none_or(|l| self.accuracy_drop.is_some_and(|d| d <= l))
    }
}

/// One candidate raised alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerGain {
    /// The layer's output tensor.
    pub layer: String,
    pub op: String,
    pub measurement: Measurement,
    /// Output SQNR gain over the baseline, in dB.
    pub gain_db: f64,
}

/// The outcome of [`search`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensitivityResult {
    pub precision: Precision,
    pub thresholds: Thresholds,
    pub baseline: Measurement,
    /// Every candidate, largest gain first (graph order among equals).
    pub ranking: Vec<LayerGain>,
    /// The suggested layers, in rank order; empty when the baseline already meets the
    /// thresholds or no threshold is set.
    pub chosen: Vec<String>,
    /// The measurement with `chosen` raised (the baseline when nothing is chosen).
    pub result: Measurement,
    /// Whether `result` meets the thresholds. When even every candidate raised does not,
    /// `chosen` is every candidate and this is false.
    pub meets: bool,
    /// How many configurations were measured (besides the baseline).
    pub measured: usize,
}

/// The search's phases, each announced with the most measurements it can take, so that a
/// progress bar has a true total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Each candidate raised alone: exactly one measurement per candidate.
    Rank,
    /// Layers added in rank order until the thresholds are met: at most one per layer with a
    /// positive gain.
    Add,
    /// Layers the thresholds do not need dropped again: at most one per chosen layer.
    Prune,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Rank => "ranking layers",
            Phase::Add => "adding layers",
            Phase::Prune => "pruning",
        }
    }
}

/// Runs the search (see the module docs). `candidates` are `(layer, op)` in graph order;
/// `measure` gets the layers to raise; `phase` hears of each phase before its measurements,
/// with their most.
pub fn search<E>(
    precision: Precision,
    candidates: &[(String, String)],
    baseline: Measurement,
    thresholds: &Thresholds,
    measure: &mut dyn FnMut(&[String]) -> Result<Measurement, E>,
    phase: &mut dyn FnMut(Phase, usize),
) -> Result<SensitivityResult, E> {
    let mut measured = 0;
    let mut ranking = Vec::with_capacity(candidates.len());
    phase(Phase::Rank, candidates.len());
    for (layer, op) in candidates {
        let m = measure(std::slice::from_ref(layer))?;
        measured += 1;
        ranking.push(LayerGain {
            layer: layer.clone(),
            op: op.clone(),
            measurement: m,
            gain_db: m.sqnr_db - baseline.sqnr_db,
        });
    }
    // Stable sort: graph order among equal gains; NaN gains last.
    ranking.sort_by(|a, b| {
        let key = |g: &LayerGain| if g.gain_db.is_nan() { f64::NEG_INFINITY } else { g.gain_db };
        key(b).total_cmp(&key(a))
    });
    let nothing_to_meet = *thresholds == Thresholds::default();
    let done = |chosen: Vec<String>, result: Measurement, meets: bool, measured: usize| SensitivityResult {
        precision,
        thresholds: thresholds.clone(),
        baseline,
        ranking: ranking.clone(),
        chosen,
        result,
        meets,
        measured,
    };
    if nothing_to_meet || baseline.meets(thresholds) {
        return Ok(done(Vec::new(), baseline, baseline.meets(thresholds), measured));
    }

    // Greedy: add in rank order until the thresholds are met. A layer that gains nothing alone
    // is not tried: raising it would cost precision for no measured benefit.
    let mut chosen: Vec<String> = Vec::new();
    let mut result = baseline;
    phase(Phase::Add, ranking.iter().filter(|g| g.gain_db > 0.0).count());
    for gain in ranking.iter().filter(|g| g.gain_db > 0.0) {
        chosen.push(gain.layer.clone());
        result = measure(&chosen)?;
        measured += 1;
        if result.meets(thresholds) {
            break;
        }
    }
    if !result.meets(thresholds) || chosen.is_empty() {
        let meets = result.meets(thresholds);
        return Ok(done(chosen, result, meets, measured));
    }
    // Prune: least useful first, drop every layer the thresholds do not need.
    phase(Phase::Prune, if chosen.len() > 1 { chosen.len() } else { 0 });
    for index in (0..chosen.len()).rev() {
        if chosen.len() == 1 {
            break;
        }
        let mut without = chosen.clone();
        without.remove(index);
        let m = measure(&without)?;
        measured += 1;
        if m.meets(thresholds) {
            chosen = without;
            result = m;
        }
    }
    Ok(done(chosen, result, true, measured))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn m(sqnr_db: f64) -> Measurement {
        Measurement { sqnr_db, cosine: 1.0, top1_agreement: 1.0, accuracy_drop: None }
    }

    fn candidates(names: &[&str]) -> Vec<(String, String)> {
        names.iter().map(|n| (n.to_string(), "Conv".to_string())).collect()
    }

    /// A model whose output SQNR is 30 dB plus a fixed gain per raised layer:
    /// a +1, b +4, c +3, d +0.5 (additive, as independent noise sources roughly are).
    fn additive(set: &[String]) -> Result<Measurement, ()> {
        let gain = |l: &str| match l {
            "a" => 1.0,
            "b" => 4.0,
            "c" => 3.0,
            "d" => 0.5,
            _ => 0.0,
        };
        Ok(m(30.0 + set.iter().map(|l| gain(l)).sum::<f64>()))
    }

    #[test]
    fn ranks_then_picks_the_fewest_layers_that_meet_the_threshold() {
        let t = Thresholds { min_sqnr_db: Some(36.5), ..Default::default() };
        let mut calls = Vec::new();
        let mut measure = |set: &[String]| {
            calls.push(set.iter().cloned().collect::<BTreeSet<_>>());
            additive(set)
        };
        let r = search(Precision::Int16, &candidates(&["a", "b", "c", "d"]), m(30.0), &t, &mut measure, &mut |_, _| {})
            .unwrap();
        let order: Vec<&str> = r.ranking.iter().map(|g| g.layer.as_str()).collect();
        assert_eq!(order, ["b", "c", "a", "d"]);
        assert_eq!(r.ranking[0].gain_db, 4.0);
        // Greedy: {b} 34, {b, c} 37 >= 36.5 -> stop; pruning: {b} 34 no, {c} 33 no.
        assert_eq!(r.chosen, ["b", "c"]);
        assert_eq!(r.result.sqnr_db, 37.0);
        assert!(r.meets);
        assert_eq!(r.measured, 4 + 2 + 2);
        assert_eq!(calls.len(), r.measured);
    }

    #[test]
    fn pruning_removes_layers_the_greedy_order_added_needlessly() {
        // Overlapping noise sources: alone a +5, b +4, c +3; a and b overlap by 3.5 dB, a and
        // c by 2 dB. Threshold 36 dB. Greedy: {a} 35, {a, b} 35.5, {a, b, c} 36.5 -> met.
        // Prune from the least useful: without c 35.5 (keep c), without b 36 (drop b) -> {a, c}.
        let t = Thresholds { min_sqnr_db: Some(36.0), ..Default::default() };
        let mut measure = |set: &[String]| -> Result<Measurement, ()> {
            let has = |l: &str| set.iter().any(|s| s == l);
            let (a, b, c) = (has("a"), has("b"), has("c"));
            let mut db = 30.0;
            db += if a { 5.0 } else { 0.0 } + if b { 4.0 } else { 0.0 } + if c { 3.0 } else { 0.0 };
            db -= if a && b { 3.5 } else { 0.0 } + if a && c { 2.0 } else { 0.0 };
            Ok(m(db))
        };
        let r = search(Precision::Float16, &candidates(&["c", "b", "a"]), m(30.0), &t, &mut measure, &mut |_, _| {})
            .unwrap();
        assert_eq!(r.chosen, ["a", "c"]);
        assert_eq!(r.result.sqnr_db, 36.0);
        assert!(r.meets);
        assert_eq!(r.precision.name(), "float16");
    }

    #[test]
    fn unreachable_thresholds_report_every_layer_and_not_met() {
        let t = Thresholds { min_sqnr_db: Some(60.0), ..Default::default() };
        let r = search(Precision::Int16, &candidates(&["a", "b"]), m(30.0), &t, &mut additive, &mut |_, _| {}).unwrap();
        assert!(!r.meets);
        assert_eq!(r.chosen, ["b", "a"]);
        assert_eq!(r.result.sqnr_db, 35.0);
    }

    #[test]
    fn layers_that_gain_nothing_are_never_suggested() {
        // "p" gains nothing (a MaxPool on an already-quantized grid, say); the threshold is
        // out of reach: the suggestion is the useful layers only.
        let t = Thresholds { min_sqnr_db: Some(60.0), ..Default::default() };
        let r = search(Precision::Int16, &candidates(&["p", "a", "b"]), m(30.0), &t, &mut additive, &mut |_, _| {})
            .unwrap();
        assert!(!r.meets);
        assert_eq!(r.chosen, ["b", "a"]);
        let nothing =
            search(Precision::Int16, &candidates(&["p"]), m(30.0), &t, &mut additive, &mut |_, _| {}).unwrap();
        assert!(!nothing.meets && nothing.chosen.is_empty());
    }

    #[test]
    fn a_passing_baseline_or_no_threshold_suggests_nothing() {
        let t = Thresholds { min_sqnr_db: Some(25.0), ..Default::default() };
        let r = search(Precision::Int16, &candidates(&["a"]), m(30.0), &t, &mut additive, &mut |_, _| {}).unwrap();
        assert!(r.meets && r.chosen.is_empty());
        assert_eq!(r.ranking.len(), 1, "the ranking is still computed");
        let r = search(
            Precision::Int16,
            &candidates(&["a"]),
            m(30.0),
            &Thresholds::default(),
            &mut additive,
            &mut |_, _| {},
        )
        .unwrap();
        assert!(r.chosen.is_empty());
    }

    #[test]
    fn every_threshold_kind_is_checked() {
        let base = Measurement { sqnr_db: 40.0, cosine: 0.999, top1_agreement: 0.97, accuracy_drop: Some(0.02) };
        assert!(base.meets(&Thresholds { min_sqnr_db: Some(40.0), ..Default::default() }));
        assert!(!base.meets(&Thresholds { min_cosine: Some(0.9995), ..Default::default() }));
        assert!(!base.meets(&Thresholds { min_top1_agreement: Some(0.98), ..Default::default() }));
        assert!(!base.meets(&Thresholds { max_accuracy_drop: Some(0.01), ..Default::default() }));
        assert!(base.meets(&Thresholds { max_accuracy_drop: Some(0.02), ..Default::default() }));
        let nan = Measurement { sqnr_db: f64::NAN, ..base };
        assert!(!nan.meets(&Thresholds { min_sqnr_db: Some(1.0), ..Default::default() }));
        let unlabeled = Measurement { accuracy_drop: None, ..base };
        assert!(!unlabeled.meets(&Thresholds { max_accuracy_drop: Some(0.5), ..Default::default() }));
    }

    #[test]
    fn measurement_errors_stop_the_search() {
        let t = Thresholds { min_sqnr_db: Some(50.0), ..Default::default() };
        let mut failing = |_: &[String]| -> Result<Measurement, &'static str> { Err("no") };
        assert_eq!(search(Precision::Int16, &candidates(&["a"]), m(30.0), &t, &mut failing, &mut |_, _| {}), Err("no"));
    }

    /// Each phase announces the most measurements it takes: a progress bar built from the
    /// announcements never runs past its total.
    #[test]
    fn no_phase_measures_more_than_it_announced() {
        for (threshold, names) in [(36.5, vec!["a", "b", "c", "d"]), (99.0, vec!["a", "b"]), (30.5, vec!["d", "b"])] {
            let t = Thresholds { min_sqnr_db: Some(threshold), ..Default::default() };
            let counts = std::cell::RefCell::new(Vec::<(Phase, usize, usize)>::new());
            let mut measure = |set: &[String]| {
                if let Some(last) = counts.borrow_mut().last_mut() {
                    last.2 += 1;
                }
                additive(set)
            };
            let mut phase = |p: Phase, most: usize| counts.borrow_mut().push((p, most, 0));
            search(Precision::Int16, &candidates(&names), m(30.0), &t, &mut measure, &mut phase).unwrap();
            let counts = counts.into_inner();
            assert_eq!(counts[0].0, Phase::Rank);
            for (p, most, took) in &counts {
                assert!(took <= most, "{threshold}: {p:?} announced {most}, took {took}: {counts:?}");
            }
        }
    }
}
