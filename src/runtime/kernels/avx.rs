//! AVX building blocks of the kernels that need more than LLVM derives from plain loops
//! (register transposes, explicit 8-lane arithmetic), through pulp's safe intrinsics: a
//! `pulp::x86::V3` token proves at run time that the CPU has AVX2 and FMA, so this crate
//! keeps no unsafe code. Callers reach them inside `V3::vectorize`, which compiles the
//! inlined body for those features.

use core::arch::x86_64::__m256;

use pulp::x86::V3;

/// Rows `r[i]` of an 8×8 tile become its columns: `out[j][i] = r[i][j]`.
#[inline(always)]
pub(super) fn transpose8(simd: V3, r: [__m256; 8]) -> [__m256; 8] {
    let avx = simd.avx;
    // Pairs of rows interleaved: [r0[0], r1[0], r0[1], r1[1] | r0[4], r1[4], r0[5], r1[5]].
    let t0 = avx._mm256_unpacklo_ps(r[0], r[1]);
    let t1 = avx._mm256_unpackhi_ps(r[0], r[1]);
    let t2 = avx._mm256_unpacklo_ps(r[2], r[3]);
    let t3 = avx._mm256_unpackhi_ps(r[2], r[3]);
    let t4 = avx._mm256_unpacklo_ps(r[4], r[5]);
    let t5 = avx._mm256_unpackhi_ps(r[4], r[5]);
    let t6 = avx._mm256_unpacklo_ps(r[6], r[7]);
    let t7 = avx._mm256_unpackhi_ps(r[6], r[7]);
    // Four rows' column j in each 128-bit half: [col j of r0..r3 | col j + 4 of r0..r3].
    let s0 = avx._mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = avx._mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = avx._mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = avx._mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = avx._mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = avx._mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = avx._mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = avx._mm256_shuffle_ps::<0xEE>(t5, t7);
    // The halves of rows 0-3 and 4-7 joined: whole columns.
    [
        avx._mm256_permute2f128_ps::<0x20>(s0, s4),
        avx._mm256_permute2f128_ps::<0x20>(s1, s5),
        avx._mm256_permute2f128_ps::<0x20>(s2, s6),
        avx._mm256_permute2f128_ps::<0x20>(s3, s7),
        avx._mm256_permute2f128_ps::<0x31>(s0, s4),
        avx._mm256_permute2f128_ps::<0x31>(s1, s5),
        avx._mm256_permute2f128_ps::<0x31>(s2, s6),
        avx._mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// The first 8 values of `values` as one register.
#[inline(always)]
pub(super) fn load(values: &[f32]) -> __m256 {
    let array: [f32; 8] = values[..8].try_into().expect("8 values");
    pulp::cast(array)
}

/// `vector` into the first 8 values of `values`.
#[inline(always)]
pub(super) fn store(values: &mut [f32], vector: __m256) {
    let array: [f32; 8] = pulp::cast(vector);
    values[..8].copy_from_slice(&array);
}
