//! The graph walk: opset check, initializers, graph inputs (with symbolic dims), nodes in
//! topological order, graph outputs; shape inference for every tensor, checked against the
//! types the model declares.
//!
//! Errors are collected rather than returned at the first one: a node that fails marks its
//! outputs failed, nodes that read them are skipped (except that an unknown op type is still
//! reported), so one import lists every unsupported op in the model.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::error::{ErrorKind, ImportError, malformed};
use super::fold;
use super::inline;
use super::proto::tensor_shape_proto::dimension::Value as Dim;
use super::proto::type_proto::Value as TypeValue;
use super::proto::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use super::qdq;
use super::tensor::{decode_tensor, dtype_from_onnx, onnx_code, onnx_dtype_name};
use crate::ir::{self, DType, Graph, Node, Tensor, TensorId, TensorInfo};
use crate::ops::{self, InputView, Lowered, NodeCx};

/// Oldest `ai.onnx` opset imported. Ops import their opset 7 to 10 forms (Slice, Pad, Clip,
/// Split, TopK, Upsample... with attributes where later opsets take inputs); see `src/ops`.
pub const MIN_OPSET: i64 = 7;
/// Newest `ai.onnx` opset whose op definitions the importer has been checked against.
pub const MAX_OPSET: i64 = 27;

/// What the importer knows about one tensor name.
enum Slot {
    /// A tensor of the IR graph: a graph input or the output of an IR node.
    Tensor(TensorId),
    /// A value known at import: an initializer, a Constant, folded shape arithmetic. `id` is
    /// set once an IR node reads it; it then becomes one of the graph's constants.
    Known { tensor: Tensor, id: Option<TensorId> },
    /// An initializer that could not be decoded; reported where it is read.
    Broken(ImportError),
    /// Produced by a node that failed to import; readers are skipped.
    Failed,
}

struct Importer<'m> {
    graph: Graph,
    slots: BTreeMap<String, Slot>,
    /// Types the model declares (value_info, inputs, outputs), by tensor name.
    declared: BTreeMap<&'m str, &'m ValueInfoProto>,
    /// Names read by some node (a branch of an If included) or listed as graph outputs.
    consumed: BTreeSet<String>,
    /// Every tensor name of the model's graph and of the branches imported so far: a branch's
    /// own names are renamed when they clash with one ([`inline`]).
    names: BTreeSet<String>,
    /// The inputs (explicit and read by subgraphs) of every node imported from a branch, by
    /// output name: what `run_time_inputs` follows back to the graph inputs.
    inlined_producers: BTreeMap<String, Vec<String>>,
    shapes: &'m InputShapes,
    /// Values of graph inputs the graph is specialized on (see [`import_bound`]).
    bound: &'m BTreeMap<String, Tensor>,
    external: &'m BTreeMap<String, Vec<u8>>,
    opset: i64,
    opsets: BTreeMap<&'m str, i64>,
    errors: Vec<ImportError>,
}

/// Concrete sizes for a model's dynamic input dims: values of symbolic dims (`[model]
/// define_symbols`) and whole shapes of named inputs (`[model] input_dims`, like the SDK
/// converter's `--input_dim`), which win over symbols.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct InputShapes {
    pub symbols: BTreeMap<String, usize>,
    pub inputs: BTreeMap<String, Vec<usize>>,
}

pub(crate) fn import(
    model: &ModelProto,
    external: &BTreeMap<String, Vec<u8>>,
    shapes: &InputShapes,
) -> Result<Graph, Vec<ImportError>> {
    import_bound(model, external, shapes, &BTreeMap::new()).map_err(|failure| failure.errors)
}

/// A graph input whose value the import needs: it feeds, through import-time arithmetic, an
/// input that must be known (a shape, axes, pads, a count, scales).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunTimeInput {
    pub name: String,
    /// Its place among the graph inputs that are not initializers.
    pub position: usize,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// Why an import failed, and which graph inputs would let it succeed if their values were
/// known (empty unless every error is such a value).
#[derive(Debug)]
pub struct ImportFailure {
    pub errors: Vec<ImportError>,
    pub run_time_inputs: Vec<RunTimeInput>,
}

impl From<Vec<ImportError>> for ImportFailure {
    fn from(errors: Vec<ImportError>) -> ImportFailure {
        ImportFailure { errors, run_time_inputs: Vec::new() }
    }
}

/// The largest graph input the importer offers to specialize on. Shape-deciding inputs
/// (shapes, axes, scales, counts) are short vectors; a data tensor that reaches a shape
/// (a data-dependent shape) is never one to freeze (see also `run_time_inputs`).
const MAX_BOUND_ELEMENTS: usize = 64;

