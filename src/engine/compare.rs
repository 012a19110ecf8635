//! The per-layer comparison of a verify run, folded sample by sample: what `simulate` and the
//! layerwise and cumulative runs keep instead of every intermediate tensor of every sample.
//!
//! A run computes one sample's float values (the target's float graph, or a `[verify] golden`
//! dump where it holds the tensor), then folds each quantized layer into its row's
//! [`LayerFold`] the moment the executor produces it, so a pool thread holds one sample's float
//! activations and nothing of the quantized run. Rows are merged in sample order, which keeps
//! every artifact byte-identical for any thread count.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::ir::{DType, Graph, Tensor};
use crate::quant::QuantizedGraph;
use crate::runtime::RuntimeError;
use crate::verify::checker::FloatProfile;
use crate::verify::html::Histogram;
use crate::verify::report_page::activation_histogram;
use crate::verify::{LayerFold, MetricSpec};

use super::golden_stage::ExternalGolden;

/// Float values of the first samples, every float layer and graph input, for what needs every
/// value at once: the quantization checker's activation analyses (median, mode, distinct
/// values) and the report's activation histograms. Held while a run goes, then reduced to
/// [`Activations`].
///
/// Each sample's values are moved in as the run made them, and put back to back only when a
/// tensor is profiled, on the pool: copied into one 64 MiB prefix as samples came in, on the
/// thread that takes results in order, they were 4 % of MobileNetV2's `htp` simulate (copies
/// and first touches of fresh pages) and held up the other threads at the end of the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FloatPrefix {
    /// How many verify samples the prefix holds (the first ones).
    pub samples: usize,
    /// Tensor name -> each sample's values, in sample order.
    chunks: BTreeMap<String, Vec<Vec<f32>>>,
}

/// At most this many float values are held in a [`FloatPrefix`] (64 MiB): a bounded cost per
/// target however many samples verify runs, and every sample of a small model.
pub const PREFIX_BUDGET_VALUES: usize = 16 << 20;

impl FloatPrefix {
    /// How many of `samples` samples fit in the budget (at least one).
    pub fn samples_for(graph: &Graph, samples: usize) -> usize {
        let per_sample: usize = kept_tensors(graph).map(|id| graph.info(id).shape.iter().product::<usize>()).sum();
        (PREFIX_BUDGET_VALUES / per_sample.max(1)).clamp(1, samples.max(1)).min(samples)
    }

    /// Appends one sample: its float values by name (moved, not copied), and its graph inputs.
    pub fn append(&mut self, graph: &Graph, inputs: &[Tensor], mut values: SampleValues) {
        self.samples += 1;
        for (k, &id) in graph.inputs.iter().enumerate() {
            if let Some(t) = inputs.get(k) {
                self.chunks.entry(graph.name(id).to_string()).or_default().push(t.to_f32_vec());
            }
        }
        for id in kept_tensors(graph).filter(|id| !graph.inputs.contains(id)) {
            if let Some(v) = values.take(graph.name(id)) {
                self.chunks.entry(graph.name(id).to_string()).or_default().push(v);
            }
        }
    }

    /// The tensors held, in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.chunks.keys().map(String::as_str)
    }

    /// How many values of `name` the prefix holds, every sample's together.
    pub fn len(&self, name: &str) -> Option<usize> {
        self.chunks.get(name).map(|chunks| chunks.iter().map(Vec::len).sum())
    }

    /// The values of `name`, every sample's back to back (borrowed when there is one sample).
    pub fn values(&self, name: &str) -> Option<std::borrow::Cow<'_, [f32]>> {
        match self.chunks.get(name)?.as_slice() {
            [one] => Some(std::borrow::Cow::Borrowed(one.as_slice())),
            chunks => Some(std::borrow::Cow::Owned(chunks.concat())),
        }
    }
}

/// What the checker and the report read of a quantized target's float activations, made from
/// a [`FloatPrefix`]: independent of the checker's configuration and of thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activations {
    /// The verify samples covered (the first ones).
    pub samples: usize,
    /// Every float layer and graph input, by name.
    pub profiles: BTreeMap<String, FloatProfile>,
    /// Every float layer's histogram with its encoding's range, by name.
    pub histograms: BTreeMap<String, Histogram>,
}

