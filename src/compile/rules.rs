//! Backend rules: the declarative description of what each backend accepts (float or
//! quantized, bitwidths per tensor role, per-channel ops, supported ops) and how each op is
//! quantized on it. Rules are data: the standard set (`rules/*.toml` of this repository) is
//! compiled into the binary, and a project's own `rules/` files add backends or replace them by
//! name ([`RuleSet::merge`]).
//!
//! One file describes one backend:
//!
//! ```toml
//! [backend]
//! name = "htp"                      # what `[[target]] backend = ...` names
//! description = "..."               # optional
//! quantized = true                  # fixed-point backend (false: float only)
//! activation_bitwidths = [8, 16]    # quantized backends: accepted bitwidths per role
//! weight_bitwidths = [4, 8]
//! bias_bitwidths = [8, 32]          # optional; empty: biases stay float32
//! float_bitwidths = []              # float tensors it runs (16 | 32); required if not quantized
//! per_channel_ops = ["Conv"]        # ops whose weights may carry per-channel encodings
//! # supported_ops = ["Conv", ...]   # ONNX op types it runs; absent: every op qairt imports
//!
//! [ops.Reshape]                     # optional: overrides the op's default behaviour
//! output_encoding = "pass-through"  # calibrated | pass-through | fixed | float
//! # output_range = [0.0, 1.0]       # with "fixed": the output's encoding range
//! # propagate = true                # float_fallback carries encodings through the op
//! # squash = true                   # the op's input shares its output encoding (Relu)
//! ```
//!
//! Every op starts from the default quantization behaviour its registry entry declares
//! (`crate::ops`, listed in `docs/operators.md`); an `[ops.X]` table changes only the keys it
//! sets. Unknown keys are errors; every error carries the byte span of the offending text so the
//! CLI can point at line and column. New per-op keys can be added to `[ops.<OpType>]` without
//! breaking existing files.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Every op type a model's IR node can have (the registry's, `crate::ops`), sorted.
pub fn known_op_types() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = crate::ops::model_op_types().collect();
    all.sort_unstable();
    all
}

/// The standard rule files, shipped inside the binary: (file name, text).
const STANDARD_FILES: &[(&str, &str)] = &[
    ("rules/cpu.toml", include_str!("../../rules/cpu.toml")),
    ("rules/gpu.toml", include_str!("../../rules/gpu.toml")),
    ("rules/htp.toml", include_str!("../../rules/htp.toml")),
];

/// What a tensor is to the ops that read it; each role has its own accepted bitwidths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TensorRole {
    /// A graph input or a node output.
    Activation,
    /// A constant read as a weight (Conv/Gemm input 1, BatchNormalization parameters).
    Weight,
    /// A constant read as the bias of Conv or Gemm (input 2).
    Bias,
    /// Any other constant (e.g. the operand of an Add); accepts activation and weight
    /// bitwidths.
    Constant,
}

impl TensorRole {
    pub fn name(self) -> &'static str {
        match self {
            TensorRole::Activation => "activation",
            TensorRole::Weight => "weight",
            TensorRole::Bias => "bias",
            TensorRole::Constant => "constant",
        }
    }
}

pub use crate::quant::policy::{OpQuantization, QuantPolicy};

/// Per-op rules of one backend (`[ops.<OpType>]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRules {
    pub quantization: OpQuantization,
    /// `propagate = true`: `float_fallback` carries an encoding through this op from input to
    /// output (pass-through ops always do).
    #[serde(default)]
    pub propagate: bool,
    /// `squash = true`: the op's input takes its output encoding when nothing else reads it
    /// (the SDK's Relu squashing; a Clip only with a non-negative lower bound).
    #[serde(default)]
    pub squash: bool,
}

