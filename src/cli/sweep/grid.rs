//! The grid of `qairt sweep`: axis values read from comma lists on the command line, checked
//! against the base target's backend rules, expanded into named quantization settings.
//!
//! An axis left out on the command line takes its default list, cut down to what the backend
//! accepts (a backend without 16-bit activations simply sweeps 8-bit ones); a value the user
//! wrote that the backend refuses is an error, never silently dropped.

use crate::compile::BackendRules;
use crate::diag::{Diag, closest};
use crate::quant::settings::{CalibrationMethod, QuantSettings, Schema};

/// The axes as written on the command line: a comma list each, `None` for the default.
#[derive(Clone, Debug, Default)]
pub struct AxisArgs {
    pub act_calibration: Option<String>,
    pub param_calibration: Option<String>,
    pub act_schema: Option<String>,
    pub param_schema: Option<String>,
    pub per_channel: Option<String>,
    pub per_row: Option<String>,
    pub cle: Option<String>,
    pub act_bitwidth: Option<String>,
    pub weight_bitwidth: Option<String>,
}

/// The values of every axis, in the order given (duplicates removed).
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub act_calibration: Vec<CalibrationMethod>,
    pub param_calibration: Vec<CalibrationMethod>,
    pub act_schema: Vec<Schema>,
    pub param_schema: Vec<Schema>,
    pub per_channel: Vec<bool>,
    pub per_row: Vec<bool>,
    pub cle: Vec<bool>,
    pub act_bitwidth: Vec<u32>,
    pub weight_bitwidth: Vec<u32>,
}

/// One generated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub name: String,
    pub settings: QuantSettings,
}

/// The activation calibration methods swept by default (the SDK quantizer's own).
const DEFAULT_METHODS: [CalibrationMethod; 5] = [
    CalibrationMethod::MinMax,
    CalibrationMethod::Percentile,
    CalibrationMethod::Mse,
    CalibrationMethod::Sqnr,
    CalibrationMethod::Entropy,
];

/// The `--flag` names, for diagnostics.
const ACT_CALIBRATION: &str = "--act-calibration";
const PARAM_CALIBRATION: &str = "--param-calibration";
const ACT_SCHEMA: &str = "--act-schema";
const PARAM_SCHEMA: &str = "--param-schema";
const PER_CHANNEL: &str = "--per-channel";
const PER_ROW: &str = "--per-row";
const CLE: &str = "--cle";
const ACT_BITWIDTH: &str = "--act-bitwidth";
const WEIGHT_BITWIDTH: &str = "--weight-bitwidth";

pub fn schema_name(schema: Schema) -> &'static str {
    match schema {
        Schema::Asymmetric => "asymmetric",
        Schema::Symmetric => "symmetric",
    }
}

fn bad_value(flag: &str, value: &str, allowed: &[&str]) -> Diag {
    let mut help = format!("allowed values: {}", allowed.join(", "));
    if let Some(near) = closest(value, allowed.iter().copied()) {
        help = format!("did you mean \"{near}\"? ({help})");
    }
    Diag::error("qairt::sweep::bad_axis", format!("{flag}: \"{value}\" is not a valid value"))
        .with_help(format!("{help}; give a comma-separated list, e.g. {flag} {}", allowed.join(",")))
}

