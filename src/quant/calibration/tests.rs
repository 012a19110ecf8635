//! Tests of the range searches: hand-made histograms whose answer is forced (arithmetic in
//! the comments), and the numpy reference of `scripts/python/calibration_reference.py`.

use super::*;

fn binned(first_bin: i64, exponent: i32, counts: &[u64], min: f64, max: f64) -> Binned<'_> {
    Binned { first_bin, width: 2f64.powi(exponent), counts, min, max }
}

const ALL: [Search; 3] = [Search::Mse, Search::Sqnr, Search::Entropy];

fn search(method: Search, data: &Binned, bitwidth: u32, schema: Schema) -> (f32, f32) {
    match method {
        Search::Mse => mse_range(data, bitwidth, schema),
        Search::Sqnr => sqnr_range(data, bitwidth, schema),
        Search::Entropy => entropy_range(data, bitwidth, schema),
    }
}

/// Bulk: 16 bins of width 1/16 over [0, 1), 100000 values each (N = 1.6e6); one outlier at
/// max = 100. With min = 0, candidate k is the range [0, k] (scale k/255, no nudge), every bulk
/// value is inside, so the noise is `N k^2 / (12 * 255^2) + g (100 - k)^2`
/// (`N / (12 * 255^2) = 2.050493`):
/// - mse (g = 1): minimum at k = 100 / 3.050493 = 32.78; f(33) = 6722.0 < f(32) = 6723.7;
/// - sqnr (g = 3): 2 * 2.050493 k = 6 (100 - k) -> k = 59.40; f(59) = 12180.8 < f(60) = 12181.8.
///
/// Min-max would keep 100.
#[test]
fn mse_and_sqnr_clip_a_far_outlier_where_the_formula_says() {
    let mut counts = vec![100_000u64; 16];
    counts.resize(1601, 0);
    counts[1600] = 1;
    let data = binned(0, -4, &counts, 0.0, 100.0);
    let (lo, hi) = mse_range(&data, 8, Schema::Asymmetric);
    assert_eq!((lo, hi), (0.0, 33.0));
    let (lo, hi) = sqnr_range(&data, 8, Schema::Asymmetric);
    assert_eq!((lo, hi), (0.0, 59.0));
    // Symmetric: the same search on t = k, with scale t / 127 and grid [-128 s, 127 s]; the
    // bulk is still inside for k >= 1, noise N k^2 / (12 * 127^2) + g (100 - k)^2:
    // N / 193548 = 8.266683 -> mse k = 100 / 9.266683 = 10.79: f(11) = 1000.3 + 7921 = 8921.3
    // < f(10) = 826.7 + 8100 = 8926.7.
    assert_eq!(mse_range(&data, 8, Schema::Symmetric), (-11.0, 11.0));
}

/// Entropy with an alternating bulk (bins 0..256 of width 1/64 hold 1000, 3000, 1000, ...)
/// and one value in bin 2000, L = 255 levels. Bin 0 (the zeros) counts as bin 1: 3000, so
/// T = 514000 + 1. Candidates 257..=2000 have an empty bin `i - 1` but outliers to fold into
/// it: infinite KL. That leaves three:
/// - i = 2001 (full range): groups of ~7.8 bins average 1000 and 3000 to 2000, so KL is about
///   0.25 ln(0.5) + 0.75 ln(1.5) = 0.13;
/// - i = 255 (single-bin groups): only bin 254 differs, P = 4001/514001 vs Q = 1000/511000:
///   KL = 0.99222 ln(511000/514001) + 0.0077841 ln(3.9777) = 0.0049;
/// - i = 256: the one two-bin group is bins 0 and 1 (3000, 3000: no loss); only the outlier
///   folded into bin 255 differs, KL ~ 1e-5, the least.
///
/// So entropy keeps [0, 256/64 = 4], where min-max would keep the outlier at 31.26.
#[test]
fn entropy_clips_a_far_outlier_of_a_structured_bulk() {
    let mut counts: Vec<u64> = (0..256).map(|j| if j % 2 == 0 { 1000 } else { 3000 }).collect();
    counts.resize(2001, 0);
    counts[2000] = 1;
    let data = binned(0, -6, &counts, 0.0, 2000.5 / 64.0);
    assert_eq!(entropy_range(&data, 8, Schema::Asymmetric), (0.0, 4.0));
}

/// Nothing to gain from clipping a uniform distribution: for mse, clipping the top 1% of
/// [-1, 1) costs about (0.02)^3 / 3 per unit mass and saves less in rounding noise
/// ((2/255)^2 - (1.98/255)^2) / 12 = 1.0e-7; entropy's P and Q agree exactly on the full range
/// (KL = 0). All three keep min-max.
#[test]
fn a_uniform_histogram_keeps_its_full_range() {
    let counts = vec![50u64; 1024];
    let data = binned(-512, -9, &counts, -1.0, 1.0);
    for method in ALL {
        for schema in [Schema::Asymmetric, Schema::Symmetric] {
            assert_eq!(search(method, &data, 8, schema), (-1.0, 1.0), "{method:?} {schema:?}");
        }
    }
}

