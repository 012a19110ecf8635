//! Transposes between channel planes (`planes[lane][p]`) and channel-last blocks
//! (`block[p * width + lane]`), the layout `depthwise.rs` computes on.
//!
//! Why not plain loops: a depthwise convolution only does 9 multiply-adds per value, so moving
//! its values in and out of the block layout cost more than the convolution itself when done
//! one element at a time (MobileNetV2 at 96×96: 64 of a 32-channel 48×48 layer's 102 µs).
//! On x86-64 with AVX, 8×8 tiles are transposed in registers (`avx.rs`); other CPUs and the ragged edges (fewer than 8 planes or positions) take the scalar
//! loops. Both are pure data movement, so every path gives the same bits.

/// `block[p * width + lane] = planes[lane][p]` for every plane (`planes.len() <= width`, all of
/// one length). Lanes past `planes.len()` are left as they were.
pub(super) fn to_channel_last(planes: &[&[f32]], width: usize, block: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(|| avx::to_channel_last(simd, planes, width, block));
    }
    scalar_to_channel_last(planes, 0, 0, width, block);
}

/// `planes[lane][p] = block[p * width + lane]`: the inverse of [`to_channel_last`].
pub(super) fn from_channel_last(block: &[f32], width: usize, planes: &mut [&mut [f32]]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(|| avx::from_channel_last(simd, block, width, planes));
    }
    scalar_from_channel_last(block, 0, 0, width, planes);
}

/// [`to_channel_last`] element by element, for the planes from `first_lane` on and the
/// positions from `first_position` on.
fn scalar_to_channel_last(
    planes: &[&[f32]],
    first_lane: usize,
    first_position: usize,
    width: usize,
    block: &mut [f32],
) {
    for (lane, plane) in planes.iter().enumerate().skip(first_lane) {
        for (p, &value) in plane.iter().enumerate().skip(first_position) {
            block[p * width + lane] = value;
        }
    }
}

/// [`from_channel_last`] element by element, for the planes from `first_lane` on and the
/// positions from `first_position` on.
fn scalar_from_channel_last(
    block: &[f32],
    first_lane: usize,
    first_position: usize,
    width: usize,
    planes: &mut [&mut [f32]],
) {
    for (lane, plane) in planes.iter_mut().enumerate().skip(first_lane) {
        for (p, value) in plane.iter_mut().enumerate().skip(first_position) {
            *value = block[p * width + lane];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use pulp::x86::V3;

    use super::super::avx::{load, store, transpose8};

    #[inline(always)]
    pub(super) fn to_channel_last(simd: V3, planes: &[&[f32]], width: usize, block: &mut [f32]) {
        let len = planes.first().map_or(0, |p| p.len());
        let (lanes, positions) = (planes.len() / 8 * 8, len / 8 * 8);
        for lane0 in (0..lanes).step_by(8) {
            let group = &planes[lane0..lane0 + 8];
            for p0 in (0..positions).step_by(8) {
                let rows = std::array::from_fn(|i| load(&group[i][p0..]));
                for (k, column) in transpose8(simd, rows).into_iter().enumerate() {
                    store(&mut block[(p0 + k) * width + lane0..], column);
                }
            }
        }
        super::scalar_to_channel_last(&planes[..lanes], 0, positions, width, block);
        super::scalar_to_channel_last(planes, lanes, 0, width, block);
    }

    #[inline(always)]
    pub(super) fn from_channel_last(simd: V3, block: &[f32], width: usize, planes: &mut [&mut [f32]]) {
        let len = planes.first().map_or(0, |p| p.len());
        let (lanes, positions) = (planes.len() / 8 * 8, len / 8 * 8);
        for lane0 in (0..lanes).step_by(8) {
            for p0 in (0..positions).step_by(8) {
                let rows = std::array::from_fn(|k| load(&block[(p0 + k) * width + lane0..]));
                for (i, column) in transpose8(simd, rows).into_iter().enumerate() {
                    store(&mut planes[lane0 + i][p0..], column);
                }
            }
        }
        super::scalar_from_channel_last(block, 0, positions, width, &mut planes[..lanes]);
        super::scalar_from_channel_last(block, lanes, 0, width, planes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape of edge: fewer planes than a tile, a partial group of planes, positions
    /// that are not a multiple of 8, and a block wider than the planes given.
    #[test]
    fn both_directions_move_every_value_to_its_place_and_nothing_else() {
        for (planes_count, len, width) in [(16, 2304, 16), (16, 9, 16), (13, 37, 16), (5, 64, 16), (8, 8, 8), (3, 2, 8)]
        {
            let planes: Vec<Vec<f32>> =
                (0..planes_count).map(|lane| (0..len).map(|p| (lane * 10_000 + p) as f32).collect()).collect();
            let views: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
            let mut block = vec![-1.0f32; len * width];
            to_channel_last(&views, width, &mut block);
            for p in 0..len {
                for lane in 0..width {
                    let want = if lane < planes_count { (lane * 10_000 + p) as f32 } else { -1.0 };
                    assert_eq!(
                        block[p * width + lane],
                        want,
                        "{planes_count} planes of {len}: lane {lane}, position {p}"
                    );
                }
            }
            let mut back: Vec<Vec<f32>> = (0..planes_count).map(|_| vec![f32::NAN; len]).collect();
            let mut views: Vec<&mut [f32]> = back.iter_mut().map(Vec::as_mut_slice).collect();
            from_channel_last(&block, width, &mut views);
            assert_eq!(back, planes, "{planes_count} planes of {len} back");
        }
    }
}
