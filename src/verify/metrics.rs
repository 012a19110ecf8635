//! Per-tensor comparison metrics, accumulated over many samples.
//!
//! With `r` the reference (golden) values and `a` the actual (target) values of one tensor,
//! concatenated over every sample added, and `e = a - r`, all sums in f64:
//! - `sqnr_db = 10 * log10(sum r^2 / sum e^2)`: sums over all samples, not an average of
//!   per-sample ratios. The signal is the *reference* (as the SDK's quantization checker and
//!   AIMET do; the accuracy debugger's SQNR verifier uses the target instead).
//!   `sum e^2 = 0` (identical tensors, including both all-zero) gives `+inf`;
//!   `sum r^2 = 0` with some error gives `-inf`.
//! - `cosine = sum r*a / sqrt(sum r^2 * sum a^2)`, clamped to `[-1, 1]` against rounding;
//!   exactly `1` when there is no error (both all-zero included); `0` when exactly one side
//!   is all-zero.
//! - `mse = sum e^2 / n`, `max_abs_error = max |e|` (both `0` when `n = 0`).
//!
//! Non-finite values are not filtered out: a NaN anywhere makes the sums NaN (so every
//! threshold fails), and `non_finite` counts the element pairs with a NaN or an infinity.
//! In JSON non-finite metrics are the strings `"inf"`, `"-inf"` and `"nan"`
//! ([`super::json_float`]); an `sqnr_db` of `"inf"` means the two sides are identical.

use serde::{Deserialize, Serialize};

use super::pair_pass::{FinitePairSums, finite_pair_sums};

/// One tensor's comparison, over every sample seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorMetrics {
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub sqnr_db: f64,
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub cosine: f64,
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub mse: f64,
    #[serde(serialize_with = "crate::verify::json_float::f64")]
    pub max_abs_error: f64,
    /// Element pairs compared (over all samples).
    pub elements: usize,
    /// Element pairs where the reference or the actual value is NaN or infinite.
    pub non_finite: usize,
}

/// Running sums for [`TensorMetrics`]; also tracks each side's min and max.
///
/// Two accumulators over disjoint samples can be [merged](MetricAccumulator::merge), so the
/// metrics of a set of samples can be built from per-sample pieces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAccumulator {
    elements: usize,
    non_finite: usize,
    sum_ref_sq: f64,
    sum_act_sq: f64,
    sum_dot: f64,
    sum_err_sq: f64,
    max_abs_error: f64,
    saw_nan_error: bool,
    /// Set when `add` was given slices of different lengths (a caller bug): every metric
    /// then reads NaN rather than a plausible value.
    length_mismatch: bool,
    reference_min: f32,
    reference_max: f32,
    actual_min: f32,
    actual_max: f32,
}

impl Default for MetricAccumulator {
    fn default() -> Self {
        MetricAccumulator::new()
    }
}

impl MetricAccumulator {
    pub fn new() -> Self {
        MetricAccumulator {
            elements: 0,
            non_finite: 0,
            sum_ref_sq: 0.0,
            sum_act_sq: 0.0,
            sum_dot: 0.0,
            sum_err_sq: 0.0,
            max_abs_error: 0.0,
            saw_nan_error: false,
            length_mismatch: false,
            reference_min: f32::INFINITY,
            reference_max: f32::NEG_INFINITY,
            actual_min: f32::INFINITY,
            actual_max: f32::NEG_INFINITY,
        }
    }

    /// Adds one sample of the tensor. The slices must have equal lengths; if they do not,
    /// the common prefix is compared and the final metrics are NaN.
    pub fn add(&mut self, reference: &[f32], actual: &[f32]) {
        match finite_pair_sums(reference, actual) {
            Some(sums) => self.add_finite(&sums),
            None => self.add_each(reference, actual, |_, _| {}),
        }
    }

    /// Adds one sample of the tensor from the sums of its vectorized pass (every value finite).
    pub fn add_finite(&mut self, sums: &FinitePairSums) {
        self.elements += sums.elements;
        self.sum_ref_sq += sums.golden_sq;
        self.sum_act_sq += sums.inference_sq;
        self.sum_dot += sums.dot;
        self.sum_err_sq += sums.error_sq;
        self.max_abs_error = self.max_abs_error.max(sums.max_abs_error);
        self.reference_min = self.reference_min.min(sums.golden_min);
        self.reference_max = self.reference_max.max(sums.golden_max);
        self.actual_min = self.actual_min.min(sums.inference_min);
        self.actual_max = self.actual_max.max(sums.inference_max);
    }

