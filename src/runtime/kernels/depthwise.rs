//! Depthwise convolution (one input channel per group, any channel multiplier), computed on
//! blocks of [`BLOCK`] output channels laid out channel-last (`[spatial..., BLOCK]`, what
//! onnxruntime's NCHWc kernels do), so that every tap of every output position is one
//! vector multiply-add across the block's channels.
//!
//! The planes of a mobile network are small (48×48 down to 3×3), so walking each channel's
//! rows, as a plain loop does, spends its time on loop overhead and strided loads: across
//! channels every step is full width whatever the plane's size or stride.
//!
//! Moving planes in and out of the block layout is done in registers (`transpose.rs`); done
//! element by element it cost more than the convolution. A row's outputs whose taps all fall
//! inside the input (most of them) run several at a time with their sums in registers, on
//! x86-64 in explicit AVX arithmetic; only the border outputs test each tap. (A kernel along
//! each channel's own rows, with no transposes, was measured too: faster only on 48-wide rows
//! at stride 1, by a tenth, and slower from 24 down, so it is not kept.)
//!
//! Each output adds its taps in kernel order to its bias, skipping the taps that fall in the
//! padding, exactly as the direct definition does: results are the same bits as a scalar
//! loop, on every instruction set.

use multiversion::multiversion;

use super::transpose::{from_channel_last, to_channel_last};
use super::window::Geometry;
use crate::runtime::buffers;

/// Output channels computed side by side: one AVX-512 register of f32, two AVX ones.
const BLOCK: usize = 16;

/// Output positions of a row [`block`] computes side by side (each [`BLOCK`] channels wide),
/// so that a tap's additions to one do not wait for its additions to the one before.
const POSITIONS: usize = 4;

/// `y = depthwise(x, w) + bias`: `x` is `[N, C, spatial...]`, `w` is `[M, 1, kernel...]` with
/// `M` a multiple of `C` (output channel `oc` reads input channel `oc / (M / C)`), `y` is
/// `[N, M, out spatial...]`.
///
/// The channel-last blocks and the output come from the thread's buffer pool and are written
/// over, never zeroed first: fresh blocks of an early MobileNetV2 layer (147 KiB each) cost a
/// page fault per page on every call, and zeroing the output went through memory once more.
pub(super) fn depthwise(x: &[f32], w: &[f32], bias: Option<&[f32]>, geo: &Geometry, m: usize) -> Vec<f32> {
    let multiplier = m / geo.channels;
    let (in_plane, out_plane, taps) = (geo.in_plane(), geo.out_plane(), geo.taps());
    let window_taps = Tap::all(geo);
    let inner = interior(&window_taps);
    let mut x_block = buffers::take_overwritten(in_plane * BLOCK, 0.0f32);
    let mut y_block = buffers::take_overwritten(out_plane * BLOCK, 0.0f32);
    let mut w_block = vec![0.0f32; taps * BLOCK];
    let mut b_block = [0.0f32; BLOCK];
    let mut active = Vec::with_capacity(taps);
    let mut y = buffers::take_overwritten(geo.batch * m * out_plane, 0.0f32);
    let empty: &[f32] = &[];
    for (n, y_image) in y.chunks_exact_mut(m * out_plane).enumerate() {
        let mut y_blocks = y_image.chunks_mut(BLOCK * out_plane);
        for first in (0..m).step_by(BLOCK) {
            let channels = first..m.min(first + BLOCK);
            let lanes = channels.len();
            let x_planes: [&[f32]; BLOCK] = std::array::from_fn(|lane| match first + lane {
                oc if oc < channels.end => &x[(n * geo.channels + oc / multiplier) * in_plane..][..in_plane],
                _ => empty,
            });
            let w_planes: [&[f32]; BLOCK] = std::array::from_fn(|lane| {
                if first + lane < channels.end { &w[(first + lane) * taps..][..taps] } else { empty }
            });
            to_channel_last(&x_planes[..lanes], BLOCK, &mut x_block);
            if lanes < BLOCK {
                // The lanes of missing channels compute values no one reads; zeros keep them
                // off the slow path of whatever a recycled buffer held (denormals).
                x_block.chunks_exact_mut(BLOCK).for_each(|position| position[lanes..].fill(0.0));
                w_block.fill(0.0);
            }
            to_channel_last(&w_planes[..lanes], BLOCK, &mut w_block);
            for (lane, oc) in channels.clone().enumerate() {
                b_block[lane] = bias.map_or(0.0, |b| b[oc]);
            }
            block(&x_block, &w_block, &b_block, geo, &window_taps, inner, &mut active, &mut y_block);
            let Some(y_planes) = y_blocks.next() else { break };
            let mut y_planes: Vec<&mut [f32]> = y_planes.chunks_exact_mut(out_plane).collect();
            from_channel_last(&y_block, BLOCK, &mut y_planes);
        }
    }
    buffers::give(x_block);
    buffers::give(y_block);
    y
}

