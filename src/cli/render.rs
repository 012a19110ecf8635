//! Turns plain [`Diag`]s into miette reports (with the source snippet read from the file)
//! and prints them to stderr.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use miette::{Diagnostic, LabeledSpan, NamedSource, Report, Severity as MietteSeverity};

use crate::diag::{Diag, Severity};

/// A `Diag` with its file's text attached, as miette wants it.
struct Rendered {
    diag: Diag,
    source: Option<NamedSource<String>>,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered").field("diag", &self.diag).finish()
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)?;
        // Without a snippet, say where the problem is in the message itself.
        if self.source.is_none()
            && let Some(file) = &self.diag.file
        {
            write!(f, " ({})", file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for Rendered {}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<MietteSeverity> {
        Some(match self.diag.severity {
            Severity::Error => MietteSeverity::Error,
            Severity::Warning => MietteSeverity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let (start, len) = self.diag.span?;
        let label = LabeledSpan::new(self.diag.label.clone(), start, len);
        Some(Box::new(std::iter::once(label)))
    }
}

/// Renders a diagnostic as miette text (with colors only when `color`).
pub fn render(diag: &Diag) -> String {
    let report = Report::new(Rendered { diag: diag.clone(), source: read_source(diag) });
    format!("{report:?}")
}

/// The text of the diagnostic's file, when its span lies inside it.
fn read_source(diag: &Diag) -> Option<NamedSource<String>> {
    let (file, (start, len)) = (diag.file.as_ref()?, diag.span?);
    std::fs::read_to_string(file)
        .ok()
        .filter(|text| start + len <= text.len() && text.is_char_boundary(start) && text.is_char_boundary(start + len))
        .map(|text| NamedSource::new(file.display().to_string(), text))
}

/// Whether diagnostics are also written as JSON messages on stdout (`--message-format json`).
static AS_JSON: AtomicBool = AtomicBool::new(false);

/// Makes every later [`print`] also write the diagnostic as a JSON message on stdout.
pub fn also_as_json(on: bool) {
    AS_JSON.store(on, Ordering::Relaxed);
}

/// Prints a diagnostic for people on stderr, and with `--message-format json` as a JSON
/// message on stdout as well (so CI reads file, line and column without parsing text).
pub fn print(diag: &Diag) {
    eprintln!("{}", render(diag));
    if AS_JSON.load(Ordering::Relaxed) {
        super::output::print_json(json(diag));
    }
}

/// A diagnostic as a JSON message: what miette's JSON handler writes (`message`, `code`,
/// `severity`, `help`, `filename`, `labels` with byte spans...), plus `event`, `file`, and the
/// 1-based `line` and `column` of its span.
pub fn json(diag: &Diag) -> serde_json::Value {
    let source = read_source(diag);
    let text = source.as_ref().map(|s| s.inner().clone());
    let rendered = Rendered { diag: diag.clone(), source };
    let mut out = String::new();
    let mut value = match miette::JSONReportHandler::new().render_report(&mut out, &rendered) {
        Ok(()) => serde_json::from_str(&out).unwrap_or_else(|_| serde_json::json!({"message": diag.message})),
        Err(_) => serde_json::json!({"message": diag.message}),
    };
    value["event"] = "diagnostic".into();
    value["file"] = diag.file.as_ref().map(|f| f.display().to_string()).into();
    let position = match (&text, diag.span) {
        (Some(text), Some((start, _))) => Some(line_column(text, start)),
        _ => None,
    };
    value["line"] = position.map(|(line, _)| line).into();
    value["column"] = position.map(|(_, column)| column).into();
    value
}

/// 1-based line and column of a byte offset, for JSON diagnostics.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn a_report_names_the_file_line_and_help() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("qairt.toml");
        std::fs::write(&file, "[project]\nnam = 1\n").unwrap();
        let diag = Diag::error("qairt::config::syntax", "unknown field `nam`")
            .in_file(&file)
            .at(10, 3, "here")
            .with_help("did you mean `name`?");
        let text = render(&diag);
        assert!(text.contains("qairt.toml:2:1"), "{text}");
        assert!(text.contains("did you mean `name`?"), "{text}");
        let json = json(&diag);
        assert_eq!((json["line"].as_u64(), json["column"].as_u64()), (Some(2), Some(1)), "{json}");
        assert_eq!(json["code"], "qairt::config::syntax");
        assert_eq!(json["severity"], "error");
        assert_eq!(json["help"], "did you mean `name`?");
        assert_eq!(json["labels"][0]["span"]["offset"], 10);
        assert_eq!(json["file"], file.display().to_string());
    }
}
