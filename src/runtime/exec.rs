//! The executor of compiled programs (`model.bin`) on the host CPU.
//!
//! The memory plan gives every activation a place in one byte arena, in its target
//! representation: float32, float16, or the integer codes of its encoding. A step reads its
//! inputs as float32 (dequantized), runs the float kernel with the dequantized weights, and
//! its outputs take the values that representation holds (quantized with round half to even
//! and clamped to the grid). For a quantized program this is the fake-quant semantics of
//! AIMET's QuantSim: every op output and every weight is quantized, the arithmetic in between
//! is float32. Graph inputs are encoded on entry; outputs are decoded to float32.
//!
//! [`prepare`] dequantizes the weights once, so that many samples can run without redoing it.
//!
//! A step's result is kept as float32 (a native tensor in its own type) until the last step
//! that reads it, as the value the arena would hold: the kernel's result itself for a float32
//! or native tensor; for a quantized or float16 one, the result quantized and dequantized (or
//! rounded) in its own buffer, bit for bit what encoding it into the arena and decoding it
//! back gives. Consumers and `observe` read that value, so step results never go through the
//! arena: it holds what only it holds, the graph inputs and seeds.

use std::time::{Duration, Instant};

use crate::compile::program::{InvalidProgram, Program, Step, Storage};
use crate::compile::repr::{self, Repr};
use crate::ir::{Graph, Tensor, TensorData, TensorId, TensorInfo};
use crate::runtime::kernels::KernelError;

/// Why a program could not run on the given inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("the model takes {expected} input(s), {got} were given")]
    InputCount { expected: usize, got: usize },
    #[error("input {name:?} has shape {got:?}, the model expects {expected:?}")]
    InputShape { name: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("input {name:?} has dtype {got}, the model expects {expected}")]
    InputDType { name: String, expected: String, got: String },
    #[error("node {node:?} ({op}) failed: {source}")]
    Kernel { node: String, op: String, source: KernelError },
    #[error("node {node:?} ({op}) produced {message}")]
    KernelOutput { node: String, op: String, message: String },
    #[error("tensor {name:?} must be seeded to run part of the program, and no value was given")]
    MissingSeed { name: String },
    #[error("tensor {name:?} holds {expected} values; its seed is {got}")]
    SeedType { name: String, expected: &'static str, got: &'static str },
    #[error("the activation arena of {bytes} bytes cannot be allocated on this machine")]
    ArenaTooLarge { bytes: u64 },
    #[error(transparent)]
    InvalidProgram(#[from] InvalidProgram),
}

/// A program checked and ready to run: its constants decoded to float32 once.
pub struct Prepared<'p> {
    program: &'p Program,
    /// Dequantized constants, indexed by tensor id (None for non-constants).
    constants: Vec<Option<Tensor>>,
    /// For each tensor, the index of the last step reading it (None: no step does); program
    /// outputs are kept to the end of a run instead.
    last_use: Vec<Option<usize>>,
    /// The program's outputs, by tensor id.
    is_output: Vec<bool>,
    /// For each step, whether it hands its input on unchanged ([`passes_through`]).
    passes_through: Vec<bool>,
}

/// Checks `program` and dequantizes its constants.
pub fn prepare(program: &Program) -> Result<Prepared<'_>, ExecError> {
    program.validate()?;
    usize::try_from(program.arena_bytes).map_err(|_| ExecError::ArenaTooLarge { bytes: program.arena_bytes })?;
    let constants = program
        .tensors
        .iter()
        .map(|t| match &t.storage {
            Storage::Constant { data } => Some(decode_tensor(&t.info, &t.repr, data)),
            _ => None,
        })
        .collect();
    let (last_use, is_output) = lifetimes(program);
    let passes_through = program.steps.iter().map(|step| passes_through(program, step)).collect();
    Ok(Prepared { program, constants, last_use, is_output, passes_through })
}

/// Whether `step` gives back every value its input can hold, bit for bit: a one-input op with
/// a path over its input's own values (Relu, Clip), whose input and output share one
/// encoding, run with its output's round trip on every value that encoding can hold
/// ([`repr::held_values`]). A ReLU6 whose input is squashed into its output's grid (the
/// SDK's fused activations) is one: its pass and its round trip would only copy.
fn passes_through(program: &Program, step: &Step) -> bool {
    let (&[input], &[output]) = (step.inputs.as_slice(), step.outputs.as_slice()) else { return false };
    let (Some(from), Some(to)) = (program.tensor(input), program.tensor(output)) else { return false };
    let is_activation = matches!(from.storage, Storage::Arena { .. });
    if !is_activation || from.repr != to.repr || from.info.shape != to.info.shape || from.info.dtype != to.info.dtype {
        return false;
    }
    let Some(held) = repr::held_values(&from.repr) else { return false };
    let mut values = Tensor::from_f32(vec![held.len()], held.clone());
    if !matches!(step.op.run_in_place(&mut values), Some(Ok(()))) {
        return false;
    }
    let TensorData::F32(mut values) = values.data else { return false };
    repr::round_trip_in_place(&to.repr, &[values.len()], &mut values);
    values.iter().zip(&held).all(|(after, before)| after.to_bits() == before.to_bits())
}

/// The last step reading each tensor, and which tensors are program outputs.
fn lifetimes(program: &Program) -> (Vec<Option<usize>>, Vec<bool>) {
    let mut last_use = vec![None; program.tensors.len()];
    for (index, step) in program.steps.iter().enumerate() {
        for &id in &step.inputs {
            if let Some(slot) = last_use.get_mut(id.index()) {
                *slot = Some(index);
            }
        }
    }
    let mut is_output = vec![false; program.tensors.len()];
    for &id in &program.outputs {
        if let Some(slot) = is_output.get_mut(id.index()) {
            *slot = true;
        }
    }
    (last_use, is_output)
}

/// The most bytes of step results a run holds at once as float32 (native tensors in their
/// own type) besides its arena: what one sample needs on top of `arena_bytes`.
pub fn peak_live_bytes(program: &Program) -> u64 {
    let size = |id: TensorId| -> u64 {
        program.tensor(id).map_or(0, |t| {
            let element = match t.repr {
                Repr::Native(dtype) => dtype.size_bytes(),
                _ => 4,
            };
            t.info.shape.iter().fold(element as u64, |n, &d| n.saturating_mul(d as u64))
        })
    };
    let steps = program.steps.iter().map(|step| (step.inputs.as_slice(), step.outputs.as_slice()));
    super::liveness::peak_held_bytes(program.tensors.len(), steps, &program.outputs, size)
}

/// Something [`execute`] can run: a [`Program`] (prepared on the fly) or a [`Prepared`] one.
pub trait Executable {
    fn run(&self, inputs: &[Tensor], observe: &mut dyn FnMut(TensorId, &Tensor)) -> Result<Vec<Tensor>, ExecError>;
}

impl Executable for Program {
    fn run(&self, inputs: &[Tensor], observe: &mut dyn FnMut(TensorId, &Tensor)) -> Result<Vec<Tensor>, ExecError> {
        prepare(self)?.run(inputs, observe)
    }
}

impl Executable for Prepared<'_> {
    fn run(&self, inputs: &[Tensor], observe: &mut dyn FnMut(TensorId, &Tensor)) -> Result<Vec<Tensor>, ExecError> {
        Prepared::run(self, inputs, observe)
    }
}

/// Runs `program` on `inputs` (in the order of the program's inputs) and returns its outputs
/// as float32. `observe` sees every node output, as float32 (dequantized), keyed by its tensor
/// id in the optimized graph.
pub fn execute(
    program: &(impl Executable + ?Sized),
    inputs: &[Tensor],
    observe: &mut dyn FnMut(TensorId, &Tensor),
) -> Result<Vec<Tensor>, ExecError> {
    program.run(inputs, observe)
}

/// One sample's state while a program runs: its arena and the results kept for later steps.
struct SampleRun {
    arena: Arena,
    live: Vec<Option<Tensor>>,
}

/// The part of the program's arena a run writes: from the first to the last byte of the
/// regions of the graph inputs and of the tensors the run seeds, each at its planned offset
/// less `base`. Step results never go through the arena, so the rest of it, most of it on a
/// whole run, is never allocated (zeroing all of it took 4 % of MobileNetV2's `cpu`
/// simulate).
struct Arena {
    base: usize,
    bytes: Vec<u8>,
}