/// A tap as [`block`] walks it: its offsets on the depth and height axes, its column offset
/// (output `ow` reads column `ow * stride + column`), and the outputs `lo..hi` of a row whose
/// tap falls inside the input. Worked out once per convolution: each takes divisions.
struct Tap {
    depth: usize,
    height: usize,
    column: isize,
    lo: usize,
    hi: usize,
}

impl Tap {
    fn all(geo: &Geometry) -> Vec<Tap> {
        (0..geo.taps())
            .map(|t| {
                let (depth, height, j) = geo.tap(t);
                let (lo, hi) = geo.w.valid_outputs(j);
                Tap { depth, height, column: geo.w.coordinate(0, j), lo, hi }
            })
            .collect()
    }
}

/// The outputs of a row that every tap reads inside the input.
fn interior(taps: &[Tap]) -> (usize, usize) {
    let lo = taps.iter().map(|t| t.lo).max().unwrap_or(0);
    let hi = taps.iter().map(|t| t.hi).min().unwrap_or(0);
    (lo, hi.max(lo))
}

/// One block of channels: `y[p] = bias + Σ_taps w[t] * x[p's tap t]`, lane-wise, each
/// output's taps added in kernel order, output row by output row. The outputs every tap
/// reads inside the input (`interior`) go [`POSITIONS`] at a time ([`interior_row`]); the
/// border outputs test each tap. Compiled for AVX-512 and AVX2 besides the baseline.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
#[allow(clippy::too_many_arguments)]
fn block(
    x: &[f32],
    w: &[f32],
    bias: &[f32; BLOCK],
    geo: &Geometry,
    taps: &[Tap],
    interior: (usize, usize),
    active: &mut Vec<ActiveTap>,
    y: &mut [f32],
) {
    let (d, h, wa) = (geo.d, geo.h, geo.w);
    let (inner_lo, inner_hi) = if interior.1 >= interior.0 + POSITIONS { interior } else { (wa.output, wa.output) };
    // `active`: the taps inside the input on the current row (index, where output 0 would
    // read, range); the caller's vector, reused from block to block.
    let mut outputs = y.chunks_exact_mut(wa.output * BLOCK);
    for od in 0..d.output {
        for oh in 0..h.output {
            let Some(out) = outputs.next() else { return };
            active.clear();
            for (t, tap) in taps.iter().enumerate() {
                let (id, ih) = (d.coordinate(od, tap.depth), h.coordinate(oh, tap.height));
                if id >= 0 && ih >= 0 && id < d.input as isize && ih < h.input as isize {
                    let row = ((id as usize * h.input + ih as usize) * wa.input) as isize;
                    active.push((t, row + tap.column, tap.lo, tap.hi));
                }
            }
            for ow in (0..inner_lo.min(wa.output)).chain(inner_hi..wa.output) {
                let mut acc = *bias;
                for &(t, start, lo, hi) in active.iter() {
                    if (lo..hi).contains(&ow) {
                        let at = (start + (ow * wa.stride) as isize) as usize * BLOCK;
                        let (xv, wv) = (&x[at..at + BLOCK], &w[t * BLOCK..(t + 1) * BLOCK]);
                        for lane in 0..BLOCK {
                            acc[lane] += wv[lane] * xv[lane];
                        }
                    }
                }
                out[ow * BLOCK..(ow + 1) * BLOCK].copy_from_slice(&acc);
            }
            if inner_lo < inner_hi {
                interior_row(x, w, bias, active, wa.stride, (inner_lo, inner_hi), out);
            }
        }
    }
}

/// The taps inside the input on one output row: tap index, where output 0 would read, and
/// the outputs that read it inside the input.
type ActiveTap = (usize, isize, usize, usize);

