//! Pre-binning of tensor values for the report's histograms, so the report data stays small
//! however large the tensors are.

/// Bins the finite `values` into `bins` equal-width bins (at least one).
///
/// The range is `[min, max]` of the finite values, widened to include `include` (the encoding
/// range) when it is finite, so the encoding lines fall inside the plot. NaN and ±inf values are
/// skipped. Bins are half-open `[edge_i, edge_i+1)` except the last, which is closed, as in
/// `numpy.histogram`. A zero-width range `[v, v]` is widened to `[v - 0.5, v + 0.5]`.
///
/// Returns `(edges, counts)` with `edges.len() == counts.len() + 1`, or two empty vectors when
/// there is no finite value and no finite `include` range.
pub fn histogram(values: &[f32], bins: usize, include: Option<(f64, f64)>) -> (Vec<f64>, Vec<u64>) {
    let bins = bins.max(1);
    let finite = || values.iter().map(|&v| f64::from(v)).filter(|v| v.is_finite());
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in finite() {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let Some(edges) = edges(lo, hi, bins, include) else { return (Vec::new(), Vec::new()) };
    let mut counts = vec![0u64; bins];
    // The bin a value settles in does not depend on the guess it starts from ([`settle`]): the
    // guess only has to be close, so it takes a product rather than a division and truncates
    // rather than calling `floor`.
    let (lo, hi) = (edges[0], edges[bins]);
    let per_unit = bins as f64 / (hi - lo);
    for v in finite() {
        let guess = (v - lo) * per_unit;
        let guess = if guess.is_finite() && guess >= 1.0 { (guess as usize).min(bins - 1) } else { 0 };
        if let Some(c) = counts.get_mut(settle(&edges, v, guess)) {
            *c += 1;
        }
    }
    (edges, counts)
}

/// [`histogram`] of finite values given in ascending order (as a profile sorts them): each
/// bin's count is the distance between the first values at or above its two edges, found by
/// binary search, so no value is visited.
pub fn histogram_of_sorted(sorted: &[f32], bins: usize, include: Option<(f64, f64)>) -> (Vec<f64>, Vec<u64>) {
    let bins = bins.max(1);
    let (lo, hi) = match (sorted.first(), sorted.last()) {
        (Some(&first), Some(&last)) => (f64::from(first), f64::from(last)),
        _ => (f64::INFINITY, f64::NEG_INFINITY),
    };
    let Some(edges) = edges(lo, hi, bins, include) else { return (Vec::new(), Vec::new()) };
    let first_at_or_above = |edge: f64| sorted.partition_point(|&v| f64::from(v) < edge);
    let mut starts: Vec<usize> = edges[..bins].iter().map(|&e| first_at_or_above(e)).collect();
    // The last bin is closed: it ends after the last value.
    starts.push(sorted.len());
    let counts = starts.windows(2).map(|w| (w[1] - w[0]) as u64).collect();
    (edges, counts)
}

/// The `bins + 1` edges over `[lo, hi]` (the finite values' range) widened to `include`; `None`
/// when neither gives a finite range.
fn edges(mut lo: f64, mut hi: f64, bins: usize, include: Option<(f64, f64)>) -> Option<Vec<f64>> {
    if let Some((a, b)) = include
        && a.is_finite()
        && b.is_finite()
    {
        lo = lo.min(a.min(b));
        hi = hi.max(a.max(b));
    }
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    if hi <= lo {
        lo -= 0.5;
        hi += 0.5;
    }
    let width = hi - lo;
    // Edges computed from the index (not by accumulation) so the last one is exactly `hi`.
    Some((0..=bins).map(|i| if i == bins { hi } else { lo + width * (i as f64) / (bins as f64) }).collect())
}

/// The bin of `v` among `edges` (ascending, at least two), from bin `guess`: the one `idx`
/// with `edges[idx] <= v < edges[idx + 1]`, the last bin closed, whatever the guess (a guess
/// computed in floating point can round across an edge).
fn settle(edges: &[f64], v: f64, guess: usize) -> usize {
    let bins = edges.len().saturating_sub(1).max(1);
    let mut idx = guess.min(bins - 1);
    while idx + 1 < bins && edges.get(idx + 1).is_some_and(|&e| v >= e) {
        idx += 1;
    }
    while idx > 0 && edges.get(idx).is_some_and(|&e| v < e) {
        idx -= 1;
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_semantics_on_integers() {
        // numpy.histogram([0, 1, 2, 3, 4], bins=4) -> counts [1, 1, 1, 2], edges [0, 1, 2, 3, 4]:
        // the last bin is closed, so 3 and 4 share it.
        let (edges, counts) = histogram(&[0.0, 1.0, 2.0, 3.0, 4.0], 4, None);
        assert_eq!(edges, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(counts, vec![1, 1, 1, 2]);
    }

    #[test]
    fn every_value_lands_in_the_bin_its_edges_give() {
        // Values on and next to the edges of awkward ranges: each counted in the one bin with
        // edges[i] <= v < edges[i + 1] (the last bin closed), found here by a search.
        for (lo, hi, bins) in [(-1.3f32, 2.9f32, 7usize), (0.1, 0.1000001, 3), (-1e30, 3e30, 255), (5.0, 1029.0, 1024)]
        {
            let mut values = Vec::new();
            for i in 0..=bins * 8 {
                let v = lo + (hi - lo) * i as f32 / (bins * 8) as f32;
                values.extend([
                    v,
                    f32::from_bits(v.to_bits().wrapping_add(1)),
                    f32::from_bits(v.to_bits().wrapping_sub(1)),
                ]);
            }
            values.retain(|v| (lo..=hi).contains(v));
            let (edges, counts) = histogram(&values, bins, None);
            let mut expected = vec![0u64; bins];
            for &v in &values {
                let v = f64::from(v);
                expected[edges.partition_point(|&e| e <= v).saturating_sub(1).min(bins - 1)] += 1;
            }
            assert_eq!(counts, expected, "[{lo}, {hi}] in {bins} bins");
        }
        // Whatever bin the guess names, a value settles in its own.
        let edges = [0.0, 1.0, 2.0, 3.0, 4.0];
        for (v, bin) in [(0.0, 0), (0.5, 0), (1.0, 1), (2.999, 2), (3.0, 3), (4.0, 3)] {
            for guess in 0..6 {
                assert_eq!(settle(&edges, v, guess), bin, "{v} from {guess}");
            }
        }
    }

    #[test]
    fn sorted_values_give_the_histogram_of_the_values() {
        let mut next = crate::runtime::kernels::test_values::xorshift(0x2545_f491u32);
        let awkward = [(-1.3f32, 2.9f32), (0.1, 0.1000001), (-1e30, 3e30), (0.0, 6.0), (3.0, 3.0)];
        for (round, &(lo, hi)) in awkward.iter().cycle().take(25).enumerate() {
            let len = (next() % 5000) as usize;
            let mut values: Vec<f32> = (0..len)
                .map(|_| match next() % 5 {
                    // Runs of the ends (a ReLU6's zeros and sixes) and values on grid points.
                    0 => lo,
                    1 => hi,
                    2 => lo + (hi - lo) * (next() % 64) as f32 / 64.0,
                    _ => lo + (hi - lo) * (next() % 1_000_000) as f32 / 1_000_000.0,
                })
                .collect();
            if round % 7 == 3 {
                values.extend([-0.0, 0.0]);
            }
            values.sort_by(f32::total_cmp);
            for (bins, include) in [(100, None), (7, Some((-4.0, 4.0))), (1, None), (255, Some((2.0, 2.0)))] {
                assert_eq!(
                    histogram_of_sorted(&values, bins, include),
                    histogram(&values, bins, include),
                    "round {round}, {bins} bins, {include:?}"
                );
            }
        }
        assert_eq!(histogram_of_sorted(&[], 4, None), (Vec::new(), Vec::new()));
    }

    #[test]
    fn widens_to_the_encoding_range() {
        // Range [-4, 4] from the encoding, 4 bins of width 2: edges -4, -2, 0, 2, 4.
        // 0 and 1 fall in [0, 2), 2 and 3 in [2, 4].
        let (edges, counts) = histogram(&[0.0, 1.0, 2.0, 3.0], 4, Some((-4.0, 4.0)));
        assert_eq!(edges, vec![-4.0, -2.0, 0.0, 2.0, 4.0]);
        assert_eq!(counts, vec![0, 0, 2, 2]);
    }

    #[test]
    fn skips_non_finite_values() {
        // Finite values 0.5 and 1.5 over 2 bins: edges 0.5, 1.0, 1.5 -> one in each bin.
        let v = [f32::NAN, 0.5, f32::INFINITY, 1.5, f32::NEG_INFINITY];
        let (edges, counts) = histogram(&v, 2, None);
        assert_eq!(edges, vec![0.5, 1.0, 1.5]);
        assert_eq!(counts, vec![1, 1]);
        assert_eq!(counts.iter().sum::<u64>(), 2);
    }

    #[test]
    fn constant_tensor_gets_a_unit_wide_range() {
        let (edges, counts) = histogram(&[2.0, 2.0, 2.0], 2, None);
        assert_eq!(edges, vec![1.5, 2.0, 2.5]);
        // 2.0 is on the middle edge: half-open bins put it in the second.
        assert_eq!(counts, vec![0, 3]);
    }

    #[test]
    fn edge_values_are_binned_against_the_stored_edges() {
        // Range [0, 1] in 10 bins: 0.3 as f32 is 0.30000001192..., just above edge 0.3 (= 3/10
        // in f64, 0.29999999999999998...), so it belongs to bin 3 ([0.3, 0.4)); 0.7f32 is
        // 0.69999998807..., just below edge 0.7, so bin 6.
        let (_, counts) = histogram(&[0.0, 0.3, 0.7, 1.0], 10, None);
        assert_eq!(counts, vec![1, 0, 0, 1, 0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        assert_eq!(histogram(&[], 8, None), (vec![], vec![]));
        assert_eq!(histogram(&[f32::NAN], 8, None), (vec![], vec![]));
        assert_eq!(histogram(&[f32::NAN], 8, Some((f64::NAN, 1.0))), (vec![], vec![]));
        // Zero bins is treated as one.
        assert_eq!(histogram(&[1.0, 3.0], 0, None), (vec![1.0, 3.0], vec![2]));
        // Only the encoding range: all counts zero.
        assert_eq!(histogram(&[], 2, Some((-1.0, 1.0))), (vec![-1.0, 0.0, 1.0], vec![0, 0]));
    }
}