    /// The element-by-element [`add`](Self::add) (what a tensor with a non-finite value
    /// takes), handing every element pair to `each` in the same pass (so another accumulator
    /// reads the tensors once with this one).
    #[inline]
    pub fn add_each(&mut self, reference: &[f32], actual: &[f32], mut each: impl FnMut(f32, f32)) {
        if reference.len() != actual.len() {
            self.length_mismatch = true;
        }
        for (&r, &a) in reference.iter().zip(actual) {
            each(r, a);
            if !r.is_finite() || !a.is_finite() {
                self.non_finite += 1;
            }
            let (r64, a64) = (f64::from(r), f64::from(a));
            let error = a64 - r64;
            self.sum_ref_sq += r64 * r64;
            self.sum_act_sq += a64 * a64;
            self.sum_dot += r64 * a64;
            self.sum_err_sq += error * error;
            let abs = error.abs();
            if abs.is_nan() {
                self.saw_nan_error = true;
            } else if abs > self.max_abs_error {
                self.max_abs_error = abs;
            }
            // f32::min/max skip NaN, which is what a range should do.
            self.reference_min = self.reference_min.min(r);
            self.reference_max = self.reference_max.max(r);
            self.actual_min = self.actual_min.min(a);
            self.actual_max = self.actual_max.max(a);
        }
        self.elements += reference.len().min(actual.len());
    }

    /// Folds another accumulator (over other samples) into this one.
    pub fn merge(&mut self, other: &MetricAccumulator) {
        self.elements += other.elements;
        self.non_finite += other.non_finite;
        self.sum_ref_sq += other.sum_ref_sq;
        self.sum_act_sq += other.sum_act_sq;
        self.sum_dot += other.sum_dot;
        self.sum_err_sq += other.sum_err_sq;
        self.max_abs_error = self.max_abs_error.max(other.max_abs_error);
        self.saw_nan_error |= other.saw_nan_error;
        self.length_mismatch |= other.length_mismatch;
        self.reference_min = self.reference_min.min(other.reference_min);
        self.reference_max = self.reference_max.max(other.reference_max);
        self.actual_min = self.actual_min.min(other.actual_min);
        self.actual_max = self.actual_max.max(other.actual_max);
    }

    pub fn elements(&self) -> usize {
        self.elements
    }

    /// `(min, max)` of the reference values (NaN skipped); `(+inf, -inf)` when empty.
    pub fn reference_range(&self) -> (f32, f32) {
        (self.reference_min, self.reference_max)
    }

    /// `(min, max)` of the actual values (NaN skipped); `(+inf, -inf)` when empty.
    pub fn actual_range(&self) -> (f32, f32) {
        (self.actual_min, self.actual_max)
    }

