//! Input lists (`input_list.txt`, the SDK's format): any text either gives samples or
//! diagnostics whose spans lie inside the text; never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    match qairt::project::parse_input_list(Path::new("/project/input_list.txt"), text) {
        Ok(list) => {
            for sample in &list.samples {
                for entry in &sample.entries {
                    let (start, len) = entry.span;
                    assert!(start + len <= text.len(), "entry span past the text");
                }
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "a rejected list says why");
            for diag in &diags {
                if let Some((start, len)) = diag.span {
                    let end = start.checked_add(len).expect("span end overflows");
                    assert!(end <= text.len(), "{diag:?} ends past the text ({} bytes)", text.len());
                    assert!(text.is_char_boundary(start) && text.is_char_boundary(end), "{diag:?} splits a character");
                }
            }
        }
    }
});