/// [`import`] with some graph inputs replaced by known values (`bound`): the graph is
/// specialized on them, as the SDK's converter needs static shapes. The bound inputs are
/// listed in [`Graph::bound_inputs`].
pub(crate) fn import_bound(
    model: &ModelProto,
    external: &BTreeMap<String, Vec<u8>>,
    shapes: &InputShapes,
    bound: &BTreeMap<String, Tensor>,
) -> Result<Graph, ImportFailure> {
    let opsets = opset_versions(model);
    let Some(g) = model.graph.as_ref() else {
        return Err(vec![malformed("the model has no graph")].into());
    };
    let opset = default_opset(&opsets, g).map_err(|e| vec![e])?;
    // QuantizeLinear/DequantizeLinear pairs go first; the rest of the import sees a float model.
    let (stripped, model_encodings) = match qdq::strip(g, external)? {
        Some(s) => (Some(s.graph), s.encodings),
        None => (None, BTreeMap::new()),
    };
    let g = stripped.as_ref().unwrap_or(g);
    let mut cx = Importer {
        graph: Graph::default(),
        slots: BTreeMap::new(),
        declared: BTreeMap::new(),
        consumed: BTreeSet::new(),
        names: BTreeSet::new(),
        inlined_producers: BTreeMap::new(),
        shapes,
        bound,
        external,
        opset,
        opsets,
        errors: Vec::new(),
    };
    for vi in g.value_info.iter().chain(&g.input).chain(&g.output) {
        cx.declared.insert(vi.name(), vi);
    }
    for node in &g.node {
        cx.consumed.extend(node_reads(node).into_iter().map(str::to_string));
        cx.names.extend(node.input.iter().chain(&node.output).filter(|n| !n.is_empty()).cloned());
    }
    cx.consumed.extend(g.output.iter().map(|o| o.name().to_string()));
    let declared_names = g.input.iter().chain(&g.output).chain(&g.value_info).map(|vi| vi.name());
    cx.names.extend(declared_names.chain(g.initializer.iter().map(|t| t.name())).map(str::to_string));

    cx.add_initializers(g);
    cx.add_inputs(g);
    let mut outer: BTreeSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    outer.extend(g.input.iter().map(|i| i.name()));
    match topological_order(&g.node, |name| outer.contains(name)) {
        Ok(order) => {
            for index in order {
                cx.import_node(index, &g.node[index]);
            }
        }
        Err(errors) => cx.errors.extend(errors),
    }
    cx.add_outputs(g);
    if !cx.errors.is_empty() {
        let run_time_inputs = cx.run_time_inputs(g);
        return Err(ImportFailure { errors: cx.errors, run_time_inputs });
    }
    let mut graph = cx.graph;
    for slot in cx.slots.into_values() {
        if let Slot::Known { tensor, id: Some(id) } = slot {
            graph.constants.insert(id, tensor);
        }
    }
    graph.compact();
    graph
        .validate()
        .map_err(|e| vec![malformed(format!("internal error: the imported graph is inconsistent: {e}"))])?;
    graph.model_encodings = qdq::finish(&graph, model_encodings)?;
    Ok(graph)
}

/// Opset version per domain, `ai.onnx` spelled as the empty domain.
fn opset_versions(model: &ModelProto) -> BTreeMap<&str, i64> {
    model.opset_import.iter().map(|o| (if o.domain() == "ai.onnx" { "" } else { o.domain() }, o.version())).collect()
}

/// The model's `ai.onnx` opset. A model whose nodes are all in other domains (ai.onnx.ml,
/// ai.onnx.preview.training) need not import it: its nodes are then reported one by one as
/// unsupported ops of their domain, and the version returned is never read.
fn default_opset(opsets: &BTreeMap<&str, i64>, g: &GraphProto) -> Result<i64, ImportError> {
    let Some(&version) = opsets.get("") else {
        let default_domain = |n: &&NodeProto| matches!(n.domain(), "" | "ai.onnx");
        if let Some(node) = g.node.iter().find(default_domain) {
            return Err(ImportError::new(
                ErrorKind::UnsupportedOpset,
                format!(
                    "the model imports no ai.onnx opset (opset_import has no default-domain entry), but node {:?} \
                     ({}) is an ai.onnx op",
                    node.name(),
                    node.op_type()
                ),
            )
            .with_hint("a complete ONNX file always lists one; the file may be truncated"));
        }
        return Ok(MAX_OPSET);
    };
    if !(MIN_OPSET..=MAX_OPSET).contains(&version) {
        let hint = if version < MIN_OPSET {
            "upgrade it, e.g. with onnx.version_converter.convert_version(model, 13), or re-export with a newer opset"
        } else {
            "re-export with an older opset (torch.onnx.export(..., opset_version=17))"
        };
        return Err(ImportError::new(
            ErrorKind::UnsupportedOpset,
            format!("the model uses ai.onnx opset {version}; qairt imports opsets {MIN_OPSET} to {MAX_OPSET}"),
        )
        .with_hint(hint));
    }
    Ok(version)
}

/// The display name of node `index`: its ONNX name, or `<OpType>_<index>` when unnamed.
pub(super) fn node_name(node: &NodeProto, index: usize) -> String {
    match node.name() {
        "" => format!("{}_{index}", node.op_type()),
        name => name.to_string(),
    }
}

/// Everything `node` reads: its inputs and the names its subgraphs (an If's branches) read
/// from the enclosing scopes.
fn node_reads(node: &NodeProto) -> BTreeSet<&str> {
    let mut reads = inline::implicit_inputs(node);
    reads.extend(node.input.iter().filter(|n| !n.is_empty()).map(String::as_str));
    reads
}

