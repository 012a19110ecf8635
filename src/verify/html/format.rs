//! Text helpers of the HTML report: escaping and number formatting.

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A table number: up to six significant digits, scientific notation outside [1e-3, 1e6),
/// and explicit `+inf` / `-inf` / `NaN`.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+inf" } else { "-inf" }.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.4e}");
    }
    let decimals = (5 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// An optional table number; `None` shows as an em dash.
pub fn opt_number(v: Option<f64>) -> String {
    v.map(number).unwrap_or_else(|| "—".to_string())
}

/// The `data-v` sort key of a numeric cell, in a form JavaScript's `parseFloat` reads
/// (`Infinity`, `-Infinity`, `NaN`; empty for a missing value).
pub fn sort_key(v: Option<f64>) -> String {
    match v {
        None => String::new(),
        Some(v) if v.is_nan() => "NaN".to_string(),
        Some(v) if v == f64::INFINITY => "Infinity".to_string(),
        Some(v) if v == f64::NEG_INFINITY => "-Infinity".to_string(),
        Some(v) => format!("{v:e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_characters() {
        assert_eq!(escape(r#"a<b>&"c"'d"#), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d");
        assert_eq!(escape("plain/name:0"), "plain/name:0");
    }

    #[test]
    fn formats_numbers_readably() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(35.123456789), "35.1235");
        assert_eq!(number(-1.5), "-1.5");
        assert_eq!(number(100.0), "100");
        assert_eq!(number(0.000012345), "1.2345e-5");
        assert_eq!(number(2.5e7), "2.5000e7");
        assert_eq!(number(f64::INFINITY), "+inf");
        assert_eq!(number(f64::NEG_INFINITY), "-inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(opt_number(None), "—");
    }

    #[test]
    fn sort_keys_parse_in_javascript_terms() {
        assert_eq!(sort_key(Some(f64::INFINITY)), "Infinity");
        assert_eq!(sort_key(Some(f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(sort_key(Some(1.5)), "1.5e0");
        assert_eq!(sort_key(None), "");
    }
}
