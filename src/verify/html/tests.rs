//! Tests of the whole page: structure, escaping, self-containment, determinism, and robustness
//! on degenerate data.

use super::*;

const NASTY: &str = r#"a<b>&"c""#;

/// A realistic report: 40 layers with one failing run, +inf / NaN SQNR, histograms, checker,
/// sensitivity and suggestion.
fn sample() -> ReportData {
    let layers: Vec<LayerRow> = (0..40)
        .map(|i| {
            let sqnr = match i {
                0 => f64::INFINITY,
                7 => f64::NAN,
                _ => 45.0 - i as f64 * 0.6 + if (25..29).contains(&i) { -12.0 } else { 0.0 },
            };
            LayerRow {
                name: if i == 3 { NASTY.to_string() } else { format!("/backbone/block{}/conv_{i}:0", i / 4) },
                layer_type: if i % 2 == 0 { "Conv" } else { "Relu" }.to_string(),
                size: 64 * 56 * 56,
                dims: vec![1, 64, 56, 56],
                values: vec![Some(sqnr), Some(1e-3 * i as f64), if i == 5 { None } else { Some(0.99) }],
                sqnr_db: Some(sqnr),
                golden_min: Some(-3.5),
                golden_max: Some(6.25),
                target_min: Some(-3.4),
                target_max: Some(6.2),
                failed: (25..29).contains(&i),
                // Every Conv before a Relu is fused into it, as on the target.
                compared_with: (i % 2 == 0 && i > 0).then(|| format!("/backbone/block{}/relu_{}:0", i / 4, i + 1)),
            }
        })
        .collect();
    let weights: Vec<f32> = (0..2000).map(|i| ((i as f32) * 0.37).sin() * 0.3).collect();
    let (edges, counts) = histogram(&weights, 48, Some((-0.25, 0.25)));
    ReportData {
        title: "qairt verify: resnet-tiny".to_string(),
        project: "resnet-tiny".to_string(),
        target: "htp-int8".to_string(),
        mode: "per-layer".to_string(),
        samples: 16,
        passed: false,
        headline: vec![
            Headline {
                name: "SQNR (dB)".into(),
                value: 21.5,
                threshold: Some(25.0),
                passed: Some(false),
                lower_is_better: false,
            },
            Headline {
                name: "Top-1 agreement".into(),
                value: 0.97,
                threshold: None,
                passed: None,
                lower_is_better: false,
            },
        ],
        verifier_columns: vec!["SQNR".into(), "MSE".into(), NASTY.into()],
        layers,
        first_failing: Some(25),
        sqnr_threshold: Some(25.0),
        histograms: vec![
            Histogram {
                tensor: NASTY.into(),
                layer: Some("/backbone/block0/conv_0 (Conv) → /backbone/block0/conv_0:0".into()),
                kind: HistogramKind::Weight,
                edges,
                counts,
                encoding: Some((-0.25, 0.25)),
                channel_ranges: vec![(-0.25, 0.25), (-0.125, 0.125), (-0.0625, 0.0625)],
            },
            Histogram {
                tensor: "act".into(),
                layer: None,
                kind: HistogramKind::Activation,
                edges: vec![0.0, 1.0, 2.0],
                counts: vec![5, 3],
                encoding: None,
                channel_ranges: Vec::new(),
            },
        ],
        checker: Some(CheckerTable {
            columns: vec!["minmax".into(), "sqnr".into()],
            rows: vec![CheckerRow {
                op: "Conv".into(),
                tensor: NASTY.into(),
                class: "weight".into(),
                cells: vec!["Pass".into(), "Fail".into()],
                failed: true,
            }],
            analyzed: 12,
            failed: 1,
        }),
        sensitivity: vec![SensitivityRow {
            layer: "conv_25".into(),
            precision: "int16".into(),
            metric_before: 21.5,
            metric_after: 27.0,
            gain: 5.5,
        }],
        sensitivity_metric: Some("SQNR (dB)".into()),
        suggestion: Some(Suggestion {
            layers: vec!["conv_25".into(), NASTY.into()],
            precision: "int16".into(),
            before: 21.5,
            after: 27.0,
            metric_name: "SQNR (dB)".into(),
            overrides_path: Some("out/htp-int8/verify/overrides.toml".into()),
            meets_thresholds: true,
        }),
        notes: vec![format!("note with {NASTY}")],
        profile: Some(ProfileTable {
            samples: 16,
            steps: 40,
            total_us: 1234.5,
            csv_path: "out/htp-int8/profile.csv".into(),
            rows: vec![
                ProfileRow {
                    step: 7,
                    node: NASTY.into(),
                    op_type: "Conv".into(),
                    median_us: 400.25,
                    bytes_read: 9216,
                    bytes_written: 4096,
                    time_share: 0.324,
                },
                ProfileRow {
                    step: 2,
                    node: "/relu".into(),
                    op_type: "Relu".into(),
                    median_us: 12.0,
                    bytes_read: 4096,
                    bytes_written: 4096,
                    time_share: 0.0097,
                },
            ],
        }),
    }
}

