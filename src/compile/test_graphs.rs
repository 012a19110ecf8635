//! Small hand-built graphs shared by the compile and executor tests.

use std::collections::BTreeMap;

use crate::ir::test_graph::GraphBuilder;
use crate::ir::{Conv, Op, TensorId, Window};
use crate::quant::encoding::{Encoding, QuantizedGraph, TensorEncoding};

/// A [`GraphBuilder`] that also collects encodings.
#[derive(Default)]
pub(crate) struct Builder {
    pub graph: GraphBuilder,
    pub encodings: BTreeMap<TensorId, TensorEncoding>,
}

impl std::ops::Deref for Builder {
    type Target = GraphBuilder;

    fn deref(&self) -> &GraphBuilder {
        &self.graph
    }
}

impl std::ops::DerefMut for Builder {
    fn deref_mut(&mut self) -> &mut GraphBuilder {
        &mut self.graph
    }
}

impl Builder {
    pub fn encode(&mut self, id: TensorId, encoding: TensorEncoding) {
        self.encodings.insert(id, encoding);
    }

    pub fn finish(self) -> QuantizedGraph {
        QuantizedGraph { graph: self.graph.graph, encodings: self.encodings }
    }
}

/// An encoding with `min`/`max` derived from the grid (they are informative only here).
pub(crate) fn enc(bitwidth: u32, scale: f32, offset: i32) -> Encoding {
    let top = if bitwidth >= 32 { u32::MAX as f32 } else { ((1u64 << bitwidth) - 1) as f32 };
    Encoding {
        bitwidth,
        scale,
        offset,
        min: offset as f32 * scale,
        max: (top + offset as f32) * scale,
        symmetric: offset == -(1i64 << (bitwidth - 1)) as i32,
    }
}

pub(crate) fn per_tensor(bitwidth: u32, scale: f32, offset: i32) -> TensorEncoding {
    TensorEncoding::PerTensor(enc(bitwidth, scale, offset))
}

pub(crate) fn conv_1x1(group: usize) -> Op {
    Op::Conv(Conv {
        window: Window { kernel: vec![1, 1], strides: vec![1, 1], pads: vec![0, 0, 0, 0], dilations: vec![1, 1] },
        group,
    })
}

/// Tensor ids of [`conv_relu`].
pub(crate) struct ConvRelu {
    pub x: TensorId,
    pub w: TensorId,
    pub b: TensorId,
    pub y: TensorId,
    pub z: TensorId,
}

/// `x [1,1,2,2] -> Conv 1x1 (W [2,1,1,1] = [1.5, -0.51], B = [0.1, -0.2]) -> y [1,2,2,2]
/// -> Relu -> z`, without encodings (a float graph).
pub(crate) fn conv_relu() -> (Builder, ConvRelu) {
    let mut b = Builder::default();
    let x = b.input("x", &[1, 1, 2, 2]);
    let w = b.constant("conv.weight", &[2, 1, 1, 1], vec![1.5, -0.51]);
    let bias = b.constant("conv.bias", &[2], vec![0.1, -0.2]);
    let y = b.node("conv", conv_1x1(1), &[x, w, bias], "y", &[1, 2, 2, 2]);
    let z = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[y], "z", &[1, 2, 2, 2]);
    b.output(z);
    (b, ConvRelu { x, w, b: bias, y, z })
}

/// [`conv_relu`] with hand-picked power-of-two encodings (see the executor test that
/// computes its output by hand):
/// - x: 8-bit, scale 1/16, offset -128;
/// - W: 8-bit per-channel (axis 0) symmetric, scales [1/64, 1/128], offset -128;
/// - B: 32-bit per-channel, scale = x scale * W scale = [1/1024, 1/2048], offset -2^31;
/// - y: 8-bit, scale 1/8, offset -32;  z: 8-bit, scale 1/4, offset 0.
pub(crate) fn conv_relu_quantized() -> (QuantizedGraph, ConvRelu) {
    let (mut b, ids) = conv_relu();
    b.encode(ids.x, per_tensor(8, 1.0 / 16.0, -128));
    b.encode(
        ids.w,
        TensorEncoding::PerChannel { axis: 0, channels: vec![enc(8, 1.0 / 64.0, -128), enc(8, 1.0 / 128.0, -128)] },
    );
    b.encode(
        ids.b,
        TensorEncoding::PerChannel {
            axis: 0,
            channels: vec![enc(32, 1.0 / 1024.0, i32::MIN), enc(32, 1.0 / 2048.0, i32::MIN)],
        },
    );
    b.encode(ids.y, per_tensor(8, 1.0 / 8.0, -32));
    b.encode(ids.z, per_tensor(8, 1.0 / 4.0, 0));
    (b.finish(), ids)
}

