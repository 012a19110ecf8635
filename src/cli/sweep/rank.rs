//! Ranking of sweep results and their two renderings: the CSV file and the table for people.
//!
//! Order: the chosen metric, higher first (a missing or NaN value last); ties broken by SQNR
//! (when the metric is not SQNR itself: accuracy on a small test set ties often), then by
//! name. Configurations that failed to build come after every ranked one, by name.
//!
//! Configurations whose settings change no tensor (an overrides file pins every tensor they
//! differ in) build the very same `model.bin`: they are one result, not a ranking. They share
//! a rank, and each names the first of its group (`same_model_as`), so a tie is never settled
//! by a name without saying so.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use clap::ValueEnum;

use crate::quant::settings::QuantSettings;

use super::grid::schema_name;

/// What the sweep ranks by; every one is "higher is better".
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    /// SQNR of the first output against the float reference, in dB
    Sqnr,
    /// Cosine similarity of the first output against the float reference
    Cosine,
    /// Fraction of samples whose top-1 class matches the float reference
    #[value(name = "top1-agreement")]
    Top1Agreement,
    /// Top-1 accuracy against `[verify] labels`
    Accuracy,
}

impl Metric {
    /// The key of the metric in the verify outcome (and the CSV column).
    pub fn key(self) -> &'static str {
        match self {
            Metric::Sqnr => "sqnr_db",
            Metric::Cosine => "cosine",
            Metric::Top1Agreement => "top1_agreement",
            Metric::Accuracy => "accuracy",
        }
    }
}

/// One configuration's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub settings: QuantSettings,
    /// The verify metrics; `None` when the configuration failed to build.
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Whether the verify thresholds were met.
    pub passed: bool,
    /// What identifies the `model.bin` it built (its compile stage's action key, which hashes
    /// the quantized graph); `None` when it failed to build.
    pub model: Option<String>,
}

impl Row {
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.as_ref()?.get(key).copied().filter(|v| !v.is_nan())
    }
}