/// Everything one backend accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRules {
    pub name: String,
    pub description: String,
    /// The file these rules came from (for diagnostics). Not part of what the rules say, so it
    /// is left out of their serialized form: cache keys that hash the rules must not depend on
    /// where the project lives.
    #[serde(skip)]
    pub source: String,
    /// Fixed-point backend: activations and weights must carry integer encodings.
    pub quantized: bool,
    pub activation_bitwidths: BTreeSet<u32>,
    pub weight_bitwidths: BTreeSet<u32>,
    pub bias_bitwidths: BTreeSet<u32>,
    /// Float representations the backend runs (16 and/or 32).
    pub float_bitwidths: BTreeSet<u32>,
    pub per_channel_ops: BTreeSet<String>,
    pub supported_ops: BTreeSet<String>,
    /// Per-op behaviour; ops absent here use the defaults of [`OpRules`].
    pub ops: BTreeMap<String, OpRules>,
}

impl BackendRules {
    pub fn supports(&self, op_type: &str) -> bool {
        self.supported_ops.contains(op_type)
    }

    pub fn allows_per_channel(&self, op_type: &str) -> bool {
        self.per_channel_ops.contains(op_type)
    }

    /// How `op_type`'s output is quantized on this backend.
    pub fn op_quantization(&self, op_type: &str) -> OpQuantization {
        self.op_rules(op_type).quantization
    }

    /// What `quantize` needs of these rules.
    pub fn quant_policy(&self) -> QuantPolicy {
        QuantPolicy {
            ops: self.supported_ops.iter().map(|op| (op.clone(), self.op_rules(op).quantization)).collect(),
            propagating_ops: self.supported_ops.iter().filter(|op| self.op_rules(op).propagate).cloned().collect(),
            squashing_ops: self.supported_ops.iter().filter(|op| self.op_rules(op).squash).cloned().collect(),
            per_channel_ops: self.per_channel_ops.clone(),
            float_bitwidth: self.float_bitwidths.iter().next().copied().unwrap_or(32),
        }
    }

    /// The rules of one op: its `[ops.X]` table, else the registry's default.
    pub fn op_rules(&self, op: &str) -> OpRules {
        self.ops.get(op).cloned().unwrap_or_else(|| {
            let default = crate::ops::quant_default(op);
            OpRules { quantization: default.output.clone(), propagate: default.propagate, squash: default.squash }
        })
    }

    /// Integer bitwidths accepted for a tensor of `role` (empty on a float backend).
    pub fn quant_bitwidths(&self, role: TensorRole) -> BTreeSet<u32> {
        if !self.quantized {
            return BTreeSet::new();
        }
        match role {
            TensorRole::Activation => self.activation_bitwidths.clone(),
            TensorRole::Weight => self.weight_bitwidths.clone(),
            TensorRole::Bias => self.bias_bitwidths.clone(),
            TensorRole::Constant => self.activation_bitwidths.union(&self.weight_bitwidths).copied().collect(),
        }
    }
}

/// The backends known to a build, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    pub backends: BTreeMap<String, BackendRules>,
}

/// A backend name that no rule file defines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {name:?} (known: {})", known.join(", "))]
pub struct UnknownBackend {
    pub name: String,
    pub known: Vec<String>,
    /// The closest known name, if one is close.
    pub did_you_mean: Option<String>,
}

impl RuleSet {
    pub fn get(&self, name: &str) -> Option<&BackendRules> {
        self.backends.get(name)
    }

    /// Like [`RuleSet::get`], with an error that lists the known backends.
    pub fn backend(&self, name: &str) -> Result<&BackendRules, UnknownBackend> {
        self.backends.get(name).ok_or_else(|| {
            let known: Vec<String> = self.backends.keys().cloned().collect();
            UnknownBackend {
                name: name.to_string(),
                did_you_mean: closest(name, known.iter().map(String::as_str)).map(str::to_string),
                known,
            }
        })
    }

    /// Adds `other`'s backends; one with a name already present replaces it whole (a
    /// project's `rules/htp.toml` overrides the standard `htp`).
    pub fn merge(&mut self, other: RuleSet) {
        self.backends.extend(other.backends);
    }
}