/// Checks that every opened element is closed in order (void elements and `/>` excepted) and
/// skips the raw text of `<style>` and `<script>`. Returns the first problem found.
fn check_balanced(html: &str) -> Result<(), String> {
    const VOID: [&str; 8] = ["meta", "br", "img", "input", "hr", "link", "col", "wbr"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start..];
        let end = rest.find('>').ok_or_else(|| format!("unterminated tag at {:?}", &rest[..rest.len().min(40)]))?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => return Err(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if name.is_empty() {
            return Err(format!("raw '<' in text before {:?}", &tag[..tag.len().min(40)]));
        }
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "style" || name == "script" {
            let close = format!("</{name}>");
            let at = rest.find(&close).ok_or_else(|| format!("{name} not closed"))?;
            rest = &rest[at + close.len()..];
            continue;
        }
        stack.push(name);
    }
    if stack.is_empty() { Ok(()) } else { Err(format!("left open: {stack:?}")) }
}

#[test]
fn the_balance_checker_itself_catches_errors() {
    assert!(check_balanced("<div><p>x</p></div>").is_ok());
    assert!(check_balanced("<div><p>x</div>").is_err());
    assert!(check_balanced("<div>").is_err());
    assert!(check_balanced("<p>a < b</p>").is_err());
    assert!(check_balanced("<svg><rect x=\"1\"/></svg><script>if (a<b) {}</script>").is_ok());
}

#[test]
fn sample_page_is_well_formed_and_has_every_section() {
    let html = render_report(&sample());
    check_balanced(&html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for id in ["summary", "layers", "sqnr", "histograms", "checker", "sensitivity", "profile"] {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "section {id}");
    }
    // The profile's rows in the order given (slowest first), with their share in percent.
    let profile = &html[html.find("<section id=\"profile\">").unwrap()..];
    let (slow, fast) = (profile.find("data-v=\"7\">7</td>"), profile.find("data-v=\"2\">2</td>"));
    assert!(slow.is_some() && slow < fast, "{slow:?} {fast:?}");
    assert!(html.contains(">32.4%</td>") && html.contains(">1.0%</td>"));
    assert!(html.contains("out/htp-int8/profile.csv") && html.contains("href=\"#profile\""));
    assert!(!html.contains("not computed"));
    // Rows in graph order: layer 10 comes before layer 11.
    let (r10, r11) = (html.find("id=\"layer-10\""), html.find("id=\"layer-11\""));
    assert!(r10.is_some() && r10 < r11);
    // The first failing layer row is highlighted and linked from the summary.
    assert!(html.contains("<tr id=\"layer-25\" class=\"first-fail\">"));
    assert!(html.contains("<tr id=\"layer-26\" class=\"fail\">"));
    assert!(html.contains("href=\"#layer-25\""));
    // One verifier header per column; the headline threshold shows its direction.
    assert!(html.contains("<th class=\"num\">MSE</th>"));
    assert!(html.contains("&ge; 25"));
    assert!(html.contains("out/htp-int8/verify/overrides.toml"));
}

#[test]
fn user_strings_are_escaped_everywhere() {
    let html = render_report(&sample());
    assert!(!html.contains(NASTY), "raw name leaked");
    let escaped = "a&lt;b&gt;&amp;&quot;c&quot;";
    // layer name, verifier column, histogram caption, checker tensor, suggestion layer, note.
    assert!(html.matches(escaped).count() >= 6, "{}", html.matches(escaped).count());
}

#[test]
fn one_svg_per_chart() {
    let data = sample();
    let html = render_report(&data);
    // One SQNR chart plus one per histogram.
    assert_eq!(html.matches("<svg ").count(), 1 + data.histograms.len());
    assert_eq!(html.matches("</svg>").count(), 1 + data.histograms.len());
    // Axis labels are drawn as text elements.
    assert!(html.contains("SQNR (dB)\n</text>"));
    assert!(html.contains(
        "layer # in graph order, as in the per-layer table (hover a point for its name, click for its row)\n</text>"
    ));
    // The +inf layer is reported as clipped; the NaN one as left out.
    assert!(html.contains("SQNR = +inf"));
    assert!(html.contains("undefined (NaN) SQNR"));
}

#[test]
fn encoding_range_is_marked_with_two_vertical_lines() {
    let h = Histogram {
        tensor: "w".into(),
        layer: None,
        kind: HistogramKind::Weight,
        edges: vec![-1.0, 0.0, 1.0],
        counts: vec![3, 4],
        encoding: Some((-0.5, 0.75)),
        channel_ranges: Vec::new(),
    };
    let chart = charts::histogram_chart(&h);
    assert!(chart.svg.contains("encoding min -0.5"));
    assert!(chart.svg.contains("encoding max 0.75"));
    // Two bars, each a filled rect (plus background and legend rects).
    assert!(chart.svg.matches("<rect").count() >= 2);
    // Without an encoding there is no legend.
    let chart = charts::histogram_chart(&Histogram { encoding: None, ..h });
    assert!(!chart.svg.contains("encoding"));
}

