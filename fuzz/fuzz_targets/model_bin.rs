//! `model.bin`: loading any bytes either gives a program that passed its checks (and then
//! runs on zero inputs without a panic) or a [`ModelBinError`]. Inputs that do not start with
//! the magic are also tried as a body inside a valid header and checksum, so the fuzzer
//! reaches the decoder and the program checks instead of stopping at the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qairt::compile::{MAGIC, Program, format};
use qairt::ir::{DType, Tensor};

/// Larger programs are loaded and checked but not run: the point is the checks, not memory.
const MAX_RUN_BYTES: u64 = 16 << 20;

fuzz_target!(|bytes: &[u8]| {
    let framed;
    let bytes = if bytes.starts_with(&MAGIC) {
        bytes
    } else {
        framed = format::frame(bytes);
        &framed
    };
    let Ok(program) = Program::from_bytes(bytes) else { return };
    // Compared as bytes: a program's floats may be NaN, which equality would call different.
    let written = program.to_bytes();
    let reloaded = Program::from_bytes(&written).expect("a loaded program loads again once written");
    assert_eq!(reloaded.to_bytes(), written, "a loaded program round-trips");
    run_on_zeros(&program);
});

fn run_on_zeros(program: &Program) {
    let mut inputs = Vec::new();
    let mut input_bytes = 0u64;
    for &id in &program.inputs {
        let Some(tensor) = program.tensor(id) else { return };
        if tensor.info.dtype != DType::F32 {
            return;
        }
        let Some(elements) = tensor.info.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else { return };
        input_bytes = input_bytes.saturating_add(4 * elements as u64);
        if input_bytes > MAX_RUN_BYTES {
            return;
        }
        inputs.push(Tensor::from_f32(tensor.info.shape.clone(), vec![0.0; elements]));
    }
    if program.arena_bytes > MAX_RUN_BYTES || program.constant_bytes() > MAX_RUN_BYTES {
        return;
    }
    let _ = qairt::runtime::exec::execute(program, &inputs, &mut |_, _| {});
}
