//! `qairt encodings convert|validate|compare`: AIMET encodings files on their own, outside a
//! build.
//!
//! Exit status: `convert` and `validate` 0 on success, 1 when the file is invalid or anything
//! else fails; `compare` 0 when the files agree at the chosen precision, 2 when they differ
//! (like a build whose verification thresholds are not met), 1 on any error.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use crate::diag::Diag;
use crate::engine::{Workspace, override_error};
use crate::quant::aimet::{self, AimetVersion, Difference, Overrides};

use super::MessageFormat;
use super::commands::find_project;
use super::files::write_atomically;
use super::render;

#[derive(Subcommand, Debug)]
pub enum EncodingsAction {
    /// Rewrite an encodings file (any form) in the 0.6.1 dict form, the 1.0.0 list form or the
    /// 2.0.0 QuantizeLinear form
    Convert {
        /// The file to read (0.4-0.6.x dict form, 1.0.0 list form or 2.0.0 form)
        input: PathBuf,
        /// The file to write (replaced atomically)
        output: PathBuf,
        /// The form to write
        #[arg(long, value_enum, value_name = "VERSION")]
        to: Version,
        /// A project directory or its qairt.toml, whose optimized model says what a file
        /// cannot: a 2.0.0 entry's section (for 0.6.1 and 1.0.0) and a per-channel entry's
        /// axis (for 2.0.0); every name is checked against it too
        #[arg(long, value_name = "PATH")]
        project: Option<PathBuf>,
    },
    /// Check an encodings file; with --project, also its names against the project's model
    Validate {
        /// The encodings file to check (0.4-0.6.x dict form, 1.0.0 list form or 2.0.0 form)
        file: PathBuf,
        /// A project directory or its qairt.toml: check that every name is a tensor of the
        /// optimized model, in the right section, with the right channel count
        #[arg(long, value_name = "PATH")]
        project: Option<PathBuf>,
    },
    /// Report the differences between two encodings files, per tensor and per field
    Compare {
        /// The first encodings file (either form)
        a: PathBuf,
        /// The second encodings file (either form), compared with the first tensor by tensor
        b: PathBuf,
        /// Significant digits that floats must agree to (relative difference 10^-DIGITS)
        #[arg(long, value_name = "DIGITS", default_value_t = 6,
              value_parser = clap::value_parser!(u32).range(1..=17))]
        precision: u32,
        /// human: one line per difference; json: one `difference` message each (docs/json.md)
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
}

impl EncodingsAction {
    /// `compare`'s `--message-format` (the other actions have none).
    pub fn message_format(&self) -> Option<MessageFormat> {
        match self {
            EncodingsAction::Compare { message_format, .. } => Some(*message_format),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Version {
    #[value(name = "0.6.1")]
    V0_6_1,
    #[value(name = "1.0.0")]
    V1_0_0,
    #[value(name = "2.0.0")]
    V2_0_0,
}

pub fn run(action: EncodingsAction) -> u8 {
    match action {
        EncodingsAction::Convert { input, output, to, project } => convert(&input, &output, to, project),
        EncodingsAction::Validate { file, project } => validate(&file, project),
        EncodingsAction::Compare { a, b, precision, message_format } => compare(&a, &b, precision, message_format),
    }
}

fn print_all(diags: &[Diag]) {
    for diag in diags {
        render::print(diag);
    }
}

/// Reads and parses `path`, printing its warnings; on failure prints every error.
fn read(path: &Path) -> Result<(String, Overrides), u8> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        print_all(&[Diag::error("qairt::io::read", format!("cannot read {}: {e}", path.display()))]);
        1
    })?;
    match aimet::parse_overrides(&text) {
        Ok(o) => {
            let warnings: Vec<Diag> = o.source.warnings.iter().map(|w| override_error(path, w.clone())).collect();
            print_all(&warnings);
            Ok((text, o))
        }
        Err(errors) => {
            print_all(&errors.into_iter().map(|e| override_error(path, e)).collect::<Vec<_>>());
            Err(1)
        }
    }
}

fn convert(input: &Path, output: &Path, to: Version, project: Option<PathBuf>) -> u8 {
    let (text, overrides) = match read(input) {
        Ok(read) => read,
        Err(code) => return code,
    };
    let overrides = match project {
        Some(project) => match checked_against(input, &overrides, project) {
            Ok((placed, _)) => placed,
            Err(code) => return code,
        },
        None => overrides,
    };
    let version = match to {
        Version::V0_6_1 => AimetVersion::V0_6_1,
        Version::V1_0_0 => AimetVersion::V1_0_0,
        Version::V2_0_0 => AimetVersion::V2_0_0,
    };
    // AIMET's record of the QuantSim settings is not part of the encodings; carry it over.
    let quantizer_args =
        serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.get("quantizer_args").cloned());
    let written = match aimet::write_overrides_json(&overrides, version, quantizer_args.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            let help = match e {
                aimet::FormatError::NeedsModel { .. } => {
                    "give --project <dir> so that the project's model says it".to_string()
                }
                aimet::FormatError::NotExpressible { .. } if version == AimetVersion::V2_0_0 => {
                    "convert to 1.0.0, which holds float, bitwidth-only and per-block entries".to_string()
                }
                _ => "convert to 1.0.0, the form that holds per-block encodings".to_string(),
            };
            print_all(&[Diag::error("qairt::encodings::convert", e.to_string()).in_file(input).with_help(help)]);
            return 1;
        }
    };
    // The written text must mean what the input meant; a mismatch is a bug, never a file. The
    // 2.0.0 form has no sections, so entries are compared by name.
    let same = aimet::parse_overrides(&written).is_ok_and(|back| {
        let excluded = version == AimetVersion::V2_0_0 || back.excluded_layers == overrides.excluded_layers;
        back.by_name() == overrides.by_name() && excluded
    });
    if !same {
        print_all(&[Diag::error("qairt::internal", "internal error: the converted file does not read back the same")
            .with_help("this is a bug in qairt; please report it with the input file")]);
        return 1;
    }
    if version == AimetVersion::V2_0_0 && !overrides.excluded_layers.is_empty() {
        print_all(&[Diag::warning(
            "qairt::encodings::excluded_layers_dropped",
            format!(
                "the 2.0.0 form has no excluded_layers: {} layer name(s) not written",
                overrides.excluded_layers.len()
            ),
        )
        .in_file(input)
        .with_help("AIMET keeps them for provenance only; nothing in a build reads them")]);
    }
    if let Err(e) = write_atomically(output, written.as_bytes()) {
        print_all(&[Diag::error("qairt::io::write", format!("cannot write {}: {e}", output.display()))]);
        return 1;
    }
    println!("wrote {} (version {}: {})", output.display(), version.as_str(), counts(&overrides));
    0
}

