//! Subgraphs imported in place: the branch an If takes when its condition is known at import
//! (`ops::control` decides which).
//!
//! A branch reads the tensors of the enclosing graphs by name (lexical scoping) and defines
//! its own (initializers, node outputs). Inlined, its nodes join the outer graph, so its own
//! names must not clash with any name of the model: each keeps its name when it is free and
//! is renamed otherwise ([`fresh_name`]), every reference to it following, in nested
//! subgraphs too. A branch output produced inside the branch takes the If's output name
//! directly; one that is an outer tensor (or that repeats an earlier output) goes through an
//! Identity, so each If output is defined once under its own name.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{ImportError, malformed};
use super::import::node_name;
use super::proto::{GraphProto, NodeProto, TensorProto};

/// The graphs a node carries in its attributes (an If's branches, a Loop's body).
fn subgraphs(node: &NodeProto) -> impl Iterator<Item = &GraphProto> {
    node.attribute.iter().flat_map(|a| a.g.iter().chain(&a.graphs))
}

/// The names `g` defines itself: its inputs, initializers and node outputs.
fn own_names(g: &GraphProto) -> BTreeSet<&str> {
    let mut own: BTreeSet<&str> = g.input.iter().map(|i| i.name()).collect();
    own.extend(g.initializer.iter().map(|t| t.name()));
    own.extend(g.node.iter().flat_map(|n| &n.output).filter(|o| !o.is_empty()).map(String::as_str));
    own
}

/// The names `g` (with its nested subgraphs) reads from the scopes around it.
fn outer_reads(g: &GraphProto) -> BTreeSet<&str> {
    let own = own_names(g);
    let mut reads = BTreeSet::new();
    for node in &g.node {
        reads.extend(node.input.iter().filter(|n| !n.is_empty()).map(String::as_str));
        reads.extend(implicit_inputs(node));
    }
    reads.extend(g.output.iter().map(|o| o.name()));
    reads.retain(|n| !own.contains(n));
    reads
}

/// The names a node's subgraphs read from the graph the node is in (beyond its inputs):
/// they must be defined before the node runs.
pub(super) fn implicit_inputs(node: &NodeProto) -> BTreeSet<&str> {
    subgraphs(node).flat_map(outer_reads).collect()
}

/// `base` if no name in `taken` is `base`, else the first free `base_1`, `base_2`...
pub(super) fn fresh_name(base: &str, taken: &BTreeSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (1..).map(|k| format!("{base}_{k}")).find(|n| !taken.contains(n)).expect("an unbounded range has a free name")
}

/// Rewrites what `g` reads from the enclosing scopes through `renamed` (names `g` defines
/// itself shadow those of the scopes around it, and are left alone).
pub(super) fn rename_outer_reads(g: &mut GraphProto, renamed: &BTreeMap<String, String>) {
    let own: BTreeSet<String> = own_names(g).into_iter().map(str::to_string).collect();
    let visible: BTreeMap<String, String> =
        renamed.iter().filter(|(k, _)| !own.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if visible.is_empty() {
        return;
    }
    let rename = |name: &mut String| {
        if let Some(new) = visible.get(name.as_str()) {
            name.clone_from(new);
        }
    };
    for node in &mut g.node {
        node.input.iter_mut().for_each(rename);
        for attribute in &mut node.attribute {
            for sub in attribute.g.iter_mut().chain(&mut attribute.graphs) {
                rename_outer_reads(sub, &visible);
            }
        }
    }
    for output in &mut g.output {
        if let Some(name) = &mut output.name {
            rename(name);
        }
    }
}

/// A branch ready to import in place of its If.
pub(super) struct Inlined<'g> {
    /// The branch's nodes with their names rewritten (node names prefixed with the If's),
    /// then the Identity nodes of outputs not produced under the If's output name.
    pub nodes: Vec<NodeProto>,
    /// The branch's initializers, with the names they take.
    pub initializers: Vec<(String, &'g TensorProto)>,
}

/// Prepares `branch` to replace the If node `if_name` with outputs `if_outputs` (an empty
/// name: an output the model does not use). `fresh` gives a branch name its name in the
/// outer graph (see the module docs) and reserves it.
pub(super) fn inline_branch<'g>(
    branch: &'g GraphProto,
    if_name: &str,
    if_outputs: &[String],
    mut fresh: impl FnMut(&str) -> String,
) -> Result<Inlined<'g>, ImportError> {
    let branch_name = branch.name();
    if !branch.input.is_empty() {
        return Err(malformed(format!(
            "the If branch {branch_name:?} declares {} inputs, but a branch takes none",
            branch.input.len()
        )));
    }
    if branch.output.len() != if_outputs.len() {
        return Err(malformed(format!(
            "the If branch {branch_name:?} has {} outputs, but the If node has {}",
            branch.output.len(),
            if_outputs.len()
        )));
    }
    if let Some(o) = branch.output.iter().find(|o| o.name().is_empty()) {
        return Err(malformed(format!("an output of the If branch {branch_name:?} has no name ({o:?})")));
    }
    let own = own_names(branch);
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    // An output the branch computes is produced under the If's output name itself.
    for (out, target) in branch.output.iter().zip(if_outputs) {
        if !target.is_empty() && own.contains(out.name()) && !renamed.contains_key(out.name()) {
            renamed.insert(out.name().to_string(), target.clone());
        }
    }
    let locals = branch
        .initializer
        .iter()
        .map(|t| t.name())
        .chain(branch.node.iter().flat_map(|n| &n.output).filter(|o| !o.is_empty()).map(String::as_str));
    for local in locals {
        if !renamed.contains_key(local) {
            let new = fresh(local);
            renamed.insert(local.to_string(), new);
        }
    }
    let name_of = |n: &str| renamed.get(n).cloned().unwrap_or_else(|| n.to_string());

    let mut nodes = Vec::with_capacity(branch.node.len() + branch.output.len());
    for (i, node) in branch.node.iter().enumerate() {
        let mut node = node.clone();
        node.name = Some(format!("{if_name}/{}", node_name(&node, i)));
        for name in node.input.iter_mut().chain(&mut node.output).filter(|n| !n.is_empty()) {
            *name = name_of(name);
        }
        for attribute in &mut node.attribute {
            for sub in attribute.g.iter_mut().chain(&mut attribute.graphs) {
                rename_outer_reads(sub, &renamed);
            }
        }
        nodes.push(node);
    }
    for (out, target) in branch.output.iter().zip(if_outputs) {
        let source = name_of(out.name());
        if target.is_empty() || source == *target {
            continue;
        }
        nodes.push(NodeProto {
            name: Some(format!("{if_name}/{target}")),
            op_type: Some("Identity".into()),
            input: vec![source],
            output: vec![target.clone()],
            ..Default::default()
        });
    }
    let initializers = branch.initializer.iter().map(|t| (name_of(t.name()), t)).collect();
    Ok(Inlined { nodes, initializers })
}

#[cfg(test)]
#[path = "inline_tests.rs"]
mod tests;