impl Activations {
    /// Profiles and histograms of every tensor of `prefix` (side by side on the pool; each
    /// tensor's result is its own, so the order of work does not matter).
    ///
    /// Each profile needs its tensor's values sorted, the largest part of this work. The
    /// output of an op that keeps order ([`crate::ir::Op::keeps_order`]: a ReLU or a Clip after
    /// most convolutions) over a tensor of the prefix is not sorted again: its values in order
    /// are the op applied to its input's in order (zeros' signs put back in order). So each
    /// task takes a tensor that is sorted and, from it, the chain of such outputs it feeds.
    pub fn of(prefix: &FloatPrefix, q: &QuantizedGraph, inputs: &[String]) -> Activations {
        use rayon::prelude::*;
        // Once, not per tensor: a name index per tensor made 20,000-layer graphs quadratic.
        let ids = q.graph.names();
        let order_kept = order_keeping_outputs(prefix, &q.graph);
        let roots: Vec<&str> = prefix.names().filter(|name| !order_kept.contains_key(name)).collect();
        let mut fed: HashMap<&str, Vec<(&str, &crate::ir::Op)>> = HashMap::new();
        for (&output, &(input, op)) in &order_kept {
            fed.entry(input).or_default().push((output, op));
        }
        let profile = |name: &str, values: &[f32], sorted: Option<&[f32]>| {
            let id = ids.get(name).copied();
            let histogram =
                (!inputs.iter().any(|i| i == name)).then(|| activation_histogram(q, id, name, values, sorted));
            (name.to_string(), histogram)
        };
        let done: Vec<(String, FloatProfile, Option<Histogram>)> = roots
            .par_iter()
            .flat_map_iter(|name| {
                let mut done = Vec::new();
                let values = prefix.values(name).unwrap_or_default();
                let (root_profile, sorted) = FloatProfile::with_sorted(&values);
                let (key, histogram) = profile(name, &values, sorted.as_deref());
                done.push((key, root_profile, histogram));
                drop(values);
                let mut pending: Vec<(&str, Option<Vec<f32>>)> = vec![(*name, sorted)];
                // Depth first through the outputs each sorted tensor feeds, dropping each
                // sorted copy once its outputs are done.
                while let Some((input, sorted)) = pending.pop() {
                    for &(output, op) in fed.get(input).map(Vec::as_slice).unwrap_or(&[]) {
                        let values = prefix.values(output).unwrap_or_default();
                        let derived = sorted.as_deref().and_then(|s| sorted_through(op, s, values.len()));
                        let (output_profile, output_sorted) = match derived {
                            Some(sorted) => (FloatProfile::of_sorted(&values, &sorted), Some(sorted)),
                            None => FloatProfile::with_sorted(&values),
                        };
                        let (name, histogram) = profile(output, &values, output_sorted.as_deref());
                        done.push((name, output_profile, histogram));
                        pending.push((output, output_sorted));
                    }
                }
                done
            })
            .collect();
        let mut activations =
            Activations { samples: prefix.samples, profiles: BTreeMap::new(), histograms: BTreeMap::new() };
        for (name, profile, histogram) in done {
            if let Some(h) = histogram {
                activations.histograms.insert(name.clone(), h);
            }
            activations.profiles.insert(name, profile);
        }
        activations
    }
}

/// The tensors of the prefix written by a one-input op that keeps order over another tensor
/// of the prefix (of the same length): output name -> (input name, op).
fn order_keeping_outputs<'g>(prefix: &FloatPrefix, graph: &'g Graph) -> HashMap<&'g str, (&'g str, &'g crate::ir::Op)> {
    graph
        .nodes
        .iter()
        .filter(|node| node.op.keeps_order())
        .filter_map(|node| {
            let (&[input], &[output]) = (node.inputs.as_slice(), node.outputs.as_slice()) else { return None };
            let (input_name, output_name) = (graph.name(input), graph.name(output));
            let same_length = prefix.len(input_name)? == prefix.len(output_name)?;
            same_length.then_some((output_name, (input_name, &node.op)))
        })
        .collect()
}

