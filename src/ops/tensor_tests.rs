//! Kernels and shape inference of the tensor ops, on hand-derived cases (numpy semantics).

use super::*;

fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64(shape.to_vec(), v.to_vec())
}

fn run1(op: impl Into<Op>, inputs: &[&Tensor]) -> Result<Tensor, KernelError> {
    Ok(op.into().run(inputs, &[])?.remove(0))
}

fn slice(starts: &[i64], ends: &[i64], axes: &[usize], steps: &[i64]) -> Slice {
    Slice { starts: starts.to_vec(), ends: ends.to_vec(), axes: axes.to_vec(), steps: steps.to_vec() }
}

#[test]
fn gather_picks_along_an_axis() {
    let shape = i64s(&[4], &[1, 3, 224, 224]);
    let g0 = Gather { axis: 0 };
    assert_eq!(run1(g0.clone(), &[&shape, &i64s(&[], &[0])]).unwrap(), i64s(&[], &[1]));
    assert_eq!(run1(g0.clone(), &[&shape, &i64s(&[2], &[-1, 1])]).unwrap(), i64s(&[2], &[224, 3]));
    // data [[1,2],[3,4],[5,6]], axis 1, indices [1] -> [[2],[4],[6]]
    let m = Tensor::from_f32(vec![3, 2], vec![1., 2., 3., 4., 5., 6.]);
    let got = run1(Gather { axis: 1 }, &[&m, &i64s(&[1], &[1])]).unwrap();
    assert_eq!(got, Tensor::from_f32(vec![3, 1], vec![2., 4., 6.]));
    // An embedding lookup: rows of a [3, 2] table by [2, 2] int32 ids.
    let ids = Tensor::new(vec![2, 2], TensorData::I32(vec![2, 0, 1, 2])).unwrap();
    let got = run1(g0.clone(), &[&m, &ids]).unwrap();
    assert_eq!(got, Tensor::from_f32(vec![2, 2, 2], vec![5., 6., 1., 2., 3., 4., 5., 6.]));
    // Out of range and float indices are errors, not panics.
    assert!(run1(g0.clone(), &[&shape, &i64s(&[1], &[4])]).is_err());
    assert!(run1(g0.clone(), &[&shape, &i64s(&[1], &[-5])]).is_err());
    assert!(run1(g0, &[&shape, &Tensor::from_f32(vec![1], vec![0.0])]).is_err());
}

#[test]
fn slice_follows_the_onnx_clamping_rules() {
    let v = i64s(&[4], &[1, 3, 224, 224]);
    // v[2:INT64_MAX] = [224, 224]
    assert_eq!(run1(slice(&[2], &[i64::MAX], &[0], &[1]), &[&v]).unwrap(), i64s(&[2], &[224, 224]));
    // v[-1:-5:-2]: start 3, end clamps to -1, step -2 -> indices 3, 1
    assert_eq!(run1(slice(&[-1], &[i64::MIN], &[0], &[-2]), &[&v]).unwrap(), i64s(&[2], &[224, 3]));
    assert_eq!(run1(slice(&[3], &[1], &[0], &[1]), &[&v]).unwrap(), i64s(&[0], &[]));
    // Extreme steps: v[0::INT64_MAX] = [1]; v[::INT64_MIN] = [224] (start clamps to 3).
    assert_eq!(run1(slice(&[0], &[i64::MAX], &[0], &[i64::MAX]), &[&v]).unwrap(), i64s(&[1], &[1]));
    assert_eq!(run1(slice(&[i64::MAX], &[i64::MIN], &[0], &[i64::MIN]), &[&v]).unwrap(), i64s(&[1], &[224]));
    // 2-D: [[0,1,2],[3,4,5]][:, 1:] = [[1,2],[4,5]]; a float16 channel split keeps the type.
    let m = i64s(&[2, 3], &[0, 1, 2, 3, 4, 5]);
    assert_eq!(run1(slice(&[1], &[3], &[1], &[1]), &[&m]).unwrap(), i64s(&[2, 2], &[1, 2, 4, 5]));
    let h = fold::cast(&m, DType::F16, true);
    let got = run1(slice(&[0], &[1], &[0], &[1]), &[&h]).unwrap();
    assert_eq!(got, fold::cast(&i64s(&[1, 3], &[0, 1, 2]), DType::F16, true));
    assert!(
        slice(&[0], &[1], &[0], &[0])
            .infer(&[&TensorInfo { name: "x".into(), dtype: DType::F32, shape: vec![3] }])
            .is_err()
    );
}

#[test]
fn split_produces_one_output_per_piece() {
    let m = i64s(&[2, 3], &[0, 1, 2, 3, 4, 5]);
    let out = Op::from(Split { axis: 1, sizes: vec![1, 2] }).run(&[&m], &[]).unwrap();
    assert_eq!(out, vec![i64s(&[2, 1], &[0, 3]), i64s(&[2, 2], &[1, 2, 4, 5])]);
    let info = TensorInfo { name: "m".into(), dtype: DType::I64, shape: vec![2, 3] };
    let inferred = Split { axis: 1, sizes: vec![1, 2] }.infer(&[&info]).unwrap();
    assert_eq!(inferred, vec![(DType::I64, vec![2, 1]), (DType::I64, vec![2, 2])]);
    assert!(Split { axis: 1, sizes: vec![1, 1] }.infer(&[&info]).is_err());
}