/// The interior outputs `lo..hi` (at least [`POSITIONS`]) of one output row, [`POSITIONS`] at
/// a time (the last group overlapping the one before). On x86-64 with AVX the arithmetic is
/// written out on 8-lane registers (`avx.rs`): left to itself LLVM vectorized this loop
/// across positions with gathers once the stride was a constant, and kept bounds tests and
/// weight reloads between the multiply-adds otherwise. Same operations in the same order on
/// every path: the same bits.
fn interior_row(
    x: &[f32],
    w: &[f32],
    bias: &[f32; BLOCK],
    active: &[ActiveTap],
    stride: usize,
    range: (usize, usize),
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(|| interior_row_avx(simd, x, w, bias, active, stride, range, out));
    }
    interior_row_portable(x, w, bias, active, stride, range, out);
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn interior_row_avx(
    simd: pulp::x86::V3,
    x: &[f32],
    w: &[f32],
    bias: &[f32; BLOCK],
    active: &[ActiveTap],
    stride: usize,
    (lo, hi): (usize, usize),
    out: &mut [f32],
) {
    use super::avx::{load, store};
    let avx = simd.avx;
    let (bias_lo, bias_hi) = (load(&bias[..8]), load(&bias[8..]));
    for first in group_starts(lo, hi) {
        let mut acc = [[bias_lo, bias_hi]; POSITIONS];
        for &(t, start, _, _) in active {
            let weights = &w[t * BLOCK..][..BLOCK];
            let (w_lo, w_hi) = (load(&weights[..8]), load(&weights[8..]));
            for (k, sums) in acc.iter_mut().enumerate() {
                let at = (start + ((first + k) * stride) as isize) as usize * BLOCK;
                let inputs = &x[at..][..BLOCK];
                sums[0] = avx._mm256_add_ps(sums[0], avx._mm256_mul_ps(w_lo, load(&inputs[..8])));
                sums[1] = avx._mm256_add_ps(sums[1], avx._mm256_mul_ps(w_hi, load(&inputs[8..])));
            }
        }
        for (k, sums) in acc.iter().enumerate() {
            let slot = &mut out[(first + k) * BLOCK..][..BLOCK];
            store(&mut slot[..8], sums[0]);
            store(&mut slot[8..], sums[1]);
        }
    }
}

/// [`interior_row`] in plain loops, for the CPUs without AVX (on x86-64 only the baseline
/// reaches it, so only NEON gets a version of its own).
#[multiversion(targets("aarch64+neon"))]
fn interior_row_portable(
    x: &[f32],
    w: &[f32],
    bias: &[f32; BLOCK],
    active: &[ActiveTap],
    stride: usize,
    (lo, hi): (usize, usize),
    out: &mut [f32],
) {
    for first in group_starts(lo, hi) {
        let mut acc = [*bias; POSITIONS];
        for &(t, start, _, _) in active {
            let wv: &[f32; BLOCK] = w[t * BLOCK..(t + 1) * BLOCK].try_into().expect("BLOCK weights");
            for (k, sums) in acc.iter_mut().enumerate() {
                let at = (start + ((first + k) * stride) as isize) as usize * BLOCK;
                let xv: &[f32; BLOCK] = x[at..at + BLOCK].try_into().expect("BLOCK inputs");
                for lane in 0..BLOCK {
                    sums[lane] += wv[lane] * xv[lane];
                }
            }
        }
        for (k, sums) in acc.iter().enumerate() {
            out[(first + k) * BLOCK..(first + k + 1) * BLOCK].copy_from_slice(sums);
        }
    }
}