/// Higher first, missing last.
fn descending(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Sorts `rows` best first.
pub fn rank(rows: &mut [Row], metric: Metric) {
    rows.sort_by(|a, b| {
        a.metrics
            .is_none()
            .cmp(&b.metrics.is_none())
            .then_with(|| descending(a.metric(metric.key()), b.metric(metric.key())))
            .then_with(|| descending(a.metric("sqnr_db"), b.metric("sqnr_db")))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// The settings that make up a row, as (column, value) pairs in a fixed order.
pub fn settings_columns(s: &QuantSettings) -> [(&'static str, String); 9] {
    [
        ("act_bitwidth", s.act_bitwidth.to_string()),
        ("weight_bitwidth", s.weight_bitwidth.to_string()),
        ("act_calibration", s.act_calibration.name().to_string()),
        ("param_calibration", s.param_calibration.name().to_string()),
        ("act_schema", schema_name(s.act_schema).to_string()),
        ("param_schema", schema_name(s.param_schema).to_string()),
        ("per_channel", s.per_channel.to_string()),
        ("per_row", s.per_row.to_string()),
        ("cle", s.algorithms.iter().any(|a| a == "cle").to_string()),
    ]
}

pub const METRIC_COLUMNS: [&str; 5] = ["sqnr_db", "cosine", "top1_agreement", "accuracy", "reference_accuracy"];

/// For each ranked row, the index of the first row that built the same `model.bin`, when it
/// is not that row itself.
pub fn same_model_as(rows: &[Row]) -> Vec<Option<usize>> {
    rows.iter()
        .map(|row| {
            let model = row.model.as_ref()?;
            rows.iter().position(|r| r.model.as_ref() == Some(model)).filter(|&first| rows[first].name != row.name)
        })
        .collect()
}

/// The 1-based rank of each row (`None` for a failed build): configurations that built the
/// same model share the rank of the first of them.
pub fn ranks(rows: &[Row]) -> Vec<Option<usize>> {
    let same = same_model_as(rows);
    let mut ranks: Vec<Option<usize>> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let rank = match same[i] {
            _ if row.metrics.is_none() => None,
            Some(first) => ranks[first],
            None => Some(i + 1),
        };
        ranks.push(rank);
    }
    ranks
}

/// The ranked rows as CSV (header line first; numbers in their shortest exact form, empty
/// where there is none). Rank is empty for a configuration that failed; `same_model_as`
/// names the configuration whose model.bin it also built.
pub fn csv(rows: &[Row]) -> String {
    let mut header = vec!["rank", "name"];
    header.extend(settings_columns(&QuantSettings::default()).iter().map(|(k, _)| *k));
    header.extend(METRIC_COLUMNS);
    header.extend(["passed", "status", "same_model_as"]);
    let mut text = header.join(",");
    text.push('\n');
    let (ranks, same) = (ranks(rows), same_model_as(rows));
    for (i, row) in rows.iter().enumerate() {
        let mut cells = vec![ranks[i].map(|r| r.to_string()).unwrap_or_default(), row.name.clone()];
        cells.extend(settings_columns(&row.settings).into_iter().map(|(_, v)| v));
        cells.extend(METRIC_COLUMNS.iter().map(|k| row.metric(k).map(|v| v.to_string()).unwrap_or_default()));
        let ok = row.metrics.is_some();
        cells.push(if ok { row.passed.to_string() } else { String::new() });
        cells.push(if ok { "ok" } else { "failed" }.to_string());
        cells.push(same[i].map(|first| rows[first].name.clone()).unwrap_or_default());
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    text
}

/// The ranked rows as an aligned table for people; `accuracy` adds the accuracy column.
pub fn table(rows: &[Row], metric: Metric, accuracy: bool) -> String {
    let mut header: Vec<&str> = vec![
        "rank",
        "name",
        "act",
        "weights",
        "calibration",
        "schema",
        "per-channel",
        "per-row",
        "cle",
        "sqnr dB",
        "cosine",
        "top1",
    ];
    if accuracy {
        header.push("accuracy");
    }
    header.push("verify");
    let (ranks, same) = (ranks(rows), same_model_as(rows));
    let twins = same.iter().filter(|s| s.is_some()).count();
    if twins > 0 {
        header.push("same model as");
    }
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for (i, row) in rows.iter().enumerate() {
        let s = &row.settings;
        let number = |key: &str, digits: usize| row.metric(key).map(|v| format!("{v:.digits$}")).unwrap_or("-".into());
        let mut line = vec![
            ranks[i].map(|r| r.to_string()).unwrap_or("-".into()),
            row.name.clone(),
            format!("{}-bit", s.act_bitwidth),
            format!("{}-bit", s.weight_bitwidth),
            format!("{}/{}", s.act_calibration.name(), s.param_calibration.name()),
            format!("{}/{}", schema_name(s.act_schema), schema_name(s.param_schema)),
            if s.per_channel { "yes" } else { "no" }.into(),
            if s.per_row { "yes" } else { "no" }.into(),
            if s.algorithms.iter().any(|a| a == "cle") { "yes" } else { "no" }.into(),
            number("sqnr_db", 2),
            number("cosine", 5),
            number("top1_agreement", 4),
        ];
        if accuracy {
            line.push(number("accuracy", 4));
        }
        line.push(match (&row.metrics, row.passed) {
            (None, _) => "build failed".into(),
            (Some(_), true) => "passed".into(),
            (Some(_), false) => "FAILED".into(),
        });
        if twins > 0 {
            line.push(same[i].map(|first| rows[first].name.clone()).unwrap_or_default());
        }
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| lines.iter().map(|l| l.get(c).map_or(0, |v| v.chars().count())).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for line in &lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    let ties = if metric == Metric::Sqnr { "name" } else { "sqnr_db, then name" };
    text.push_str(&format!("ranked by {} (higher is better; ties by {ties})\n", metric.key()));
    if twins > 0 {
        text.push_str(&format!(
            "{twins} configurations built the same model.bin as a better-ranked one: their settings change no \
             tensor (an overrides file pins the tensors they differ in); they share its rank\n"
        ));
    }
    if accuracy && let Some(reference) = rows.iter().find_map(|r| r.metric("reference_accuracy")) {
        text.push_str(&format!("float reference accuracy {reference:.4}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, sqnr: f64, accuracy: Option<f64>) -> Row {
        let mut metrics = BTreeMap::from([("sqnr_db".to_string(), sqnr), ("cosine".to_string(), 0.99)]);
        if let Some(a) = accuracy {
            metrics.insert("accuracy".into(), a);
        }
        Row {
            name: name.into(),
            settings: QuantSettings::default(),
            metrics: Some(metrics),
            passed: true,
            model: Some(format!("model of {name}")),
        }
    }

    fn names(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn higher_sqnr_ranks_first_and_ties_go_by_name() {
        let mut rows = vec![row("c", 30.0, None), row("b", 35.0, None), row("a", 30.0, None)];
        rank(&mut rows, Metric::Sqnr);
        assert_eq!(names(&rows), ["b", "a", "c"]);
    }

    #[test]
    fn accuracy_ties_are_broken_by_sqnr_then_name() {
        let mut rows = vec![
            row("x", 20.0, Some(0.95)),
            row("y", 25.0, Some(0.95)),
            row("z", 40.0, Some(0.90)),
            row("w", 25.0, Some(0.95)),
        ];
        rank(&mut rows, Metric::Accuracy);
        assert_eq!(names(&rows), ["w", "y", "x", "z"]);
    }

    #[test]
    fn nan_and_failed_rows_come_last() {
        let failed = Row {
            name: "a-failed".into(),
            settings: QuantSettings::default(),
            metrics: None,
            passed: false,
            model: None,
        };
        let mut rows = vec![failed, row("nan", f64::NAN, None), row("ok", -3.0, None)];
        rank(&mut rows, Metric::Sqnr);
        assert_eq!(names(&rows), ["ok", "nan", "a-failed"]);
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row_with_exact_numbers() {
        let failed =
            Row { name: "f".into(), settings: QuantSettings::default(), metrics: None, passed: false, model: None };
        let text = csv(&[row("a", 31.25, Some(0.5)), failed]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "rank,name,act_bitwidth,weight_bitwidth,act_calibration,param_calibration,act_schema,param_schema,\
             per_channel,per_row,cle,sqnr_db,cosine,top1_agreement,accuracy,reference_accuracy,passed,status,\
             same_model_as"
        );
        assert_eq!(lines[1], "1,a,8,8,min-max,min-max,asymmetric,symmetric,true,false,false,31.25,0.99,,0.5,,true,ok,");
        assert_eq!(lines[2], ",f,8,8,min-max,min-max,asymmetric,symmetric,true,false,false,,,,,,,failed,");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn configurations_that_built_the_same_model_share_a_rank_and_say_so() {
        let mut rows = vec![row("b-a16", 30.0, None), row("a-a8", 30.0, None), row("worse", 20.0, None)];
        rows[1].model = rows[0].model.clone();
        rank(&mut rows, Metric::Sqnr);
        assert_eq!(names(&rows), ["a-a8", "b-a16", "worse"]);
        assert_eq!(same_model_as(&rows), [None, Some(0), None]);
        assert_eq!(ranks(&rows), [Some(1), Some(1), Some(3)]);
        let text = table(&rows, Metric::Sqnr, false);
        assert!(text.lines().next().unwrap().ends_with("same model as"), "{text}");
        assert!(
            text.lines().nth(2).unwrap().starts_with("1 ") && text.lines().nth(2).unwrap().ends_with("a-a8"),
            "{text}"
        );
        assert!(text.contains("1 configurations built the same model.bin as a better-ranked one"), "{text}");
        let csv = csv(&rows);
        assert!(csv.lines().nth(2).unwrap().starts_with("1,b-a16,") && csv.lines().nth(2).unwrap().ends_with(",a-a8"));
    }

    #[test]
    fn the_table_aligns_columns_and_names_the_metric() {
        let text = table(&[row("long-name", 31.254, None), row("b", 9.0, None)], Metric::Sqnr, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("1     long-name  8-bit"), "{text}");
        assert!(lines[1].contains("31.25"), "{text}");
        assert!(lines[2].starts_with("2     b          8-bit"), "{text}");
        assert_eq!(lines[3], "ranked by sqnr_db (higher is better; ties by name)");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn with_labels_the_table_shows_accuracy_and_the_float_reference() {
        let mut r = row("a", 30.0, Some(0.9));
        r.metrics.as_mut().unwrap().insert("reference_accuracy".into(), 0.95);
        let text = table(&[r], Metric::Accuracy, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("accuracy"), "{text}");
        assert!(lines[1].contains("0.9000"), "{text}");
        assert_eq!(lines[2], "ranked by accuracy (higher is better; ties by sqnr_db, then name)");
        assert_eq!(lines[3], "float reference accuracy 0.9500");
    }
}