/// Global bins -2, -1, 0, 1 (width 1) cover [-2, -1), [-1, 0), [0, 1), [1, 2): magnitudes
/// (1, 2], (0, 1], [0, 1), [1, 2), so |x| bin 0 gets bins -1 and 0, bin 1 gets -2 and 1.
#[test]
fn folding_around_zero_is_exact() {
    let data = binned(-2, 0, &[1, 20, 300, 4000], -2.0, 2.0);
    assert_eq!(folded_abs(&data), vec![320, 4001]);
    let data = binned(-3, 0, &[7, 0, 0], -3.0, -2.5);
    assert_eq!(folded_abs(&data), vec![0, 0, 7]);
}

/// With no more bins than levels there is nothing to search: the full range.
#[test]
fn sixteen_bit_entropy_is_min_max() {
    let counts: Vec<u64> = (0..2000).map(|i| 1 + (i % 7)).collect();
    let data = binned(-1000, -5, &counts, -31.2, 31.2);
    assert_eq!(entropy_range(&data, 16, Schema::Asymmetric), (-31.2, 31.2));
    assert_eq!(entropy_range(&data, 16, Schema::Symmetric), (-31.2, 31.2));
}

#[test]
fn no_values_no_range_and_parameters_use_their_histogram() {
    assert_eq!(search_range(Search::Mse, &TensorStats::default(), 8, Schema::Asymmetric), None);
    let stats = TensorStats::of_values(&[-0.5, 0.25, 1.0, f32::NAN]);
    for method in ALL {
        let (lo, hi) = search_range(method, &stats, 8, Schema::Asymmetric).unwrap();
        // Four values, nothing worth clipping.
        assert_eq!((lo, hi), (-0.5, 1.0), "{method:?}");
    }
}

/// The ranges of the numpy implementation (`tests/data/calibration/reference.json`, made by
/// `scripts/python/calibration_reference.py`), within one candidate step: `|min| / 100` and
/// `|max| / 100` (symmetric: `max(|min|, |max|) / 100`) for mse and sqnr, one histogram bin for
/// entropy.
#[test]
fn ranges_match_the_numpy_reference() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/data/calibration/reference.json")).unwrap();
    let inputs = &doc["inputs"];
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 84);
    let mut mismatches = Vec::new();
    let mut clipped = 0;
    for case in cases {
        let input = &inputs[case["input"].as_str().unwrap()];
        let method = match case["method"].as_str().unwrap() {
            "mse" => Search::Mse,
            "sqnr" => Search::Sqnr,
            _ => Search::Entropy,
        };
        let schema = Schema::parse(case["schema"].as_str().unwrap()).unwrap();
        let bitwidth = case["bitwidth"].as_u64().unwrap() as u32;
        let expected = (case["range"][0].as_f64().unwrap(), case["range"][1].as_f64().unwrap());
        let stats;
        let counts: Vec<u64>;
        let data = if let Some(values) = input["values"].as_array() {
            let values: Vec<f32> = values.iter().map(|v| v.as_f64().unwrap() as f32).collect();
            stats = TensorStats::of_values(&values);
            Binned::of(&stats).unwrap()
        } else {
            counts = input["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
            Binned {
                first_bin: input["first_bin"].as_i64().unwrap(),
                width: 2f64.powi(input["exponent"].as_i64().unwrap() as i32),
                counts: &counts,
                min: input["min"].as_f64().unwrap(),
                max: input["max"].as_f64().unwrap(),
            }
        };
        let (lo, hi) = search(method, &data, bitwidth, schema);
        let magnitude = data.min.abs().max(data.max.abs());
        let (tol_lo, tol_hi) = match (method, schema) {
            (Search::Entropy, _) => (data.width, data.width),
            (_, Schema::Symmetric) => (magnitude / 100.0, magnitude / 100.0),
            (_, Schema::Asymmetric) => (data.min.abs() / 100.0, data.max.abs() / 100.0),
        };
        let slack = 1e-6 * magnitude;
        if (lo as f64 - expected.0).abs() > tol_lo + slack || (hi as f64 - expected.1).abs() > tol_hi + slack {
            mismatches.push(format!("{case}: got ({lo}, {hi})"));
        }
        if (hi as f64) < data.max * 0.9 {
            clipped += 1;
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // The reference exercises clipping, not only full ranges.
    assert!(clipped >= 20, "{clipped}");
}