    /// The metrics over everything added so far (formulas in the module docs).
    pub fn finish(&self) -> TensorMetrics {
        let n = self.elements;
        if self.length_mismatch {
            return TensorMetrics {
                sqnr_db: f64::NAN,
                cosine: f64::NAN,
                mse: f64::NAN,
                max_abs_error: f64::NAN,
                elements: n,
                non_finite: self.non_finite,
            };
        }
        let sqnr_db = if self.sum_err_sq == 0.0 {
            f64::INFINITY
        } else if self.sum_ref_sq == 0.0 {
            f64::NEG_INFINITY
        } else {
            10.0 * (self.sum_ref_sq / self.sum_err_sq).log10()
        };
        // One square root of the product rounds better than a product of two roots; the
        // product cannot overflow f64 for f32 data (each sum is below 2^256 * n).
        let cosine = match (self.sum_ref_sq == 0.0, self.sum_act_sq == 0.0) {
            _ if self.sum_err_sq == 0.0 => 1.0,
            (true, true) => 1.0,
            (true, false) | (false, true) => 0.0,
            (false, false) => (self.sum_dot / (self.sum_ref_sq * self.sum_act_sq).sqrt()).clamp(-1.0, 1.0),
        };
        let mse = if n == 0 { 0.0 } else { self.sum_err_sq / n as f64 };
        let max_abs_error = if self.saw_nan_error { f64::NAN } else { self.max_abs_error };
        TensorMetrics { sqnr_db, cosine, mse, max_abs_error, elements: n, non_finite: self.non_finite }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(reference: &[f32], actual: &[f32]) -> TensorMetrics {
        let mut acc = MetricAccumulator::new();
        acc.add(reference, actual);
        acc.finish()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    /// r = [1, 2, 3, 4], a = [1, 2, 3, 5]: e = [0, 0, 0, 1].
    /// sum r^2 = 30, sum e^2 = 1 -> SQNR = 10 log10(30) = 14.771212547196624 dB.
    /// r.a = 1 + 4 + 9 + 20 = 34, |a|^2 = 39 -> cosine = 34 / sqrt(30 * 39) = 34 / 34.2052... = 0.99399909...
    /// mse = 1/4, max |e| = 1.
    /// numpy cross-check ($QAIRT_VENV/bin/python, numpy 2.4.6):
    ///   r=np.array([1,2,3,4.]); a=np.array([1,2,3,5.])
    ///   10*np.log10((r**2).sum()/((a-r)**2).sum())  -> 14.771212547196624
    ///   r@a/np.linalg.norm(r)/np.linalg.norm(a)      -> 0.9939990885479665
    #[test]
    fn small_vector_by_hand() {
        let m = metrics(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 5.0]);
        assert!(close(m.sqnr_db, 14.771212547196624), "{}", m.sqnr_db);
        assert!(close(m.cosine, 0.9939990885479665), "{}", m.cosine);
        assert!(close(m.mse, 0.25));
        assert!(close(m.max_abs_error, 1.0));
        assert_eq!((m.elements, m.non_finite), (4, 0));
    }

    /// Sums, not averages of per-sample ratios. Sample 1: r = [1, 0], a = [1, 1] (sum r^2 = 1,
    /// sum e^2 = 1); sample 2: r = [3, 0], a = [3, 0] (sum r^2 = 9, no error).
    /// Pooled: 10 log10(10 / 1) = 10 dB exactly (per-sample SQNRs would be 0 dB and +inf).
    /// Cosine over the concatenation r = [1, 0, 3, 0], a = [1, 1, 3, 0]: 10 / sqrt(10 * 11).
    #[test]
    fn samples_are_pooled() {
        let mut acc = MetricAccumulator::new();
        acc.add(&[1.0, 0.0], &[1.0, 1.0]);
        acc.add(&[3.0, 0.0], &[3.0, 0.0]);
        let m = acc.finish();
        assert!(close(m.sqnr_db, 10.0), "{}", m.sqnr_db);
        assert!(close(m.cosine, 10.0 / 110f64.sqrt()));
        assert!(close(m.mse, 0.25));
        assert_eq!(m.elements, 4);
        assert_eq!(acc.reference_range(), (0.0, 3.0));
        assert_eq!(acc.actual_range(), (0.0, 3.0));
    }

    #[test]
    fn merge_equals_adding_everything_to_one() {
        let mut one = MetricAccumulator::new();
        one.add(&[1.0, -2.0], &[1.5, -2.0]);
        one.add(&[0.5, 4.0], &[0.0, 4.0]);
        let mut first = MetricAccumulator::new();
        first.add(&[1.0, -2.0], &[1.5, -2.0]);
        let mut second = MetricAccumulator::new();
        second.add(&[0.5, 4.0], &[0.0, 4.0]);
        first.merge(&second);
        assert_eq!(first.finish(), one.finish());
        assert_eq!(first.reference_range(), (-2.0, 4.0));
    }

    #[test]
    fn identical_tensors_have_infinite_sqnr_and_unit_cosine() {
        let m = metrics(&[0.5, -1.0], &[0.5, -1.0]);
        assert_eq!(m.sqnr_db, f64::INFINITY);
        assert_eq!(m.cosine, 1.0);
        assert_eq!((m.mse, m.max_abs_error), (0.0, 0.0));
    }

    #[test]
    fn all_zero_reference_gives_no_nan() {
        let both_zero = metrics(&[0.0, 0.0], &[0.0, 0.0]);
        assert_eq!((both_zero.sqnr_db, both_zero.cosine), (f64::INFINITY, 1.0));
        let zero_reference = metrics(&[0.0, 0.0], &[0.0, 2.0]);
        assert_eq!((zero_reference.sqnr_db, zero_reference.cosine), (f64::NEG_INFINITY, 0.0));
        // mse = (0 + 4) / 2 = 2.
        assert_eq!((zero_reference.mse, zero_reference.max_abs_error), (2.0, 2.0));
        let zero_actual = metrics(&[1.0, 0.0], &[0.0, 0.0]);
        assert_eq!(zero_actual.cosine, 0.0);
        // 10 log10(1 / 1) = 0 dB: the error is as large as the signal.
        assert_eq!(zero_actual.sqnr_db, 0.0);
    }

    #[test]
    fn opposite_vectors_have_cosine_minus_one() {
        let m = metrics(&[1.0, -2.0], &[-1.0, 2.0]);
        assert!(close(m.cosine, -1.0));
        // e = [-2, 4]: sum e^2 = 20, sum r^2 = 5 -> 10 log10(1/4) = -6.020599913279624 dB.
        assert!(close(m.sqnr_db, -6.020599913279624));
    }

    #[test]
    fn empty_accumulator_is_finite_where_it_can_be() {
        let m = MetricAccumulator::new().finish();
        assert_eq!((m.elements, m.mse, m.max_abs_error, m.cosine), (0, 0.0, 0.0, 1.0));
    }

    #[test]
    fn nan_poisons_the_metrics_and_is_counted() {
        let m = metrics(&[1.0, 2.0, 3.0], &[1.0, f32::NAN, f32::INFINITY]);
        assert_eq!(m.non_finite, 2);
        assert!(m.sqnr_db.is_nan() && m.cosine.is_nan() && m.mse.is_nan() && m.max_abs_error.is_nan());
    }

    #[test]
    fn length_mismatch_reads_nan() {
        let m = metrics(&[1.0, 2.0], &[1.0]);
        assert!(m.sqnr_db.is_nan() && m.mse.is_nan());
        assert_eq!(m.elements, 1);
    }

    #[test]
    fn non_finite_metrics_serialize_as_strings() {
        let m = metrics(&[1.0], &[1.0]);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["sqnr_db"], "inf");
        assert_eq!(json["cosine"], serde_json::json!(1.0));
    }
}
