//! Matching an overrides file against a graph: every name must be a tensor of the graph (its
//! ONNX name, or the SDK-sanitized form of it), listed in the right section (a 2.0.0 file has
//! none: the graph places its entries), float, and with one per-channel encoding per output
//! channel, along the axis the file gives if it gives one.

use std::collections::{BTreeMap, HashMap};

use super::{
    BlockEncoding, OverrideEncoding, OverrideError, OverrideErrorKind as Kind, Overrides, Section, sanitize_name,
};
use crate::ir::{DType, Graph, TensorId};

/// The longest name a did-you-mean is looked for (see `closest`).
const MAX_SUGGESTED_NAME: usize = 1024;

/// One override that names a graph tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedOverride {
    /// The name as the file spells it.
    pub name: String,
    pub section: Section,
    pub encoding: OverrideEncoding,
}

/// The overrides that passed [`check_overrides`], keyed by graph tensor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedOverrides {
    pub tensors: BTreeMap<TensorId, ResolvedOverride>,
}

impl ResolvedOverrides {
    pub fn get(&self, id: TensorId) -> Option<&OverrideEncoding> {
        self.tensors.get(&id).map(|r| &r.encoding)
    }
}

/// Every problem of `o` with respect to `graph` (errors only; the parse warnings stay in
/// `o.source.warnings`).
pub fn check_overrides(o: &Overrides, graph: &Graph) -> Vec<OverrideError> {
    resolve_overrides(o, graph).1
}

/// Maps every entry to its graph tensor; entries with a problem are left out and reported.
pub fn resolve_overrides(o: &Overrides, graph: &Graph) -> (ResolvedOverrides, Vec<OverrideError>) {
    let index = NameIndex::new(graph);
    let mut resolved = ResolvedOverrides::default();
    let mut errors = Vec::new();
    for (section, name, encoding) in o.entries() {
        let at = o.spans_of(section, name).name;
        let id = match index.lookup(name) {
            Lookup::Found(id) => id,
            Lookup::Ambiguous(ids) => {
                let names: Vec<String> = ids.iter().map(|&i| format!("\"{}\"", graph.name(i))).collect();
                errors.push(
                    OverrideError::error(
                        Kind::AmbiguousName,
                        at,
                        format!("\"{name}\" matches several tensors once sanitized: {}", names.join(", ")),
                    )
                    .with_help("use the exact ONNX tensor name"),
                );
                continue;
            }
            Lookup::Missing => {
                let mut e =
                    OverrideError::error(Kind::UnknownTensor, at, format!("the model has no tensor named \"{name}\""));
                if let Some(s) = index.closest(graph, name, section) {
                    e = e.with_help(format!("did you mean \"{s}\"?"));
                }
                errors.push(e);
                continue;
            }
        };
        let is_param = graph.is_constant(id);
        let belongs = if is_param { Section::Param } else { Section::Activation };
        if section != Section::Encodings && belongs != section {
            let what = if is_param {
                "a parameter (a constant of the model)"
            } else {
                "an activation (a graph input or an op output)"
            };
            errors.push(
                OverrideError::error(
                    Kind::WrongSection,
                    at,
                    format!("\"{name}\" is {what}, listed under \"{}\"", section.key()),
                )
                .with_help(format!("move the entry to \"{}\"", belongs.key())),
            );
            continue;
        }
        let info = graph.info(id);
        if info.dtype != DType::F32 {
            errors.push(OverrideError::error(
                Kind::NotFloat,
                at,
                format!("\"{name}\" is a {} tensor; only float tensors are quantized", info.dtype.name()),
            ));
            continue;
        }
        match encoding {
            OverrideEncoding::Int(channels) if channels.len() > 1 => {
                if belongs == Section::Activation {
                    errors.push(OverrideError::error(
                        Kind::Unsupported,
                        at,
                        format!("\"{name}\" has {} encodings; activations take one (per-tensor)", channels.len()),
                    ));
                    continue;
                }
                let axis = channel_axis(graph, id);
                if let Some(&given) = o.axes.get(name).filter(|&&given| given != axis) {
                    let at = o.spans_of(section, name).field(0, "axis").unwrap_or(at);
                    errors.push(
                        OverrideError::error(
                            Kind::Axis,
                            at,
                            format!(
                                "\"{name}\" gives axis {given}, but its output channels are axis {axis} of shape {:?}",
                                info.shape
                            ),
                        )
                        .with_help(format!("per-channel encodings run along the output channels: \"axis\": {axis}")),
                    );
                    continue;
                }
                let expected = info.shape.get(axis).copied();
                if expected != Some(channels.len()) {
                    let has = match expected {
                        Some(n) => format!("{n} output channels (axis {axis} of shape {:?})", info.shape),
                        None => format!("shape {:?}, which has no channel axis", info.shape),
                    };
                    errors.push(
                        OverrideError::error(
                            Kind::ChannelCount,
                            at,
                            format!("\"{name}\" has {has}, but the file gives {} encodings", channels.len()),
                        )
                        .with_help("give one encoding per output channel, or one for the whole tensor"),
                    );
                    continue;
                }
            }
            OverrideEncoding::PerBlock(blocks) => {
                if let Some(e) = check_blocks(o, section, name, blocks, graph, id, belongs) {
                    errors.push(e);
                    continue;
                }
            }
            _ => {}
        }
        if let Some(prev) = resolved.tensors.get(&id) {
            errors.push(OverrideError::error(
                Kind::DuplicateEntry,
                at,
                format!("\"{name}\" and \"{}\" name the same tensor \"{}\"", prev.name, graph.name(id)),
            ));
            continue;
        }
        resolved
            .tensors
            .insert(id, ResolvedOverride { name: name.to_string(), section: belongs, encoding: encoding.clone() });
    }
    (resolved, errors)
}