/// A rule file that does not parse or does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file_name}: {message}")]
pub struct RulesError {
    pub file_name: String,
    pub message: String,
    /// Byte range of the offending text in the file, when known.
    pub span: Option<Range<usize>>,
    pub help: Option<String>,
}

/// The rules shipped with qairt (cpu, gpu, htp).
pub fn standard_rules() -> RuleSet {
    let mut set = RuleSet::default();
    for (file_name, text) in STANDARD_FILES {
        // The embedded files are part of the program, not user input; a unit test parses
        // each of them, so this cannot fail in a tested build.
        let rules = parse_rules(file_name, text).expect("the standard rule files are valid");
        set.merge(rules);
    }
    set
}

/// Parses one rule file (one backend).
pub fn parse_rules(file_name: &str, text: &str) -> Result<RuleSet, RulesError> {
    let file: RulesFile = toml::from_str(text).map_err(|e| RulesError {
        file_name: file_name.to_string(),
        message: e.message().trim_end().to_string(),
        span: e.span(),
        help: None,
    })?;
    let rules = Validator { file_name }.backend(file)?;
    let mut set = RuleSet::default();
    set.backends.insert(rules.name.clone(), rules);
    Ok(set)
}

// ---- the file schema (spanned so that semantic errors can point at the text) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    backend: BackendSection,
    #[serde(default)]
    ops: BTreeMap<Spanned<String>, OpSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendSection {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    quantized: Spanned<bool>,
    activation_bitwidths: Option<Spanned<Vec<Spanned<u32>>>>,
    weight_bitwidths: Option<Spanned<Vec<Spanned<u32>>>>,
    bias_bitwidths: Option<Spanned<Vec<Spanned<u32>>>>,
    float_bitwidths: Option<Spanned<Vec<Spanned<u32>>>>,
    per_channel_ops: Option<Spanned<Vec<Spanned<String>>>>,
    supported_ops: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpSection {
    output_encoding: Option<Spanned<String>>,
    output_range: Option<Spanned<[f32; 2]>>,
    propagate: Option<bool>,
    squash: Option<bool>,
}

const OUTPUT_ENCODINGS: &[&str] = &["calibrated", "pass-through", "fixed", "float"];

struct Validator<'a> {
    file_name: &'a str,
}

