//! Writes a sweep's winner into `qairt.toml` as a new `[[target]]`, keeping every comment and
//! the formatting of the rest of the file (toml_edit): the base target's keys, with each
//! swept key present only when its value differs from what `[quantization]` gives.
//!
//! **Invariant:** the text returned parses, and its new target resolves to exactly the given
//! backend, settings and overrides file (checked by parsing it again), so building it reuses
//! the sweep's cached stages and gives the same encodings.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, value};

use crate::diag::Diag;
use crate::project::{ProjectConfig, TargetConfig, parse_config};
use crate::quant::settings::QuantSettings;

use super::grid::schema_name;

/// The target to write.
pub struct Winner<'a> {
    pub name: &'a str,
    /// The `[[target]]` the sweep varied: its keys are copied.
    pub base: &'a str,
    pub backend: &'a str,
    pub settings: &'a QuantSettings,
    pub overrides: Option<&'a Path>,
    /// A comment line put above the new table.
    pub comment: String,
}

fn diag(message: impl Into<String>) -> Diag {
    Diag::error("qairt::sweep::write_winner", message)
}

/// Checks that `name` is a valid, unused target name of `config`.
pub fn check_name(config: &ProjectConfig, name: &str) -> Result<(), Diag> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return Err(diag(format!("--write-winner: \"{name}\" is not a valid target name"))
            .with_help("use only letters, digits, '-', '_' and '.' (it names the directory out/<target>/)"));
    }
    if config.targets.iter().any(|t| t.name == name) {
        return Err(diag(format!("--write-winner: qairt.toml already has a target named \"{name}\""))
            .in_file(&config.file)
            .with_help("choose a new name for the winning configuration"));
    }
    Ok(())
}

fn parse_target(file: &Path, text: &str, name: &str) -> Result<TargetConfig, Diag> {
    let config = parse_config(file, text).map_err(|diags| {
        let first = diags.into_iter().next().map(|d| d.message).unwrap_or_default();
        diag(format!("internal error: the edited qairt.toml does not parse: {first}"))
            .with_help("this is a bug in qairt; qairt.toml was left unchanged")
    })?;
    config
        .targets
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| diag("internal error: the edited qairt.toml lacks the new target"))
}

