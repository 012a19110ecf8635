//! Depthwise convolution (one input channel per group, any channel multiplier), computed on
//! blocks of [`BLOCK`] output channels laid out channel-last (`[spatial..., BLOCK]`, what
//! onnxruntime's NCHWc kernels do), so that every tap of every output position is one
//! vector multiply-add across the block's channels.
//!
//! The planes of a mobile network are small (48×48 down to 3×3), so walking each channel's
//! rows, as a plain loop does, spends its time on loop overhead and strided loads: across
//! channels every step is full width whatever the plane's size or stride.
//!
//! Each output adds its taps in kernel order to its bias, skipping the taps that fall in the
//! padding, exactly as the direct definition does: results are the same bits as a scalar
//! loop, on every instruction set.

use multiversion::multiversion;

use super::window::Geometry;

/// Output channels computed side by side: one AVX-512 register of f32, two AVX ones.
const BLOCK: usize = 16;

/// `y = depthwise(x, w) + bias`: `x` is `[N, C, spatial...]`, `w` is `[M, 1, kernel...]` with
/// `M` a multiple of `C` (output channel `oc` reads input channel `oc / (M / C)`), `y` is
/// `[N, M, out spatial...]`.
pub(super) fn depthwise(x: &[f32], w: &[f32], bias: Option<&[f32]>, geo: &Geometry, m: usize, y: &mut [f32]) {
    let multiplier = m / geo.channels;
    let (in_plane, out_plane, taps) = (geo.in_plane(), geo.out_plane(), geo.taps());
    let mut x_block = vec![0.0f32; in_plane * BLOCK];
    let mut y_block = vec![0.0f32; out_plane * BLOCK];
    let mut w_block = vec![0.0f32; taps * BLOCK];
    let mut b_block = [0.0f32; BLOCK];
    for n in 0..geo.batch {
        for first in (0..m).step_by(BLOCK) {
            let channels = first..m.min(first + BLOCK);
            let x_planes: Vec<&[f32]> =
                channels.clone().map(|oc| &x[(n * geo.channels + oc / multiplier) * in_plane..][..in_plane]).collect();
            let w_planes: Vec<&[f32]> = channels.clone().map(|oc| &w[oc * taps..(oc + 1) * taps]).collect();
            to_channel_last(&x_planes, &mut x_block);
            to_channel_last(&w_planes, &mut w_block);
            for (lane, oc) in channels.clone().enumerate() {
                b_block[lane] = bias.map_or(0.0, |b| b[oc]);
            }
            block(&x_block, &w_block, &b_block, geo, &mut y_block);
            let mut y_planes: Vec<&mut [f32]> = y
                [(n * m + channels.start) * out_plane..(n * m + channels.end) * out_plane]
                .chunks_exact_mut(out_plane)
                .collect();
            from_channel_last(&y_block, &mut y_planes);
        }
    }
}

/// `block[p * BLOCK + lane] = planes[lane][p]` (lanes past `planes.len()` keep stale values
/// that are never read back). By tiles of `BLOCK` positions: each plane's run is one
/// contiguous load, and the fixed-size tile transposes in registers.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn to_channel_last(planes: &[&[f32]], block: &mut [f32]) {
    let len = planes.first().map_or(0, |p| p.len());
    let mut tile = [[0.0f32; BLOCK]; BLOCK];
    for p0 in (0..len).step_by(BLOCK) {
        let run = BLOCK.min(len - p0);
        for (row, plane) in tile.iter_mut().zip(planes) {
            row[..run].copy_from_slice(&plane[p0..p0 + run]);
        }
        let out = &mut block[p0 * BLOCK..(p0 + run) * BLOCK];
        for (p, chunk) in out.chunks_exact_mut(BLOCK).enumerate() {
            for lane in 0..BLOCK {
                chunk[lane] = tile[lane][p];
            }
        }
    }
}

/// `planes[lane][p] = block[p * BLOCK + lane]`, by tiles as [`to_channel_last`].
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn from_channel_last(block: &[f32], planes: &mut [&mut [f32]]) {
    let len = planes.first().map_or(0, |p| p.len());
    let mut tile = [[0.0f32; BLOCK]; BLOCK];
    for p0 in (0..len).step_by(BLOCK) {
        let run = BLOCK.min(len - p0);
        for (p, chunk) in block[p0 * BLOCK..(p0 + run) * BLOCK].chunks_exact(BLOCK).enumerate() {
            for lane in 0..BLOCK {
                tile[lane][p] = chunk[lane];
            }
        }
        for (row, plane) in tile.iter().zip(planes.iter_mut()) {
            plane[p0..p0 + run].copy_from_slice(&row[..run]);
        }
    }
}

/// One block of channels: `y[p] = bias + Σ_taps w[t] * x[p's tap t]`, lane-wise, each
/// output's taps added in kernel order. Compiled for AVX-512 and AVX2 besides the baseline.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn block(x: &[f32], w: &[f32], bias: &[f32; BLOCK], geo: &Geometry, y: &mut [f32]) {
    let (d, h, wa) = (geo.d, geo.h, geo.w);
    // Per tap: its offset on each axis before the output's stride is added.
    let taps: Vec<(isize, isize, isize)> = (0..geo.taps())
        .map(|t| {
            let (a, i, j) = geo.tap(t);
            (d.coordinate(0, a), h.coordinate(0, i), wa.coordinate(0, j))
        })
        .collect();
    let mut outputs = y.chunks_exact_mut(BLOCK);
    for od in 0..d.output {
        let base_d = (od * d.stride) as isize;
        for oh in 0..h.output {
            let base_h = (oh * h.stride) as isize;
            for ow in 0..wa.output {
                let base_w = (ow * wa.stride) as isize;
                let Some(out) = outputs.next() else { return };
                let mut acc = *bias;
                for (t, &(td, th, tw)) in taps.iter().enumerate() {
                    let (id, ih, iw) = (base_d + td, base_h + th, base_w + tw);
                    if id < 0
                        || ih < 0
                        || iw < 0
                        || id >= d.input as isize
                        || ih >= h.input as isize
                        || iw >= wa.input as isize
                    {
                        continue;
                    }
                    let at = ((id as usize * h.input + ih as usize) * wa.input + iw as usize) * BLOCK;
                    let (xv, wv) = (&x[at..at + BLOCK], &w[t * BLOCK..(t + 1) * BLOCK]);
                    for lane in 0..BLOCK {
                        acc[lane] += wv[lane] * xv[lane];
                    }
                }
                out.copy_from_slice(&acc);
            }
        }
    }
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

    /// Bit for bit the definition, across partial blocks (37 channels), a channel multiplier,
    /// strides, dilations, asymmetric pads, batches, and 1-D, 2-D and 3-D windows.
    #[test]
    fn blocks_give_the_bits_of_the_direct_definition() {
        // (x shape, multiplier, kernel, strides, pads, dilations)
        type Case = (&'static [usize], usize, &'static [usize], &'static [usize], &'static [usize], &'static [usize]);
        let cases: [Case; 5] = [
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
            let mut y = vec![f32::NAN; geo.batch * m * geo.out_plane()];
            depthwise(&x, &w, Some(&bias), &geo, m, &mut y);
            let want = direct(&x, &w, &bias, &geo, m);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&want), "case {case}");
        }
    }
}