#[test]
fn page_is_self_contained() {
    let html = render_report(&sample());
    let without_ns = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for forbidden in ["http://", "https://", "<script src", "<link", "@import", "url("] {
        assert!(!without_ns.contains(forbidden), "found {forbidden}");
    }
    assert_eq!(html.matches("<script>").count(), 1);
}

#[test]
fn output_is_deterministic() {
    let a = render_report(&sample());
    let b = render_report(&sample().clone());
    assert_eq!(a, b);
}

#[test]
fn empty_data_renders_not_computed_lines() {
    let html = render_report(&ReportData::default());
    check_balanced(&html).unwrap();
    assert!(html.contains("<title>qairt verify report</title>"));
    // Headline, per-layer table, SQNR chart, histograms, checker, suggestion, sensitivity ranking.
    assert_eq!(html.matches("not computed").count(), 7);
    assert!(!html.contains("<svg"));
    // No profile, no section and no link to one: the page a build without profiling made.
    assert!(!html.contains("profile"), "a page without a profile mentions one");
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let one = LayerRow { name: "only".into(), sqnr_db: Some(30.0), ..LayerRow::default() };
    let cases = [
        // One layer.
        ReportData { layers: vec![one.clone()], first_failing: Some(7), ..ReportData::default() },
        // All NaN SQNR, values shorter than the columns.
        ReportData {
            verifier_columns: vec!["SQNR".into(), "MSE".into()],
            layers: vec![LayerRow { sqnr_db: Some(f64::NAN), values: vec![], ..one.clone() }; 3],
            ..ReportData::default()
        },
        // All +inf, with a NaN threshold; all -inf.
        ReportData {
            layers: vec![LayerRow { sqnr_db: Some(f64::INFINITY), ..one.clone() }; 2],
            sqnr_threshold: Some(f64::NAN),
            ..ReportData::default()
        },
        ReportData {
            layers: vec![LayerRow { sqnr_db: Some(f64::NEG_INFINITY), ..one.clone() }],
            ..ReportData::default()
        },
        // Huge values.
        ReportData { layers: vec![LayerRow { sqnr_db: Some(1e300), ..one.clone() }], ..ReportData::default() },
        ReportData {
            histograms: vec![
                Histogram { edges: vec![], counts: vec![], ..Histogram::default() },
                Histogram { edges: vec![0.0, f64::NAN, 2.0], counts: vec![1, 2], ..Histogram::default() },
                Histogram { edges: vec![1.0], counts: vec![4, 4], ..Histogram::default() },
                Histogram { edges: vec![-1e308, 1e308], counts: vec![1], ..Histogram::default() },
                Histogram {
                    edges: vec![3.0, 3.0],
                    counts: vec![0],
                    encoding: Some((5.0, -5.0)),
                    ..Histogram::default()
                },
                Histogram { edges: vec![], counts: vec![], encoding: Some((-1.0, 1.0)), ..Histogram::default() },
            ],
            checker: Some(CheckerTable { columns: vec!["a".into()], ..CheckerTable::default() }),
            suggestion: Some(Suggestion { before: f64::NAN, after: f64::INFINITY, ..Suggestion::default() }),
            ..ReportData::default()
        },
    ];
    for (i, data) in cases.iter().enumerate() {
        let html = render_report(data);
        check_balanced(&html).unwrap_or_else(|e| panic!("case {i}: {e}"));
    }
    // The all-NaN case says so instead of drawing.
    let html = render_report(&cases[1]);
    assert!(html.contains("undefined (NaN) for all 3 layers"));
    assert!(render_report(&cases[4]).contains("too large to plot"));
    assert!(render_report(&cases[5]).contains("too large to plot"));
}

/// What a 100-layer model made unreadable: no inner scroll box clips the tables, fused rows say
/// where they are measured (no paragraph listing them all), the failing rows can be shown
/// alone, weights are titled by their layer with per-channel ranges, and every SQNR point
/// names its layer and links to its row.
#[test]
fn a_large_report_stays_readable() {
    let html = render_report(&sample());
    assert!(!html.contains("max-height: 640px"), "no inner scroll box");
    assert!(!html.contains("Squashed into"), "no paragraph listing every fused op");
    assert!(
        html.contains("<div class=\"fused\">fused into /<wbr>backbone/<wbr>block0/<wbr>relu_3:0: measured there</div>")
    );
    assert!(html.contains("data-failed-only=\"layers-table\""), "a failed-only filter on the per-layer table");
    assert!(html.contains("id=\"layers-table\""));
    assert!(html.contains("show failing rows only (4)"), "4 failing layers in the sample");
    assert!(html.contains("table.failed-only tbody tr:not(.fail):not(.first-fail) { display: none; }"));
    assert!(html.contains("/backbone/block0/conv_0 (Conv) → /backbone/block0/conv_0:0"), "weights titled by layer");
    assert!(html.contains("per-channel encoding, 3 channels"), "per-channel ranges are not merged away");
    assert!(html.contains("<a href=\"#layer-25\"><circle"), "SQNR points link to their rows");
    assert!(html.contains("<title>#25 /backbone/block6/conv_25:0 (Relu): SQNR"), "and name their layers");
}
