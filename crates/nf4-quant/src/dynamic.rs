//! bitsandbytes' signed 8-bit dynamic code and the blockwise 8-bit quantization that double
//! quantization applies to the absmax vector.
//!
//! Blockwise 8-bit: a block of `blocksize` values with `a = max |x|` stores `a` (f32) and, per
//! value, the index `q ∈ 0..256` of the code value nearest to `x / a`; it decodes to `code[q] · a`.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::config::BnbKernel;
use crate::rcp::{cuda_rcp, ftz};

/// Bit patterns of `bitsandbytes.functional.create_dynamic_map()` (signed, 7 exponent bits,
/// 8 bits), as it returns them on x86-64: 256 sorted f32 values, `code[0] = -0.99296874`,
/// `code[127] = 0`, `code[255] = 1`. The table is data (torch's vectorized `linspace` decides the
/// last bits, so it is not recomputed here); the codec fixtures check it against bitsandbytes.
const DYNAMIC_CODE_BITS: [u32; 256] = [
    0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000, 0xbf616666, 0xbf5dcccd, 0xbf5a3333,
    0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333, 0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a,
    0xbf2f0000, 0xbf2b6666, 0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a, 0xbf0b0000,
    0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a, 0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc,
    0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000, 0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333,
    0xbe60cccd, 0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334, 0xbdc9eb85, 0xbdc428f7,
    0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a, 0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd,
    0xbd7e147b, 0xbd728f5d, 0xbd670a3d, 0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
    0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148, 0xbc1f3b64, 0xbc160418, 0xbc0ccccd,
    0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4, 0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d,
    0xbaf1a9fc, 0xbaa7ef9d, 0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b, 0xb8ba1f4b,
    0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000, 0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206,
    0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b, 0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff,
    0x3aa7ef9d, 0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4, 0x3bcfdf3b, 0x3be24dd3,
    0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148, 0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7,
    0x3ce7ae15, 0x3cfeb852, 0x3d0ae148, 0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
    0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a, 0x3da75c2a, 0x3dad1eb8, 0x3db2e148,
    0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334, 0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000,
    0x3e526666, 0x3e60cccd, 0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000, 0x3eb13333,
    0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a, 0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333,
    0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a, 0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd,
    0x3f2b6666, 0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333, 0x3f4bcccd, 0x3f4f6666,
    0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000, 0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000,
    0x3f7a999a, 0x3f7e3333, 0x3f800000,
];

/// The signed 8-bit dynamic code of bitsandbytes (`create_dynamic_map()`, stored as bit patterns).
pub fn dynamic_code() -> &'static [f32; 256] {
    static CODE: OnceLock<[f32; 256]> = OnceLock::new();
    CODE.get_or_init(|| DYNAMIC_CODE_BITS.map(f32::from_bits))
}

/// Entries of the CPU implementation's lookup table over [-1, 1].
const LUT_SIZE: usize = 65_536;

/// The CPU lookup table for the dynamic code: bin `i` (centre `-1 + 2i/65535`) → nearest code
/// index, a centre on a midpoint going to the lower code (`build_quantize_lut` in `cpu_ops.cpp`).
fn dynamic_lut() -> &'static [u8] {
    static LUT: OnceLock<Vec<u8>> = OnceLock::new();
    LUT.get_or_init(|| build_lut(dynamic_code()))
}

fn build_lut(code: &[f32; 256]) -> Vec<u8> {
    let mut mids = [0.0f32; 255];
    for (i, m) in mids.iter_mut().enumerate() {
        *m = 0.5 * (code[i] + code[i + 1]);
    }
    let mut lut = vec![0u8; LUT_SIZE];
    let mut idx = 0usize;
    for (i, slot) in lut.iter_mut().enumerate() {
        let val = -1.0f32 + (2.0f32 * i as f32) / (LUT_SIZE - 1) as f32;
        while idx < 255 && mids[idx] < val {
            idx += 1;
        }
        // idx < 256 by the loop bound.
        *slot = idx as u8;
    }
    lut
}

/// The CPU implementation's bin of a scaled value: `(clamp(v, -1, 1) + 1) · 0.5 · 65535 + 0.5`,
/// truncated.
#[inline(always)]
fn lut_bin(v: f32) -> usize {
    let v = v.clamp(-1.0, 1.0);
    (((v + 1.0) * 0.5) * (LUT_SIZE - 1) as f32 + 0.5) as usize
}