/// The values of `op`'s output in `algorithms::sorted`'s order, from its input's in that
/// order: the kernel applied to each (it keeps order, so the results come out ascending), then
/// the run of zeros rewritten as its -0.0s before its +0.0s, as the total order puts them
/// (a clamp at 0 sends negatives to +0.0 and keeps -0.0). `None` where the kernel fails, or
/// gives other than `len` finite values in ascending order (then the output is sorted on its
/// own).
fn sorted_through(op: &crate::ir::Op, input_sorted: &[f32], len: usize) -> Option<Vec<f32>> {
    let input = Tensor::from_f32(vec![input_sorted.len()], input_sorted.to_vec());
    let mut output = op.run(&[&input], &[]).ok()?.into_iter().next()?;
    let values = match &mut output.data {
        crate::ir::TensorData::F32(values) if values.len() == len => values,
        _ => return None,
    };
    if !values.iter().all(|v| v.is_finite()) || !values.is_sorted_by(|a, b| a <= b) {
        return None;
    }
    let start = values.partition_point(|&v| v < 0.0);
    let end = values.partition_point(|&v| v <= 0.0);
    let zeros = &mut values[start..end];
    let negative = zeros.iter().filter(|v| v.is_sign_negative()).count();
    zeros[..negative].fill(-0.0);
    zeros[negative..].fill(0.0);
    Some(std::mem::take(values))
}

/// The graph inputs and every float tensor a node writes.
pub(super) fn kept_tensors(graph: &Graph) -> impl Iterator<Item = crate::ir::TensorId> + '_ {
    graph.inputs.iter().copied().chain(
        graph.nodes.iter().flat_map(|n| n.outputs.iter().copied()).filter(|&id| graph.info(id).dtype == DType::F32),
    )
}

/// One sample's float values by tensor name.
#[derive(Default)]
pub struct SampleValues(HashMap<String, Vec<f32>>);

impl SampleValues {
    /// Keeps `tensor` under `name` when it is float32.
    pub fn observe(&mut self, name: &str, tensor: &Tensor) {
        if let Some(data) = tensor.as_f32() {
            self.0.insert(name.to_string(), data.to_vec());
        }
    }

    /// A float run of `graph` on one sample, with every float32 value it computes (and its
    /// float32 inputs) held by name: the values are moved out of the run, not copied.
    pub fn float_run(graph: &Graph, inputs: &[Tensor]) -> Result<(Vec<Tensor>, SampleValues), RuntimeError> {
        let is_float = |id: crate::ir::TensorId| graph.info(id).dtype == DType::F32;
        let (outputs, retained) = crate::runtime::interpret::interpret_retaining(graph, inputs, &is_float)?;
        Ok((outputs, SampleValues::by_name(graph, retained)))
    }

    /// A run's retained float32 values, by tensor name.
    pub fn by_name(graph: &Graph, retained: crate::runtime::interpret::Retained) -> SampleValues {
        let mut values = SampleValues(HashMap::with_capacity(retained.len()));
        for (id, tensor) in retained {
            if let crate::ir::TensorData::F32(data) = tensor.data {
                values.0.insert(graph.name(id).to_string(), data);
            }
        }
        values
    }

    /// Holds `values` under `name` (a value kept from an earlier run).
    pub fn insert(&mut self, name: &str, values: Vec<f32>) {
        self.0.insert(name.to_string(), values);
    }

    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.0.get(name).map(Vec::as_slice)
    }

    /// Takes the values of `name` out.
    pub fn take(&mut self, name: &str) -> Option<Vec<f32>> {
        self.0.remove(name)
    }
}

/// A row of the per-layer table.
#[derive(Clone, Debug)]
struct Row {
    /// The layer's tensor (its quantized value is compared).
    name: String,
    /// The golden tensor it is compared with: itself, or the activation it is squashed into.
    golden: String,
}

/// What a target's runs compare: the rows (graph order) and the verifiers folded besides the
/// sums every row keeps.
pub struct Plan {
    rows: Vec<Row>,
    row_of: HashMap<String, usize>,
    specs: Vec<MetricSpec>,
}

