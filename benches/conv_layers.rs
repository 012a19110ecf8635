//! Every distinct convolution of ResNet-50 (torchvision's architecture) at 224×224 on one
//! image, through qairt's own `Conv` kernel, one thread: best of `--rounds` runs per layer,
//! its GFLOP/s, and the whole network's convolution time (each layer weighted by how often it
//! occurs). The kernel-level figure behind `cpu` simulate (benches/README.md, "Recycled
//! buffers, im2col in strips"); weights and inputs are fixed pseudo-random values, since
//! speed does not depend on them.
//!
//! ```sh
//! cargo bench --bench conv_layers            # 15 rounds
//! cargo bench --bench conv_layers -- 40      # 40 rounds
//! ```

use std::time::Instant;

use qairt::ir::{Conv, Tensor};
use qairt::ops::Window;

/// (input channels, input side, output channels, kernel side, stride, pad, occurrences).
const RESNET50: [(usize, usize, usize, usize, usize, usize, usize); 23] = [
    (3, 224, 64, 7, 2, 3, 1),
    (64, 56, 64, 1, 1, 0, 1),
    (64, 56, 64, 3, 1, 1, 3),
    (64, 56, 256, 1, 1, 0, 4),
    (256, 56, 64, 1, 1, 0, 2),
    (256, 56, 128, 1, 1, 0, 1),
    (128, 56, 128, 3, 2, 1, 1),
    (128, 28, 512, 1, 1, 0, 4),
    (256, 56, 512, 1, 2, 0, 1),
    (512, 28, 128, 1, 1, 0, 3),
    (128, 28, 128, 3, 1, 1, 3),
    (512, 28, 256, 1, 1, 0, 1),
    (256, 28, 256, 3, 2, 1, 1),
    (256, 14, 1024, 1, 1, 0, 6),
    (512, 28, 1024, 1, 2, 0, 1),
    (1024, 14, 256, 1, 1, 0, 5),
    (256, 14, 256, 3, 1, 1, 5),
    (1024, 14, 512, 1, 1, 0, 1),
    (512, 14, 512, 3, 2, 1, 1),
    (512, 7, 2048, 1, 1, 0, 3),
    (1024, 14, 2048, 1, 2, 0, 1),
    (2048, 7, 512, 1, 1, 0, 2),
    (512, 7, 512, 3, 1, 1, 2),
];

/// `len` values in [-1, 1) from a xorshift sequence.
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(15).max(1);
    let (mut network_seconds, mut network_flops) = (0.0, 0.0);
    println!("| input | output | kernel, stride | best ms | GFLOP/s | times in ResNet-50 |");
    println!("|---|---|---|---|---|---|");
    for (c, side, m, k, stride, pad, count) in RESNET50 {
        let x = Tensor::from_f32(vec![1, c, side, side], values(c * side * side, 1));
        let w = Tensor::from_f32(vec![m, c, k, k], values(m * c * k * k, 2));
        let b = Tensor::from_f32(vec![m], values(m, 3));
        let window = Window { kernel: vec![k, k], strides: vec![stride; 2], pads: vec![pad; 4], dilations: vec![1, 1] };
        let conv = Conv { window, group: 1 };
        let out_side = (side + 2 * pad - k) / stride + 1;
        let flops = 2.0 * (m * out_side * out_side * c * k * k) as f64;
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let started = Instant::now();
            let y = qairt::runtime::kernels::conv::conv(&conv, &[&x, &w, &b]).expect("a valid convolution");
            best = best.min(started.elapsed().as_secs_f64());
            // As the executor does with a dead value: its buffer serves the next output.
            qairt::runtime::buffers::recycle(y);
        }
        network_seconds += best * count as f64;
        network_flops += flops * count as f64;
        println!(
            "| {c}×{side}×{side} | {m}×{out_side}×{out_side} | {k}×{k}, {stride} | {:.3} | {:.1} | {count} |",
            best * 1e3,
            flops / best / 1e9
        );
    }
    println!(
        "\nResNet-50's convolutions: {:.2} ms, {:.1} GFLOP/s (best of {rounds} per layer, 1 thread)",
        network_seconds * 1e3,
        network_flops / network_seconds / 1e9
    );
}