/// Why a per-block entry does not fit its tensor: an activation, a weight without an input
/// axis, an axis other than the input-channel one, a block size that does not divide the input
/// channels, or a block count or scale shape other than the weight's.
fn check_blocks(
    o: &Overrides,
    section: Section,
    name: &str,
    blocks: &BlockEncoding,
    graph: &Graph,
    id: TensorId,
    belongs: Section,
) -> Option<OverrideError> {
    let spans = o.spans_of(section, name);
    let at = spans.name;
    let enc_type = blocks.enc_type();
    if belongs == Section::Activation {
        return Some(
            OverrideError::error(
                Kind::Unsupported,
                at,
                format!("\"{name}\" is an activation; {enc_type} encodings are for weights"),
            )
            .with_help("give an activation one per-tensor encoding"),
        );
    }
    let shape = &graph.info(id).shape;
    let (channel, Some(axis)) = (channel_axis(graph, id), block_axis(graph, id)) else {
        return Some(
            OverrideError::error(
                Kind::Unsupported,
                at,
                format!("\"{name}\" (shape {shape:?}) has no input-channel axis to split into blocks"),
            )
            .with_help("per-block encodings are for Conv, Gemm and MatMul weights; give this tensor per-tensor or per-channel encodings"),
        );
    };
    if let Some(&given) = o.axes.get(name).filter(|&&given| given != axis) {
        let at = spans.field(0, "axis").unwrap_or(at);
        return Some(
            OverrideError::error(
                Kind::Axis,
                at,
                format!(
                    "\"{name}\" gives block axis {given}, but its input channels are axis {axis} of shape {shape:?}"
                ),
            )
            .with_help(format!("blocks run along the input channels: \"axis\": {axis}")),
        );
    }
    let inputs = shape[axis];
    let size = blocks.block_size as usize;
    if size == 0 || !inputs.is_multiple_of(size) {
        let at = spans.field(0, "block_size").unwrap_or(at);
        let fits: Vec<String> = (1..=inputs).filter(|d| inputs.is_multiple_of(*d)).map(|d| d.to_string()).collect();
        return Some(
            OverrideError::error(
                Kind::BlockSize,
                at,
                format!(
                    "block size {size} does not divide the {inputs} input channels of \"{name}\" (shape {shape:?})"
                ),
            )
            .with_help(format!("a block size that divides {inputs}: {}", fits.join(", "))),
        );
    }
    let expected = scale_shape(shape, channel, axis, blocks.block_size);
    let count: usize = expected.iter().product();
    if blocks.blocks.len() != count {
        return Some(
            OverrideError::error(
                Kind::BlockSize,
                spans.entry,
                format!(
                    "\"{name}\" (shape {shape:?}) has {} output channels of {} blocks of {size}, but the file gives {} block scales",
                    shape[channel],
                    inputs / size,
                    blocks.blocks.len()
                ),
            )
            .with_help(format!("give {count} scales, one per block of each output channel")),
        );
    }
    if let Some(given) = o.scale_shapes.get(name).filter(|given| **given != expected) {
        return Some(
            OverrideError::error(
                Kind::BlockSize,
                spans.entry,
                format!("the block scales of \"{name}\" are nested as {given:?}, its blocks as {expected:?}"),
            )
            .with_help("nest the scales like the weight: its shape with the input axis divided by the block size and the kernel axes 1"),
        );
    }
    None
}