/// Splits a comma list, parses each item, drops repeats (keeping the first).
fn parse_list<T: PartialEq>(
    flag: &str,
    text: &str,
    allowed: &[&str],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, Diag> {
    let mut values = Vec::new();
    for item in text.split(',').map(str::trim) {
        let value = parse(item).ok_or_else(|| bad_value(flag, item, allowed))?;
        if !values.contains(&value) {
            values.push(value);
        }
    }
    Ok(values)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn parse_bitwidth(allowed: &'static [u32]) -> impl Fn(&str) -> Option<u32> {
    move |text| text.parse::<u32>().ok().filter(|b| allowed.contains(b))
}

/// `explicit` values must all be accepted by the backend; `defaults` are cut down to those it
/// accepts (and an axis left empty is an error).
fn allowed_by_backend<T: Copy + PartialEq + std::fmt::Display>(
    flag: &str,
    values: Vec<T>,
    explicit: bool,
    accepted: impl Fn(T) -> bool,
    backend: &BackendRules,
    what: &str,
) -> Result<Vec<T>, Diag> {
    let (kept, refused): (Vec<T>, Vec<T>) = values.into_iter().partition(|v| accepted(*v));
    let refused_diag = |v: T| {
        Diag::error(
            "qairt::sweep::not_allowed",
            format!("{flag}: backend \"{}\" does not allow {what} {v}", backend.name),
        )
        .with_help(format!("the backend's rules ({}) decide what it accepts; remove {v} from {flag}", backend.source))
    };
    if explicit && let Some(&v) = refused.first() {
        return Err(refused_diag(v));
    }
    if kept.is_empty() {
        return Err(match refused.first() {
            Some(&v) => refused_diag(v),
            None => Diag::error("qairt::sweep::bad_axis", format!("{flag} has no values")),
        });
    }
    Ok(kept)
}

impl Grid {
    /// Reads the axes, with defaults taken from `base` where the sweep does not vary an axis
    /// by default, and checks them against `backend`.
    pub fn new(args: &AxisArgs, base: &QuantSettings, backend: &BackendRules) -> Result<Grid, Diag> {
        // The sweep has its own schema axes: a legacy name that implies a schema
        // ("symmetric") is not a calibration method here.
        let methods: Vec<&str> = CalibrationMethod::NAMES
            .iter()
            .copied()
            .filter(|n| CalibrationMethod::parse_legacy(n).is_some_and(|(_, schema)| schema.is_none()))
            .collect();
        let parse_method = |n: &str| CalibrationMethod::parse_legacy(n).filter(|(_, s)| s.is_none()).map(|(m, _)| m);
        let calibration = |flag: &str, text: &Option<String>, default: Vec<CalibrationMethod>| match text {
            Some(t) => parse_list(flag, t, &methods, parse_method),
            None => Ok(default),
        };
        let schema = |flag: &str, text: &Option<String>, default: Vec<Schema>| match text {
            Some(t) => parse_list(flag, t, Schema::NAMES, Schema::parse),
            None => Ok(default),
        };
        let bools = |flag: &str, text: &Option<String>, default: Vec<bool>| match text {
            Some(t) => parse_list(flag, t, &["true", "false"], parse_bool),
            None => Ok(default),
        };
        let act_calibration = calibration(ACT_CALIBRATION, &args.act_calibration, DEFAULT_METHODS.to_vec())?;
        let param_calibration = calibration(PARAM_CALIBRATION, &args.param_calibration, vec![base.param_calibration])?;
        let act_schema = schema(ACT_SCHEMA, &args.act_schema, vec![Schema::Asymmetric, Schema::Symmetric])?;
        let param_schema = schema(PARAM_SCHEMA, &args.param_schema, vec![base.param_schema])?;

        let per_channel = bools(PER_CHANNEL, &args.per_channel, vec![true, false])?;
        let per_channel = allowed_by_backend(
            PER_CHANNEL,
            per_channel,
            args.per_channel.is_some(),
            |pc| !pc || !backend.per_channel_ops.is_empty(),
            backend,
            "per-channel weights =",
        )?;
        // Per-row weights are per-channel encodings of Gemm and MatMul operands.
        let per_row = bools(PER_ROW, &args.per_row, vec![base.per_row])?;
        let per_row = allowed_by_backend(
            PER_ROW,
            per_row,
            args.per_row.is_some(),
            |pr| !pr || backend.allows_per_channel("Gemm") || backend.allows_per_channel("MatMul"),
            backend,
            "per-row weights =",
        )?;
        let cle = bools(CLE, &args.cle, vec![false, true])?;

        let act_bitwidth = match &args.act_bitwidth {
            Some(t) => parse_list(ACT_BITWIDTH, t, &["8", "16"], parse_bitwidth(&[8, 16]))?,
            None => vec![8, 16],
        };
        let act_bitwidth = allowed_by_backend(
            ACT_BITWIDTH,
            act_bitwidth,
            args.act_bitwidth.is_some(),
            |b| backend.activation_bitwidths.contains(&b),
            backend,
            "activation bitwidth",
        )?;
        let weight_bitwidth = match &args.weight_bitwidth {
            Some(t) => parse_list(WEIGHT_BITWIDTH, t, &["4", "8", "16"], parse_bitwidth(&[4, 8, 16]))?,
            None => vec![base.weight_bitwidth],
        };
        let weight_bitwidth = allowed_by_backend(
            WEIGHT_BITWIDTH,
            weight_bitwidth,
            // The base's own bitwidth is the default: the backend must accept it too.
            true,
            |b| backend.weight_bitwidths.contains(&b),
            backend,
            "weight bitwidth",
        )?;
        Ok(Grid {
            act_calibration,
            param_calibration,
            act_schema,
            param_schema,
            per_channel,
            per_row,
            cle,
            act_bitwidth,
            weight_bitwidth,
        })
    }

    /// Every combination, as settings derived from `base`, in a fixed order: bitwidths
    /// outermost, then calibration, schemas, per-channel and CLE, each axis in the order given.
    pub fn expand(&self, base: &QuantSettings) -> Vec<Config> {
        let mut configs = Vec::new();
        for &act_bitwidth in &self.act_bitwidth {
            for &weight_bitwidth in &self.weight_bitwidth {
                for &act_calibration in &self.act_calibration {
                    for &param_calibration in &self.param_calibration {
                        for &act_schema in &self.act_schema {
                            for &param_schema in &self.param_schema {
                                for (&per_channel, &per_row) in pairs(&self.per_channel, &self.per_row) {
                                    for &cle in &self.cle {
                                        let mut s = base.clone();
                                        s.act_bitwidth = act_bitwidth;
                                        s.weight_bitwidth = weight_bitwidth;
                                        s.act_calibration = act_calibration;
                                        s.param_calibration = param_calibration;
                                        s.act_schema = act_schema;
                                        s.param_schema = param_schema;
                                        s.per_channel = per_channel;
                                        s.per_row = per_row;
                                        s.algorithms.retain(|a| a != "cle");
                                        if cle {
                                            s.algorithms.push("cle".to_string());
                                        }
                                        configs.push(Config { name: config_name(&s), settings: s });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        configs
    }
}

/// Every (a, b) of two axes, `a` outermost.
fn pairs<'a, A, B>(a: &'a [A], b: &'a [B]) -> impl Iterator<Item = (&'a A, &'a B)> {
    a.iter().flat_map(move |x| b.iter().map(move |y| (x, y)))
}

fn method_tag(method: CalibrationMethod) -> String {
    method.name().replace('-', "")
}

fn schema_tag(schema: Schema) -> &'static str {
    match schema {
        Schema::Asymmetric => "asym",
        Schema::Symmetric => "sym",
    }
}

/// The name of a generated target, a function of the swept settings only:
/// `sweep-a<act bits>w<weight bits>-<act calibration>-<act schema>-<pc|pt>`, then
/// `-pr` with per-row weights, `-p<param calibration>` and `-p<param schema>` when those
/// differ from the defaults (min-max, symmetric), and `-cle` with cross-layer equalization.
pub fn config_name(s: &QuantSettings) -> String {
    let mut name = format!(
        "sweep-a{}w{}-{}-{}-{}",
        s.act_bitwidth,
        s.weight_bitwidth,
        method_tag(s.act_calibration),
        schema_tag(s.act_schema),
        if s.per_channel { "pc" } else { "pt" }
    );
    if s.per_row {
        name.push_str("-pr");
    }
    if s.param_calibration != CalibrationMethod::MinMax {
        name.push_str(&format!("-p{}", method_tag(s.param_calibration)));
    }
    if s.param_schema != Schema::Symmetric {
        name.push_str(&format!("-p{}", schema_tag(s.param_schema)));
    }
    if s.algorithms.iter().any(|a| a == "cle") {
        name.push_str("-cle");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn htp() -> BackendRules {
        crate::compile::standard_rules().backend("htp").expect("htp is a standard backend").clone()
    }

    fn args(f: impl FnOnce(&mut AxisArgs)) -> AxisArgs {
        let mut a = AxisArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn the_default_grid_is_every_method_schema_channel_mode_cle_and_bitwidth() {
        let grid = Grid::new(&AxisArgs::default(), &QuantSettings::default(), &htp()).unwrap();
        // 5 methods x 2 act schemas x per-channel on/off x CLE on/off x 8/16-bit activations.
        let configs = grid.expand(&QuantSettings::default());
        assert_eq!(configs.len(), 5 * 2 * 2 * 2 * 2);
        let mut names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 80, "names are unique");
    }

    #[test]
    fn a_small_grid_expands_in_order_with_names_from_the_settings() {
        let a = args(|a| {
            a.act_calibration = Some("mse,min-max".into());
            a.act_bitwidth = Some("8, 16".into());
            a.act_schema = Some("symmetric".into());
            a.per_channel = Some("true".into());
            a.cle = Some("false".into());
        });
        let configs = Grid::new(&a, &QuantSettings::default(), &htp()).unwrap().expand(&QuantSettings::default());
        let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sweep-a8w8-mse-sym-pc",
                "sweep-a8w8-minmax-sym-pc",
                "sweep-a16w8-mse-sym-pc",
                "sweep-a16w8-minmax-sym-pc"
            ]
        );
        assert_eq!(configs[2].settings.act_bitwidth, 16);
        assert_eq!(configs[2].settings.act_calibration, CalibrationMethod::Mse);
        assert_eq!(configs[2].settings.act_schema, Schema::Symmetric);
    }

    #[test]
    fn names_mark_cle_and_non_default_param_settings() {
        let mut s = QuantSettings { act_bitwidth: 16, act_calibration: CalibrationMethod::Mse, ..Default::default() };
        s.act_schema = Schema::Symmetric;
        s.algorithms = vec!["cle".into()];
        assert_eq!(config_name(&s), "sweep-a16w8-mse-sym-pc-cle");
        s.param_calibration = CalibrationMethod::Entropy;
        s.param_schema = Schema::Asymmetric;
        s.per_channel = false;
        s.per_row = true;
        assert_eq!(config_name(&s), "sweep-a16w8-mse-sym-pt-pr-pentropy-pasym-cle");
    }

    #[test]
    fn cle_off_removes_it_from_a_base_that_has_it() {
        let base = QuantSettings { algorithms: vec!["cle".into()], ..Default::default() };
        let a = args(|a| a.cle = Some("false,true".into()));
        let configs = Grid::new(&a, &base, &htp()).unwrap().expand(&base);
        assert!(configs.iter().any(|c| c.settings.algorithms.is_empty()));
        assert!(configs.iter().all(|c| c.settings.algorithms.iter().filter(|a| *a == "cle").count() <= 1));
    }

    #[test]
    fn an_unknown_method_is_refused_with_a_suggestion() {
        let a = args(|a| a.act_calibration = Some("mse,min_max".into()));
        let diag = Grid::new(&a, &QuantSettings::default(), &htp()).unwrap_err();
        assert!(diag.message.contains("--act-calibration") && diag.message.contains("min_max"), "{}", diag.message);
        assert!(diag.help.unwrap().contains("did you mean \"min-max\""));
    }

    #[test]
    fn a_bitwidth_outside_the_config_domain_is_refused() {
        let a = args(|a| a.act_bitwidth = Some("8,12".into()));
        let diag = Grid::new(&a, &QuantSettings::default(), &htp()).unwrap_err();
        assert_eq!(diag.code, "qairt::sweep::bad_axis");
        assert!(diag.message.contains("\"12\""));
        let empty = args(|a| a.cle = Some("true,".into()));
        assert!(Grid::new(&empty, &QuantSettings::default(), &htp()).is_err());
    }

    #[test]
    fn a_value_the_backend_refuses_is_an_error_when_asked_for_and_skipped_by_default() {
        let mut backend = htp();
        backend.activation_bitwidths = [8].into();
        backend.per_channel_ops.clear();
        let defaults = Grid::new(&AxisArgs::default(), &QuantSettings::default(), &backend).unwrap();
        assert_eq!(defaults.act_bitwidth, [8]);
        assert_eq!(defaults.per_channel, [false]);
        assert_eq!(defaults.per_row, [false], "the base's");
        let per_row = args(|a| a.per_row = Some("false,true".into()));
        let diag = Grid::new(&per_row, &QuantSettings::default(), &backend).unwrap_err();
        assert!(diag.message.contains("per-row weights = true"), "{}", diag.message);
        let asked = args(|a| a.act_bitwidth = Some("16".into()));
        let diag = Grid::new(&asked, &QuantSettings::default(), &backend).unwrap_err();
        assert_eq!(diag.code, "qairt::sweep::not_allowed");
        assert!(diag.message.contains("activation bitwidth 16"), "{}", diag.message);
        backend.weight_bitwidths = [4, 8].into();
        let wide = args(|a| a.weight_bitwidth = Some("8,16".into()));
        let diag = Grid::new(&wide, &QuantSettings::default(), &backend).unwrap_err();
        assert!(diag.message.contains("weight bitwidth 16"), "{}", diag.message);
        // The base's own weight bitwidth is checked too.
        let base = QuantSettings { weight_bitwidth: 16, ..Default::default() };
        assert!(Grid::new(&AxisArgs::default(), &base, &backend).is_err());
    }

    #[test]
    fn repeated_values_count_once() {
        let a = args(|a| a.act_bitwidth = Some("8,8,16".into()));
        assert_eq!(Grid::new(&a, &QuantSettings::default(), &htp()).unwrap().act_bitwidth, [8, 16]);
    }

    #[test]
    fn per_row_is_an_axis_when_asked_for() {
        let a = args(|a| {
            a.act_calibration = Some("mse".into());
            a.act_bitwidth = Some("8".into());
            a.act_schema = Some("asymmetric".into());
            a.cle = Some("false".into());
            a.per_row = Some("false,true".into());
        });
        let configs = Grid::new(&a, &QuantSettings::default(), &htp()).unwrap().expand(&QuantSettings::default());
        let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sweep-a8w8-mse-asym-pc",
                "sweep-a8w8-mse-asym-pc-pr",
                "sweep-a8w8-mse-asym-pt",
                "sweep-a8w8-mse-asym-pt-pr"
            ]
        );
        assert!(configs[1].settings.per_row && !configs[2].settings.per_row);
    }
}
