//! The SDK's input-list format: one inference per line, either a single path or
//! space-separated `name:=path` pairs; paths relative to the list's own directory.
//!
//! Lines that are empty or start with `#` (the SDK's output-name header) are skipped.

use std::path::{Path, PathBuf};

use crate::diag::Diag;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputList {
    pub samples: Vec<Sample>,
}

/// One inference: the raw files that feed the model's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// 1-based line number in the list.
    pub line: usize,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The input name for `name:=path` entries; `None` for a bare path.
    pub name: Option<String>,
    pub path: PathBuf,
    /// Byte range of this entry in the list (start, length), for diagnostics.
    pub span: (usize, usize),
}

pub fn parse_input_list(file: &Path, text: &str) -> Result<InputList, Vec<Diag>> {
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut samples = Vec::new();
    let mut diags = Vec::new();
    let mut line_start = 0;
    for (index, line) in text.split('\n').enumerate() {
        let this_start = line_start;
        line_start += line.len() + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut entries = Vec::new();
        let mut offset = 0;
        for word in line.split(|c: char| c.is_ascii_whitespace()) {
            let word_start = this_start + offset;
            offset += word.len() + 1;
            if word.is_empty() {
                continue;
            }
            let (name, path) = match word.split_once(":=") {
                Some((name, path)) => (Some(name.to_string()), path),
                None => (None, word),
            };
            if path.is_empty() || name.as_deref() == Some("") {
                diags.push(
                    Diag::error("qairt::input_list::syntax", format!("malformed entry `{word}`"))
                        .in_file(file)
                        .at(word_start, word.len(), "expected `path` or `name:=path`")
                        .with_help("one inference per line: a raw file path, or space-separated name:=path pairs"),
                );
                continue;
            }
            entries.push(Entry { name, path: dir.join(path), span: (word_start, word.len()) });
        }
        let named = entries.iter().filter(|e| e.name.is_some()).count();
        if named != 0 && named != entries.len() {
            diags.push(
                Diag::error("qairt::input_list::syntax", "a line mixes bare paths and name:=path pairs")
                    .in_file(file)
                    .at(this_start, line.len(), "mixed entries")
                    .with_help("with several inputs, name every one: input_a:=a.raw input_b:=b.raw"),
            );
        }
        if named == 0 && entries.len() > 1 {
            diags.push(
                Diag::error("qairt::input_list::syntax", "several bare paths on one line")
                    .in_file(file)
                    .at(this_start, line.len(), "which input does each file feed?")
                    .with_help("with several inputs, name every one: input_a:=a.raw input_b:=b.raw"),
            );
        }
        samples.push(Sample { line: index + 1, entries });
    }
    if samples.is_empty() && diags.is_empty() {
        diags.push(
            Diag::error("qairt::input_list::empty", "the input list names no inference")
                .in_file(file)
                // The first character, whole: a list of only non-ASCII spaces (U+00A0) is empty too.
                .at(0, text.chars().next().map_or(0, char::len_utf8), "empty list")
                .with_help("add one raw-file path per line"),
        );
    }
    if diags.is_empty() { Ok(InputList { samples }) } else { Err(diags) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer (fuzz/fuzz_targets/input_list.rs): a list holding only a no-break
    /// space had its diagnostic span end inside that character, so no snippet was shown.
    #[test]
    fn an_empty_list_points_at_a_whole_first_character() {
        for text in ["\u{a0}  ", "", "   ", "# only a comment\n"] {
            let diags = parse_input_list(Path::new("/d/list.txt"), text).unwrap_err();
            let (start, len) = diags[0].span.unwrap();
            assert!(text.is_char_boundary(start) && text.is_char_boundary(start + len), "{text:?}: {diags:?}");
            assert!(start + len <= text.len());
        }
    }

    #[test]
    fn bare_paths_and_named_pairs_resolve_against_the_list_directory() {
        let text = "# logits\na.raw\n\nleft:=l.raw right:=/abs/r.raw\n";
        let list = parse_input_list(Path::new("/d/list.txt"), text).unwrap();
        assert_eq!(list.samples.len(), 2);
        assert_eq!(list.samples[0].line, 2);
        assert_eq!(list.samples[0].entries[0].path, Path::new("/d/a.raw"));
        let second = &list.samples[1].entries;
        assert_eq!(second[0].name.as_deref(), Some("left"));
        assert_eq!(second[1].path, Path::new("/abs/r.raw"));
        let (start, len) = second[1].span;
        assert_eq!(&text[start..start + len], "right:=/abs/r.raw");
    }

    #[test]
    fn mixing_forms_is_an_error_on_that_line() {
        let diags = parse_input_list(Path::new("l.txt"), "a.raw\nx:=b.raw c.raw\n").unwrap_err();
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].span.unwrap().0, 6);
    }
}