impl Validator<'_> {
    fn error(&self, span: Range<usize>, message: String, help: Option<String>) -> RulesError {
        RulesError { file_name: self.file_name.to_string(), message, span: Some(span), help }
    }

    fn backend(&self, file: RulesFile) -> Result<BackendRules, RulesError> {
        let section = file.backend;
        let name = section.name.get_ref();
        let name_ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(self.error(
                section.name.span(),
                format!("invalid backend name {name:?}"),
                Some("use lowercase letters, digits, '-' and '_', e.g. \"htp\"".into()),
            ));
        }
        let quantized = *section.quantized.get_ref();

        let activation = self.quant_bitwidths(section.activation_bitwidths, "activation_bitwidths", quantized)?;
        let weight = self.quant_bitwidths(section.weight_bitwidths, "weight_bitwidths", quantized)?;
        let bias = self.quant_bitwidths(section.bias_bitwidths, "bias_bitwidths", quantized)?;
        if quantized {
            for (set, key) in [(&activation, "activation_bitwidths"), (&weight, "weight_bitwidths")] {
                if set.is_empty() {
                    return Err(self.error(
                        section.quantized.span(),
                        format!("a quantized backend needs a non-empty `{key}`"),
                        Some(format!("add e.g. `{key} = [8]` to [backend]")),
                    ));
                }
            }
        }
        let float = self.float_bitwidths(section.float_bitwidths)?;
        if !quantized && float.is_empty() {
            return Err(self.error(
                section.quantized.span(),
                "a float backend (quantized = false) needs a non-empty `float_bitwidths`".into(),
                Some("add `float_bitwidths = [32]` to [backend]".into()),
            ));
        }

        let supported = match section.supported_ops {
            Some(list) => self.op_list(list, "supported_ops", None)?,
            None => known_op_types().into_iter().map(String::from).collect(),
        };
        let per_channel = match section.per_channel_ops {
            Some(list) => {
                if !quantized && !list.get_ref().is_empty() {
                    return Err(self.error(
                        list.span(),
                        "per-channel encodings need a quantized backend".into(),
                        Some("remove `per_channel_ops` or set `quantized = true`".into()),
                    ));
                }
                self.op_list(list, "per_channel_ops", Some(&supported))?
            }
            None => BTreeSet::new(),
        };

        let mut ops = BTreeMap::new();
        for (op_name, op_section) in file.ops {
            let op = self.known_op(&op_name)?;
            if !supported.contains(&op) {
                return Err(self.error(
                    op_name.span(),
                    format!("[ops.{op}] configures an op that `supported_ops` does not list"),
                    Some(format!("add \"{op}\" to supported_ops or remove [ops.{op}]")),
                ));
            }
            let rules = self.op_rules(&op, op_section, quantized, &float, op_name.span())?;
            ops.insert(op, rules);
        }

        Ok(BackendRules {
            name: name.clone(),
            description: section.description,
            source: self.file_name.to_string(),
            quantized,
            activation_bitwidths: activation,
            weight_bitwidths: weight,
            bias_bitwidths: bias,
            float_bitwidths: float,
            per_channel_ops: per_channel,
            supported_ops: supported,
            ops,
        })
    }

    fn quant_bitwidths(
        &self,
        list: Option<Spanned<Vec<Spanned<u32>>>>,
        key: &str,
        quantized: bool,
    ) -> Result<BTreeSet<u32>, RulesError> {
        let Some(list) = list else { return Ok(BTreeSet::new()) };
        if !quantized && !list.get_ref().is_empty() {
            return Err(self.error(
                list.span(),
                format!("`{key}` applies to quantized backends only"),
                Some(format!("remove `{key}` or set `quantized = true`")),
            ));
        }
        let mut set = BTreeSet::new();
        for bw in list.into_inner() {
            let value = *bw.get_ref();
            if !(1..=32).contains(&value) {
                return Err(self.error(
                    bw.span(),
                    format!("bitwidth {value} in `{key}` is out of range"),
                    Some("integer bitwidths are 1 to 32".into()),
                ));
            }
            set.insert(value);
        }
        Ok(set)
    }

    fn float_bitwidths(&self, list: Option<Spanned<Vec<Spanned<u32>>>>) -> Result<BTreeSet<u32>, RulesError> {
        let Some(list) = list else { return Ok(BTreeSet::new()) };
        let mut set = BTreeSet::new();
        for bw in list.into_inner() {
            let value = *bw.get_ref();
            if value != 16 && value != 32 {
                return Err(self.error(
                    bw.span(),
                    format!("float bitwidth {value} is not supported"),
                    Some("float tensors are 16 or 32 bits".into()),
                ));
            }
            set.insert(value);
        }
        Ok(set)
    }

    fn known_op(&self, name: &Spanned<String>) -> Result<String, RulesError> {
        let op = name.get_ref();
        let known = known_op_types();
        if known.contains(&op.as_str()) {
            return Ok(op.clone());
        }
        let help = match closest(op, known.iter().copied()) {
            Some(near) => format!("did you mean \"{near}\"?"),
            None => format!("known op types: {}", known.join(", ")),
        };
        Err(self.error(name.span(), format!("unknown op type {op:?}"), Some(help)))
    }

    fn op_list(
        &self,
        list: Spanned<Vec<Spanned<String>>>,
        key: &str,
        within: Option<&BTreeSet<String>>,
    ) -> Result<BTreeSet<String>, RulesError> {
        let mut set = BTreeSet::new();
        for name in list.into_inner() {
            let op = self.known_op(&name)?;
            if let Some(within) = within
                && !within.contains(&op)
            {
                return Err(self.error(
                    name.span(),
                    format!("`{key}` lists {op:?}, which `supported_ops` does not"),
                    Some(format!("add \"{op}\" to supported_ops")),
                ));
            }
            if !set.insert(op.clone()) {
                return Err(self.error(
                    name.span(),
                    format!("`{key}` lists {op:?} twice"),
                    Some("remove the duplicate".into()),
                ));
            }
        }
        Ok(set)
    }

    fn op_rules(
        &self,
        op: &str,
        section: OpSection,
        quantized: bool,
        float: &BTreeSet<u32>,
        table_span: Range<usize>,
    ) -> Result<OpRules, RulesError> {
        let default = crate::ops::quant_default(op);
        let Some(kind) = section.output_encoding else {
            if let Some(range) = section.output_range {
                return Err(self.error(
                    range.span(),
                    format!("[ops.{op}] has `output_range` but no `output_encoding = \"fixed\"`"),
                    Some("add `output_encoding = \"fixed\"`".into()),
                ));
            }
            return Ok(OpRules {
                quantization: default.output.clone(),
                propagate: section.propagate.unwrap_or(default.propagate),
                squash: section.squash.unwrap_or(default.squash),
            });
        };
        let kind_span = kind.span();
        let quantization = match kind.get_ref().as_str() {
            "calibrated" => OpQuantization::Calibrated,
            "pass-through" => OpQuantization::PassThrough,
            "float" => {
                if quantized && float.is_empty() {
                    return Err(self.error(
                        kind_span,
                        format!("[ops.{op}] stays float, but the backend runs no float tensors"),
                        Some("add the float bitwidth to `float_bitwidths`, e.g. [16]".into()),
                    ));
                }
                OpQuantization::Float
            }
            "fixed" => {
                let Some(range) = &section.output_range else {
                    return Err(self.error(
                        kind_span,
                        format!("[ops.{op}] has a fixed output encoding but no `output_range`"),
                        Some("add e.g. `output_range = [0.0, 1.0]`".into()),
                    ));
                };
                let [min, max] = *range.get_ref();
                if !(min.is_finite() && max.is_finite() && min < max) {
                    return Err(self.error(
                        range.span(),
                        format!("output_range [{min}, {max}] is not a finite, increasing range"),
                        None,
                    ));
                }
                OpQuantization::FixedRange { min, max }
            }
            other => {
                let help = match closest(other, OUTPUT_ENCODINGS.iter().copied()) {
                    Some(near) => format!("did you mean \"{near}\"?"),
                    None => format!("expected one of: {}", OUTPUT_ENCODINGS.join(", ")),
                };
                return Err(self.error(kind_span, format!("unknown output_encoding {other:?}"), Some(help)));
            }
        };
        if !matches!(quantization, OpQuantization::FixedRange { .. })
            && let Some(range) = &section.output_range
        {
            return Err(self.error(
                range.span(),
                format!("`output_range` needs `output_encoding = \"fixed\"` in [ops.{op}]"),
                None,
            ));
        }
        if !quantized && quantization != OpQuantization::Calibrated {
            return Err(self.error(
                table_span,
                format!("[ops.{op}] sets quantization behaviour on a float backend"),
                Some("per-op quantization rules apply to quantized backends only".into()),
            ));
        }
        Ok(OpRules {
            quantization,
            propagate: section.propagate.unwrap_or(default.propagate),
            squash: section.squash.unwrap_or(default.squash),
        })
    }
}