impl Arena {
    /// Zeroed bytes covering `regions` (none: an empty arena).
    fn covering<'r>(regions: impl IntoIterator<Item = &'r Region<'r>>) -> Arena {
        let (mut start, mut end) = (usize::MAX, 0);
        for region in regions {
            start = start.min(region.start);
            end = end.max(region.end);
        }
        let base = start.min(end);
        Arena { base, bytes: vec![0; end - base] }
    }

    /// The bytes of `region` (empty if the arena does not cover it, which validation and
    /// [`Arena::covering`] exclude).
    fn get(&self, region: &Region<'_>) -> &[u8] {
        let range = region.start.wrapping_sub(self.base)..region.end.wrapping_sub(self.base);
        self.bytes.get(range).unwrap_or(&[])
    }

    fn get_mut(&mut self, region: &Region<'_>) -> Option<&mut [u8]> {
        let range = region.start.wrapping_sub(self.base)..region.end.wrapping_sub(self.base);
        self.bytes.get_mut(range)
    }
}

/// The arena region of tensor `id` (validated: it exists and lies inside the arena).
struct Region<'a> {
    info: &'a TensorInfo,
    repr: &'a Repr,
    start: usize,
    end: usize,
}

impl<'p> Prepared<'p> {
    /// Whether step `index` gives every value its output holds the bits of its input's
    /// ([`passes_through`]), whichever path runs it.
    pub fn passes_through(&self, index: usize) -> bool {
        self.passes_through.get(index).copied().unwrap_or(false)
    }