/// A pointwise convolution on a small plane and a classifier, the two shapes the executor
/// runs a group's samples through together: `x [1,3,2,2] -> Conv 1x1 (W [4,3,1,1], B [4])
/// -> Relu -> Flatten -> [1,16] -> Gemm (transB, W [5,16], C [5]) -> out [1,5]`; with
/// `quantized`, every activation and weight is given an 8-bit encoding.
pub(crate) fn pointwise_classifier(quantized: bool) -> QuantizedGraph {
    let mut b = Builder::default();
    let ramp = |n: usize, step: f32| (0..n).map(|i| (i as f32 * step).sin()).collect::<Vec<f32>>();
    let x = b.input("x", &[1, 3, 2, 2]);
    let w = b.constant("conv.weight", &[4, 3, 1, 1], ramp(12, 0.7));
    let bias = b.constant("conv.bias", &[4], ramp(4, 1.3));
    let y = b.node("conv", conv_1x1(1), &[x, w, bias], "y", &[1, 4, 2, 2]);
    let r = b.node("relu", Op::Unary(crate::ops::Unary::Relu), &[y], "r", &[1, 4, 2, 2]);
    let f = b.node("flatten", Op::Flatten(crate::ops::Flatten { axis: 1 }), &[r], "f", &[1, 16]);
    let fc_w = b.constant("fc.weight", &[5, 16], ramp(80, 0.31));
    let fc_b = b.constant("fc.bias", &[5], ramp(5, 0.9));
    let gemm = crate::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true };
    let out = b.node("fc", Op::Gemm(gemm), &[f, fc_w, fc_b], "out", &[1, 5]);
    b.output(out);
    if quantized {
        for (id, scale, offset) in
            [(x, 1.0 / 32.0, -128), (y, 1.0 / 16.0, -128), (r, 1.0 / 32.0, 0), (f, 1.0 / 32.0, 0)]
        {
            b.encode(id, per_tensor(8, scale, offset));
        }
        b.encode(out, per_tensor(8, 1.0 / 8.0, -128));
        b.encode(w, per_tensor(8, 1.0 / 128.0, -128));
        b.encode(fc_w, per_tensor(8, 1.0 / 128.0, -128));
    }
    b.finish()
}

/// A graph with branches and a skip connection, so that the memory plan has something to
/// share: `x -> r1 = Relu(x); s = Sigmoid(r1); r2 = Relu(s); a = Add(r1, r2); m = Mul(a, k);
/// t = Relu(m); out = Add(t, x)`; all [1, 4, 8, 8] float32, `k` a [1] constant.
pub(crate) fn branchy() -> QuantizedGraph {
    let mut b = Builder::default();
    let shape = [1, 4, 8, 8];
    let x = b.input("x", &shape);
    let k = b.constant("k", &[1], vec![0.75]);
    let r1 = b.node("r1", Op::Unary(crate::ops::Unary::Relu), &[x], "r1_out", &shape);
    let s = b.node("s", Op::Unary(crate::ops::Unary::Sigmoid), &[r1], "s_out", &shape);
    let r2 = b.node("r2", Op::Unary(crate::ops::Unary::Relu), &[s], "r2_out", &shape);
    let a = b.node("a", Op::Binary(crate::ops::Binary::Add), &[r1, r2], "a_out", &shape);
    let m = b.node("m", Op::Binary(crate::ops::Binary::Mul), &[a, k], "m_out", &shape);
    let t = b.node("t", Op::Unary(crate::ops::Unary::Relu), &[m], "t_out", &shape);
    let out = b.node("out", Op::Binary(crate::ops::Binary::Add), &[t, x], "out", &shape);
    b.output(out);
    b.finish()
}
