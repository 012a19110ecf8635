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
//! cargo bench --bench conv_layers -- mobilenetv2   # MobileNetV2 at 96×96 instead
//! ```

use std::time::Instant;

use qairt::ir::{Conv, Tensor};
use qairt::ops::Window;

/// One distinct convolution of a network: `c` input channels on `side`×`side` planes, `m`
/// output channels, a `k`×`k` kernel, its stride, pad (every side) and group, and how many
/// times the network has it.
struct Layer {
    c: usize,
    side: usize,
    m: usize,
    k: usize,
    stride: usize,
    pad: usize,
    group: usize,
    count: usize,
}

const fn layer(c: usize, side: usize, m: usize, k: usize, stride: usize, pad: usize, count: usize) -> Layer {
    Layer { c, side, m, k, stride, pad, group: 1, count }
}

/// A depthwise 3×3 convolution (pad 1) of `c` channels.
const fn depthwise(c: usize, side: usize, stride: usize, count: usize) -> Layer {
    Layer { c, side, m: c, k: 3, stride, pad: 1, group: c, count }
}

const RESNET50: [Layer; 23] = [
    layer(3, 224, 64, 7, 2, 3, 1),
    layer(64, 56, 64, 1, 1, 0, 1),
    layer(64, 56, 64, 3, 1, 1, 3),
    layer(64, 56, 256, 1, 1, 0, 4),
    layer(256, 56, 64, 1, 1, 0, 2),
    layer(256, 56, 128, 1, 1, 0, 1),
    layer(128, 56, 128, 3, 2, 1, 1),
    layer(128, 28, 512, 1, 1, 0, 4),
    layer(256, 56, 512, 1, 2, 0, 1),
    layer(512, 28, 128, 1, 1, 0, 3),
    layer(128, 28, 128, 3, 1, 1, 3),
    layer(512, 28, 256, 1, 1, 0, 1),
    layer(256, 28, 256, 3, 2, 1, 1),
    layer(256, 14, 1024, 1, 1, 0, 6),
    layer(512, 28, 1024, 1, 2, 0, 1),
    layer(1024, 14, 256, 1, 1, 0, 5),
    layer(256, 14, 256, 3, 1, 1, 5),
    layer(1024, 14, 512, 1, 1, 0, 1),
    layer(512, 14, 512, 3, 2, 1, 1),
    layer(512, 7, 2048, 1, 1, 0, 3),
    layer(1024, 14, 2048, 1, 2, 0, 1),
    layer(2048, 7, 512, 1, 1, 0, 2),
    layer(512, 7, 512, 3, 1, 1, 2),
];

/// MobileNetV2 (torchvision's architecture) at 96×96, as benches/scale.py builds it.
const MOBILENETV2_96: [Layer; 30] = [
    layer(3, 96, 32, 3, 2, 1, 1),
    depthwise(32, 48, 1, 1),
    layer(32, 48, 16, 1, 1, 0, 1),
    layer(16, 48, 96, 1, 1, 0, 1),
    depthwise(96, 48, 2, 1),
    layer(96, 24, 24, 1, 1, 0, 1),
    layer(24, 24, 144, 1, 1, 0, 2),
    depthwise(144, 24, 1, 1),
    layer(144, 24, 24, 1, 1, 0, 1),
    depthwise(144, 24, 2, 1),
    layer(144, 12, 32, 1, 1, 0, 1),
    layer(32, 12, 192, 1, 1, 0, 3),
    depthwise(192, 12, 1, 2),
    layer(192, 12, 32, 1, 1, 0, 2),
    depthwise(192, 12, 2, 1),
    layer(192, 6, 64, 1, 1, 0, 1),
    layer(64, 6, 384, 1, 1, 0, 4),
    depthwise(384, 6, 1, 4),
    layer(384, 6, 64, 1, 1, 0, 3),
    layer(384, 6, 96, 1, 1, 0, 1),
    layer(96, 6, 576, 1, 1, 0, 3),
    depthwise(576, 6, 1, 2),
    layer(576, 6, 96, 1, 1, 0, 2),
    depthwise(576, 6, 2, 1),
    layer(576, 3, 160, 1, 1, 0, 1),
    layer(160, 3, 960, 1, 1, 0, 3),
    depthwise(960, 3, 1, 3),
    layer(960, 3, 160, 1, 1, 0, 2),
    layer(960, 3, 320, 1, 1, 0, 1),
    layer(320, 3, 1280, 1, 1, 0, 1),
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(15).max(1);
    let (name, layers): (&str, &[Layer]) = if args.iter().any(|a| a == "mobilenetv2") {
        ("MobileNetV2 96×96", &MOBILENETV2_96)
    } else {
        ("ResNet-50", &RESNET50)
    };
    let (mut network_seconds, mut network_flops) = (0.0, 0.0);
    println!("| input | output | kernel, stride, group | best ms | GFLOP/s | times in {name} |");
    println!("|---|---|---|---|---|---|");
    for &Layer { c, side, m, k, stride, pad, group, count } in layers {
        let x = Tensor::from_f32(vec![1, c, side, side], values(c * side * side, 1));
        let w = Tensor::from_f32(vec![m, c / group, k, k], values(m * c / group * k * k, 2));
        let b = Tensor::from_f32(vec![m], values(m, 3));
        let window = Window { kernel: vec![k, k], strides: vec![stride; 2], pads: vec![pad; 4], dilations: vec![1, 1] };
        let conv = Conv { window, group };
        let out_side = (side + 2 * pad - k) / stride + 1;
        let flops = 2.0 * (m * out_side * out_side * c / group * k * k) as f64;
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
            "| {c}×{side}×{side} | {m}×{out_side}×{out_side} | {k}×{k}, {stride}, {group} | {:.4} | {:.1} | {count} |",
            best * 1e3,
            flops / best / 1e9
        );
    }
    println!(
        "\n{name}'s convolutions: {:.3} ms, {:.1} GFLOP/s (best of {rounds} per layer, 1 thread)",
        network_seconds * 1e3,
        network_flops / network_seconds / 1e9
    );
}
