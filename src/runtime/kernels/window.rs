//! Sliding-window geometry shared by Conv and the pools: resolves a [`Window`] against an
//! input shape into one 3-D description (depth, height, width; a 1-D or 2-D window gets unit
//! outer axes), with the output size ONNX defines, and the range of output positions whose
//! tap lands inside the input, so inner loops run over contiguous rows without bounds checks
//! or padding tests.

use super::KernelError;
use crate::ir::Window;

/// One spatial axis of a window: input length, kernel, stride, dilation, pads and output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub output: usize,
}

impl Axis {
    /// A degenerate axis (the missing height of a 1-D window).
    fn unit() -> Axis {
        Axis { input: 1, kernel: 1, stride: 1, dilation: 1, pad_begin: 0, pad_end: 0, output: 1 }
    }

    /// The input coordinate of output `o`'s tap `t`, possibly outside `0..input`.
    #[inline]
    pub fn coordinate(&self, o: usize, t: usize) -> isize {
        (o * self.stride + t * self.dilation) as isize - self.pad_begin as isize
    }

    /// The outputs `lo..hi` whose tap `t` reads inside the input: the tap reads
    /// `o * stride + offset(t)`.
    #[inline]
    pub fn valid_outputs(&self, t: usize) -> (usize, usize) {
        let offset = (t * self.dilation) as isize - self.pad_begin as isize;
        valid_range(self.output, self.stride, offset, self.input)
    }
}

/// For `index(o) = o * stride + offset`, the range `lo..hi` of `o` in `0..out_len` with
/// `0 <= index(o) < in_len`. `stride` is at least 1.
#[inline]
pub(crate) fn valid_range(out_len: usize, stride: usize, offset: isize, in_len: usize) -> (usize, usize) {
    let stride = stride as isize;
    let div_ceil = |a: isize| (a + stride - 1) / stride; // a >= 0
    let lo = if offset >= 0 { 0 } else { div_ceil(-offset) };
    let room = in_len as isize - offset;
    let hi = if room <= 0 { 0 } else { div_ceil(room) };
    let hi = (hi.max(0) as usize).min(out_len);
    let lo = (lo as usize).min(hi);
    (lo, hi)
}

/// A window resolved against an `[N, C, (D,) (H,) W]` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub channels: usize,
    pub d: Axis,
    pub h: Axis,
    pub w: Axis,
    /// How many spatial axes the input had (1 to 3); outputs keep that rank.
    pub spatial: usize,
}

impl Geometry {
    /// Resolves `window` for an input of `x_shape`. `kernel` is the kernel's spatial shape
    /// (Conv takes it from the weights); empty strides/pads/dilations mean the ONNX defaults.
    pub fn resolve(
        op: &'static str,
        x_shape: &[usize],
        window: &Window,
        kernel: &[usize],
        ceil_mode: bool,
    ) -> Result<Geometry, KernelError> {
        let spatial = kernel.len();
        if !(1..=3).contains(&spatial) {
            return Err(KernelError::new(op, format!("{spatial}-D windows are not supported (1-D to 3-D are)")));
        }
        if x_shape.len() != spatial + 2 {
            return Err(KernelError::new(op, format!("input of shape {x_shape:?} does not fit a {spatial}-D window")));
        }
        let list = |name: &str, values: &[usize], len: usize, default: usize| -> Result<Vec<usize>, KernelError> {
            match values.len() {
                0 => Ok(vec![default; len]),
                n if n == len => Ok(values.to_vec()),
                n => Err(KernelError::new(op, format!("{name} has {n} entries, expected {len}"))),
            }
        };
        if !window.kernel.is_empty() && window.kernel != kernel {
            return Err(KernelError::new(
                op,
                format!("kernel_shape {:?} disagrees with the weights' {kernel:?}", window.kernel),
            ));
        }
        let strides = list("strides", &window.strides, spatial, 1)?;
        let dilations = list("dilations", &window.dilations, spatial, 1)?;
        let pads = list("pads", &window.pads, 2 * spatial, 0)?;
        // Unit axes in front, so the last `spatial` of (d, h, w) are the real ones.
        let mut axes = [Axis::unit(); 3];
        for i in 0..spatial {
            axes[3 - spatial + i] = resolve_axis(
                op,
                x_shape[2 + i],
                kernel[i],
                strides[i],
                dilations[i],
                pads[i],
                pads[spatial + i],
                ceil_mode,
            )?;
        }
        let [d, h, w] = axes;
        Ok(Geometry { batch: x_shape[0], channels: x_shape[1], d, h, w, spatial })
    }

    /// The output shape with `channels` output channels.
    pub fn output_shape(&self, channels: usize) -> Vec<usize> {
        let mut shape = vec![self.batch, channels];
        let axes = [self.d, self.h, self.w];
        shape.extend(axes[3 - self.spatial..].iter().map(|a| a.output));
        shape
    }