/// The swept keys of a target table: each key, the value `s` gives it, and whether that
/// differs from the inherited `d`.
fn swept_keys(s: &QuantSettings, d: &QuantSettings) -> [(&'static str, Item, bool); 9] {
    [
        ("act_bitwidth", value(i64::from(s.act_bitwidth)), s.act_bitwidth != d.act_bitwidth),
        ("weight_bitwidth", value(i64::from(s.weight_bitwidth)), s.weight_bitwidth != d.weight_bitwidth),
        ("act_calibration", value(s.act_calibration.name()), s.act_calibration != d.act_calibration),
        ("param_calibration", value(s.param_calibration.name()), s.param_calibration != d.param_calibration),
        ("act_schema", value(schema_name(s.act_schema)), s.act_schema != d.act_schema),
        ("param_schema", value(schema_name(s.param_schema)), s.param_schema != d.param_schema),
        ("per_channel", value(s.per_channel), s.per_channel != d.per_channel),
        ("per_row", value(s.per_row), s.per_row != d.per_row),
        ("algorithms", value(s.algorithms.iter().collect::<Array>()), s.algorithms != d.algorithms),
    ]
}

/// `text` (the current `qairt.toml`, at `file`) with `winner` appended as a `[[target]]`: a
/// copy of the base target's table (so every key the sweep does not vary keeps its line),
/// renamed, with each swept key written only when its value differs from what a target
/// inherits from `[quantization]`.
pub fn add_target(file: &Path, text: &str, winner: &Winner) -> Result<String, Diag> {
    let mut doc: DocumentMut =
        text.parse().map_err(|e| diag(format!("qairt.toml does not parse: {e}")).in_file(file))?;
    let Some(targets) = doc.get("target").and_then(Item::as_array_of_tables) else {
        return Err(diag("qairt.toml has no [[target]] tables to add to")
            .in_file(file)
            .with_help("write the targets as [[target]] tables (not an inline array)"));
    };
    let is_base = |t: &&Table| t.get("name").and_then(Item::as_str) == Some(winner.base);
    let Some(base) = targets.iter().find(is_base).cloned() else {
        return Err(diag(format!("qairt.toml has no [[target]] named \"{}\"", winner.base)).in_file(file));
    };
    // Written after the last target (a copied table would otherwise sit beside its base).
    let last_position = targets.iter().filter_map(Table::position).max();
    let push = |doc: &mut DocumentMut, table: Table| {
        if let Some(targets) = doc.get_mut("target").and_then(Item::as_array_of_tables_mut) {
            targets.push(table);
        }
    };

    // What a target with only a name and a backend inherits.
    let mut bare = Table::new();
    bare.insert("name", value(winner.name));
    bare.insert("backend", value(winner.backend));
    let mut probe = doc.clone();
    push(&mut probe, bare);
    let inherited = parse_target(file, &probe.to_string(), winner.name)?;

    let mut table = base;
    table.insert("name", value(winner.name));
    table.insert("backend", value(winner.backend));
    for (key, wanted, differs) in swept_keys(winner.settings, &inherited.quant) {
        if differs {
            table.insert(key, wanted);
        } else {
            table.remove(key);
        }
    }
    if winner.overrides.is_none() {
        table.remove("overrides");
        if inherited.overrides.is_some() {
            return Err(diag("the winner has no overrides file, but every target inherits one from [quantization]")
                .in_file(file)
                .with_help("move `overrides` from [quantization] into the targets that use it, or sweep with it"));
        }
    }
    table.decor_mut().set_prefix(format!("\n# {}\n", winner.comment));
    if let Some(position) = last_position {
        table.set_position(position);
    }
    push(&mut doc, table);
    let written = doc.to_string();

    let back = parse_target(file, &written, winner.name)?;
    if back.backend != winner.backend || back.quant != *winner.settings || back.overrides.as_deref() != winner.overrides
    {
        return Err(diag("internal error: the written target does not read back with the winning settings")
            .with_help("this is a bug in qairt; qairt.toml was left unchanged"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::settings::{CalibrationMethod, Schema};

    const CONFIG: &str = r#"# my project, tuned by hand
[project]
name = "digits"   # keep this comment

[model]
path = "model.onnx"

[quantization]
act_bitwidth = 16      # most targets are w8a16
per_channel = true

[[target]]
name = "htp"
backend = "htp"
act_calibration = "mse"

[verify]
input_list = "test/input_list.txt"
"#;

    fn file() -> &'static Path {
        Path::new("/p/qairt.toml")
    }

    fn winner<'a>(settings: &'a QuantSettings, overrides: Option<&'a Path>) -> Winner<'a> {
        Winner { name: "best", base: "htp", backend: "htp", settings, overrides, comment: "qairt sweep winner".into() }
    }

    #[test]
    fn only_keys_that_differ_from_the_inherited_defaults_are_written() {
        // Inherited: act 16-bit (from [quantization]), min-max, asymmetric, per-channel.
        let settings = QuantSettings {
            act_bitwidth: 8,
            act_calibration: CalibrationMethod::Entropy,
            act_schema: Schema::Asymmetric,
            per_channel: true,
            algorithms: vec!["cle".into()],
            ..QuantSettings::default()
        };
        let text = add_target(file(), CONFIG, &winner(&settings, None)).unwrap();
        assert!(text.starts_with("# my project, tuned by hand\n"), "{text}");
        assert!(text.contains("name = \"digits\"   # keep this comment"), "{text}");
        assert!(text.contains("act_bitwidth = 16      # most targets are w8a16"), "{text}");
        let new = &text[text.find("# qairt sweep winner").unwrap()..];
        let table = &new[..new.find("[verify]").unwrap_or(new.len())];
        assert_eq!(
            table.trim(),
            "# qairt sweep winner\n[[target]]\nname = \"best\"\nbackend = \"htp\"\nact_calibration = \"entropy\"\n\
             act_bitwidth = 8\nalgorithms = [\"cle\"]"
        );
        let config = parse_config(file(), &text).unwrap();
        let best = config.targets.iter().find(|t| t.name == "best").unwrap();
        assert_eq!(best.quant, settings);
        assert_eq!(config.targets.len(), 2);
    }

    #[test]
    fn a_setting_equal_to_the_inherited_one_is_left_out() {
        let settings = QuantSettings { act_bitwidth: 16, ..QuantSettings::default() };
        let text = add_target(file(), CONFIG, &winner(&settings, None)).unwrap();
        let new = &text[text.find("name = \"best\"").unwrap()..];
        let table = &new[..new.find("[verify]").unwrap()];
        assert!(!table.contains("act_bitwidth"), "{text}");
        // The base's own act_calibration = "mse" is dropped: min-max is inherited.
        assert!(!table.contains("act_calibration"), "{text}");
        assert_eq!(parse_config(file(), &text).unwrap().targets[1].quant, settings);
    }

    #[test]
    fn keys_the_sweep_does_not_vary_are_copied_from_the_base() {
        let config =
            CONFIG.replace("act_calibration = \"mse\"", "overrides = \"enc/o.json\"  # tuned\nbias_bitwidth = 8");
        let settings = QuantSettings { act_bitwidth: 16, bias_bitwidth: 8, ..QuantSettings::default() };
        let path = Path::new("/p/enc/o.json");
        let text = add_target(file(), &config, &winner(&settings, Some(path))).unwrap();
        let new = &text[text.find("name = \"best\"").unwrap()..];
        assert!(new.contains("overrides = \"enc/o.json\"  # tuned\nbias_bitwidth = 8\n"), "{text}");
        // Without the overrides (--no-overrides), the key is dropped.
        let text = add_target(file(), &config, &winner(&settings, None)).unwrap();
        let new = &text[text.find("name = \"best\"").unwrap()..];
        assert!(!new.contains("overrides"), "{text}");
    }

    #[test]
    fn a_percentile_of_the_base_is_kept() {
        let config = CONFIG.replace("act_calibration = \"mse\"", "percentile = 99.9");
        let settings = QuantSettings {
            act_bitwidth: 16,
            act_calibration: CalibrationMethod::Percentile,
            percentile: 99.9,
            ..QuantSettings::default()
        };
        let text = add_target(file(), &config, &winner(&settings, None)).unwrap();
        let new = &text[text.find("name = \"best\"").unwrap()..];
        assert!(new.contains("percentile = 99.9\nact_calibration = \"percentile\"\n"), "{text}");
    }

    #[test]
    fn settings_the_text_cannot_give_are_refused_not_written() {
        // A percentile that is neither the base's nor inherited: the read-back check catches it.
        let settings = QuantSettings { act_bitwidth: 16, percentile: 99.5, ..QuantSettings::default() };
        let diag = add_target(file(), CONFIG, &winner(&settings, None)).unwrap_err();
        assert!(diag.message.contains("does not read back"), "{}", diag.message);
    }

    #[test]
    fn a_taken_or_invalid_name_is_refused() {
        let config = parse_config(file(), CONFIG).unwrap();
        assert!(check_name(&config, "htp").unwrap_err().message.contains("already has a target"));
        assert!(check_name(&config, "a/b").unwrap_err().message.contains("not a valid target name"));
        assert!(check_name(&config, "best").is_ok());
    }
}
