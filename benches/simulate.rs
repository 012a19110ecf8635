//! Where a compiled program's time goes: runs `model.bin` (from `qairt build`'s
//! `out/<target>/`) on the input samples given, in groups of 4 as the simulate stage runs
//! them on each thread (cycling through the samples given; `--group N` for another count),
//! one thread, and prints the time per inference (best and median of `ROUNDS`) and per kind
//! of step (op type; convolutions split into depthwise and by kernel), summed over the
//! program; `--steps` lists every step too. A step's time includes storing its results in
//! their representation (quantize-dequantize for a quantized program). The program alone:
//! the simulate stage also runs the float reference, the per-layer comparison and the
//! checker's profiles (benches/README.md, "Where MobileNetV2's time goes, layer by layer").
//!
//! ```sh
//! cargo bench --bench simulate -- out/htp-w8a8/model.bin verify/000/image.raw [ROUNDS]
//! cargo bench --bench simulate -- --steps --group 1 out/cpu/model.bin verify/000/image.raw
//! ```
//! Input files are raw little-endian float32 in the model's input shape, one per model input
//! for each sample (`verify/00{0,1,2,3}/image.raw`: four samples of a one-input model).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use qairt::compile::Program;
use qairt::ir::{Tensor, TensorData};
use qairt::runtime::exec;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let every_step = args.iter().any(|a| a == "--steps");
    let group_size = match args.iter().position(|a| a == "--group") {
        Some(at) => {
            args.get(at + 1).and_then(|g| g.parse::<usize>().ok()).unwrap_or_else(|| fail("--group takes a count"))
        }
        None => 4,
    }
    .max(1);
    let args: Vec<String> = args
        .iter()
        .enumerate()
        .filter(|&(i, a)| a != "--steps" && a != "--group" && (i == 0 || args[i - 1] != "--group"))
        .map(|(_, a)| a.clone())
        .collect();
    let Some((model_path, rest)) = args.split_first() else {
        eprintln!("usage: cargo bench --bench simulate -- [--steps] [--group N] MODEL.BIN INPUT.raw... [ROUNDS]");
        std::process::exit(2);
    };
    let (rounds, input_paths) = match rest.last().and_then(|r| r.parse::<usize>().ok()) {
        Some(rounds) => (rounds.max(1), &rest[..rest.len() - 1]),
        None => (30, rest),
    };
    let bytes = std::fs::read(model_path).unwrap_or_else(|e| fail(&format!("{model_path}: {e}")));
    let program = Program::from_bytes(&bytes).unwrap_or_else(|e| fail(&format!("{model_path}: {e}")));
    // One sample per `program.inputs.len()` files; a group cycles through them.
    let per_sample = program.inputs.len().max(1);
    if input_paths.is_empty() || input_paths.len() % per_sample != 0 {
        fail(&format!("the model takes {per_sample} input(s) per sample, {} file(s) given", input_paths.len()));
    }
    let samples: Vec<Vec<Tensor>> = input_paths.chunks(per_sample).map(|paths| read_inputs(&program, paths)).collect();
    let prepared = exec::prepare(&program).unwrap_or_else(|e| fail(&e.to_string()));
    let labels: Vec<String> = program.steps.iter().map(|step| step_kind(&program, step)).collect();

    let group: Vec<&[Tensor]> = (0..group_size).map(|k| samples[k % samples.len()].as_slice()).collect();
    let mut per_inference = Vec::with_capacity(rounds);
    let mut per_kind: BTreeMap<&str, (Duration, usize)> = BTreeMap::new();
    let mut per_step = vec![Duration::ZERO; program.steps.len()];
    for round in 0..=rounds {
        let mut step_times = vec![Duration::ZERO; program.steps.len()];
        let start = Instant::now();
        let (mut last, mut running) = (start, None);
        let mut before_step = |index: usize| {
            let now = Instant::now();
            if let Some(previous) = running.replace(index) {
                step_times[previous] += now - last;
            }
            last = now;
        };
        let results = prepared.run_group_with(&group, &mut before_step, &mut |_, _, _| {});
        before_step(program.steps.len());
        for result in results {
            result.unwrap_or_else(|e| fail(&e.to_string()));
        }
        // Round 0 warms caches and the buffer pool; it is not counted.
        if round == 0 {
            continue;
        }
        per_inference.push(start.elapsed() / group_size as u32);
        for (total, time) in per_step.iter_mut().zip(&step_times) {
            *total += *time / group_size as u32;
        }
        for (label, time) in labels.iter().zip(step_times) {
            let entry = per_kind.entry(label).or_default();
            entry.0 += time / group_size as u32;
            entry.1 += 1;
        }
    }
    per_inference.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{model_path}: {} steps, {} program; per inference best {:.3} ms, median {:.3} ms ({rounds} rounds of {group_size} samples run together as simulate runs them, 1 thread)",
        program.steps.len(),
        if program.quantized { "quantized" } else { "float" },
        ms(per_inference[0]),
        ms(per_inference[per_inference.len() / 2]),
    );
    if every_step {
        println!("{:<5} {:<28} {:>22} {:>12}", "step", "kind", "output shape", "ms/inference");
        for (index, (step, time)) in program.steps.iter().zip(&per_step).enumerate() {
            let shape =
                step.outputs.first().map(|id| program.tensors[id.index()].info.shape.clone()).unwrap_or_default();
            println!(
                "{index:<5} {:<28} {:>22} {:>12.4}",
                labels[index],
                format!("{shape:?}"),
                ms(*time) / rounds as f64
            );
        }
    }
    let total: Duration = per_kind.values().map(|(t, _)| *t).sum();
    let mut kinds: Vec<_> = per_kind.into_iter().collect();
    kinds.sort_by_key(|kind| std::cmp::Reverse(kind.1.0));
    println!("{:<28} {:>7} {:>12} {:>7}", "step kind", "steps", "ms/inference", "share");
    for (label, (time, count)) in kinds {
        println!(
            "{label:<28} {:>7} {:>12.3} {:>6.1}%",
            count / rounds,
            ms(time) / rounds as f64,
            100.0 * time.as_secs_f64() / total.as_secs_f64()
        );
    }
}

/// The op type of `step`; a convolution as depthwise, 1×1 or k×k (stride s).
fn step_kind(program: &Program, step: &qairt::compile::Step) -> String {
    let name = step.op.type_name().to_string();
    if name != "Conv" {
        return name;
    }
    let shape = |position: usize| step.inputs.get(position).map(|id| program.tensors[id.index()].info.shape.clone());
    let (Some(x), Some(w)) = (shape(0), shape(1)) else { return name };
    let (Some(&channels), Some(&per_group)) = (x.get(1), w.get(1)) else { return name };
    let kernel: Vec<String> = w[2..].iter().map(usize::to_string).collect();
    let kernel = kernel.join("×");
    if per_group == 1 && channels > 1 { format!("Conv depthwise {kernel}") } else { format!("Conv {kernel}") }
}

fn read_inputs(program: &Program, paths: &[String]) -> Vec<Tensor> {
    if paths.len() != program.inputs.len() {
        fail(&format!("the model takes {} input(s), {} file(s) given", program.inputs.len(), paths.len()));
    }
    program
        .inputs
        .iter()
        .zip(paths)
        .map(|(id, path)| {
            let info = &program.tensors[id.index()].info;
            let bytes = std::fs::read(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
            let data = TensorData::from_le_bytes(info.dtype, &bytes).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
            Tensor { shape: info.shape.clone(), data }
        })
        .collect()
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
