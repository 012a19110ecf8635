//! Plain-data diagnostics: what went wrong, where (file and byte span), and a hint.
//!
//! **Invariant:** no rendering here. The engine and the config loader produce `Diag`s; only
//! `cli` turns them into miette reports (reading the file text it needs for the snippet).

use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diag {
    pub severity: Severity,
    /// Stable code, e.g. `qairt::config::unknown_key`: the `code` field of the JSON events
    /// (docs/json.md), which scripts match on, so a code is renamed only with the schema.
    pub code: &'static str,
    pub message: String,
    /// The file the problem is in, when there is one.
    pub file: Option<PathBuf>,
    /// Byte range inside `file` (start, length).
    pub span: Option<(usize, usize)>,
    /// The label shown under the span.
    pub label: Option<String>,
    pub help: Option<String>,
}

impl Diag {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diag {
        Diag {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: None,
            span: None,
            label: None,
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diag {
        Diag { severity: Severity::Warning, ..Diag::error(code, message) }
    }

    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Diag {
        self.file = Some(file.into());
        self
    }

    pub fn at(mut self, start: usize, len: usize, label: impl Into<String>) -> Diag {
        self.span = Some((start, len));
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diag {
        self.help = Some(help.into());
        self
    }
}

/// Index of the closest candidate to `wanted` by Jaro-Winkler similarity, if any is close
/// enough to be worth suggesting.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // The similarity costs time in the product of the lengths: nothing is suggested for a name
    // longer than any real key, tensor or target name (a corrupt or hostile input).
    if wanted.len() > 1024 {
        return None;
    }
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wanted, c), c))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_a_near_name_and_nothing_for_a_far_one() {
        let names = ["conv1.weight", "conv2.weight", "fc.bias"];
        assert_eq!(closest("conv1.wieght", names), Some("conv1.weight"));
        assert_eq!(closest("zzz", names), None);
    }
}