/// The axis a weight's blocks run along: its input channels, the axis next to its output
/// channels (Conv `[M, C, k...]` -> 1; Gemm `B` with `trans_b` `[N, K]` -> 1, without `[K, N]`
/// -> 0; MatMul `[.., K, N]` -> the one before last; ConvTranspose `[C, M, k...]` -> 0).
/// `None` for a tensor of rank below 2.
pub fn block_axis(graph: &Graph, id: TensorId) -> Option<usize> {
    if graph.info(id).shape.len() < 2 {
        return None;
    }
    Some(match channel_axis(graph, id) {
        0 => 1,
        c => c - 1,
    })
}

/// The shape of a per-block weight's scale tensor, as AIMET nests it: the weight's shape with
/// the block axis divided by `block_size` and every axis but that and the output-channel axis 1.
pub fn scale_shape(shape: &[usize], channel: usize, block: usize, block_size: u32) -> Vec<usize> {
    let size = (block_size as usize).max(1);
    (0..shape.len())
        .map(|a| match a {
            a if a == block => shape[a] / size,
            a if a == channel => shape[a],
            _ => 1,
        })
        .collect()
}

/// `o` placed in `graph`: the entries of a 2.0.0 file's `encodings` moved to the section the
/// graph gives them (parameters are its constants, as the older forms list them), and every
/// per-channel entry's axis, where the file gave none, the graph's output-channel axis (what
/// the 2.0.0 form writes). Names the graph does not have stay as they are
/// ([`check_overrides`] reports them).
pub fn place_sections(o: &Overrides, graph: &Graph) -> Overrides {
    let index = NameIndex::new(graph);
    let mut placed = o.clone();
    for (_, name, encoding) in o.entries() {
        let Lookup::Found(id) = index.lookup(name) else { continue };
        match encoding {
            OverrideEncoding::Int(channels) if channels.len() > 1 && !placed.axes.contains_key(name) => {
                placed.axes.insert(name.to_string(), channel_axis(graph, id));
            }
            // A per-block entry's 2.0.0 axis is its block axis, and its scales nest like the
            // weight (what a 1.0.0 file does not say).
            OverrideEncoding::PerBlock(blocks) => {
                if let Some(axis) = block_axis(graph, id) {
                    placed.axes.entry(name.to_string()).or_insert(axis);
                    let shape = scale_shape(&graph.info(id).shape, channel_axis(graph, id), axis, blocks.block_size);
                    placed.scale_shapes.entry(name.to_string()).or_insert(shape);
                }
            }
            _ => {}
        }
    }
    for (name, encoding) in std::mem::take(&mut placed.encodings) {
        let section = match index.lookup(&name) {
            Lookup::Found(id) if graph.is_constant(id) => Section::Param,
            Lookup::Found(_) => Section::Activation,
            _ => Section::Encodings,
        };
        if let Some(spans) = placed.source.entries.remove(&(Section::Encodings, name.clone())) {
            placed.source.entries.insert((section, name.clone()), spans);
        }
        placed.section_mut(section).insert(name, encoding);
    }
    placed
}

/// The output-channel axis of a parameter, from the first op that reads it: Conv weight `[M,
/// C/g, k...]` -> 0; ConvTranspose weight `[C, M, k...]` -> 1; Gemm `B` -> 0 when `trans_b` (B
/// is `[N, K]`) else 1; MatMul right operand `[.., K, N]` -> its last axis; anything else
/// (biases included) -> 0.
pub fn channel_axis(graph: &Graph, id: TensorId) -> usize {
    for node in &graph.nodes {
        let Some(pos) = node.inputs.iter().position(|&i| i == id) else { continue };
        // The op's input role knows the axis (ConvTranspose `[C, M/g, k...]` -> 1).
        return match node.op.input_role(pos, graph.info(id).shape.len()) {
            crate::ops::InputRole::Weight { channel_axis: Some(axis) } => axis,
            _ => 0,
        };
    }
    0
}

enum Lookup {
    Found(TensorId),
    Ambiguous(Vec<TensorId>),
    Missing,
}

struct NameIndex<'g> {
    exact: HashMap<&'g str, TensorId>,
    sanitized: BTreeMap<String, Vec<TensorId>>,
}