/// The first output of each group of [`POSITIONS`] covering `lo..hi` (at least
/// [`POSITIONS`] long): consecutive groups, the last moved back to end at `hi` (it overlaps
/// the one before, whose outputs it computes again to the same bits).
fn group_starts(lo: usize, hi: usize) -> impl Iterator<Item = usize> {
    (lo..hi).step_by(POSITIONS).map(move |next| next.min(hi - POSITIONS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Window;

    /// The definition, one output at a time: the bias, then every tap inside the input in
    /// kernel order (taps in the padding are skipped, not multiplied by zero).
    fn direct(x: &[f32], w: &[f32], bias: &[f32], geo: &Geometry, m: usize) -> Vec<f32> {
        let (d, h, wa) = (geo.d, geo.h, geo.w);
        let multiplier = m / geo.channels;
        let mut y = Vec::new();
        for n in 0..geo.batch {
            for oc in 0..m {
                let c = oc / multiplier;
                for od in 0..d.output {
                    for oh in 0..h.output {
                        for ow in 0..wa.output {
                            let mut acc = bias[oc];
                            for t in 0..geo.taps() {
                                let (a, i, j) = geo.tap(t);
                                let (id, ih, iw) = (d.coordinate(od, a), h.coordinate(oh, i), wa.coordinate(ow, j));
                                if (0..d.input as isize).contains(&id)
                                    && (0..h.input as isize).contains(&ih)
                                    && (0..wa.input as isize).contains(&iw)
                                {
                                    let at = (((n * geo.channels + c) * d.input + id as usize) * h.input + ih as usize)
                                        * wa.input
                                        + iw as usize;
                                    acc += w[oc * geo.taps() + t] * x[at];
                                }
                            }
                            y.push(acc);
                        }
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// Bit for bit the definition, with rows of many interior outputs and of none, across
    /// partial blocks (37 channels), a channel multiplier, strides, dilations, asymmetric pads,
    /// batches, and 1-D, 2-D and 3-D windows.
    #[test]
    fn blocks_give_the_bits_of_the_direct_definition() {
        // (x shape, multiplier, kernel, strides, pads, dilations)
        type Case = (&'static [usize], usize, &'static [usize], &'static [usize], &'static [usize], &'static [usize]);
        let cases: [Case; 8] = [
            // Wide rows: interior outputs in groups, the last group overlapping.
            (&[2, 5, 7, 23], 1, &[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1]),
            (&[1, 4, 6, 40], 2, &[3, 5], &[2, 1], &[0, 2, 1, 3], &[1, 2]),
            (&[1, 3, 3, 5, 20], 1, &[2, 3, 3], &[1, 2, 1], &[1, 1, 0, 0, 1, 2], &[2, 1, 1]),
            (&[2, 37, 9, 11], 1, &[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1]),
            (&[1, 37, 10, 7], 1, &[3, 3], &[2, 2], &[0, 1, 1, 0], &[1, 1]),
            (&[1, 5, 12, 12], 3, &[5, 3], &[2, 1], &[2, 0, 1, 3], &[1, 2]),
            (&[2, 20, 17], 2, &[4], &[3], &[2, 1], &[2]),
            (&[1, 18, 4, 5, 6], 1, &[2, 3, 3], &[1, 2, 1], &[1, 1, 0, 0, 1, 2], &[2, 1, 1]),
        ];
        for (case, &(shape, multiplier, kernel, strides, pads, dilations)) in cases.iter().enumerate() {
            let window = Window {
                kernel: kernel.to_vec(),
                strides: strides.to_vec(),
                pads: pads.to_vec(),
                dilations: dilations.to_vec(),
            };
            let geo = Geometry::resolve("Conv", shape, &window, kernel, false).unwrap();
            let m = geo.channels * multiplier;
            let x = values(shape.iter().product(), 1 + case as u32);
            let w = values(m * geo.taps(), 100 + case as u32);
            let bias = values(m, 200 + case as u32);
            let y = depthwise(&x, &w, Some(&bias), &geo, m);
            assert_eq!(y.len(), geo.batch * m * geo.out_plane(), "case {case}");
            let want = direct(&x, &w, &bias, &geo, m);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want), "case {case}");
        }
    }
    /// The AVX path and the portable one (what CPUs without AVX run, otherwise untested on
    /// this machine) give the bits of the definition on rows of every stride.
    #[test]
    fn interior_rows_give_the_definition_on_both_paths() {
        let positions = 40;
        let x = values(positions * BLOCK, 7);
        let w = values(3 * BLOCK, 8);
        let bias: [f32; BLOCK] = values(BLOCK, 9).try_into().unwrap();
        for stride in [1, 2, 3] {
            // Tap t of output ow reads position t + ow * stride.
            let active: Vec<ActiveTap> = (0..3).map(|t| (t, t as isize, 0, 0)).collect();
            let hi = (positions - 3) / stride + 1;
            let mut want = vec![0.0f32; hi * BLOCK];
            for ow in 1..hi {
                for lane in 0..BLOCK {
                    let mut acc = bias[lane];
                    for t in 0..3 {
                        acc += w[t * BLOCK + lane] * x[(t + ow * stride) * BLOCK + lane];
                    }
                    want[ow * BLOCK + lane] = acc;
                }
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let mut dispatched = vec![0.0f32; hi * BLOCK];
            interior_row(&x, &w, &bias, &active, stride, (1, hi), &mut dispatched);
            assert_eq!(bits(&dispatched), bits(&want), "stride {stride}");
            let mut portable = vec![0.0f32; hi * BLOCK];
            interior_row_portable(&x, &w, &bias, &active, stride, (1, hi), &mut portable);
            assert_eq!(bits(&portable), bits(&want), "stride {stride}, portable");
        }
    }

    /// Blocks and outputs come from recycled buffers: whatever they held (NaN here) never
    /// reaches a result, in a partial block of 5 channels or a full one, and for every image
    /// of a batch.
    #[test]
    fn recycled_buffers_leave_no_trace() {
        let window = Window { kernel: vec![3, 3], strides: vec![1, 1], pads: vec![1; 4], dilations: vec![1, 1] };
        for shape in [[2, 5, 48, 50], [1, 21, 40, 40]] {
            let geo = Geometry::resolve("Conv", &shape, &window, &[3, 3], false).unwrap();
            let (x, w, bias) = (values(shape.iter().product(), 3), values(shape[1] * 9, 4), values(shape[1], 5));
            let want = direct(&x, &w, &bias, &geo, shape[1]);
            for _ in 0..2 {
                // The pool keeps buffers of 64 KiB and more: these fit the channel-last blocks
                // (48 × 50 positions × 16 lanes) and the outputs.
                for len in [48 * 50 * BLOCK, 48 * 50 * BLOCK, want.len()] {
                    crate::runtime::buffers::give(vec![f32::NAN; len]);
                }
                let y = depthwise(&x, &w, Some(&bias), &geo, shape[1]);
                assert_eq!(y, want, "{shape:?}");
                crate::runtime::buffers::give(y);
            }
        }
    }
}
