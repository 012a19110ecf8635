//! Top-1 agreement between the reference and the actual run, and top-1 accuracy against
//! labels, counted per sample.
//!
//! A sample's prediction is the argmax over the whole (flattened) output tensor: one sample
//! is one line of the input list, i.e. batch 1. Ties go to the lowest index and a NaN wins
//! (numpy's `argmax` rules).
//! - `agreement = #(argmax(reference) == argmax(actual)) / samples`
//! - `accuracy = #(argmax == label) / labeled samples`, for each side.

use serde::{Deserialize, Serialize};

/// Counts for one output tensor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Top1 {
    samples: usize,
    agreements: usize,
    labeled: usize,
    reference_correct: usize,
    actual_correct: usize,
}

/// The index of the largest value: first maximum; the first NaN if any (as numpy does);
/// `None` for an empty slice.
pub fn argmax(values: &[f32]) -> Option<usize> {
    if let Some(nan) = values.iter().position(|v| v.is_nan()) {
        return Some(nan);
    }
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

impl Top1 {
    pub fn new() -> Self {
        Top1::default()
    }

    /// Adds one sample: the reference and actual values of the output, and the sample's
    /// class label when labels are known.
    pub fn add(&mut self, reference: &[f32], actual: &[f32], label: Option<usize>) {
        let (r, a) = (argmax(reference), argmax(actual));
        self.samples += 1;
        if r == a {
            self.agreements += 1;
        }
        if let Some(label) = label {
            self.labeled += 1;
            if r == Some(label) {
                self.reference_correct += 1;
            }
            if a == Some(label) {
                self.actual_correct += 1;
            }
        }
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Fraction of samples whose reference and actual argmax agree; `None` before any sample.
    pub fn agreement(&self) -> Option<f64> {
        ratio(self.agreements, self.samples)
    }

    /// Top-1 accuracy of the reference against the labels; `None` without labeled samples.
    pub fn reference_accuracy(&self) -> Option<f64> {
        ratio(self.reference_correct, self.labeled)
    }

    /// Top-1 accuracy of the actual run against the labels; `None` without labeled samples.
    pub fn actual_accuracy(&self) -> Option<f64> {
        ratio(self.actual_correct, self.labeled)
    }
}

fn ratio(count: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| count as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_follows_numpy() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), Some(1));
        assert_eq!(argmax(&[3.0, 1.0, 3.0]), Some(0), "ties go to the first");
        assert_eq!(argmax(&[1.0, f32::NAN, 5.0]), Some(1), "NaN wins");
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), Some(0));
        assert_eq!(argmax(&[]), None);
    }

    /// Four samples; reference argmax = [0, 1, 2, 1], actual argmax = [0, 1, 1, 1],
    /// labels = [0, 2, 2, 1]. Agreement 3/4; reference correct 3/4 (samples 0, 2, 3);
    /// actual correct 2/4 (samples 0, 3).
    #[test]
    fn agreement_and_accuracy_by_hand() {
        let mut t = Top1::new();
        let one_hot = |i: usize| {
            let mut v = [0.0f32; 3];
            v[i] = 1.0;
            v
        };
        for (r, a, label) in [(0, 0, 0), (1, 1, 2), (2, 1, 2), (1, 1, 1)] {
            t.add(&one_hot(r), &one_hot(a), Some(label));
        }
        assert_eq!(t.samples(), 4);
        assert_eq!(t.agreement(), Some(0.75));
        assert_eq!(t.reference_accuracy(), Some(0.75));
        assert_eq!(t.actual_accuracy(), Some(0.5));
    }

    #[test]
    fn without_labels_there_is_no_accuracy() {
        let mut t = Top1::new();
        t.add(&[1.0, 0.0], &[0.0, 1.0], None);
        assert_eq!(t.agreement(), Some(0.0));
        assert_eq!(t.reference_accuracy(), None);
        assert_eq!(Top1::new().agreement(), None);
    }
}