impl<'g> NameIndex<'g> {
    fn new(graph: &'g Graph) -> Self {
        let exact = graph.names();
        let mut sanitized: BTreeMap<String, Vec<TensorId>> = BTreeMap::new();
        for (i, t) in graph.tensors.iter().enumerate() {
            sanitized.entry(sanitize_name(&t.name)).or_default().push(TensorId(i as u32));
        }
        NameIndex { exact, sanitized }
    }

    fn lookup(&self, name: &str) -> Lookup {
        if let Some(&id) = self.exact.get(name) {
            return Lookup::Found(id);
        }
        match self.sanitized.get(&sanitize_name(name)).map(Vec::as_slice) {
            Some([id]) => Lookup::Found(*id),
            Some(ids) if !ids.is_empty() => Lookup::Ambiguous(ids.to_vec()),
            _ => Lookup::Missing,
        }
    }

    /// The graph name most like `name`, preferring tensors of `section`'s kind; `None` when
    /// nothing is close (normalized Damerau-Levenshtein similarity below 0.5).
    fn closest(&self, graph: &Graph, name: &str, section: Section) -> Option<String> {
        let wanted = sanitize_name(name).to_lowercase();
        // The distance costs len × len and a matrix as big: a megabyte-long name (a corrupt or
        // hostile file) would take seconds per tensor. No real tensor name is this long.
        if wanted.len() > MAX_SUGGESTED_NAME {
            return None;
        }
        let best = |same_section: bool| {
            let mut best: Option<(f64, &str)> = None;
            for (i, t) in graph.tensors.iter().enumerate() {
                let is_param = graph.is_constant(TensorId(i as u32));
                if same_section && is_param != (section == Section::Param) {
                    continue;
                }
                // Sanitized names are ASCII; the similarity is at most shorter / longer (the
                // distance is at least the difference of lengths), so a name of less than half
                // or more than twice the length cannot reach 0.5.
                let candidate = sanitize_name(&t.name).to_lowercase();
                let (a, b) = (wanted.len(), candidate.len());
                if a.min(b) * 2 < a.max(b) {
                    continue;
                }
                let score = strsim::normalized_damerau_levenshtein(&wanted, &candidate);
                // Strictly greater: ties keep the earlier tensor (deterministic).
                if score >= 0.5 && best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, &t.name));
                }
            }
            best.map(|(_, n)| n.to_string())
        };
        best(true).or_else(|| best(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Conv, Node, Op, Tensor, TensorInfo, Window};
    use crate::quant::aimet::parse_overrides;

    /// x -> Conv(w [4,1,1,1], b [4]) -> y -> Gemm(B [3,4], trans_b) -> z.
    pub(super) fn graph() -> Graph {
        let mut g = Graph::default();
        let mut add =
            |name: &str, shape: Vec<usize>| g.add_tensor(TensorInfo { name: name.into(), dtype: DType::F32, shape });
        let x = add("input.1", vec![1, 1, 2, 2]);
        let w = add("conv1.weight", vec![4, 1, 1, 1]);
        let b = add("conv1.bias", vec![4]);
        let y = add("/conv1/Conv_output_0", vec![1, 4, 2, 2]);
        let f = add("flat", vec![1, 16]);
        let gb = add("fc.weight", vec![3, 16]);
        let z = add("130", vec![1, 3]);
        g.constants.insert(w, Tensor::from_f32(vec![4, 1, 1, 1], vec![1.0, -2.0, 0.5, 0.25]));
        g.constants.insert(b, Tensor::from_f32(vec![4], vec![0.1, 0.2, 0.3, 0.4]));
        g.constants.insert(gb, Tensor::from_f32(vec![3, 16], vec![0.5; 48]));
        g.inputs = vec![x];
        g.outputs = vec![z];
        let window = Window { kernel: vec![1, 1], strides: vec![1, 1], pads: vec![0; 4], dilations: vec![1, 1] };
        g.nodes.push(Node {
            name: "conv".into(),
            op: Op::Conv(Conv { window, group: 1 }),
            inputs: vec![x, w, b],
            outputs: vec![y],
        });
        g.nodes.push(Node {
            name: "flat".into(),
            op: Op::Flatten(crate::ops::Flatten { axis: 1 }),
            inputs: vec![y],
            outputs: vec![f],
        });
        let gemm = Op::Gemm(crate::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true });
        g.nodes.push(Node { name: "fc".into(), op: gemm, inputs: vec![f, gb], outputs: vec![z] });
        g
    }

    fn check(text: &str) -> Vec<OverrideError> {
        check_overrides(&parse_overrides(text).unwrap(), &graph())
    }

    #[test]
    fn exact_and_sanitized_names_resolve() {
        let o = parse_overrides(
            r#"{"activation_encodings": {"input_1": [{"bitwidth": 8, "dtype": "int"}],
                "_130": [{"bitwidth": 16, "dtype": "int"}]},
                "param_encodings": {"conv1.weight": [{"bitwidth": 8, "dtype": "int"}]}}"#,
        )
        .unwrap();
        let g = graph();
        let (resolved, errors) = resolve_overrides(&o, &g);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = resolved.tensors.keys().map(|&id| g.name(id)).collect();
        assert_eq!(names, vec!["input.1", "conv1.weight", "130"]);
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let text =
            r#"{"activation_encodings": {}, "param_encodings": {"conv1.wieght": [{"bitwidth": 8, "dtype": "int"}]}}"#;
        let e = check(text);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, Kind::UnknownTensor);
        assert_eq!(e[0].help.as_deref(), Some("did you mean \"conv1.weight\"?"));
        assert_eq!(&text[e[0].span.offset..][..e[0].span.len], "\"conv1.wieght\"");
        let e = check(r#"{"activation_encodings": {"zzz_qq": [{"bitwidth": 8}]}, "param_encodings": {}}"#);
        assert_eq!((e[0].kind, e[0].help.clone()), (Kind::UnknownTensor, None));
    }

    #[test]
    fn sections_are_checked() {
        let e = check(
            r#"{"activation_encodings": {"conv1.bias": [{"bitwidth": 8}]}, "param_encodings": {"flat": [{"bitwidth": 8}]}}"#,
        );
        let kinds: Vec<_> = e.iter().map(|e| (e.kind, e.help.clone().unwrap())).collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::WrongSection, "move the entry to \"param_encodings\"".to_string()),
                (Kind::WrongSection, "move the entry to \"activation_encodings\"".to_string()),
            ]
        );
        assert!(e[0].message.contains("is a parameter"));
    }

    /// A 2.0.0 file's entries belong to no section: the graph places them (a constant is a
    /// parameter), and the axis of a per-channel entry must be the graph's (Gemm B with
    /// trans_b: axis 0); a per-channel entry without an axis in the file gets the graph's.
    #[test]
    fn a_2_0_0_files_entries_are_placed_by_the_graph_and_their_axes_checked() {
        let text = |fc_axis: usize| {
            format!(
                r#"{{"version": "2.0.0", "encodings": [
                  {{"name": "input.1", "output_dtype": "uint8", "y_scale": 0.1}},
                  {{"name": "conv1.bias", "output_dtype": "int32", "y_scale": 0.001}},
                  {{"name": "fc.weight", "output_dtype": "int8", "y_scale": [0.1, 0.2, 0.3], "axis": {fc_axis}}}]}}"#
            )
        };
        let g = graph();
        let o = parse_overrides(&text(0)).unwrap();
        assert!(check_overrides(&o, &g).is_empty());
        let placed = place_sections(&o, &g);
        assert!(placed.encodings.is_empty());
        assert_eq!(placed.activations.keys().collect::<Vec<_>>(), ["input.1"]);
        assert_eq!(placed.params.keys().collect::<Vec<_>>(), ["conv1.bias", "fc.weight"]);
        assert_eq!(placed.spans_of(Section::Param, "fc.weight"), o.spans_of(Section::Encodings, "fc.weight"));

        let src = text(1);
        let e = check_overrides(&parse_overrides(&src).unwrap(), &g);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].kind, Kind::Axis);
        assert_eq!(&src[e[0].span.offset..][..e[0].span.len], "1");

        let v1 = parse_overrides(
            r#"{"version": "1.0.0", "activation_encodings": [], "param_encodings": [{"name": "fc.weight", "dtype": "INT",
                "enc_type": "PER_CHANNEL", "bw": 8, "is_sym": true, "scale": [0.1, 0.2, 0.3], "offset": [-128, -128, -128]}]}"#,
        )
        .unwrap();
        assert_eq!(place_sections(&v1, &g).axes.get("fc.weight"), Some(&0));
    }

    /// conv1.weight has 4 output channels (axis 0); 3 encodings is an error; 4 is fine.
    /// fc.weight is Gemm B with trans_b: axis 0, 3 channels.
    #[test]
    fn per_channel_counts_are_checked() {
        let ch = r#"{"bitwidth": 8, "is_symmetric": "True", "scale": 0.1, "offset": -128}"#;
        let text =
            format!(r#"{{"activation_encodings": {{}}, "param_encodings": {{"conv1.weight": [{ch}, {ch}, {ch}]}}}}"#);
        let e = check(&text);
        assert_eq!(e[0].kind, Kind::ChannelCount);
        assert!(e[0].message.contains("4 output channels (axis 0 of shape [4, 1, 1, 1])"), "{}", e[0].message);
        let text = format!(
            r#"{{"activation_encodings": {{}}, "param_encodings": {{"conv1.weight": [{ch}, {ch}, {ch}, {ch}], "fc.weight": [{ch}, {ch}, {ch}]}}}}"#
        );
        assert!(check(&text).is_empty());
        assert_eq!(channel_axis(&graph(), TensorId(5)), 0);
    }

    #[test]
    fn the_same_tensor_twice_is_an_error() {
        let e = check(
            r#"{"activation_encodings": {"input.1": [{"bitwidth": 8}], "input_1": [{"bitwidth": 8}]}, "param_encodings": {}}"#,
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, Kind::DuplicateEntry);
    }
}