    pub fn program(&self) -> &'p Program {
        self.program
    }

    fn region(&self, id: TensorId) -> Result<Region<'p>, ExecError> {
        let program: &'p Program = self.program;
        let missing = || InvalidProgram(format!("tensor {id:?} has no arena region"));
        let t = program.tensor(id).ok_or_else(missing)?;
        let Storage::Arena { offset, bytes } = t.storage else { return Err(missing().into()) };
        let start = usize::try_from(offset).map_err(|_| missing())?;
        let end = usize::try_from(offset + bytes).map_err(|_| missing())?;
        Ok(Region { info: &t.info, repr: &t.repr, start, end })
    }

    /// Whether running this program gives every tensor the bits the float interpreter gives
    /// it on `graph`: the program's tensors are the graph's (same infos), each activation is
    /// stored exactly (float32, or its own element type), each constant decodes to the graph's
    /// constant, and each step is a node of the graph (same op, inputs and outputs; the order
    /// may differ, values only follow the data). A float target's program usually is, and its
    /// run then is the float reference run as well.
    pub fn replays(&self, graph: &Graph) -> bool {
        let program = self.program;
        if program.inputs != graph.inputs
            || program.outputs != graph.outputs
            || program.tensors.len() != graph.tensors.len()
            || program.steps.len() != graph.nodes.len()
        {
            return false;
        }
        let exact = program.tensors.iter().zip(&graph.tensors).enumerate().all(|(index, (t, info))| {
            let stored_exactly = match &t.repr {
                Repr::Native(dtype) => *dtype == info.dtype,
                repr => *repr == Repr::F32 && info.dtype == crate::ir::DType::F32,
            };
            let graph_constant = graph.constants.get(&TensorId(index as u32));
            let same_data = match (&t.storage, graph_constant) {
                (Storage::Constant { .. }, Some(value)) => self.constants[index].as_ref() == Some(value),
                (Storage::Constant { .. }, None) | (Storage::Arena { .. }, Some(_)) => false,
                (Storage::Arena { .. } | Storage::Unused, _) => true,
            };
            t.info == *info && stored_exactly && same_data
        });
        let producers: std::collections::HashMap<TensorId, &crate::ir::Node> =
            graph.nodes.iter().filter_map(|node| Some((*node.outputs.first()?, node))).collect();
        exact
            && program.steps.iter().all(|step| {
                step.outputs.first().and_then(|id| producers.get(id)).is_some_and(|node| {
                    node.op == step.op && node.inputs == step.inputs && node.outputs == step.outputs
                })
            })
    }

    /// Runs the program on one sample; see [`execute`].
    pub fn run(&self, inputs: &[Tensor], observe: &mut dyn FnMut(TensorId, &Tensor)) -> Result<Vec<Tensor>, ExecError> {
        self.run_steps(0..self.program.steps.len(), inputs, &|_| None, observe)
    }

    /// [`Prepared::run`], timing every step: `step_time(index, elapsed)` once step `index` has
    /// run, with the time `observe` spent inside it left out (a debug dump writes its files
    /// there, which is no work of the program). Timing has an entry point of its own so that
    /// every other run reads no clock.
    pub fn run_timed(
        &self,
        inputs: &[Tensor],
        observe: &mut dyn FnMut(TensorId, &Tensor),
        step_time: &mut dyn FnMut(usize, Duration),
    ) -> Result<Vec<Tensor>, ExecError> {
        self.run_timed_by(&mut Instant::now, inputs, observe, step_time)
    }

    /// [`Prepared::run_timed`] reading the time from `now` (a test's clock).
    fn run_timed_by(
        &self,
        now: &mut dyn FnMut() -> Instant,
        inputs: &[Tensor],
        observe: &mut dyn FnMut(TensorId, &Tensor),
        step_time: &mut dyn FnMut(usize, Duration),
    ) -> Result<Vec<Tensor>, ExecError> {
        let steps = &self.program.steps;
        let no_seed = |_| None;
        let mut run = self.begin(steps, inputs, &no_seed)?;
        for (index, step) in steps.iter().enumerate() {
            let mut observing = Duration::ZERO;
            let started = now();
            let mut timed_observe = |id: TensorId, t: &Tensor| {
                let entered = now();
                observe(id, t);
                observing += now().saturating_duration_since(entered);
            };
            self.run_step(index, step, &mut run.arena, &mut run.live, &mut timed_observe)?;
            let elapsed = now().saturating_duration_since(started);
            step_time(index, elapsed.saturating_sub(observing));
        }
        self.finish(steps, run, &no_seed)
    }

    /// Runs only the steps in `steps` (program order) on one sample, for the accuracy
    /// debugger's layerwise and cumulative modes. Every activation the range reads but does not
    /// produce (and every program output it does not produce) is taken from `seed`: a float
    /// seed is encoded into the tensor's representation exactly as a step's result would be
    /// (so a seeded tensor is quantized with its own encoding, and a float16 tensor rounded to
    /// float16); an integer or bool tensor takes a seed of its own element type. Graph inputs
    /// come from `inputs` as in [`Prepared::run`]. A tensor that must be seeded and is not, or
    /// whose seed has the wrong size or type, is an error.
    /// Returns the program outputs (seeded or computed).
    pub fn run_steps(
        &self,
        steps: std::ops::Range<usize>,
        inputs: &[Tensor],
        seed: &dyn Fn(TensorId) -> Option<Tensor>,
        observe: &mut dyn FnMut(TensorId, &Tensor),
    ) -> Result<Vec<Tensor>, ExecError> {
        let program = self.program;
        let selected = program.steps.get(steps.clone()).ok_or_else(|| {
            InvalidProgram(format!("steps {steps:?} are outside the program's {} steps", program.steps.len()))
        })?;
        let mut run = self.begin(selected, inputs, seed)?;
        for (index, step) in program.steps.iter().enumerate().skip(steps.start).take(selected.len()) {
            self.run_step(index, step, &mut run.arena, &mut run.live, observe)?;
        }
        self.finish(selected, run, seed)
    }

    /// Runs the whole program on several samples, step by step: each step runs on every
    /// sample before the next step starts, so that a step's weights, read from memory for the
    /// first sample, are still in the cache for the others (the late layers of a network hold
    /// most of its weights and do little work per weight). Each sample's results, and what
    /// `observe` sees of it (`observe(sample, id, value)`, in step order for each sample), are
    /// exactly what [`Prepared::run`] gives it on its own; a sample that fails stops there
    /// and the others go on.
    pub fn run_group(
        &self,
        inputs: &[&[Tensor]],
        observe: &mut dyn FnMut(usize, TensorId, &Tensor),
    ) -> Vec<Result<Vec<Tensor>, ExecError>> {
        self.run_group_with(inputs, &mut |_| {}, observe)
    }

    /// [`Prepared::run_group`], calling `before_step(index)` before step `index` runs on any
    /// sample: where a caller computes what that step's results are compared with.
    pub fn run_group_with(
        &self,
        inputs: &[&[Tensor]],
        before_step: &mut dyn FnMut(usize),
        observe: &mut dyn FnMut(usize, TensorId, &Tensor),
    ) -> Vec<Result<Vec<Tensor>, ExecError>> {
        let steps = &self.program.steps;
        let no_seed = |_| None;
        let mut runs: Vec<Result<SampleRun, ExecError>> =
            inputs.iter().map(|inputs| self.begin(steps, inputs, &no_seed)).collect();
        for (index, step) in steps.iter().enumerate() {
            before_step(index);
            if self.run_step_grouped(index, step, &mut runs, observe) {
                continue;
            }
            for (sample, slot) in runs.iter_mut().enumerate() {
                let Ok(run) = slot else { continue };
                let result =
                    self.run_step(index, step, &mut run.arena, &mut run.live, &mut |id, t| observe(sample, id, t));
                if let Err(error) = result {
                    *slot = Err(error);
                }
            }
        }
        runs.into_iter().map(|run| self.finish(steps, run?, &no_seed)).collect()
    }

    /// A sample's run before its first step: the arena with the graph inputs (checked against
    /// the program's) and the seeds of `selected` written, nothing kept yet.
    fn begin(
        &self,
        selected: &[Step],
        inputs: &[Tensor],
        seed: &dyn Fn(TensorId) -> Option<Tensor>,
    ) -> Result<SampleRun, ExecError> {
        let program = self.program;
        if inputs.len() != program.inputs.len() {
            return Err(ExecError::InputCount { expected: program.inputs.len(), got: inputs.len() });
        }
        let seeded = self.seeded_tensors(selected);
        let unproduced = self.unproduced_outputs(selected);
        let written = program.inputs.iter().chain(&seeded).chain(&unproduced);
        let regions: Vec<Region<'p>> = written.map(|&id| self.region(id)).collect::<Result<_, _>>()?;
        let mut arena = Arena::covering(&regions);

        for (tensor, region) in inputs.iter().zip(&regions) {
            let name = &region.info.name;
            if tensor.shape != region.info.shape {
                return Err(ExecError::InputShape {
                    name: name.clone(),
                    expected: region.info.shape.clone(),
                    got: tensor.shape.clone(),
                });
            }
            if tensor.dtype() != region.info.dtype {
                return Err(ExecError::InputDType {
                    name: name.clone(),
                    expected: region.info.dtype.name().into(),
                    got: tensor.dtype().name().into(),
                });
            }
            if tensor.len() != region.info.elements() {
                return Err(ExecError::InputShape {
                    name: name.clone(),
                    expected: region.info.shape.clone(),
                    got: vec![tensor.len()],
                });
            }
            write(&mut arena, region, tensor);
        }

        for id in seeded {
            self.write_seed(&mut arena, id, seed)?;
        }
        let live = (0..program.tensors.len()).map(|_| None).collect();
        Ok(SampleRun { arena, live })
    }

    /// A sample's program outputs once the steps of `selected` have run.
    fn finish(
        &self,
        selected: &[Step],
        mut run: SampleRun,
        seed: &dyn Fn(TensorId) -> Option<Tensor>,
    ) -> Result<Vec<Tensor>, ExecError> {
        let program = self.program;
        // Program outputs the range did not produce are seeded last: their arena space may be
        // shared with tensors the range used.
        let unproduced = self.unproduced_outputs(selected);
        let mut outputs = Vec::with_capacity(program.outputs.len());
        for &id in &program.outputs {
            if unproduced.contains(&id) {
                self.write_seed(&mut run.arena, id, seed)?;
            }
            match run.live.get(id.index()).and_then(Option::as_ref) {
                Some(value) => outputs.push(value.clone()),
                None => outputs.push(read(&run.arena, &self.region(id)?)),
            }
        }
        Ok(outputs)
    }

    /// The program outputs that neither a graph input nor a step of `selected` produces: a
    /// run of `selected` seeds them once its steps have run.
    fn unproduced_outputs(&self, selected: &[Step]) -> Vec<TensorId> {
        let program = self.program;
        let produced: std::collections::BTreeSet<TensorId> =
            selected.iter().flat_map(|s| s.outputs.iter().copied()).chain(program.inputs.iter().copied()).collect();
        program.outputs.iter().copied().filter(|id| !produced.contains(id)).collect()
    }

    /// Encodes `seed(id)` into the arena region of `id`, as a step result would be.
    fn write_seed(
        &self,
        arena: &mut Arena,
        id: TensorId,
        seed: &dyn Fn(TensorId) -> Option<Tensor>,
    ) -> Result<(), ExecError> {
        let region = self.region(id)?;
        let name = || region.info.name.clone();
        let tensor = seed(id).ok_or_else(|| ExecError::MissingSeed { name: name() })?;
        if tensor.len() != region.info.elements() {
            return Err(ExecError::InputShape {
                name: name(),
                expected: region.info.shape.clone(),
                got: vec![tensor.len()],
            });
        }
        let expected = region.info.dtype;
        let tensor = match region.repr {
            // Native storage holds the seed's bytes, so its type must be the tensor's; a float
            // seed of a float tensor of another width is rounded to it as a kernel result is.
            Repr::Native(_) if tensor.dtype() == expected => tensor,
            Repr::Native(_) if tensor.dtype().is_float() && expected.is_float() => {
                let data =
                    TensorData::floats_from_f64(expected, &tensor.data.to_f64_vec(), false).ok_or_else(|| {
                        ExecError::SeedType { name: name(), expected: expected.name(), got: tensor.dtype().name() }
                    })?;
                Tensor { shape: region.info.shape.clone(), data }
            }
            Repr::Native(_) => {
                return Err(ExecError::SeedType {
                    name: name(),
                    expected: expected.name(),
                    got: tensor.dtype().name(),
                });
            }
            _ => tensor,
        };
        write(arena, &region, &tensor);
        Ok(())
    }

    /// The activations `steps` read that neither a graph input nor a step of `steps` produces,
    /// in first-use order, each once.
    fn seeded_tensors(&self, steps: &[Step]) -> Vec<TensorId> {
        let program = self.program;
        let mut available: std::collections::BTreeSet<TensorId> = program.inputs.iter().copied().collect();
        let mut seeded = Vec::new();
        let need = |id: TensorId, available: &std::collections::BTreeSet<TensorId>, seeded: &mut Vec<TensorId>| {
            let is_constant = self.constants.get(id.index()).is_some_and(Option::is_some);
            if !is_constant && !available.contains(&id) && !seeded.contains(&id) {
                seeded.push(id);
            }
        };
        for step in steps {
            for &id in &step.inputs {
                need(id, &available, &mut seeded);
            }
            available.extend(step.outputs.iter().copied());
        }
        seeded
    }

    /// Runs step `index`: reads its inputs (kept results, constants, or decoded from the
    /// arena: graph inputs and seeds), runs the kernel, stores its outputs, and drops the
    /// kept results no later step reads.
    fn run_step(
        &self,
        index: usize,
        step: &Step,
        arena: &mut Arena,
        live: &mut [Option<Tensor>],
        observe: &mut dyn FnMut(TensorId, &Tensor),
    ) -> Result<(), ExecError> {
        if let Some(done) = self.pass_through(index, step, live, observe) {
            return done;
        }
        if let Some(done) = self.run_step_in_place(index, step, live, observe) {
            return done;
        }
        let decoded = self.decode_inputs(step, arena, live)?;
        let args = self.step_args(step, &decoded, live)?;
        let (regions, infos) = self.output_regions(step)?;
        let results = step.op.run(&args, &infos).map_err(|source| kernel_error(step, source))?;
        drop(args);
        self.store_results(index, step, &regions, results, live, observe)
    }

    /// The one input of step `index` when no later step reads it and it is no program output:
    /// a value the step may take over.
    fn sole_input_dying_at(&self, index: usize, step: &Step) -> Option<TensorId> {
        let &[input] = step.inputs.as_slice() else { return None };
        let last_read_here = self.last_use.get(input.index()).copied().flatten() == Some(index);
        (last_read_here && !self.is_output.get(input.index()).copied().unwrap_or(true)).then_some(input)
    }

    /// Step `index` where it [`passes_through`] and its input is a kept result that no later
    /// step reads and that is no program output: the input's value becomes the output's,
    /// neither computed nor round-tripped (the bits they would give). `None`, having changed
    /// nothing, otherwise.
    fn pass_through(
        &self,
        index: usize,
        step: &Step,
        live: &mut [Option<Tensor>],
        observe: &mut dyn FnMut(TensorId, &Tensor),
    ) -> Option<Result<(), ExecError>> {
        if !self.passes_through(index) {
            return None;
        }
        let (input, &[output]) = (self.sole_input_dying_at(index, step)?, step.outputs.as_slice()) else { return None };
        let value = live.get_mut(input.index())?.take()?;
        self.keep(output, value, live, observe);
        self.release_dead(index, step, live);
        Some(Ok(()))
    }

    /// Runs step `index` over its input's own values ([`crate::ops::Op::run_in_place`]) where
    /// it has one input, kept, that no later step reads and that is no program output, and the
    /// op has such a path; `None`, having changed nothing, otherwise.
    fn run_step_in_place(
        &self,
        index: usize,
        step: &Step,
        live: &mut [Option<Tensor>],
        observe: &mut dyn FnMut(TensorId, &Tensor),
    ) -> Option<Result<(), ExecError>> {
        let (input, [_]) = (self.sole_input_dying_at(index, step)?, step.outputs.as_slice()) else { return None };
        let slot = live.get_mut(input.index())?;
        let mut value = slot.take()?;
        match step.op.run_in_place(&mut value) {
            None => {
                *slot = Some(value);
                None
            }
            Some(Err(source)) => Some(Err(kernel_error(step, source))),
            Some(Ok(())) => Some(
                self.output_regions(step)
                    .and_then(|(regions, _)| self.store_results(index, step, &regions, vec![value], live, observe)),
            ),
        }
    }

    /// Runs step `index` on every sample of a group still running, in one call of the op's
    /// grouped kernel ([`crate::ops::Op::run_group`]: the same bits as one sample at a time)
    /// where the op has one for these inputs; returns false, having run nothing, where it has
    /// not (or where fewer than two samples run, or the grouped kernel fails: the samples then
    /// run one by one and each meets its own error).
    fn run_step_grouped(
        &self,
        index: usize,
        step: &Step,
        runs: &mut [Result<SampleRun, ExecError>],
        observe: &mut dyn FnMut(usize, TensorId, &Tensor),
    ) -> bool {
        if runs.iter().filter(|run| run.is_ok()).count() < 2 || !step.op.may_run_grouped() {
            return false;
        }
        let Ok((regions, infos)) = self.output_regions(step) else { return false };
        let mut decoded = Vec::with_capacity(runs.len());
        for run in runs.iter().flatten() {
            match self.decode_inputs(step, &run.arena, &run.live) {
                Ok(values) => decoded.push(values),
                Err(_) => return false,
            }
        }
        let mut args = Vec::with_capacity(decoded.len());
        for (run, decoded) in runs.iter().flatten().zip(&decoded) {
            match self.step_args(step, decoded, &run.live) {
                Ok(a) => args.push(a),
                Err(_) => return false,
            }
        }
        let Some(Ok(results)) = step.op.run_group(&args, &infos) else { return false };
        drop(args);
        let running = runs.iter_mut().enumerate().filter_map(|(sample, run)| Some(sample).zip(run.as_mut().ok()));
        let mut failed = Vec::new();
        for ((sample, run), results) in running.zip(results) {
            let stored =
                self.store_results(index, step, &regions, results, &mut run.live, &mut |id, t| observe(sample, id, t));
            if let Err(error) = stored {
                failed.push((sample, error));
            }
        }
        for (sample, error) in failed {
            runs[sample] = Err(error);
        }
        true
    }

    /// The inputs of `step` that are neither kept nor constant (graph inputs and seeds),
    /// decoded from the arena; `None` for the others.
    fn decode_inputs(
        &self,
        step: &Step,
        arena: &Arena,
        live: &[Option<Tensor>],
    ) -> Result<Vec<Option<Tensor>>, ExecError> {
        let mut decoded = Vec::with_capacity(step.inputs.len());
        for &id in &step.inputs {
            let is_constant = self.constants.get(id.index()).is_some_and(Option::is_some);
            let is_live = live.get(id.index()).is_some_and(Option::is_some);
            decoded.push(if is_constant || is_live { None } else { Some(read(arena, &self.region(id)?)) });
        }
        Ok(decoded)
    }

    /// The kernel's arguments: each input decoded, kept, or constant.
    fn step_args<'a>(
        &'a self,
        step: &Step,
        decoded: &'a [Option<Tensor>],
        live: &'a [Option<Tensor>],
    ) -> Result<Vec<&'a Tensor>, ExecError> {
        let mut args: Vec<&Tensor> = Vec::with_capacity(step.inputs.len());
        for (&id, own) in step.inputs.iter().zip(decoded) {
            let kept = || live.get(id.index()).and_then(Option::as_ref);
            let constant = || self.constants.get(id.index()).and_then(Option::as_ref);
            let tensor = match own {
                Some(t) => t,
                None => kept()
                    .or_else(constant)
                    .ok_or_else(|| InvalidProgram(format!("step {:?} reads {id:?}, which has no data", step.node)))?,
            };
            args.push(tensor);
        }
        Ok(args)
    }

    /// The arena regions of `step`'s outputs and their infos (what the kernel must produce).
    fn output_regions(&self, step: &Step) -> Result<(Vec<Region<'p>>, Vec<TensorInfo>), ExecError> {
        let regions: Vec<Region<'p>> = step.outputs.iter().map(|&id| self.region(id)).collect::<Result<_, _>>()?;
        let infos = regions.iter().map(|r| r.info.clone()).collect();
        Ok((regions, infos))
    }

    /// Checks a kernel's results against the program, keeps each as the value its
    /// representation holds (see the module docs), shows it to `observe`, and drops the kept
    /// results no step after `index` reads.
    fn store_results(
        &self,
        index: usize,
        step: &Step,
        regions: &[Region<'p>],
        results: Vec<Tensor>,
        live: &mut [Option<Tensor>],
        observe: &mut dyn FnMut(TensorId, &Tensor),
    ) -> Result<(), ExecError> {
        let op = step.op.type_name();
        if results.len() != regions.len() {
            return Err(ExecError::KernelOutput {
                node: step.node.clone(),
                op: op.into(),
                message: format!("{} outputs, the program expects {}", results.len(), regions.len()),
            });
        }
        for ((result, region), &id) in results.into_iter().zip(regions).zip(&step.outputs) {
            let fits = result.shape == region.info.shape
                && result.dtype() == region.info.dtype
                && result.len() == region.info.elements();
            if !fits {
                return Err(ExecError::KernelOutput {
                    node: step.node.clone(),
                    op: op.into(),
                    message: format!(
                        "a {} tensor of shape {:?} for {:?}, expected {} {:?}",
                        result.dtype().name(),
                        result.shape,
                        region.info.name,
                        region.info.dtype.name(),
                        region.info.shape
                    ),
                });
            }
            let value = if matches!(region.repr, Repr::Native(_)) || *region.repr == Repr::F32 {
                // Stored bit for bit: the kernel's result is what the arena would hold.
                result
            } else {
                // What the arena would hold, read back, computed in the result's own buffer:
                // every reader takes the value kept here, so the codes are never needed.
                let Tensor { shape, data } = result;
                let mut values = match data {
                    TensorData::F32(values) => values,
                    other => other.to_f64_vec().into_iter().map(|x| x as f32).collect(),
                };
                repr::round_trip_in_place(region.repr, &region.info.shape, &mut values);
                Tensor::from_f32(shape, values)
            };
            self.keep(id, value, live, observe);
        }
        self.release_dead(index, step, live);
        Ok(())
    }

    /// Shows the value of `id` to `observe` and keeps it for the steps that read it.
    fn keep(
        &self,
        id: TensorId,
        value: Tensor,
        live: &mut [Option<Tensor>],
        observe: &mut dyn FnMut(TensorId, &Tensor),
    ) {
        observe(id, &value);
        if let Some(slot) = live.get_mut(id.index()) {
            *slot = Some(value);
        }
    }

    /// Drops the kept values of `step`'s inputs and outputs that no step after `index` reads
    /// and that are no program outputs, their buffers going back to the pool.
    fn release_dead(&self, index: usize, step: &Step, live: &mut [Option<Tensor>]) {
        for &id in step.inputs.iter().chain(&step.outputs) {
            let dead = self.last_use.get(id.index()).copied().flatten().is_none_or(|last| last <= index);
            if dead
                && !self.is_output.get(id.index()).copied().unwrap_or(false)
                && let Some(value) = live.get_mut(id.index()).and_then(Option::take)
            {
                crate::runtime::buffers::recycle(value);
            }
        }
    }
}