impl Plan {
    /// The rows of `graph` (the target's float graph): every float layer, or with a dump the
    /// ones it holds. A layer `squashed` into the activation after it is compared with that
    /// activation's golden value (when the golden has it). `folded` are the verifiers each row
    /// folds besides the sums (`DebugSettings::folded_metrics`).
    pub fn new(
        graph: &Graph,
        squashed: &BTreeMap<String, String>,
        dump: Option<&ExternalGolden>,
        folded: Vec<MetricSpec>,
    ) -> Plan {
        let has_golden = |name: &str| dump.is_none_or(|d| d.values.contains_key(name));
        let rows: Vec<Row> = crate::verify::layer_specs(graph, has_golden)
            .into_iter()
            .map(|spec| {
                let golden = squashed.get(&spec.name).filter(|into| has_golden(into)).unwrap_or(&spec.name).clone();
                Row { name: spec.name, golden }
            })
            .collect();
        let row_of = rows.iter().enumerate().map(|(k, r)| (r.name.clone(), k)).collect();
        Plan { rows, row_of, specs: folded }
    }

    /// Empty folds, one per row.
    pub fn start(&self) -> SampleFolds {
        let fold = LayerFold::new(&self.specs);
        SampleFolds { folds: self.rows.iter().map(|_| fold.empty()).collect(), seen: vec![false; self.rows.len()] }
    }

    /// The row of layer `name`, if it is one.
    pub fn row(&self, name: &str) -> Option<usize> {
        self.row_of.get(name).copied()
    }

    /// The rows' layer names, in order.
    pub fn row_names(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|r| r.name.as_str())
    }

    /// Every row as (layer, golden tensor), and the folded verifiers: what a fold depends on
    /// besides the values (part of a checkpoint's key).
    pub fn describe(&self) -> (Vec<(&str, &str)>, &[MetricSpec]) {
        (self.rows.iter().map(|r| (r.name.as_str(), r.golden.as_str())).collect(), &self.specs)
    }

    /// The golden tensor row `row` is compared with.
    pub fn golden_of(&self, row: usize) -> Option<&str> {
        self.rows.get(row).map(|r| r.golden.as_str())
    }

    /// Every row's fold, graph order; an error names a row the runs never produced.
    pub fn finish(&self, folds: SampleFolds) -> Result<Vec<(String, LayerFold)>, String> {
        if let Some(missing) = folds.seen.iter().position(|seen| !seen) {
            return Err(format!("layer {} has no quantized values", self.rows[missing].name));
        }
        Ok(self.rows.iter().map(|r| r.name.clone()).zip(folds.folds).collect())
    }
}

/// Row folds of some samples, and which rows they have seen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SampleFolds {
    folds: Vec<LayerFold>,
    seen: Vec<bool>,
}

impl SampleFolds {
    /// Folds one sample's quantized value of row `row` against its golden value.
    pub fn add(&mut self, row: usize, golden: &[f32], actual: &[f32]) {
        if let Some(fold) = self.folds.get_mut(row) {
            fold.add(golden, actual);
            self.seen[row] = true;
        }
    }

    /// Row `row`'s fold made the one of row `from` (already folded): for a sample's own
    /// folds, where the two rows compare the same golden with bit-identical values, the fold
    /// that adding them would give, without a pass over either. False, having changed
    /// nothing, when `from` has not been folded.
    pub fn repeat(&mut self, row: usize, from: usize) -> bool {
        if !self.seen.get(from).copied().unwrap_or(false) || row >= self.folds.len() {
            return false;
        }
        self.folds[row] = self.folds[from].clone();
        self.seen[row] = true;
        true
    }

    /// Folds `later` (the following samples) into these.
    pub fn merge(&mut self, later: &SampleFolds) {
        for ((mine, theirs), (seen, saw)) in
            self.folds.iter_mut().zip(&later.folds).zip(self.seen.iter_mut().zip(&later.seen))
        {
            mine.merge(theirs);
            *seen |= saw;
        }
    }

    /// These folds with every row outside `keep` emptied (as if no sample had reached it).
    pub fn restricted(&self, keep: &[bool]) -> SampleFolds {
        let mut out = self.clone();
        for ((fold, seen), &kept) in out.folds.iter_mut().zip(out.seen.iter_mut()).zip(keep) {
            if !kept {
                *fold = fold.empty();
                *seen = false;
            }
        }
        out
    }