    /// Whether every window is one position, unstrided and unpadded (a pointwise conv): the
    /// input planes are then the im2col matrix themselves.
    pub fn pointwise(&self) -> bool {
        [self.d, self.h, self.w].iter().all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.pad_end == 0)
    }

    /// Elements of one input channel.
    pub fn in_plane(&self) -> usize {
        self.d.input * self.h.input * self.w.input
    }

    /// Elements of one output channel.
    pub fn out_plane(&self) -> usize {
        self.d.output * self.h.output * self.w.output
    }

    /// Taps of the kernel.
    pub fn taps(&self) -> usize {
        self.d.kernel * self.h.kernel * self.w.kernel
    }

    /// Tap index `t` (row-major over depth, height, width) as per-axis taps.
    #[inline]
    pub fn tap(&self, t: usize) -> (usize, usize, usize) {
        let (a, rest) = (t / (self.h.kernel * self.w.kernel), t % (self.h.kernel * self.w.kernel));
        (a, rest / self.w.kernel, rest % self.w.kernel)
    }

    /// For depth tap `a` and height tap `i`, calls `f(out_row, in_row)` for every output row
    /// `(od, oh)` whose tap lands inside the input; rows count in units of the output and
    /// input widths.
    #[inline]
    pub fn for_each_row(&self, a: usize, i: usize, mut f: impl FnMut(usize, usize)) {
        let (d_lo, d_hi) = self.d.valid_outputs(a);
        let (h_lo, h_hi) = self.h.valid_outputs(i);
        for od in d_lo..d_hi {
            let id = self.d.coordinate(od, a) as usize;
            for oh in h_lo..h_hi {
                let ih = self.h.coordinate(oh, i) as usize;
                f(od * self.h.output + oh, id * self.h.input + ih);
            }
        }
    }
}

/// One axis's output size as ONNX defines it: `floor` (or `ceil` with `ceil_mode`) of
/// `(in + pads - dilated_kernel) / stride + 1`; with `ceil_mode`, a last window that would
/// start in the end padding is dropped (as onnxruntime and PyTorch do).
fn resolve_axis(
    op: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil_mode: bool,
) -> Result<Axis, KernelError> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(KernelError::new(
            op,
            format!("kernel ({kernel}), stride ({stride}) and dilation ({dilation}) must be positive"),
        ));
    }
    let too_big = || KernelError::new(op, "window geometry overflows");
    let span = (kernel - 1).checked_mul(dilation).and_then(|s| s.checked_add(1)).ok_or_else(too_big)?;
    let padded = input.checked_add(pad_begin).and_then(|s| s.checked_add(pad_end)).ok_or_else(too_big)?;
    if padded < span {
        return Err(KernelError::new(
            op,
            format!("dilated kernel ({span}) is larger than the padded input ({padded})"),
        ));
    }
    let room = padded - span;
    let mut output = if ceil_mode { room.div_ceil(stride) + 1 } else { room / stride + 1 };
    if ceil_mode && (output - 1) * stride >= input + pad_begin {
        output -= 1;
    }
    Ok(Axis { input, kernel, stride, dilation, pad_begin, pad_end, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kernel: &[usize], strides: &[usize], pads: &[usize]) -> Window {
        Window { kernel: kernel.to_vec(), strides: strides.to_vec(), pads: pads.to_vec(), dilations: vec![] }
    }

    #[test]
    fn valid_range_clips_to_the_input() {
        // index = o*2 - 1 over o in 0..4 is [-1, 1, 3, 5]; inside 0..5 are o = 1, 2.
        assert_eq!(valid_range(4, 2, -1, 5), (1, 3));
        // index = o + 2 over 0..5 is [2..6]; inside 0..4 are o = 0, 1.
        assert_eq!(valid_range(5, 1, 2, 4), (0, 2));
        // index = o + 9: nothing inside 0..4.
        assert_eq!(valid_range(3, 1, 9, 4), (0, 0));
        // index = o - 9: nothing inside 0..4 among o < 3.
        assert_eq!(valid_range(3, 1, -9, 4), (3, 3));
    }

    #[test]
    fn output_sizes_follow_onnx() {
        // (5 + 1 + 1 - 3) / 2 + 1 = 3
        let g =
            Geometry::resolve("T", &[1, 1, 5, 5], &window(&[3, 3], &[2, 2], &[1, 1, 1, 1]), &[3, 3], false).unwrap();
        assert_eq!(g.output_shape(4), vec![1, 4, 3, 3]);
        // 1-D: (6 - 2) / 2 + 1 = 3, floor; ceil mode: ceil((6 - 3) / 2) + 1 = 3 vs floor 3/2 + 1 = 2
        let g = Geometry::resolve("T", &[1, 2, 6], &window(&[2], &[2], &[]), &[2], false).unwrap();
        assert_eq!(g.output_shape(2), vec![1, 2, 3]);
        let floor = Geometry::resolve("T", &[1, 2, 6], &window(&[3], &[2], &[]), &[3], false).unwrap();
        let ceil = Geometry::resolve("T", &[1, 2, 6], &window(&[3], &[2], &[]), &[3], true).unwrap();
        assert_eq!((floor.w.output, ceil.w.output), (2, 3));
    }

    #[test]
    fn ceil_mode_drops_a_window_that_starts_in_the_end_padding() {
        // in 2, kernel 1, stride 2: ceil((2 - 1) / 2) + 1 = 2, but window 1 starts at 2 >= 2 + 0.
        let g = Geometry::resolve("T", &[1, 1, 2, 2], &window(&[1, 1], &[2, 2], &[]), &[1, 1], true).unwrap();
        assert_eq!(g.output_shape(1), vec![1, 1, 1, 1]);
    }

    #[test]
    fn bad_windows_are_errors() {
        let err = Geometry::resolve("T", &[1, 1, 2, 2], &window(&[3, 3], &[], &[]), &[3, 3], false).unwrap_err();
        assert!(err.message.contains("larger than the padded input"), "{err}");
        let err = Geometry::resolve("T", &[1, 1, 4, 4], &window(&[1, 1], &[0, 1], &[]), &[1, 1], false).unwrap_err();
        assert!(err.message.contains("positive"), "{err}");
        let err = Geometry::resolve("T", &[1, 1, 4], &window(&[1, 1], &[], &[]), &[1, 1], false).unwrap_err();
        assert!(err.message.contains("does not fit"), "{err}");
    }
}