/// Node indices in a topological order, keeping the model's order where it already is one
/// (ONNX requires sorted nodes; some tools write them out of order). `defined` tells the names
/// defined before the nodes run (initializers and graph inputs; for a branch, everything
/// imported so far). What a node's subgraphs read orders it too, but a subgraph's read of an
/// undefined name is reported only if the branch is imported.
fn topological_order(nodes: &[NodeProto], defined: impl Fn(&str) -> bool) -> Result<Vec<usize>, Vec<ImportError>> {
    let mut producer: BTreeMap<&str, usize> = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            if defined(out.as_str()) || producer.insert(out, i).is_some() {
                errors.push(
                    malformed(format!("tensor {out:?} is defined more than once"))
                        .at_node(&node_name(node, i), node.op_type()),
                );
            }
        }
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut waiting_on = vec![0usize; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        let explicit: BTreeSet<&str> = node.input.iter().filter(|n| !n.is_empty()).map(String::as_str).collect();
        for input in node_reads(node) {
            match producer.get(input) {
                Some(&p) => {
                    dependents[p].push(i);
                    waiting_on[i] += 1;
                }
                None if defined(input) || !explicit.contains(input) => {}
                None => errors.push(
                    malformed(format!("input {input:?} is not produced by any node, graph input or initializer"))
                        .at_node(&node_name(node, i), node.op_type()),
                ),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len()).filter(|&i| waiting_on[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            waiting_on[d] -= 1;
            if waiting_on[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    if order.len() < nodes.len() {
        let stuck: Vec<String> =
            (0..nodes.len()).filter(|&i| waiting_on[i] > 0).map(|i| node_name(&nodes[i], i)).collect();
        return Err(vec![malformed(format!("the graph has a cycle through nodes {stuck:?}"))]);
    }
    Ok(order)
}

/// Every tensor's byte size must fit the address space, so later stages can multiply shapes
/// without overflow (a model can declare any dims it likes).
fn check_size(name: &str, dtype: DType, shape: &[usize]) -> Result<(), ImportError> {
    let bytes = shape.iter().try_fold(dtype.size_bytes(), |acc, &d| acc.checked_mul(d));
    if bytes.is_none_or(|b| b > isize::MAX as usize) {
        return Err(ImportError::new(
            ErrorKind::ShapeError,
            format!("tensor {name:?} of shape {shape:?} is too large to exist"),
        ));
    }
    Ok(())
}

/// A declared input shape as text, e.g. `[batch, 3, ?, 224]` (`?`: no size, no name).
fn declared_dims(shape: &super::proto::TensorShapeProto) -> String {
    let dims: Vec<String> = shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Dim::DimValue(v)) if *v >= 0 => v.to_string(),
            Some(Dim::DimParam(p)) if !p.is_empty() => p.clone(),
            Some(Dim::DimValue(v)) => v.to_string(),
            _ => "?".to_string(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// A TOML key for `name`: bare when it can be, else quoted.
fn toml_key(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

impl<'m> Importer<'m> {
    fn add_initializers(&mut self, g: &'m GraphProto) {
        if !g.sparse_initializer.is_empty() {
            self.errors.push(ImportError::new(
                ErrorKind::UnsupportedFeature,
                "the model has sparse initializers, which qairt does not import",
            ));
        }
        for t in &g.initializer {
            let name = t.name();
            if name.is_empty() {
                self.errors.push(malformed("an initializer has no name"));
                continue;
            }
            let slot = match decode_tensor(t, self.external) {
                Ok(tensor) => Slot::Known { tensor, id: None },
                Err(e) => Slot::Broken(e),
            };
            if self.slots.insert(name.to_string(), slot).is_some() {
                self.errors.push(malformed(format!("initializer {name:?} is defined twice")));
            }
        }
    }

    /// Graph inputs that are not initializers, with symbolic dims resolved.
    fn add_inputs(&mut self, g: &'m GraphProto) {
        // symbol -> where it occurs, so each missing symbol is reported once.
        let mut unresolved: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let initializers: BTreeSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
        let mut position = 0;
        for vi in &g.input {
            let name = vi.name();
            if !initializers.contains(name) {
                position += 1;
            }
            if let Some(value) = self.bound.get(name)
                && !initializers.contains(name)
            {
                self.bind_input(vi, position - 1, value, &mut unresolved);
                continue;
            }
            if let Some(slot) = self.slots.get(name) {
                if matches!(slot, Slot::Tensor(_) | Slot::Failed) {
                    self.errors.push(malformed(format!("graph input {name:?} is listed twice")));
                    continue;
                }
                // An initializer listed as an input (IR < 4 habit): a constant.
                if let Slot::Known { tensor, .. } = slot
                    && let Err(e) = self.check_declared(name, tensor.dtype(), &tensor.shape)
                {
                    self.errors.push(e);
                }
                continue;
            }
            match self.input_info(vi, &mut unresolved) {
                Ok(Some((dtype, shape))) => {
                    if let Err(e) = check_size(name, dtype, &shape) {
                        self.errors.push(e);
                        self.slots.insert(name.to_string(), Slot::Failed);
                        continue;
                    }
                    let id = self.graph.add_tensor(TensorInfo { name: name.to_string(), dtype, shape });
                    self.graph.inputs.push(id);
                    self.slots.insert(name.to_string(), Slot::Tensor(id));
                }
                Ok(None) => {
                    self.slots.insert(name.to_string(), Slot::Failed);
                }
                Err(e) => {
                    self.errors.push(e);
                    self.slots.insert(name.to_string(), Slot::Failed);
                }
            }
        }
        let inputs: Vec<&str> = g.input.iter().map(|vi| vi.name()).filter(|n| !initializers.contains(n)).collect();
        for given in self.shapes.inputs.keys() {
            if !inputs.contains(&given.as_str()) {
                let mut hint = format!("the model's inputs are: {}", inputs.join(", "));
                if let Some(near) = crate::diag::closest(given, inputs.iter().copied()) {
                    hint = format!("did you mean {near:?}? ({hint})");
                }
                self.errors.push(
                    ImportError::new(
                        ErrorKind::UnresolvedSymbol,
                        format!("[model] input_dims names {given:?}, which is not a graph input"),
                    )
                    .with_hint(hint),
                );
            }
        }
        for (symbol, places) in unresolved {
            self.errors.push(
                ImportError::new(
                    ErrorKind::UnresolvedSymbol,
                    format!("symbolic dimension {symbol:?} ({}) has no value", places.join(", ")),
                )
                .with_hint(format!(
                    "give it a value in qairt.toml: [model] define_symbols = {{ {} = 1 }}",
                    toml_key(symbol)
                )),
            );
        }
    }

    /// A graph input the import is specialized on: a known value of the declared type.
    fn bind_input(
        &mut self,
        vi: &'m ValueInfoProto,
        position: usize,
        value: &Tensor,
        unresolved: &mut BTreeMap<&'m str, Vec<String>>,
    ) {
        let name = vi.name();
        match self.input_info(vi, unresolved) {
            Ok(Some((dtype, shape))) if dtype == value.dtype() && shape == value.shape => {
                self.graph.bound_inputs.push(ir::BoundInput { name: name.to_string(), position, value: value.clone() });
                self.slots.insert(name.to_string(), Slot::Known { tensor: value.clone(), id: None });
            }
            Ok(Some((dtype, shape))) => {
                self.errors.push(ImportError::new(
                    ErrorKind::ShapeError,
                    format!(
                        "graph input {name:?} is {} {shape:?}, but the value it is specialized on is {} {:?}",
                        dtype.name(),
                        value.dtype().name(),
                        value.shape
                    ),
                ));
                self.slots.insert(name.to_string(), Slot::Failed);
            }
            Ok(None) => {
                self.slots.insert(name.to_string(), Slot::Failed);
            }
            Err(e) => {
                self.errors.push(e);
                self.slots.insert(name.to_string(), Slot::Failed);
            }
        }
    }

    /// The graph inputs whose values would resolve every error, when every error is a value
    /// needed at import ([`ErrorKind::RunTimeValue`]): the small graph inputs each needed
    /// tensor is computed from. Empty when some error is of another kind.
    fn run_time_inputs(&self, g: &'m GraphProto) -> Vec<RunTimeInput> {
        let needed: Option<Vec<&str>> = self.errors.iter().map(|e| e.needs_value_of.as_deref()).collect();
        let Some(needed) = needed else { return Vec::new() };
        // A tensor of a branch was produced by an inlined node (which takes precedence: it
        // may have the name of its If's output); any other by a node of `g`, whose reads
        // include what its subgraphs read.
        let producers: BTreeMap<&str, &NodeProto> =
            g.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
        let mut seen = BTreeSet::new();
        let mut stack = needed;
        let mut found = BTreeSet::new();
        while let Some(name) = stack.pop() {
            if !seen.insert(name) {
                continue;
            }
            if let Some(Slot::Tensor(id)) = self.slots.get(name)
                && self.graph.inputs.contains(id)
            {
                found.insert(*id);
            } else if let Some(inputs) = self.inlined_producers.get(name) {
                stack.extend(inputs.iter().map(String::as_str));
            } else if let Some(node) = producers.get(name) {
                stack.extend(node_reads(node));
            }
        }
        let initializers: BTreeSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
        let positions: BTreeMap<&str, usize> = g
            .input
            .iter()
            .map(|vi| vi.name())
            .filter(|n| !initializers.contains(n))
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect();
        found
            .into_iter()
            .map(|id| self.graph.info(id))
            .filter(|info| {
                // Shape-deciding values are short integer or bool vectors (shapes, axes, pads,
                // counts, masks) or float scalars and vectors (scales, Range bounds); a float
                // tensor of higher rank is data (NonMaxSuppression's boxes), never frozen.
                let shape_like = !info.dtype.is_float() || info.shape.len() <= 1;
                shape_like && info.elements() <= MAX_BOUND_ELEMENTS
            })
            .filter_map(|info| {
                Some(RunTimeInput {
                    name: info.name.clone(),
                    position: *positions.get(info.name.as_str())?,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                })
            })
            .collect()
    }

    /// Dtype and static shape of a graph input; `Ok(None)` when a symbol is unresolved
    /// (recorded in `unresolved`).
    fn input_info(
        &self,
        vi: &'m ValueInfoProto,
        unresolved: &mut BTreeMap<&'m str, Vec<String>>,
    ) -> Result<Option<(DType, Vec<usize>)>, ImportError> {
        let name = vi.name();
        if name.is_empty() {
            return Err(malformed("a graph input has no name"));
        }
        let Some(TypeValue::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err(ImportError::new(
                ErrorKind::UnsupportedFeature,
                format!("graph input {name:?} is not a dense tensor"),
            ));
        };
        let dtype = dtype_from_onnx(tt.elem_type(), &format!("graph input {name:?}"))?;
        let Some(shape) = &tt.shape else {
            return Err(ImportError::new(ErrorKind::ShapeError, format!("graph input {name:?} declares no shape"))
                .with_hint("re-export the model with static input shapes"));
        };
        // A shape given in input_dims wins; it must keep the rank and every fixed size.
        if let Some(given) = self.shapes.inputs.get(name) {
            let fixed_differs =
                shape.dim.iter().zip(given).enumerate().find_map(|(axis, (dim, &size))| match dim.value {
                    Some(Dim::DimValue(v)) if v >= 0 && v as usize != size => Some((axis, v)),
                    _ => None,
                });
            if given.len() != shape.dim.len() || fixed_differs.is_some() {
                let declared = declared_dims(shape);
                let why = match fixed_differs {
                    Some((axis, v)) => format!("axis {axis} is fixed at {v}"),
                    None => format!("the model declares rank {}", shape.dim.len()),
                };
                return Err(ImportError::new(
                    ErrorKind::ShapeError,
                    format!("[model] input_dims gives {name:?} the shape {given:?}, but {why} (declared {declared})"),
                )
                .with_hint("give a shape of the declared rank that keeps every fixed size"));
            }
            if given.contains(&0) {
                return Err(ImportError::new(
                    ErrorKind::ShapeError,
                    format!("[model] input_dims gives {name:?} an empty dim: {given:?}"),
                ));
            }
            return Ok(Some((dtype, given.clone())));
        }
        let mut dims = Vec::with_capacity(shape.dim.len());
        let mut complete = true;
        let mut anonymous = Vec::new();
        for (axis, dim) in shape.dim.iter().enumerate() {
            match &dim.value {
                Some(Dim::DimValue(v)) if *v >= 0 => dims.push(*v as usize),
                Some(Dim::DimParam(p)) if !p.is_empty() => match self.shapes.symbols.get(p) {
                    Some(&v) => dims.push(v),
                    None => {
                        unresolved.entry(p.as_str()).or_default().push(format!("input {name:?} axis {axis}"));
                        complete = false;
                        dims.push(1);
                    }
                },
                // `-1` (some exporters write it) or no size and no name: only input_dims can say.
                _ => {
                    anonymous.push(axis);
                    dims.push(1);
                }
            }
        }
        if !anonymous.is_empty() {
            let axes = anonymous.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
            let suggestion = dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
            return Err(ImportError::new(
                ErrorKind::UnresolvedSymbol,
                format!(
                    "graph input {name:?} ({}) has no size on axis {axes}: the dim is -1 or has neither a size nor a \
                     symbol name",
                    declared_dims(shape)
                ),
            )
            .with_hint(format!(
                "give the input a concrete shape in qairt.toml: [model] input_dims = {{ {} = [{suggestion}] }}",
                toml_key(name)
            )));
        }
        Ok(complete.then_some((dtype, dims)))
    }

    /// Compares an inferred type with the one the model declares for `name`, if any.
    /// Declared symbolic dims are checked when `define_symbols` gives them a value.
    fn check_declared(&self, name: &str, dtype: DType, shape: &[usize]) -> Result<(), ImportError> {
        let Some(vi) = self.declared.get(name) else { return Ok(()) };
        let mismatch = |what: String| {
            ImportError::new(
                ErrorKind::ShapeError,
                format!(
                    "tensor {name:?}: the model declares {what}, but shape inference gives {} {shape:?}",
                    dtype.name()
                ),
            )
        };
        let tt = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            None => return Ok(()),
            Some(TypeValue::TensorType(tt)) => tt,
            Some(_) => return Err(mismatch("a non-tensor type".into())),
        };
        let code = tt.elem_type();
        if code != 0 && code != onnx_code(dtype) {
            return Err(mismatch(format!("element type {}", onnx_dtype_name(code))));
        }
        let Some(declared) = &tt.shape else { return Ok(()) };
        let fits = declared.dim.len() == shape.len()
            && declared.dim.iter().zip(shape).all(|(dim, &got)| match &dim.value {
                Some(Dim::DimValue(v)) => *v == got as i64,
                Some(Dim::DimParam(p)) => self.shapes.symbols.get(p).is_none_or(|&v| v == got),
                None => true,
            });
        if !fits {
            let dims: Vec<String> = declared
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(Dim::DimValue(v)) => v.to_string(),
                    Some(Dim::DimParam(p)) => p.clone(),
                    None => "?".into(),
                })
                .collect();
            return Err(mismatch(format!("shape [{}]", dims.join(", "))));
        }
        Ok(())
    }

    fn import_node(&mut self, index: usize, node: &NodeProto) {
        let op_type = node.op_type();
        let name = node_name(node, index);
        if let Err(e) = self.try_import_node(&name, node) {
            self.errors.push(e.at_node(&name, op_type));
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                self.slots.insert(out.clone(), Slot::Failed);
            }
        }
    }

    /// The error of a node whose input failed: only an unsupported op type is news.
    fn skipped(&self, node: &NodeProto) -> Option<ImportError> {
        self.unsupported(node).err()
    }

    /// Checks the node's domain and op type.
    fn unsupported(&self, node: &NodeProto) -> Result<(), ImportError> {
        let op_type = node.op_type();
        let domain = match node.domain() {
            "ai.onnx" => "",
            d => d,
        };
        if domain.is_empty() && ops::onnx_op(op_type).is_some_and(|op| op.import.is_some()) {
            return Ok(());
        }
        let shown = if domain.is_empty() { "ai.onnx" } else { domain };
        let version = self.opsets.get(domain).map_or("not imported".to_string(), |v| v.to_string());
        let hint = if let Some(why) = ops::stays_out(op_type).filter(|_| domain.is_empty()) {
            format!("{op_type} is {why}")
        } else if domain.is_empty() {
            format!("qairt imports: {}", {
                let mut all: Vec<&str> = ops::registry().filter(|op| op.import.is_some()).map(|op| op.name).collect();
                all.sort_unstable();
                all.join(", ")
            })
        } else if domain == "ai.onnx.preview.training" {
            format!(
                "{op_type} is a training operator (optimizer update or gradient): qairt imports inference graphs, \
                 and only standard ai.onnx ops"
            )
        } else if domain == "ai.onnx.ml" {
            "ai.onnx.ml (classical machine learning: trees, encoders, scalers) is not supported: qairt imports only \
             standard ai.onnx ops"
                .to_string()
        } else {
            "qairt imports only standard ai.onnx ops".to_string()
        };
        Err(ImportError::new(
            ErrorKind::UnsupportedOp,
            format!("unsupported op {op_type:?} (domain {shown:?}, opset {version})"),
        )
        .with_hint(hint))
    }

    fn try_import_node(&mut self, name: &str, node: &NodeProto) -> Result<(), ImportError> {
        // Inputs that failed upstream: skip quietly unless the op itself is unsupported.
        let mut upstream_failed = false;
        for input in node.input.iter().filter(|n| !n.is_empty()) {
            match self.slots.get(input.as_str()) {
                Some(Slot::Failed) => upstream_failed = true,
                Some(Slot::Broken(_)) => {
                    if let Some(Slot::Broken(e)) = self.slots.insert(input.clone(), Slot::Failed) {
                        self.errors.push(e.at_node(name, node.op_type()));
                    }
                    upstream_failed = true;
                }
                Some(_) => {}
                None => return Err(malformed(format!("input {input:?} is read before it is defined"))),
            }
        }
        if upstream_failed {
            return match self.skipped(node) {
                Some(e) => Err(e),
                None => {
                    for out in node.output.iter().filter(|o| !o.is_empty()) {
                        self.slots.insert(out.clone(), Slot::Failed);
                    }
                    Ok(())
                }
            };
        }
        self.unsupported(node)?;

        let lowered = {
            let inputs = node.input.iter().map(|n| if n.is_empty() { None } else { self.view(n) }).collect();
            let used_outputs =
                node.output.iter().map(|o| !o.is_empty() && self.consumed.contains(o.as_str())).collect();
            let cx = NodeCx { node, opset: self.opset, inputs, external: self.external, used_outputs };
            ops::lower(&cx)?
        };
        match lowered {
            Lowered::Known(values) => {
                self.check_extra_outputs(node, values.len())?;
                for (out, tensor) in node.output.iter().zip(values) {
                    if !out.is_empty() {
                        self.check_declared(out, tensor.dtype(), &tensor.shape)?;
                        self.define(out, Slot::Known { tensor, id: None })?;
                    }
                }
                Ok(())
            }
            Lowered::Ir { op, inputs } => self.add_ir_node(name, node, op, &inputs),
            Lowered::Branch(attribute) => {
                let branch = node
                    .attribute
                    .iter()
                    .find(|a| a.name() == attribute)
                    .and_then(|a| a.g.as_ref())
                    .ok_or_else(|| malformed(format!("{} has no graph attribute {attribute:?}", node.op_type())))?;
                self.import_branch(name, node, branch)
            }
        }
    }

    /// Imports `branch` in place of `node` (an If whose condition is known): its nodes join the
    /// graph, reading the outer tensors by name, with their own names renamed where they clash
    /// ([`inline::inline_branch`]); the branch's outputs become the node's.
    fn import_branch(&mut self, name: &str, node: &NodeProto, branch: &GraphProto) -> Result<(), ImportError> {
        if !branch.sparse_initializer.is_empty() {
            return Err(ImportError::new(
                ErrorKind::UnsupportedFeature,
                "the branch taken has sparse initializers, which qairt does not import",
            ));
        }
        let inlined = inline::inline_branch(branch, name, &node.output, |base| {
            let fresh = inline::fresh_name(base, &self.names);
            self.names.insert(fresh.clone());
            fresh
        })?;
        for (new, t) in &inlined.initializers {
            let slot = match decode_tensor(t, self.external) {
                Ok(tensor) => Slot::Known { tensor, id: None },
                Err(e) => Slot::Broken(e),
            };
            self.define(new, slot)?;
        }
        for n in &inlined.nodes {
            let reads: Vec<String> = node_reads(n).into_iter().map(str::to_string).collect();
            self.consumed.extend(reads.iter().cloned());
            for out in n.output.iter().filter(|o| !o.is_empty()) {
                self.inlined_producers.insert(out.clone(), reads.clone());
            }
        }
        let order = topological_order(&inlined.nodes, |n| self.slots.contains_key(n)).map_err(|mut errors| {
            let first = errors.remove(0);
            self.errors.extend(errors);
            first
        })?;
        for index in order {
            self.import_node(index, &inlined.nodes[index]);
        }
        Ok(())
    }

    /// What a node sees of the tensor `name` (which exists: checked by the caller).
    fn view<'s>(&'s self, name: &'s str) -> Option<InputView<'s>> {
        match self.slots.get(name)? {
            Slot::Tensor(id) => {
                let info = self.graph.info(*id);
                Some(InputView { name, dtype: info.dtype, shape: &info.shape, value: None })
            }
            Slot::Known { tensor, .. } => {
                Some(InputView { name, dtype: tensor.dtype(), shape: &tensor.shape, value: Some(tensor) })
            }
            Slot::Broken(_) | Slot::Failed => None,
        }
    }

    /// IR nodes and folded ops produce their first `produced` outputs; any later output the
    /// model reads (BatchNormalization's running statistics, Dropout's mask, AveragePool's
    /// nonexistent second output) cannot be provided.
    fn check_extra_outputs(&self, node: &NodeProto, produced: usize) -> Result<(), ImportError> {
        let used: Vec<String> = node
            .output
            .iter()
            .enumerate()
            .skip(produced)
            .filter(|(_, o)| !o.is_empty() && self.consumed.contains(o.as_str()))
            .map(|(i, o)| format!("#{i} {o:?}"))
            .collect();
        if used.is_empty() {
            return Ok(());
        }
        Err(ImportError::new(
            ErrorKind::UnsupportedFeature,
            format!(
                "output {} is used, but qairt imports only the first output of {}",
                used.join(", "),
                node.op_type()
            ),
        )
        .with_hint(
            "only inference graphs are supported: BatchNormalization training outputs and Dropout masks must be unused",
        ))
    }

    fn define(&mut self, name: &str, slot: Slot) -> Result<(), ImportError> {
        if self.slots.contains_key(name) {
            return Err(malformed(format!("tensor {name:?} is defined more than once")));
        }
        self.slots.insert(name.to_string(), slot);
        Ok(())
    }

    /// Adds the IR node of `op`. An op whose inference gives N outputs produces the node's
    /// outputs up to the last one the model names (at most N): an unnamed optional output
    /// before a named one (LSTM's `Y` when only `Y_h` is used) gets an internal tensor, so the
    /// kernel sees its declared outputs by position.
    fn add_ir_node(
        &mut self,
        name: &str,
        node: &NodeProto,
        op: ir::Op,
        positions: &[usize],
    ) -> Result<(), ImportError> {
        let input_names: Vec<&str> = positions
            .iter()
            .map(|&p| node.input.get(p).map(String::as_str).filter(|n| !n.is_empty()))
            .collect::<Option<_>>()
            .ok_or_else(|| malformed("an input the op needs is missing"))?;
        let infos: Vec<TensorInfo> = input_names
            .iter()
            .map(|n| {
                let v = self.view(n).ok_or_else(|| malformed(format!("input {n:?} is not available")))?;
                Ok(TensorInfo { name: n.to_string(), dtype: v.dtype, shape: v.shape.to_vec() })
            })
            .collect::<Result<_, ImportError>>()?;
        let info_refs: Vec<&TensorInfo> = infos.iter().collect();
        let inferred = op.infer(&info_refs).map_err(|e| ImportError::new(ErrorKind::ShapeError, e))?;
        if inferred.is_empty() {
            return Err(malformed("shape inference produced no output"));
        }
        self.check_extra_outputs(node, inferred.len())?;
        // The IR node produces output 0 and every later output the node names, up to the last
        // one named (an unnamed optional output in between gets a fresh name).
        let named = node.output.iter().take(inferred.len()).rposition(|o| !o.is_empty()).map_or(0, |i| i + 1);
        if named == 0 {
            return Err(malformed("the node has no output"));
        }
        for (o, (dtype, shape)) in node.output.iter().zip(&inferred).take(named) {
            if !o.is_empty() {
                check_size(o, *dtype, shape)?;
                self.check_declared(o, *dtype, shape)?;
            }
        }

        // Integer shape arithmetic on known values is evaluated now and leaves no node.
        let known: Option<Vec<&Tensor>> = input_names
            .iter()
            .map(|n| match self.slots.get(*n) {
                Some(Slot::Known { tensor, .. }) => Some(tensor),
                _ => None,
            })
            .collect();
        if named == 1
            && let Some(out) = node.output.first().map(String::as_str)
            && let Some(values) = &known
            && let Some(result) = fold::eval_int(&op, values, inferred[0].0, &inferred[0].1)
        {
            let tensor =
                result.map_err(|e| ImportError::new(ErrorKind::ShapeError, format!("evaluating at import: {e}")))?;
            return self.define(out, Slot::Known { tensor, id: None });
        }
        // Any other op on known values with integer or bool results (comparisons, logic,
        // selection in shape computations) runs its kernel now. Float results are left to the
        // optimize stage, which folds them where quantization allows.
        if let Some(values) = known
            && inferred.iter().all(|(dtype, shape)| !dtype.is_float() && fold::folded_count(shape).is_ok())
        {
            let infos: Vec<TensorInfo> = inferred
                .iter()
                .enumerate()
                .map(|(i, (dtype, shape))| TensorInfo {
                    name: format!("{name}:{i}"),
                    dtype: *dtype,
                    shape: shape.clone(),
                })
                .collect();
            let results = op
                .run(&values, &infos)
                .map_err(|e| ImportError::new(ErrorKind::ShapeError, format!("evaluating at import: {e}")))?;
            for (out, tensor) in node.output.iter().zip(results).take(named) {
                if !out.is_empty() {
                    self.define(out, Slot::Known { tensor, id: None })?;
                }
            }
            return Ok(());
        }

        let inputs = input_names.iter().map(|n| self.materialize(n)).collect::<Result<Vec<_>, _>>()?;
        let mut outputs = Vec::with_capacity(named);
        for (i, (o, (dtype, shape))) in node.output.iter().zip(inferred).take(named).enumerate() {
            if !o.is_empty() && self.slots.contains_key(o.as_str()) {
                return Err(malformed(format!("tensor {o:?} is defined more than once")));
            }
            // An omitted (unnamed) output still needs a tensor of its own in the IR.
            let tensor_name = if o.is_empty() { format!("{name}_unused_output_{i}") } else { o.clone() };
            let id = self.graph.add_tensor(TensorInfo { name: tensor_name, dtype, shape });
            if !o.is_empty() {
                self.slots.insert(o.clone(), Slot::Tensor(id));
            }
            outputs.push(id);
        }
        self.graph.nodes.push(Node { name: name.to_string(), op, inputs, outputs });
        Ok(())
    }

    /// The graph tensor for `name`, adding a known value to the graph on first use.
    fn materialize(&mut self, name: &str) -> Result<TensorId, ImportError> {
        match self.slots.get_mut(name) {
            Some(Slot::Tensor(id)) => Ok(*id),
            Some(Slot::Known { id: Some(id), .. }) => Ok(*id),
            Some(Slot::Known { tensor, id }) => {
                let new = self.graph.add_tensor(TensorInfo {
                    name: name.to_string(),
                    dtype: tensor.dtype(),
                    shape: tensor.shape.clone(),
                });
                *id = Some(new);
                Ok(new)
            }
            _ => Err(malformed(format!("tensor {name:?} is not available"))),
        }
    }

    /// A graph output whose value is known at import (it does not depend on the inputs, or
    /// only on bound ones): an Identity of the constant writes it, so it is produced, named
    /// and typed like any output.
    fn add_constant_output(&mut self, name: &str) {
        let constant = match self.materialize(name) {
            Ok(id) => id,
            Err(e) => return self.errors.push(e),
        };
        let info = self.graph.info(constant).clone();
        if let Err(e) = self.check_declared(name, info.dtype, &info.shape) {
            return self.errors.push(e);
        }
        self.graph.tensors[constant.index()].name = format!("{name}_constant");
        let output = self.graph.add_tensor(TensorInfo { name: name.to_string(), ..info });
        self.graph.nodes.push(Node {
            name: format!("{name}_output"),
            op: ir::Op::Identity(ops::Identity),
            inputs: vec![constant],
            outputs: vec![output],
        });
        self.graph.outputs.push(output);
    }

    fn add_outputs(&mut self, g: &'m GraphProto) {
        if g.output.is_empty() {
            self.errors.push(malformed("the graph has no outputs"));
        }
        for vi in &g.output {
            let name = vi.name();
            match self.slots.get(name) {
                Some(Slot::Tensor(id)) => {
                    let id = *id;
                    let info = self.graph.info(id);
                    // Node outputs were checked when created; graph inputs passed straight through were not.
                    if let Err(e) = self.check_declared(name, info.dtype, &info.shape) {
                        self.errors.push(e);
                    }
                    self.graph.outputs.push(id);
                }
                Some(Slot::Known { .. }) => self.add_constant_output(name),
                Some(Slot::Broken(_)) => {
                    if let Some(Slot::Broken(e)) = self.slots.insert(name.to_string(), Slot::Failed) {
                        self.errors.push(e);
                    }
                }
                Some(Slot::Failed) => {}
                None => self
                    .errors
                    .push(malformed(format!("graph output {name:?} is not produced by any node or graph input"))),
            }
        }
    }
}
