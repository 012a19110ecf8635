//! `qairt.toml`: any text either gives a project configuration or diagnostics whose spans lie
//! inside the text (so the snippet is shown); never a panic or an abort.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    if let Err(diags) = qairt::project::parse_config(Path::new("/project/qairt.toml"), text) {
        assert!(!diags.is_empty(), "a rejected configuration says why");
        for diag in &diags {
            if let Some((start, len)) = diag.span {
                let end = start.checked_add(len).expect("span end overflows");
                assert!(end <= text.len(), "{diag:?} ends past the text ({} bytes)", text.len());
                assert!(text.is_char_boundary(start) && text.is_char_boundary(end), "{diag:?} splits a character");
            }
        }
    }
});