/// A kernel's failure on `step`.
fn kernel_error(step: &Step, source: KernelError) -> ExecError {
    ExecError::Kernel { node: step.node.clone(), op: step.op.type_name().into(), source }
}

/// Stores `tensor` (of the region's dtype and shape) in its region, in the region's
/// representation: raw elements for a native tensor, else encoded from float32.
fn write(arena: &mut Arena, region: &Region<'_>, tensor: &Tensor) {
    let Some(bytes) = arena.get_mut(region) else { return };
    match (region.repr, tensor.as_f32()) {
        (Repr::Native(_), _) => {
            let raw = tensor.data.to_le_bytes();
            let n = raw.len().min(bytes.len());
            bytes[..n].copy_from_slice(&raw[..n]);
        }
        (repr, Some(values)) => repr::encode(repr, &region.info.shape, values, bytes),
        (repr, None) => repr::encode(repr, &region.info.shape, &tensor.to_f32_vec(), bytes),
    }
}

/// The tensor a region holds: typed for a native tensor, else dequantized to float32.
fn read(arena: &Arena, region: &Region<'_>) -> Tensor {
    let bytes = arena.get(region);
    decode_tensor(region.info, region.repr, bytes)
}

/// A tensor stored as `bytes` in `repr` (validated: the byte count fits the shape).
fn decode_tensor(info: &TensorInfo, repr: &Repr, bytes: &[u8]) -> Tensor {
    let elements = info.elements();
    if let Repr::Native(dtype) = repr
        && let Some(data) = repr::decode_native(*dtype, bytes)
        && data.len() == elements
    {
        return Tensor { shape: info.shape.clone(), data };
    }
    let mut values = repr::decode(repr, &info.shape, bytes, elements);
    // Only a region shorter than its tensor (excluded by validation) could leave it short.
    values.resize(elements, 0.0);
    Tensor::from_f32(info.shape.clone(), values)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::compile::test_graphs::{branchy, conv_relu, conv_relu_quantized, per_tensor, pointwise_classifier};
    use crate::compile::{BackendRules, compile, standard_rules};
    use crate::ir::{Graph, Op};

    fn backend(name: &str) -> BackendRules {
        standard_rules().get(name).cloned().unwrap()
    }

    /// Runs `graph` node by node with `run_op` alone: the float reference.
    fn run_reference(graph: &Graph, inputs: &[Tensor]) -> BTreeMap<TensorId, Tensor> {
        let mut values: BTreeMap<TensorId, Tensor> = graph.constants.clone();
        for (&id, t) in graph.inputs.iter().zip(inputs) {
            values.insert(id, t.clone());
        }
        for node in &graph.nodes {
            let args: Vec<&Tensor> = node.inputs.iter().map(|id| &values[id]).collect();
            let infos: Vec<TensorInfo> = node.outputs.iter().map(|&id| graph.info(id).clone()).collect();
            let outs = node.op.run(&args, &infos).unwrap();
            for (&id, t) in node.outputs.iter().zip(outs) {
                values.insert(id, t);
            }
        }
        values
    }

    fn observe_all(program: &Program, inputs: &[Tensor]) -> (Vec<Tensor>, BTreeMap<TensorId, Tensor>) {
        let mut seen = BTreeMap::new();
        let outputs = execute(program, inputs, &mut |id, t| {
            assert!(seen.insert(id, t.clone()).is_none(), "observed twice");
        })
        .unwrap();
        (outputs, seen)
    }

    #[test]
    fn a_timed_run_gives_the_run_and_each_step_its_time_without_the_observer() {
        let (q, _) = conv_relu_quantized();
        let program = compile(&q, &backend("htp")).unwrap();
        let prepared = prepare(&program).unwrap();
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.53, -1.0, 2.0, 0.3]);
        let (plain, seen) = observe_all(&program, std::slice::from_ref(&x));
        // A clock that advances 1 ms a reading: a step reads it at its start, on entering and
        // leaving the observer (its one output), and at its end: 3 ms, 1 ms of it observing.
        let start = Instant::now();
        let mut readings = 0u32;
        let mut clock = || {
            readings += 1;
            start + Duration::from_millis(u64::from(readings))
        };
        let mut timed_seen = BTreeMap::new();
        let mut times = Vec::new();
        let outputs = prepared
            .run_timed_by(
                &mut clock,
                std::slice::from_ref(&x),
                &mut |id, t| {
                    timed_seen.insert(id, t.clone());
                },
                &mut |index, elapsed| times.push((index, elapsed)),
            )
            .unwrap();
        assert_eq!(outputs, plain);
        assert_eq!(timed_seen, seen);
        let steps = program.steps.len();
        assert_eq!(steps, 2);
        assert_eq!(times, (0..steps).map(|index| (index, Duration::from_millis(2))).collect::<Vec<_>>());
        // The real clock: one time per step, in order.
        let mut indices = Vec::new();
        prepared.run_timed(std::slice::from_ref(&x), &mut |_, _| {}, &mut |index, _| indices.push(index)).unwrap();
        assert_eq!(indices, [0, 1]);
    }

    #[test]
    fn a_run_holds_each_result_until_its_last_reader_as_float32() {
        // conv -> y (8 values) -> relu -> z (8 values, the output): y and z are both held
        // while relu runs, then y is dropped; as float32 whether the arena holds codes or not.
        for (graph, backend_name) in [(conv_relu().0.finish(), "cpu"), (conv_relu_quantized().0, "htp")] {
            let program = compile(&graph, &backend(backend_name)).unwrap();
            assert_eq!(peak_live_bytes(&program), 2 * 8 * 4, "{backend_name}");
        }
        // Three Relus in a row: never more than a step's input and output (4 values each).
        let mut b = crate::compile::test_graphs::Builder::default();
        let mut previous = b.input("x", &[1, 1, 2, 2]);
        for k in 0..3 {
            previous = b.node(
                &format!("relu{k}"),
                Op::Unary(crate::ops::Unary::Relu),
                &[previous],
                &format!("t{k}"),
                &[1, 1, 2, 2],
            );
        }
        b.output(previous);
        let program = compile(&b.finish(), &backend("cpu")).unwrap();
        assert_eq!(peak_live_bytes(&program), 2 * 4 * 4);
        let out = execute(&program, &[Tensor::from_f32(vec![1, 1, 2, 2], vec![-1.0, 2.0, -3.0, 4.0])], &mut |_, _| {});
        assert_eq!(out.unwrap(), [Tensor::from_f32(vec![1, 1, 2, 2], vec![0.0, 2.0, 0.0, 4.0])]);
    }

    #[test]
    fn the_quantized_conv_relu_matches_the_hand_computation() {
        let (q, ids) = conv_relu_quantized();
        let program = compile(&q, &backend("htp")).unwrap();
        // Input x = [0.53, -1.0, 2.0, 0.3], scale 1/16, offset -128:
        //   x*16 = [8.48, -16, 32, 4.8] -> [8, -16, 32, 5] -> dequantized [0.5, -1, 2, 0.3125].
        // W: 1.5 -> 96/64 = 1.5;  -0.51 -> -65/128 = -0.5078125.
        // B: 0.1 -> 102/1024 = 0.099609375;  -0.2 -> -410/2048 = -0.2001953125.
        // Conv 1x1: y[c, p] = W[c] * x[p] + B[c]:
        //   c0: [0.849609375, -1.400390625, 3.099609375, 0.568359375]
        //   c1: [-0.4541015625, 0.3076171875, -1.2158203125, -0.35888671875]
        // y scale 1/8, offset -32: y*8 = [6.797, -11.203, 24.797, 4.547 | -3.633, 2.461, -9.727, -2.871]
        //   -> [7, -11, 25, 5 | -4, 2, -10, -3] (all inside [-32, 223])
        //   -> [0.875, -1.375, 3.125, 0.625, -0.5, 0.25, -1.25, -0.375].
        // Relu -> [0.875, 0, 3.125, 0.625, 0, 0.25, 0, 0];
        // z scale 1/4, offset 0: z*4 = [3.5, 0, 12.5, 2.5, 0, 1, 0, 0] -> half to even
        //   [4, 0, 12, 2, 0, 1, 0, 0] -> [1.0, 0, 3.0, 0.5, 0, 0.25, 0, 0].
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.53, -1.0, 2.0, 0.3]);
        let (outputs, seen) = observe_all(&program, &[x]);
        let z = [1.0, 0.0, 3.0, 0.5, 0.0, 0.25, 0.0, 0.0];
        assert_eq!(outputs, [Tensor::from_f32(vec![1, 2, 2, 2], z.to_vec())]);
        let y = [0.875, -1.375, 3.125, 0.625, -0.5, 0.25, -1.25, -0.375];
        assert_eq!(seen[&ids.y].as_f32().unwrap(), y);
        assert_eq!(seen[&ids.z].as_f32().unwrap(), z);
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [ids.y, ids.z]);

        // The same through model.bin and a prepared program.
        let loaded = Program::from_bytes(&program.to_bytes()).unwrap();
        let prepared = prepare(&loaded).unwrap();
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.53, -1.0, 2.0, 0.3]);
        for _ in 0..2 {
            let again = execute(&prepared, std::slice::from_ref(&x), &mut |_, _| {}).unwrap();
            assert_eq!(again, outputs);
        }
    }

    /// A Relu whose input shares its output's grid from 0 (the SDK's squashed activation)
    /// changes no value: the executor hands the input on, with the bits computing it gives.
    /// With the input on a grid reaching below 0 (`conv_relu_quantized`'s), it computes.
    #[test]
    fn an_activation_on_its_inputs_grid_passes_the_input_through() {
        let (mut q, ids) = conv_relu_quantized();
        let computing = compile(&q, &backend("htp")).unwrap();
        assert!(!prepare(&computing).unwrap().passes_through(1), "y reaches below 0: the Relu computes");
        let z = q.encodings[&ids.z].clone();
        q.encodings.insert(ids.y, z);
        let program = compile(&q, &backend("htp")).unwrap();
        let prepared = prepare(&program).unwrap();
        assert_eq!(program.steps[1].op.type_name(), "Relu");
        assert!(prepared.passes_through(1) && !prepared.passes_through(0));
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.53, -1.0, 2.0, 0.3]);
        let (outputs, seen) = observe_all(&program, std::slice::from_ref(&x));
        // y on z's grid (scale 1/4 from 0): y*4 = [3.40, -5.60, 12.40, 2.27 | -1.82, 1.23, -4.86,
        // -1.44] -> [3, 0, 12, 2 | 0, 1, 0, 0] -> [0.75, 0, 3, 0.5 | 0, 0.25, 0, 0], which the
        // Relu and z's round trip leave alone.
        let y = [0.75, 0.0, 3.0, 0.5, 0.0, 0.25, 0.0, 0.0];
        assert_eq!(seen[&ids.y].as_f32().unwrap(), y);
        assert_eq!(seen[&ids.z], seen[&ids.y]);
        assert_eq!(outputs, [seen[&ids.z].clone()]);
    }

    /// Clip passes through only when no value of its input's grid falls outside its bounds by
    /// more than the round trip brings back.
    #[test]
    fn a_clip_passes_through_only_on_a_grid_inside_its_bounds() {
        let relu6 = crate::ops::Clip { min: 0.0, max: 6.0 };
        // 6/255: the grid's top is 6 within rounding. 6/127 and 0.25 reach 12 and 63.75; 6.5/255
        // ends half a step above 6, which the Clip lowers to a code below the top.
        for (scale, passes) in [(6.0 / 255.0, true), (6.0 / 127.0, false), (0.25, false), (6.5 / 255.0, false)] {
            let mut b = crate::compile::test_graphs::Builder::default();
            let x = b.input("x", &[1, 4]);
            let y = b.node("clip", Op::Clip(relu6.clone()), &[x], "y", &[1, 4]);
            b.output(y);
            b.encode(x, per_tensor(8, scale, 0));
            b.encode(y, per_tensor(8, scale, 0));
            let program = compile(&b.finish(), &backend("htp")).unwrap();
            assert_eq!(prepare(&program).unwrap().passes_through(0), passes, "scale {scale}");
        }
    }

    #[test]
    fn a_step_range_runs_from_seeded_float_values() {
        let (q, ids) = conv_relu_quantized();
        let program = compile(&q, &backend("htp")).unwrap();
        let prepared = prepare(&program).unwrap();
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.53, -1.0, 2.0, 0.3]);
        let (whole, _) = observe_all(&program, std::slice::from_ref(&x));
        let all =
            prepared.run_steps(0..program.steps.len(), std::slice::from_ref(&x), &|_| None, &mut |_, _| {}).unwrap();
        assert_eq!(all, whole, "the full range is the ordinary run");

        // The Relu step alone, seeded with the Conv's float (unquantized) output from the hand
        // computation of `the_quantized_conv_relu_matches_the_hand_computation`: the seed is
        // quantized with y's encoding (scale 1/8, offset -32) to the same codes the full run
        // stores, so z is the full run's z.
        let relu = program.steps.iter().position(|s| s.outputs == [ids.z]).unwrap();
        // In units of the bias scales 1/1024 (channel 0) and 1/2048 (channel 1).
        let y_float = vec![
            870.0 / 1024.0,
            -1434.0 / 1024.0,
            3174.0 / 1024.0,
            582.0 / 1024.0,
            -930.0 / 2048.0,
            630.0 / 2048.0,
            -2490.0 / 2048.0,
            -735.0 / 2048.0,
        ];
        let mut seen = Vec::new();
        let seed = |id: TensorId| (id == ids.y).then(|| Tensor::from_f32(vec![1, 2, 2, 2], y_float.clone()));
        let out =
            prepared.run_steps(relu..relu + 1, std::slice::from_ref(&x), &seed, &mut |id, _| seen.push(id)).unwrap();
        assert_eq!(out, whole);
        assert_eq!(seen, [ids.z], "only the selected step runs");

        // A seed off the grid is clamped like a step result: y = 100 -> code 223 -> 27.875,
        // z = Relu(27.875) quantized with scale 1/4, offset 0 -> code 111.5 -> 112 -> 28.
        let seed = |id: TensorId| (id == ids.y).then(|| Tensor::from_f32(vec![1, 2, 2, 2], vec![100.0; 8]));
        let out = prepared.run_steps(relu..relu + 1, std::slice::from_ref(&x), &seed, &mut |_, _| {}).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), [28.0; 8]);

        let missing = prepared.run_steps(relu..relu + 1, std::slice::from_ref(&x), &|_| None, &mut |_, _| {});
        assert!(matches!(missing, Err(ExecError::MissingSeed { .. })), "{missing:?}");
        let outside = prepared.run_steps(0..99, std::slice::from_ref(&x), &|_| None, &mut |_, _| {});
        assert!(matches!(outside, Err(ExecError::InvalidProgram(_))), "{outside:?}");
    }

    #[test]
    fn an_arena_holds_only_the_span_of_the_regions_a_run_writes() {
        let info = TensorInfo { name: "t".into(), dtype: crate::ir::DType::F32, shape: vec![2] };
        let at = |start: usize| Region { info: &info, repr: &Repr::F32, start, end: start + 8 };
        let (first, last) = (at(100), at(300));
        let mut arena = Arena::covering([&last, &first]);
        assert_eq!((arena.base, arena.bytes.len()), (100, 208));
        write(&mut arena, &last, &Tensor::from_f32(vec![2], vec![1.5, -2.0]));
        write(&mut arena, &first, &Tensor::from_f32(vec![2], vec![3.0, 4.0]));
        assert_eq!(read(&arena, &last).as_f32(), Some(&[1.5f32, -2.0][..]));
        assert_eq!(read(&arena, &first).as_f32(), Some(&[3.0f32, 4.0][..]));
        let empty = Arena::covering([]);
        assert!(empty.bytes.is_empty());
        assert!(empty.get(&first).is_empty(), "a region outside the arena reads as nothing");
    }

    #[test]
    fn every_step_alone_on_float_seeds_reproduces_a_float_run_despite_shared_arena_space() {
        // branchy's memory plan shares arena space between tensors (its point); run each step
        // alone, seeded from the float reference, on a float program: every output must be the
        // reference's, bit for bit, and so must the program outputs each partial run returns.
        let q = branchy();
        let program = compile(&q, &backend("cpu")).unwrap();
        assert!(program.arena_bytes < program.naive_activation_bytes, "the plan shares space");
        let prepared = prepare(&program).unwrap();
        let values: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let x = Tensor::from_f32(vec![1, 4, 8, 8], values);
        let reference = run_reference(&q.graph, std::slice::from_ref(&x));
        let seed = |id: TensorId| reference.get(&id).cloned();
        let final_output = &reference[&q.graph.outputs[0]];
        for step in 0..program.steps.len() {
            let mut seen = BTreeMap::new();
            let outputs = prepared
                .run_steps(step..step + 1, std::slice::from_ref(&x), &seed, &mut |id, t| {
                    seen.insert(id, t.clone());
                })
                .unwrap();
            for (id, t) in &seen {
                assert_eq!(t, &reference[id], "step {step}");
            }
            assert_eq!(&outputs[0], final_output, "step {step}");
        }
    }

    #[test]
    fn graph_inputs_are_clamped_to_their_grid() {
        let (q, _) = conv_relu_quantized();
        let program = compile(&q, &backend("htp")).unwrap();
        // x = 100 clamps to the top code 255 -> (255 - 128) / 16 = 7.9375; x = -100 -> -8.
        // c0: 1.5 * 7.9375 + 0.099609375 = 12.005859375 -> y*8 = 96.05 -> 96 -> 12.0 -> z 12.0
        // c0: 1.5 * -8 + 0.0996 = -11.9 -> y*8 = -95.2 -> -95, below -32 -> clamps to -4.0 -> z 0
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![100.0, -100.0, 0.0, 0.0]);
        let out = execute(&program, &[x], &mut |_, _| {}).unwrap();
        let z = out[0].as_f32().unwrap();
        assert_eq!(&z[..2], [12.0, 0.0]);
    }

    #[test]
    fn a_float_program_matches_run_op() {
        let q = branchy();
        let program = compile(&q, &backend("cpu")).unwrap();
        assert!(program.peak_activation_bytes() < program.naive_activation_bytes());
        let values: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0).collect();
        let x = Tensor::from_f32(vec![1, 4, 8, 8], values);
        let reference = run_reference(&q.graph, std::slice::from_ref(&x));
        let (outputs, seen) = observe_all(&program, &[x]);
        // Bit-identical: same kernels, float32 storage, and arena sharing must not corrupt.
        assert_eq!(outputs[0], reference[&q.graph.outputs[0]]);
        assert_eq!(seen.len(), q.graph.nodes.len());
        for (id, tensor) in &seen {
            assert_eq!(tensor, &reference[id], "tensor {}", q.graph.name(*id));
        }
    }

    #[test]
    fn an_activation_over_its_inputs_own_values_leaves_every_other_reader_its_value() {
        // Clip and Relu run over their input's buffer only where no later step and no output
        // reads it: `c` dies at the first Clip (computed in place), `s` is read again by the
        // Add after its Relu, and `n` is a program output besides the Relu's input.
        let mut b = crate::compile::test_graphs::Builder::default();
        let shape = [1, 2, 3, 3];
        let x = b.input("x", &shape);
        let s = b.node("s", Op::Unary(crate::ops::Unary::Sigmoid), &[x], "s_out", &shape);
        let c = b.node("neg", Op::Unary(crate::ops::Unary::Neg), &[s], "c_out", &shape);
        let clip = crate::ops::Clip { min: -0.6, max: 0.0 };
        let k = b.node("clip", Op::Clip(clip), &[c], "k_out", &shape);
        let r = b.node("relu_s", Op::Unary(crate::ops::Unary::Relu), &[s], "r_out", &shape);
        let a = b.node("add", Op::Binary(crate::ops::Binary::Add), &[r, s], "a_out", &shape);
        let n = b.node("neg2", Op::Unary(crate::ops::Unary::Neg), &[a], "n_out", &shape);
        let r2 = b.node("relu_n", Op::Unary(crate::ops::Unary::Relu), &[n], "r2_out", &shape);
        let sum = b.node("sum", Op::Binary(crate::ops::Binary::Add), &[k, r2], "sum_out", &shape);
        b.output(sum);
        b.output(n);
        let q = b.finish();
        let program = compile(&q, &backend("cpu")).unwrap();
        let values: Vec<f32> = (0..18).map(|i| (i as f32 - 9.0) / 2.5).collect();
        let x = Tensor::from_f32(shape.to_vec(), values);
        let reference = run_reference(&q.graph, std::slice::from_ref(&x));
        let (outputs, seen) = observe_all(&program, &[x]);
        assert_eq!(outputs, vec![reference[&sum].clone(), reference[&n].clone()]);
        for (id, tensor) in &seen {
            assert_eq!(tensor, &reference[id], "tensor {}", q.graph.name(*id));
        }
    }

    #[test]
    fn only_a_program_stored_exactly_with_the_graphs_steps_replays_it() {
        let q = branchy();
        let float = compile(&q, &backend("cpu")).unwrap();
        assert!(prepare(&float).unwrap().replays(&q.graph));
        // Quantized activations, or float16 ones, are not the float run's bits.
        let (quantized, _) = conv_relu_quantized();
        assert!(!prepare(&compile(&quantized, &backend("htp")).unwrap()).unwrap().replays(&quantized.graph));
        let (mut b, ids) = conv_relu();
        b.encode(ids.x, crate::quant::encoding::TensorEncoding::Float { bitwidth: 16 });
        let half = b.finish();
        assert!(!prepare(&compile(&half, &backend("gpu")).unwrap()).unwrap().replays(&half.graph));
        // A constant of other values, or a step of another op, is another computation.
        let mut other_constant = q.graph.clone();
        let (&id, value) = other_constant.constants.iter_mut().next().unwrap();
        let mut data = value.to_f32_vec();
        data[0] += 1.0;
        *value = Tensor::from_f32(value.shape.clone(), data);
        assert!(!prepare(&float).unwrap().replays(&other_constant), "constant {id:?} differs");
        let mut other_op = q.graph.clone();
        let relu = other_op.nodes.iter_mut().find(|n| n.op == crate::ops::Op::Unary(crate::ops::Unary::Relu)).unwrap();
        relu.op = crate::ops::Op::Unary(crate::ops::Unary::Sigmoid);
        assert!(!prepare(&float).unwrap().replays(&other_op));
    }

    #[test]
    fn a_float_conv_program_matches_run_op() {
        let (b, ids) = conv_relu();
        let q = b.finish();
        let program = compile(&q, &backend("cpu")).unwrap();
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.53, -1.0, 2.0, 0.3]);
        let reference = run_reference(&q.graph, std::slice::from_ref(&x));
        let (outputs, _) = observe_all(&program, &[x]);
        assert_eq!(outputs[0], reference[&ids.z]);
    }

    #[test]
    fn float16_tensors_are_rounded_to_half_precision() {
        let (mut b, ids) = conv_relu();
        b.encode(ids.x, crate::quant::encoding::TensorEncoding::Float { bitwidth: 16 });
        let q = b.finish();
        let program = compile(&q, &backend("gpu")).unwrap();
        // 0.3 is not a binary16 value: the nearest is 1229/4096 = 0.300048828125.
        // c0 at p3: 1.5 * 0.300048828125 + 0.1 (float32 weights and bias).
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.53, -1.0, 2.0, 0.3]);
        let (_, seen) = observe_all(&program, &[x]);
        let y3 = seen[&ids.y].as_f32().unwrap()[3];
        assert_eq!(y3, 1.5f32 * (1229.0 / 4096.0) + 0.1);
    }

    #[test]
    fn inputs_are_validated_by_count_shape_and_dtype() {
        let (q, _) = conv_relu_quantized();
        let program = compile(&q, &backend("htp")).unwrap();
        let err = execute(&program, &[], &mut |_, _| {}).unwrap_err();
        assert_eq!(err, ExecError::InputCount { expected: 1, got: 0 });
        let wrong_shape = Tensor::from_f32(vec![1, 4], vec![0.0; 4]);
        let err = execute(&program, &[wrong_shape], &mut |_, _| {}).unwrap_err();
        assert_eq!(err, ExecError::InputShape { name: "x".into(), expected: vec![1, 1, 2, 2], got: vec![1, 4] });
        assert_eq!(err.to_string(), "input \"x\" has shape [1, 4], the model expects [1, 1, 2, 2]");
        let ints = Tensor::from_i64(vec![1, 1, 2, 2], vec![0; 4]);
        let err = execute(&program, &[ints], &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, ExecError::InputDType { ref name, .. } if name == "x"), "{err}");
    }

    /// A group runs each sample as a run of its own would: the same outputs and the same
    /// observations in the same order per sample (float and quantized programs); a sample
    /// with a bad input fails alone.
    #[test]
    fn a_group_runs_each_sample_as_it_runs_alone() {
        for (graph, backend_name) in [(conv_relu().0.finish(), "cpu"), (conv_relu_quantized().0, "htp")] {
            let program = compile(&graph, &backend(backend_name)).unwrap();
            let prepared = prepare(&program).unwrap();
            let sample = |k: usize| {
                vec![Tensor::from_f32(vec![1, 1, 2, 2], (0..4).map(|i| (k * 4 + i) as f32 * 0.37 - 2.0).collect())]
            };
            let mut inputs: Vec<Vec<Tensor>> = (0..3).map(sample).collect();
            inputs.insert(1, vec![Tensor::from_f32(vec![1, 4], vec![0.0; 4])]);
            let views: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
            let mut seen: Vec<Vec<(TensorId, Tensor)>> = vec![Vec::new(); inputs.len()];
            let results = prepared.run_group(&views, &mut |k, id, t| seen[k].push((id, t.clone())));
            assert_eq!(results.len(), 4);
            for (k, (result, inputs)) in results.into_iter().zip(&inputs).enumerate() {
                let mut alone = Vec::new();
                let want = prepared.run(inputs, &mut |id, t| alone.push((id, t.clone())));
                assert_eq!(result, want, "{backend_name} sample {k}");
                assert_eq!(seen[k], alone, "{backend_name} sample {k}");
                assert_eq!(result.is_err(), k == 1, "{backend_name} sample {k}");
            }
        }
    }

    /// The same through the grouped kernels (a pointwise convolution on a small plane, a
    /// classifier's row times shared weights), float and quantized: each sample's values are
    /// the bits it gets alone.
    #[test]
    fn a_group_through_the_grouped_kernels_gives_each_sample_its_own_bits() {
        for (quantized, backend_name) in [(false, "cpu"), (true, "htp")] {
            let graph = pointwise_classifier(quantized);
            let program = compile(&graph, &backend(backend_name)).unwrap();
            let prepared = prepare(&program).unwrap();
            let steps: Vec<&str> = program.steps.iter().map(|s| s.op.type_name()).collect();
            assert!(steps.contains(&"Conv") && steps.contains(&"Gemm"), "{steps:?}");
            let inputs: Vec<Vec<Tensor>> = (0..5)
                .map(|k| {
                    vec![Tensor::from_f32(vec![1, 3, 2, 2], (0..12).map(|i| ((k * 12 + i) as f32).cos()).collect())]
                })
                .collect();
            let views: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
            let mut seen: Vec<Vec<(TensorId, Tensor)>> = vec![Vec::new(); inputs.len()];
            let results = prepared.run_group(&views, &mut |k, id, t| seen[k].push((id, t.clone())));
            let bits = |values: &[(TensorId, Tensor)]| -> Vec<(TensorId, Vec<u32>)> {
                values.iter().map(|(id, t)| (*id, t.to_f32_vec().iter().map(|v| v.to_bits()).collect())).collect()
            };
            for (k, (result, inputs)) in results.into_iter().zip(&inputs).enumerate() {
                let mut alone = Vec::new();
                let want = prepared.run(inputs, &mut |id, t| alone.push((id, t.clone())));
                assert_eq!(result, want, "{backend_name} sample {k}");
                assert_eq!(bits(&seen[k]), bits(&alone), "{backend_name} sample {k}");
            }
        }
    }

    #[test]
    fn an_inconsistent_program_is_refused_not_run() {
        let (q, _) = conv_relu_quantized();
        let mut program = compile(&q, &backend("htp")).unwrap();
        program.arena_bytes = 1;
        assert!(matches!(prepare(&program), Err(ExecError::InvalidProgram(_))));
    }

    #[test]
    fn a_16_bit_activation_uses_two_bytes_and_a_finer_grid() {
        let (mut q, ids) = conv_relu_quantized();
        // z at 16 bits, scale 1/1024, offset 0: the Relu outputs (multiples of 1/8) are exact.
        q.encodings.insert(ids.z, per_tensor(16, 1.0 / 1024.0, 0));
        let program = compile(&q, &backend("htp")).unwrap();
        assert!(matches!(program.tensor(ids.z).unwrap().storage, Storage::Arena { bytes: 16, .. }));
        let x = Tensor::from_f32(vec![1, 1, 2, 2], vec![0.53, -1.0, 2.0, 0.3]);
        let out = execute(&program, &[x], &mut |_, _| {}).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), [0.875, 0.0, 3.125, 0.625, 0.0, 0.25, 0.0, 0.0]);
    }

    /// Conformance with AIMET: `examples/digits/aimet` holds AIMET 2.42.0 QuantSim's W8A8
    /// outputs for the 400 test samples, its encodings, and the BN-folded model it simulated.
    /// Compiling that model with those encodings for htp must reproduce QuantSim's logits to
    /// rounding. AIMET leaves Conv/Gemm outputs unquantized when a Relu follows (supergroups)
    /// and MaxPool/Flatten outputs unquantized (their values are already on the grid); giving
    /// those tensors the encoding of the Relu after / the tensor before is exactly equivalent
    /// (quantizing with the Relu's `[0, max]` grid clamps negatives to 0 as Relu does).
    #[test]
    fn the_digits_model_matches_aimet_quantsim() {
        use crate::quant::encoding::{Encoding, QuantizedGraph, TensorEncoding};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/digits");
        let model = std::fs::read(root.join("aimet/digits_bnfolded.onnx")).unwrap();
        let proto = crate::onnx::decode_model(&model).unwrap();
        let external = crate::onnx::external_data_files(&proto)
            .into_iter()
            .map(|location| {
                let bytes = std::fs::read(root.join("aimet").join(&location)).unwrap();
                (location, bytes)
            })
            .collect();
        let graph = crate::onnx::import(&proto, &external, &BTreeMap::new()).unwrap();

        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("aimet/encodings_v0.6.1.json")).unwrap()).unwrap();
        let encoding = |e: &serde_json::Value| Encoding {
            bitwidth: e["bitwidth"].as_u64().unwrap() as u32,
            scale: e["scale"].as_f64().unwrap() as f32,
            offset: e["offset"].as_f64().unwrap() as i32,
            min: e["min"].as_f64().unwrap() as f32,
            max: e["max"].as_f64().unwrap() as f32,
            symmetric: e["is_symmetric"] == "True",
        };
        let names = graph.names();
        let id = |name: &str| *names.get(name).unwrap_or_else(|| panic!("no tensor {name}"));
        let mut encodings = BTreeMap::new();
        for (name, list) in json["activation_encodings"].as_object().unwrap() {
            encodings.insert(id(name), TensorEncoding::PerTensor(encoding(&list[0])));
        }
        for (name, list) in json["param_encodings"].as_object().unwrap() {
            let channels: Vec<Encoding> = list.as_array().unwrap().iter().map(encoding).collect();
            // Conv weights [M, C, k, k] and Gemm weights [N, K] (transB = 1): axis 0.
            assert_eq!(graph.info(id(name)).shape[0], channels.len(), "{name}");
            encodings.insert(id(name), TensorEncoding::PerChannel { axis: 0, channels });
        }
        for (tensor, like) in [
            ("/conv1/Conv_output_0", "/relu1/Relu_output_0"),
            ("/conv2/Conv_output_0", "/relu2/Relu_output_0"),
            ("/pool/MaxPool_output_0", "/relu2/Relu_output_0"),
            ("/flatten/Flatten_output_0", "/relu2/Relu_output_0"),
            ("/fc1/Gemm_output_0", "/relu3/Relu_output_0"),
        ] {
            let enc = encodings[&id(like)].clone();
            encodings.insert(id(tensor), enc);
        }
        let logits_scale = match &encodings[&id("logits")] {
            TensorEncoding::PerTensor(e) => e.scale,
            other => panic!("{other:?}"),
        };
        let q = QuantizedGraph { graph, encodings };
        let program = compile(&q, &backend("htp")).unwrap();
        let prepared = prepare(&program).unwrap();

        let read_f32 = |path: &std::path::Path| -> Vec<f32> {
            let bytes = std::fs::read(path).unwrap();
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        };
        let list = std::fs::read_to_string(root.join("test/input_list.txt")).unwrap();
        let (mut exact, mut total, mut worst_codes) = (0usize, 0usize, 0f32);
        for (n, line) in list.lines().enumerate() {
            let x = Tensor::from_f32(vec![1, 1, 8, 8], read_f32(&root.join("test").join(line.trim())));
            let ours = execute(&prepared, &[x], &mut |_, _| {}).unwrap();
            let aimet = read_f32(&root.join(format!("aimet/quantsim/Result_{n}/logits.raw")));
            for (a, b) in ours[0].as_f32().unwrap().iter().zip(&aimet) {
                let codes = (a - b).abs() / logits_scale;
                worst_codes = worst_codes.max(codes);
                exact += usize::from(codes < 1e-3);
                total += 1;
            }
        }
        assert_eq!(total, 4000);
        // "To rounding": a tie decided differently after a different float summation order can
        // move a code by one step; nothing may move further, and almost everything is exact.
        assert!(worst_codes <= 1.001, "worst difference {worst_codes} codes");
        assert!(exact as f64 >= 0.99 * total as f64, "{exact}/{total} logits identical to QuantSim");
        eprintln!(
            "digits vs AIMET QuantSim: {exact}/{total} logits identical, worst {worst_codes} codes; \
             arena {} B (naive {} B), weights {} B",
            program.peak_activation_bytes(),
            program.naive_activation_bytes(),
            program.constant_bytes()
        );
    }
}