/// Nearest code index of `x` as the CUDA kernel's `dQuantize<0>` finds it: a 7-step binary
/// search from pivot 127, then a comparison with the midpoint towards the last bracket; a value
/// on that midpoint stays at the pivot. NaN yields 0.
#[inline]
pub fn dynamic_index_cuda(code: &[f32; 256], x: f32) -> u8 {
    let mut pivot = 127usize;
    let mut upper_pivot = 255usize;
    let mut lower_pivot = 0usize;
    let mut lower = -1.0f32;
    let mut upper = 1.0f32;
    let mut val = code[pivot];
    let mut step = 64usize;
    while step > 0 {
        if x > val {
            lower_pivot = pivot;
            lower = val;
            pivot += step;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= step;
        }
        val = code[pivot];
        step >>= 1;
    }
    if upper_pivot == 255 {
        upper = code[upper_pivot];
    }
    if lower_pivot == 0 {
        lower = code[lower_pivot];
    }
    // All pivots stay within 0..=255.
    let pick = if x > val {
        if x > (upper + val) * 0.5 { upper_pivot } else { pivot }
    } else if x < (lower + val) * 0.5 {
        lower_pivot
    } else {
        pivot
    };
    pick as u8
}

/// Blockwise 8-bit quantization with the dynamic code (bitsandbytes' `quantize_blockwise`).
///
/// Input `x: [n]` (finite), output `(codes: [n], absmax: [⌈n / blocksize⌉])`. A block whose
/// maximum is 0 stores codes 0 on both implementations.
pub fn quantize_dynamic(input: &[f32], blocksize: usize, kernel: BnbKernel) -> (Vec<u8>, Vec<f32>) {
    let code = dynamic_code();
    let blocks = input.len().div_ceil(blocksize);
    let mut codes = vec![0u8; input.len()];
    let mut absmax = vec![0.0f32; blocks];
    codes.par_chunks_mut(blocksize).zip(input.par_chunks(blocksize)).zip(absmax.par_iter_mut()).for_each(|((q, x), a)| {
        match kernel {
            BnbKernel::Cuda => {
                // Fast math: MUFU.RCP reciprocal, subnormals flushed.
                let m = x.iter().fold(0.0f32, |m, v| m.max(ftz(*v).abs()));
                *a = m;
                let inv = cuda_rcp(m);
                for (qi, &xi) in q.iter_mut().zip(x) {
                    *qi = dynamic_index_cuda(code, ftz(ftz(xi) * inv));
                }
            }
            BnbKernel::Cpu => {
                let m = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                *a = m;
                if m == 0.0 {
                    q.fill(0);
                } else {
                    let lut = dynamic_lut();
                    let inv = 1.0 / m;
                    for (qi, &xi) in q.iter_mut().zip(x) {
                        *qi = lut[lut_bin(xi * inv)];
                    }
                }
            }
        }
    });
    (codes, absmax)
}

/// Blockwise 8-bit dequantization: `out[i] = code[codes[i]] · absmax[i / blocksize]` in f32.
///
/// `codes.len() == out.len()` and `absmax.len() == ⌈out.len() / blocksize⌉` are the caller's
/// invariant (checked where the state is built).
pub fn dequantize_blockwise_into(codes: &[u8], absmax: &[f32], code: &[f32; 256], blocksize: usize, out: &mut [f32]) {
    out.par_chunks_mut(blocksize).zip(codes.par_chunks(blocksize)).zip(absmax.par_iter()).for_each(|((o, q), &a)| {
        for (oi, &qi) in o.iter_mut().zip(q) {
            *oi = code[usize::from(qi)] * a;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_code_is_sorted_signed_and_ends_at_one() {
        let c = dynamic_code();
        assert!(c.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(c[127], 0.0);
        assert_eq!(c[255], 1.0);
        for i in 0..127 {
            assert_eq!(c[i], -c[254 - i]);
        }
    }

    #[test]
    fn cuda_search_returns_each_code_for_itself() {
        let c = dynamic_code();
        for (i, &v) in c.iter().enumerate() {
            assert_eq!(usize::from(dynamic_index_cuda(c, v)), i);
        }
        assert_eq!(dynamic_index_cuda(c, f32::NAN), 0);
    }

    #[test]
    fn lut_agrees_with_exact_search_away_from_the_dense_centre() {
        // The lookup table resolves codes farther apart than its bin width (2 / 65535).
        let c = dynamic_code();
        let lut = dynamic_lut();
        for (i, &v) in c.iter().enumerate() {
            if v.abs() > 0.05 {
                assert_eq!(usize::from(lut[lut_bin(v)]), i, "code {i} = {v}");
            }
        }
    }

    #[test]
    fn zero_block_stores_zero_absmax_and_code_zero() {
        for kernel in [BnbKernel::Cuda, BnbKernel::Cpu] {
            let (q, a) = quantize_dynamic(&[0.0; 300], 256, kernel);
            assert_eq!(a, vec![0.0, 0.0]);
            assert!(q.iter().all(|&v| v == 0));
        }
    }
}