/// The candidate nearest to `name`, if it is close enough to be a likely typo.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::levenshtein(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 4))
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_op_types_come_from_the_registry() {
        let known = known_op_types();
        assert!(known.contains(&"Conv") && known.contains(&"Softmax"));
        assert!(!known.contains(&"Convert"), "an IR-only op is not a model op type");
        assert!(!known.contains(&"Shape"), "an op folded at import leaves no IR node");
        let unique: BTreeSet<&str> = known.iter().copied().collect();
        assert_eq!(unique.len(), known.len(), "no duplicates");
    }

    #[test]
    fn standard_rules_define_cpu_gpu_and_htp() {
        let set = standard_rules();
        assert_eq!(set.backends.keys().collect::<Vec<_>>(), ["cpu", "gpu", "htp"]);
        let all: BTreeSet<String> = known_op_types().into_iter().map(String::from).collect();
        for rules in set.backends.values() {
            assert_eq!(rules.supported_ops, all, "{} supports every IR op", rules.name);
        }
        let cpu = &set.backends["cpu"];
        assert!(!cpu.quantized);
        assert_eq!(cpu.float_bitwidths, BTreeSet::from([32]));
        let htp = &set.backends["htp"];
        assert!(htp.quantized);
        assert_eq!(htp.activation_bitwidths, BTreeSet::from([8, 16]));
        assert_eq!(htp.weight_bitwidths, BTreeSet::from([4, 8, 16]));
        assert_eq!(htp.bias_bitwidths, BTreeSet::from([8, 32]));
        assert_eq!(htp.float_bitwidths, BTreeSet::from([16]));
        assert_eq!(
            htp.per_channel_ops,
            ["Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"].map(String::from).into()
        );
        assert_eq!(htp.op_quantization("Reshape"), OpQuantization::PassThrough);
        assert_eq!(htp.op_quantization("Sigmoid"), OpQuantization::FixedRange { min: 0.0, max: 1.0 });
        assert_eq!(htp.op_quantization("Tanh"), OpQuantization::FixedRange { min: -1.0, max: 1.0 });
        let policy = htp.quant_policy();
        assert_eq!(policy.float_bitwidth, 16);
        assert!(policy.propagating_ops.contains("Relu") && policy.propagating_ops.contains("Concat"));
        assert_eq!(policy.squashing_ops, ["Clip", "Relu"].map(String::from).into());
        assert_eq!(htp.op_quantization("Conv"), OpQuantization::Calibrated);
        assert_eq!(htp.quant_bitwidths(TensorRole::Constant), BTreeSet::from([4, 8, 16]));
        assert_eq!(set.backends["gpu"].float_bitwidths, BTreeSet::from([16, 32]));
    }

    const MINIMAL: &str = r#"