#[cfg(test)]
mod block_tests {
    use super::tests::graph;
    use super::*;
    use crate::quant::aimet::parse_overrides;

    fn v1_block(name: &str, block_size: u32, blocks: usize) -> String {
        let scales = vec!["0.1"; blocks].join(", ");
        let offsets = vec!["-8"; blocks].join(", ");
        format!(
            r#"{{"version": "1.0.0", "activation_encodings": [], "param_encodings": [
              {{"name": "{name}", "dtype": "INT", "enc_type": "PER_BLOCK", "bw": 4, "is_sym": true,
                "block_size": {block_size}, "scale": [{scales}], "offset": [{offsets}]}}]}}"#
        )
    }

    fn errors(text: &str) -> Vec<OverrideError> {
        check_overrides(&place_sections(&parse_overrides(text).unwrap(), &graph()), &graph())
    }

    /// `fc.weight` is `[3, 16]` (Gemm with `trans_b`): blocks run along axis 1.
    #[test]
    fn per_block_weights_are_accepted_where_the_blocks_tile_the_input_channels() {
        assert_eq!(errors(&v1_block("fc.weight", 4, 12)), []);
        let placed = place_sections(&parse_overrides(&v1_block("fc.weight", 8, 6)).unwrap(), &graph());
        assert_eq!((placed.axes["fc.weight"], placed.scale_shapes["fc.weight"].as_slice()), (1, &[3, 2][..]));
    }

    #[test]
    fn a_block_size_that_does_not_divide_or_a_wrong_count_is_a_diagnostic_with_a_hint() {
        let e = errors(&v1_block("fc.weight", 5, 9)).remove(0);
        assert_eq!(e.kind, Kind::BlockSize);
        assert!(e.help.as_deref().unwrap().contains("1, 2, 4, 8, 16"), "{e:?}");
        assert_eq!(errors(&v1_block("fc.weight", 4, 11))[0].kind, Kind::BlockSize);
        // An activation takes no blocks; a bias has no input axis.
        assert_eq!(errors(&v1_block("130", 1, 3))[0].kind, Kind::WrongSection);
        let text = v1_block("130", 1, 3)
            .replace("\"param_encodings\": [", "\"x\": [")
            .replace("\"activation_encodings\": [], \"x\"", "\"param_encodings\": [], \"activation_encodings\"");
        assert_eq!(errors(&text)[0].kind, Kind::Unsupported);
        assert_eq!(errors(&v1_block("conv1.bias", 1, 4))[0].kind, Kind::Unsupported);
    }

    #[test]
    fn a_2_0_0_entry_must_give_the_input_channel_axis() {
        let text = r#"{"version": "2.0.0", "encodings": [{"name": "fc.weight", "output_dtype": "int4", "axis": 0,
            "block_size": 8, "y_scale": [[0.1, 0.1], [0.1, 0.1], [0.1, 0.1]]}]}"#;
        assert_eq!(errors(text)[0].kind, Kind::Axis);
        assert_eq!(errors(&text.replace("\"axis\": 0", "\"axis\": 1")), []);
        let nested_wrong = text
            .replace("\"axis\": 0", "\"axis\": 1")
            .replace("[[0.1, 0.1], [0.1, 0.1], [0.1, 0.1]]", "[[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]]");
        assert_eq!(errors(&nested_wrong)[0].kind, Kind::BlockSize);
    }
}