/// `12 activation, 10 param encodings`, with a 2.0.0 file's unplaced entries as such.
fn counts(o: &Overrides) -> String {
    let placed = format!("{} activation, {} param encodings", o.activations.len(), o.params.len());
    if o.encodings.is_empty() { placed } else { format!("{placed}, {} encodings in either section", o.encodings.len()) }
}

/// `overrides` as they apply to the optimized model of `project` (carried through its
/// BatchNorm folds, each change printed as a warning, and placed in sections), and the
/// project's qairt.toml; every problem against the model printed (`Err(1)` then).
fn checked_against(file: &Path, overrides: &Overrides, project: PathBuf) -> Result<(Overrides, PathBuf), u8> {
    let config = find_project(Some(project)).map_err(|d| {
        print_all(&[d]);
        1u8
    })?;
    let graph = Workspace::open(&config, None).and_then(|mut ws| ws.optimized_graph()).map_err(|diags| {
        print_all(&diags);
        1u8
    })?;
    let (carried, notes) = aimet::carry_through_folds(overrides, &graph);
    print_all(&notes.into_iter().map(|e| override_error(file, e)).collect::<Vec<_>>());
    let errors = aimet::check_overrides(&carried, &graph);
    if !errors.is_empty() {
        let count = errors.len();
        print_all(&errors.into_iter().map(|e| override_error(file, e)).collect::<Vec<_>>());
        eprintln!("{}: {count} error(s) against the model of {}", file.display(), config.display());
        return Err(1);
    }
    Ok((aimet::place_sections(&carried, &graph), config))
}

fn validate(file: &Path, project: Option<PathBuf>) -> u8 {
    let (_, mut overrides) = match read(file) {
        Ok(read) => read,
        Err(code) => return code,
    };
    let mut found_in = String::new();
    if let Some(project) = project {
        let (placed, config) = match checked_against(file, &overrides, project) {
            Ok(checked) => checked,
            Err(code) => return code,
        };
        overrides = placed;
        found_in = format!(", every name found in the model of {}", config.display());
    }
    println!(
        "{}: valid (version {}: {}, {} warning(s){found_in})",
        file.display(),
        overrides.version.as_deref().unwrap_or("none"),
        counts(&overrides),
        overrides.source.warnings.len()
    );
    0
}

fn compare(a: &Path, b: &Path, digits: u32, format: MessageFormat) -> u8 {
    let (Ok((_, oa)), Ok((_, ob))) = (read(a), read(b)) else { return 1 };
    let differences = aimet::compare_overrides(&oa, &ob, digits);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        MessageFormat::Json => {
            for d in &differences {
                if let Ok(mut line) = serde_json::to_value(d) {
                    line["event"] = "difference".into();
                    super::output::write_json(&mut out, line);
                }
            }
        }
        MessageFormat::Human => {
            let _ = write!(out, "{}", table(&differences, a, b));
            let one_sided = differences.iter().filter(|d| d.is_one_sided()).count();
            let _ = writeln!(
                out,
                "{} difference(s), {one_sided} of them one-sided entries, at {digits} significant digits",
                differences.len()
            );
        }
    }
    let _ = out.flush();
    if differences.is_empty() { 0 } else { 2 }
}

/// The differences as aligned columns: tensor, channel, field, value in A, value in B,
/// relative difference.
fn table(differences: &[Difference], a: &Path, b: &Path) -> String {
    if differences.is_empty() {
        return String::new();
    }
    let header = ["tensor", "channel", "field", "A", "B", "relative"].map(String::from);
    let mut rows = vec![header];
    for d in differences {
        rows.push([
            d.tensor.clone(),
            d.channel.map_or(String::new(), |c| c.to_string()),
            d.field.to_string(),
            d.a.to_string(),
            d.b.to_string(),
            d.relative.map_or(String::new(), |r| format!("{r:.3e}")),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = format!("A = {}\nB = {}\n", a.display(), b.display());
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns() {
        let d = Difference {
            tensor: "conv1.weight".into(),
            section: "param_encodings",
            channel: Some(3),
            field: "scale",
            a: aimet::FieldValue::Float(0.5),
            b: aimet::FieldValue::Float(0.25),
            relative: Some(0.5),
        };
        let text = table(&[d], Path::new("a.json"), Path::new("b.json"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "tensor        channel  field  A    B     relative");
        assert_eq!(lines[3], "conv1.weight  3        scale  0.5  0.25  5.000e-1");
    }
}