[backend]
name = "npu"
quantized = true
activation_bitwidths = [8]
weight_bitwidths = [8]
supported_ops = ["Conv", "Relu", "Sigmoid"]
"#;

    fn parse_err(text: &str) -> RulesError {
        parse_rules("rules/npu.toml", text).unwrap_err()
    }

    /// The text the error's span covers.
    fn spanned<'a>(text: &'a str, err: &RulesError) -> &'a str {
        &text[err.span.clone().expect("error has a span")]
    }

    #[test]
    fn a_minimal_file_parses_with_defaults() {
        let set = parse_rules("rules/npu.toml", MINIMAL).unwrap();
        let npu = set.get("npu").unwrap();
        assert!(npu.bias_bitwidths.is_empty() && npu.float_bitwidths.is_empty());
        assert!(npu.supports("Relu") && !npu.supports("Gemm"));
        assert_eq!(npu.source, "rules/npu.toml");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_span() {
        let text = MINIMAL.replace("quantized = true", "quantized = true\nquantised = false");
        let err = parse_err(&text);
        assert!(err.message.contains("quantised"), "{err}");
        assert_eq!(spanned(&text, &err), "quantised");
    }

    #[test]
    fn wrong_types_point_at_the_value() {
        let text = MINIMAL.replace("quantized = true", "quantized = \"yes\"");
        let err = parse_err(&text);
        assert_eq!(spanned(&text, &err), "\"yes\"");
    }

    #[test]
    fn a_misspelled_op_gets_a_suggestion() {
        let text = MINIMAL.replace("\"Relu\"", "\"ReLU6\"");
        let err = parse_err(&text);
        assert_eq!(spanned(&text, &err), "\"ReLU6\"");
        assert_eq!(err.help.as_deref(), Some("did you mean \"Relu\"?"));
    }

    #[test]
    fn out_of_range_and_misplaced_bitwidths_are_errors() {
        let text = MINIMAL.replace("weight_bitwidths = [8]", "weight_bitwidths = [8, 40]");
        assert_eq!(spanned(&text, &parse_err(&text)), "40");
        let text = MINIMAL.replace("weight_bitwidths = [8]", "weight_bitwidths = [8]\nfloat_bitwidths = [8]");
        assert!(parse_err(&text).message.contains("float bitwidth 8"));
        let text = MINIMAL.replace("quantized = true", "quantized = false\nfloat_bitwidths = [32]");
        assert!(parse_err(&text).message.contains("quantized backends only"));
        let text = MINIMAL.replace("quantized = true", "quantized = false");
        assert!(parse_err(&text).message.contains("activation_bitwidths"));
        let text = MINIMAL.replace("weight_bitwidths = [8]\n", "");
        assert!(parse_err(&text).message.contains("weight_bitwidths"));
    }

    #[test]
    fn per_channel_ops_must_be_supported() {
        let text = MINIMAL.replace("weight_bitwidths = [8]", "weight_bitwidths = [8]\nper_channel_ops = [\"Gemm\"]");
        let err = parse_err(&text);
        assert!(err.message.contains("\"Gemm\""), "{err}");
        assert_eq!(spanned(&text, &err), "\"Gemm\"");
    }

    #[test]
    fn op_tables_are_validated() {
        let ok = format!("{MINIMAL}\n[ops.Sigmoid]\noutput_encoding = \"fixed\"\noutput_range = [0.0, 1.0]\n");
        let set = parse_rules("rules/npu.toml", &ok).unwrap();
        assert_eq!(
            set.get("npu").unwrap().op_quantization("Sigmoid"),
            OpQuantization::FixedRange { min: 0.0, max: 1.0 }
        );

        let no_range = format!("{MINIMAL}\n[ops.Sigmoid]\noutput_encoding = \"fixed\"\n");
        assert!(parse_err(&no_range).message.contains("no `output_range`"));

        let typo = format!("{MINIMAL}\n[ops.Relu]\noutput_encoding = \"passthrough\"\n");
        let err = parse_err(&typo);
        assert_eq!(err.help.as_deref(), Some("did you mean \"pass-through\"?"));
        assert_eq!(spanned(&typo, &err), "\"passthrough\"");

        let unsupported = format!("{MINIMAL}\n[ops.Gemm]\noutput_encoding = \"float\"\n");
        let err = parse_err(&unsupported);
        assert!(err.message.contains("does not list"), "{err}");
        assert_eq!(spanned(&unsupported, &err), "Gemm");

        let float_without_float = format!("{MINIMAL}\n[ops.Relu]\noutput_encoding = \"float\"\n");
        assert!(parse_err(&float_without_float).message.contains("no float tensors"));

        let unknown_key = format!("{MINIMAL}\n[ops.Relu]\nfused = true\n");
        assert!(parse_err(&unknown_key).message.contains("fused"));
    }

    #[test]
    fn merge_adds_and_replaces_by_name() {
        let mut set = standard_rules();
        let custom = MINIMAL.replace("\"npu\"", "\"htp\"");
        set.merge(parse_rules("project/rules/htp.toml", &custom).unwrap());
        set.merge(parse_rules("project/rules/npu.toml", MINIMAL).unwrap());
        assert_eq!(set.backends.keys().collect::<Vec<_>>(), ["cpu", "gpu", "htp", "npu"]);
        let htp = set.get("htp").unwrap();
        assert_eq!(htp.source, "project/rules/htp.toml");
        assert!(!htp.supports("Gemm"), "the project's htp replaced the standard one whole");
    }

    #[test]
    fn unknown_backends_suggest_a_near_name() {
        let set = standard_rules();
        let err = set.backend("htpp").unwrap_err();
        assert_eq!(err.did_you_mean.as_deref(), Some("htp"));
        assert_eq!(err.known, ["cpu", "gpu", "htp"]);
        assert!(set.backend("cpu").is_ok());
    }
}