    /// Takes row `row` of `other` (a cumulative segment's fold of that row) in place of this one's.
    pub fn take_row(&mut self, row: usize, other: &SampleFolds) {
        if let (Some(fold), Some(theirs)) = (self.folds.get_mut(row), other.folds.get(row)) {
            *fold = theirs.clone();
            self.seen[row] = other.seen[row];
        }
    }
}

/// Where a sample's golden values come from: the dump where it holds a tensor, else the
/// float run.
pub struct Goldens<'a> {
    dump: Option<&'a ExternalGolden>,
    /// Elements of one sample of each dumped tensor.
    sizes: HashMap<&'a str, usize>,
}

impl<'a> Goldens<'a> {
    pub fn new(graph: &'a Graph, dump: Option<&'a ExternalGolden>) -> Goldens<'a> {
        let sizes = match dump {
            Some(d) => kept_tensors(graph)
                .map(|id| (graph.name(id), graph.info(id).shape.iter().product()))
                .filter(|(name, _)| d.values.contains_key(*name))
                .collect(),
            None => HashMap::new(),
        };
        Goldens { dump, sizes }
    }

    /// Whether the golden value of `name` comes from the dump (not from the float run).
    pub fn is_dumped(&self, name: &str) -> bool {
        self.sizes.contains_key(name) && self.dump.is_some_and(|d| d.values.contains_key(name))
    }

    /// Sample `n`'s golden value of `name`.
    pub fn value<'s>(&'s self, float: &'s SampleValues, n: usize, name: &str) -> Option<&'s [f32]> {
        if let (Some(values), Some(&size)) = (self.dump.and_then(|d| d.values.get(name)), self.sizes.get(name)) {
            return values.get(n * size..(n + 1) * size);
        }
        float.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::test_graph::GraphBuilder;
    use crate::ops::Unary;

    /// `x -> Relu -> y`, `elements` float values each.
    fn relu(elements: usize) -> Graph {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[1, elements]);
        let y = g.node("relu", crate::ir::Op::Unary(Unary::Relu), &[x], "y", &[1, elements]);
        g.output(y);
        g.finish()
    }

    #[test]
    fn the_prefix_keeps_every_sample_of_a_small_model_and_at_least_one_of_a_large_one() {
        // 2 x 1 Mi values a sample: 8 of the 16 Mi budget.
        assert_eq!(FloatPrefix::samples_for(&relu(1 << 20), 100), 8);
        assert_eq!(FloatPrefix::samples_for(&relu(1 << 20), 5), 5);
        assert_eq!(FloatPrefix::samples_for(&relu(16 << 20), 100), 1);
        assert_eq!(FloatPrefix::samples_for(&relu(16), 0), 0);
    }

    #[test]
    fn a_repeated_row_takes_the_fold_of_its_source_once_that_is_folded() {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[1, 3]);
        let y = g.node("relu", crate::ir::Op::Unary(Unary::Relu), &[x], "y", &[1, 3]);
        let z = g.node("relu2", crate::ir::Op::Unary(Unary::Relu), &[y], "z", &[1, 3]);
        g.output(z);
        let graph = g.finish();
        let plan = Plan::new(&graph, &BTreeMap::new(), None, Vec::new());
        let (x, y) = (plan.row("y").unwrap(), plan.row("z").unwrap());
        let mut folds = plan.start();
        assert!(!folds.repeat(y, x), "x has not been folded");
        let golden = [1.0, -2.0, 0.5];
        let actual = [1.0, -1.5, 0.5];
        folds.add(x, &golden, &actual);
        assert!(folds.repeat(y, x));
        let mut added = plan.start();
        added.add(x, &golden, &actual);
        added.add(y, &golden, &actual);
        let rows = |f: SampleFolds| {
            plan.finish(f).unwrap().into_iter().map(|(_, fold)| format!("{fold:?}")).collect::<Vec<_>>()
        };
        assert_eq!(rows(folds), rows(added));
    }

    #[test]
    fn the_prefix_appends_inputs_and_layers_sample_after_sample() {
        let graph = relu(2);
        let mut prefix = FloatPrefix::default();
        let mut places = Vec::new();
        for n in 0..2 {
            let x = Tensor::from_f32(vec![1, 2], vec![n as f32, -1.0]);
            let mut values = SampleValues::default();
            values.observe("y", &Tensor::from_f32(vec![1, 2], vec![n as f32, 0.0]));
            places.push(values.get("y").unwrap().as_ptr());
            prefix.append(&graph, &[x], values);
        }
        assert_eq!(prefix.samples, 2);
        assert_eq!(prefix.names().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(*prefix.values("x").unwrap(), [0.0, -1.0, 1.0, -1.0]);
        assert_eq!(*prefix.values("y").unwrap(), [0.0, 0.0, 1.0, 0.0]);
        assert_eq!((prefix.len("y"), prefix.len("z")), (Some(4), None));
        let chunks: Vec<*const f32> = prefix.chunks["y"].iter().map(|c| c.as_ptr()).collect();
        assert_eq!(chunks, places, "each sample's values are moved in, not copied");
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                match i % 11 {
                    0 => -0.0,
                    1 => 0.0,
                    2 => 6.0,
                    _ => ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.4) * 10.0,
                }
            })
            .collect()
    }

    /// The values of an order-keeping op's output, in order, from its input's in order: the
    /// very sequence sorting them gives (-0.0 before +0.0 included), for ReLU and for Clips
    /// at, across and away from zero; refused for an op that does not keep order.
    #[test]
    fn an_order_keeping_output_is_sorted_from_its_input() {
        use crate::ops::Clip;
        use crate::verify::checker::algorithms::sorted;
        let x = pseudo_random(5000, 3);
        let input = Tensor::from_f32(vec![x.len()], x.clone());
        let ops = [
            crate::ir::Op::Unary(Unary::Relu),
            crate::ir::Op::Clip(Clip { min: 0.0, max: 6.0 }),
            crate::ir::Op::Clip(Clip { min: -1.0, max: 1.0 }),
            crate::ir::Op::Clip(Clip { min: 2.0, max: 3.0 }),
        ];
        for op in &ops {
            assert!(op.keeps_order(), "{op:?}");
            let output = op.run(&[&input], &[]).unwrap().remove(0);
            let want = sorted(output.as_f32().unwrap());
            let got = sorted_through(op, &sorted(&x), x.len()).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{op:?}");
        }
        assert!(!crate::ir::Op::Unary(Unary::Sigmoid).keeps_order());
        assert_eq!(sorted_through(&crate::ir::Op::Unary(Unary::Neg), &sorted(&x), x.len()), None);
    }

    /// `Activations::of` gives every tensor the profile and histogram of sorting its own values,
    /// whether it sorts them (x, the input) or takes them from its input's (y, the ReLU's).
    #[test]
    fn profiles_through_an_order_keeping_op_are_those_of_sorting() {
        let graph = relu(500);
        let mut prefix = FloatPrefix::default();
        for n in 0..3 {
            let x = pseudo_random(500, 10 + n);
            let y: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
            let mut values = SampleValues::default();
            values.observe("y", &Tensor::from_f32(vec![1, 500], y));
            prefix.append(&graph, &[Tensor::from_f32(vec![1, 500], x)], values);
        }
        let q = QuantizedGraph { graph: graph.clone(), encodings: BTreeMap::new() };
        assert_eq!(order_keeping_outputs(&prefix, &graph).keys().collect::<Vec<_>>(), [&"y"]);
        let activations = Activations::of(&prefix, &q, &["x".to_string()]);
        for name in ["x", "y"] {
            let values = prefix.values(name).unwrap();
            let (profile, sorted) = FloatProfile::with_sorted(&values);
            assert_eq!(activations.profiles[name], profile, "{name}");
            if name == "y" {
                let id = graph.names().get("y").copied();
                let want = activation_histogram(&q, id, name, &values, sorted.as_deref());
                assert_eq!(format!("{:?}", activations.histograms[name]), format!("{want:?}"));
            }
        }
        assert!(!activations.histograms.contains_key("x"), "graph inputs have no histogram");
    }
}