#[test]
fn expand_tile_and_trilu() {
    let col = i64s(&[2, 1], &[1, 2]);
    assert_eq!(
        run1(Expand { shape: vec![2, 2, 3] }, &[&col]).unwrap(),
        i64s(&[2, 2, 3], &[1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2])
    );
    assert!(run1(Expand { shape: vec![3, 3] }, &[&col]).is_err());
    // np.tile([[1],[2]], (2, 2)) = [[1,1],[2,2],[1,1],[2,2]]
    assert_eq!(run1(Tile { repeats: vec![2, 2] }, &[&col]).unwrap(), i64s(&[4, 2], &[1, 1, 2, 2, 1, 1, 2, 2]));
    let m = i64s(&[3, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(run1(Trilu { upper: true, k: 1 }, &[&m]).unwrap(), i64s(&[3, 3], &[0, 2, 3, 0, 0, 6, 0, 0, 0]));
    assert_eq!(run1(Trilu { upper: false, k: -1 }, &[&m]).unwrap(), i64s(&[3, 3], &[0, 0, 0, 4, 0, 0, 7, 8, 0]));
}

#[test]
fn depth_to_space_and_back() {
    // [1, 4, 1, 1] with blocksize 2: DCR puts channel c at (c / 2, c % 2).
    let x = i64s(&[1, 4, 1, 1], &[0, 1, 2, 3]);
    let d2s = BlockRearrange { to_depth: false, blocksize: 2, crd: false };
    let y = run1(d2s, &[&x]).unwrap();
    assert_eq!(y, i64s(&[1, 1, 2, 2], &[0, 1, 2, 3]));
    let s2d = BlockRearrange { to_depth: true, blocksize: 2, crd: false };
    assert_eq!(run1(s2d, &[&y]).unwrap(), x);
    // 8 channels, DCR vs CRD differ: CRD groups the 4 block positions per output channel.
    let x = i64s(&[1, 8, 1, 1], &[0, 1, 2, 3, 4, 5, 6, 7]);
    let dcr = run1(BlockRearrange { to_depth: false, blocksize: 2, crd: false }, &[&x]).unwrap();
    assert_eq!(dcr, i64s(&[1, 2, 2, 2], &[0, 2, 4, 6, 1, 3, 5, 7]));
    let crd = run1(BlockRearrange { to_depth: false, blocksize: 2, crd: true }, &[&x]).unwrap();
    assert_eq!(crd, i64s(&[1, 2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 7]));
}

#[test]
fn center_crop_pad_eye_like_and_cast() {
    let x = i64s(&[1, 4], &[1, 2, 3, 4]);
    // Axis 0 padded 1 -> 3 (one row before), axis 1 cropped 4 -> 2 (starting at 1).
    let got = run1(CenterCropPad { shape: vec![3, 2] }, &[&x]).unwrap();
    assert_eq!(got, i64s(&[3, 2], &[0, 0, 2, 3, 0, 0]));
    let eye = run1(EyeLike { dtype: DType::F32, k: 1 }, &[&i64s(&[2, 3], &[0; 6])]).unwrap();
    assert_eq!(eye, Tensor::from_f32(vec![2, 3], vec![0., 1., 0., 0., 0., 1.]));
    let u8s = Tensor::new(vec![2], TensorData::U8(vec![0, 255])).unwrap();
    let got = run1(Cast { to: DType::F32, saturate: true }, &[&u8s]).unwrap();
    assert_eq!(got, Tensor::from_f32(vec![2], vec![0.0, 255.0]));
    let got = run1(Cast { to: DType::Bool, saturate: true }, &[&u8s]).unwrap();
    assert_eq!(got.data, TensorData::Bool(vec![0, 1]));
}

#[test]
fn bit_cast_reinterprets_little_endian_bits() {
    // numpy: np.float32([1, -2]).view(np.int32) = [1065353216, -1073741824] (0x3F800000,
    // 0xC0000000); np.float16(1).view(np.uint16) = 15360 (0x3C00); np.int8(-1).view(np.uint8)
    // = 255; int4 -1 is the nibble 0b1111 = uint4 15; a byte read as bool is true when not 0.
    let f = Tensor::from_f32(vec![2], vec![1.0, -2.0]);
    let got = run1(BitCast { to: DType::I32 }, &[&f]).unwrap();
    assert_eq!(got.data, TensorData::I32(vec![1_065_353_216, -1_073_741_824]));
    assert_eq!(run1(BitCast { to: DType::F32 }, &[&got]).unwrap(), f);
    let h = Tensor::new(vec![1], TensorData::F16(vec![half::f16::from_f32(1.0)])).unwrap();
    assert_eq!(run1(BitCast { to: DType::U16 }, &[&h]).unwrap().data, TensorData::U16(vec![0x3C00]));
    let i8s = Tensor::new(vec![2], TensorData::I8(vec![-1, 5])).unwrap();
    assert_eq!(run1(BitCast { to: DType::U8 }, &[&i8s]).unwrap().data, TensorData::U8(vec![255, 5]));
    let i4 = Tensor::new(vec![2], TensorData::I4(vec![-1, 7])).unwrap();
    assert_eq!(run1(BitCast { to: DType::U4 }, &[&i4]).unwrap().data, TensorData::U4(vec![15, 7]));
    let u8s = Tensor::new(vec![3], TensorData::U8(vec![0, 1, 2])).unwrap();
    assert_eq!(run1(BitCast { to: DType::Bool }, &[&u8s]).unwrap().data, TensorData::Bool(vec![0, 1, 1]));
    // Widths must match: float32 is not int64.
    assert!(run1(BitCast { to: DType::I64 }, &[&f]).is_err());
    let info = TensorInfo { name: "x".into(), dtype: DType::F32, shape: vec![2] };
    let err = Op::BitCast(BitCast { to: DType::I64 }).infer(&[&info]).unwrap_err();
    assert!(err.contains("not as wide"), "{err}");
}
