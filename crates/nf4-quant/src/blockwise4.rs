//! Blockwise 4-bit quantization and dequantization (bitsandbytes' `quantize_4bit` /
//! `dequantize_4bit`), on plain slices.
//!
//! For `x: [n]` and blocksize `B`, block `b` covers `x[bB .. min((b+1)B, n)]` (the last block may
//! be partial) and stores `absmax[b] = max |x|` (f32). Each value becomes a nibble
//! `q = index(x · (1 / absmax[b]))`; two nibbles share a byte, the first (even index) in the high
//! half: `byte[j] = q[2j] << 4 | q[2j+1]`. An odd `n` pads the last byte's low nibble with the
//! code of 0. Decoding is `code[q] · absmax[b]` in f32, rounded afterwards to bf16/f16 if asked
//! (round to nearest even, as bitsandbytes does).

use half::{bf16, f16};
use rayon::prelude::*;

use crate::code::{NF4_THRESHOLDS_CPU, NF4_THRESHOLDS_CUDA, fp4_index_cpu, fp4_index_cuda, nf4_index};
use crate::config::{BnbKernel, QuantType};
use crate::error::{Error, Result};
use crate::rcp::{cuda_rcp, ftz};

/// The CPU implementation's floor on a block's absmax before taking its reciprocal
/// (`absmax.clamp(min=1e-38)`, an f32 subnormal).
const CPU_ABSMAX_FLOOR: f32 = 1e-38;

/// Blocks handed to one rayon task; keeps tasks around 64 KiB of input.
fn blocks_per_task(blocksize: usize) -> usize {
    (16_384 / blocksize).max(1)
}

/// Returns the first non-finite value as an error naming `what` and its flat index.
pub fn check_finite<T: Copy + Sync>(values: &[T], to_f32: impl Fn(T) -> f32 + Sync, what: &str) -> Result<()> {
    const CHUNK: usize = 1 << 15;
    let bad = values.par_chunks(CHUNK).enumerate().find_map_first(|(c, chunk)| {
        if chunk.iter().all(|&v| to_f32(v).is_finite()) {
            None
        } else {
            chunk.iter().position(|&v| !to_f32(v).is_finite()).map(|i| c * CHUNK + i)
        }
    });
    match bad {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite { what: what.to_string(), index, value: to_f32(values[index]) }),
    }
}

/// Quantizes `input` (already checked finite) to packed nibbles and per-block absmax.
///
/// Returns `(packed: [⌈n/2⌉], absmax: [⌈n/B⌉])`. `blocksize` must be even (all valid
/// blocksizes are), so blocks start on byte boundaries.
pub fn quantize<T: Copy + Sync>(
    input: &[T],
    to_f32: impl Fn(T) -> f32 + Sync,
    quant_type: QuantType,
    blocksize: usize,
    kernel: BnbKernel,
) -> (Vec<u8>, Vec<f32>) {
    // One monomorphic inner loop per (code, implementation), so the rounding inlines.
    match (quant_type, kernel) {
        (QuantType::Nf4, BnbKernel::Cuda) => quantize_with(input, to_f32, blocksize, kernel, |s| nf4_index(&NF4_THRESHOLDS_CUDA, s)),
        (QuantType::Nf4, BnbKernel::Cpu) => quantize_with(input, to_f32, blocksize, kernel, |s| nf4_index(&NF4_THRESHOLDS_CPU, s)),
        (QuantType::Fp4, BnbKernel::Cuda) => quantize_with(input, to_f32, blocksize, kernel, fp4_index_cuda),
        (QuantType::Fp4, BnbKernel::Cpu) => quantize_with(input, to_f32, blocksize, kernel, fp4_index_cpu),
    }
}

fn quantize_with<T: Copy + Sync>(
    input: &[T],
    to_f32: impl Fn(T) -> f32 + Sync,
    blocksize: usize,
    kernel: BnbKernel,
    index: impl Fn(f32) -> u8 + Sync,
) -> (Vec<u8>, Vec<f32>) {
    let n = input.len();
    let blocks = n.div_ceil(blocksize);
    let full_blocks = n / blocksize;
    let mut packed = vec![0u8; n.div_ceil(2)];
    let mut absmax = vec![0.0f32; blocks];
    let per_task = blocks_per_task(blocksize);
    packed
        .par_chunks_mut(blocksize / 2 * per_task)
        .zip(input.par_chunks(blocksize * per_task))
        .zip(absmax.par_chunks_mut(per_task))
        .enumerate()
        .for_each(|(task, ((bytes, x), amax))| {
            let first_block = task * per_task;
            for (k, ((out, xb), a)) in bytes.chunks_mut(blocksize / 2).zip(x.chunks(blocksize)).zip(amax.iter_mut()).enumerate() {
                let partial = first_block + k >= full_blocks;
                *a = quantize_block(xb, &to_f32, &index, kernel, partial, out);
            }
        });
    (packed, absmax)
}

/// Quantizes one block into `out` (`⌈len/2⌉` bytes) and returns the absmax to store.
#[inline]
fn quantize_block<T: Copy>(
    x: &[T],
    to_f32: &impl Fn(T) -> f32,
    index: &impl Fn(f32) -> u8,
    kernel: BnbKernel,
    partial: bool,
    out: &mut [u8],
) -> f32 {
    match kernel {
        BnbKernel::Cuda => {
            // kQuantizeBlockwise (fast math): scale by MUFU.RCP(absmax), flush subnormals; the
            // pad value is 0 · inv.
            let m = x.iter().fold(0.0f32, |m, &v| m.max(ftz(to_f32(v)).abs()));
            let inv = cuda_rcp(m);
            pack(x, out, |v| ftz(ftz(to_f32(v)) * inv), index, index(0.0 * inv));
            m
        }
        BnbKernel::Cpu => {
            let m = x.iter().fold(0.0f32, |m, &v| m.max(to_f32(v).abs()));
            if partial {
                // The partial tail block divides by the clamped absmax and stores that value.
                let am = m.max(CPU_ABSMAX_FLOOR);
                pack(x, out, |v| to_f32(v) / am, index, index(0.0));
                am
            } else {
                // backends/default quantize_4bit: A * (1 / absmax.clamp(min=1e-38)), clamped to
                // [-1, 1] (which never changes the bucket); the pad is 0 after scaling.
                let inv = 1.0 / m.max(CPU_ABSMAX_FLOOR);
                pack(x, out, |v| to_f32(v) * inv, index, index(0.0));
                m
            }
        }
    }
}

/// Scales and rounds `x` in chunks (so the compiler can vectorize the comparisons), then packs
/// nibbles two per byte, high nibble first; `pad` fills an odd tail.
#[inline(always)]
fn pack<T: Copy>(x: &[T], out: &mut [u8], scale: impl Fn(T) -> f32, index: &impl Fn(f32) -> u8, pad: u8) {
    const CHUNK: usize = 64;
    let mut q = [0u8; CHUNK];
    for (xc, oc) in x.chunks(CHUNK).zip(out.chunks_mut(CHUNK / 2)) {
        for (qi, &v) in q.iter_mut().zip(xc) {
            *qi = index(scale(v));
        }
        let len = xc.len();
        for (j, o) in oc.iter_mut().enumerate() {
            let lo = if 2 * j + 1 < len { q[2 * j + 1] } else { pad };
            *o = (q[2 * j] << 4) | lo;
        }
    }
}

/// Decodes packed nibbles: `out[i] = code[q_i] · absmax[i / B]` (f32), then `convert`.
///
/// Requires `packed.len() == ⌈out.len()/2⌉` and `absmax.len() == ⌈out.len()/B⌉` (checked by the
/// callers that build quant states).
pub fn dequantize_into<T: Send>(
    packed: &[u8],
    absmax: &[f32],
    quant_type: QuantType,
    blocksize: usize,
    out: &mut [T],
    convert: impl Fn(f32) -> T + Sync,
) {
    let code = quant_type.decode_table();
    let per_task = blocks_per_task(blocksize);
    out.par_chunks_mut(blocksize * per_task).zip(packed.par_chunks(blocksize / 2 * per_task)).zip(absmax.par_chunks(per_task)).for_each(
        |((o, p), a)| {
            for ((ob, pb), &scale) in o.chunks_mut(blocksize).zip(p.chunks(blocksize / 2)).zip(a) {
                let mut pairs = ob.chunks_exact_mut(2);
                for (pair, &byte) in (&mut pairs).zip(pb) {
                    pair[0] = convert(code[usize::from(byte >> 4)] * scale);
                    pair[1] = convert(code[usize::from(byte & 0x0f)] * scale);
                }
                if let ([last], Some(&byte)) = (pairs.into_remainder(), pb.last()) {
                    *last = convert(code[usize::from(byte >> 4)] * scale);
                }
            }
        },
    );
}

/// f32 → f32 (identity), for [`dequantize_into`].
pub fn to_f32(v: f32) -> f32 {
    v
}

/// f32 → bf16, round to nearest even.
pub fn to_bf16(v: f32) -> bf16 {
    bf16::from_f32(v)
}

/// f32 → f16, round to nearest even.
pub fn to_f16(v: f32) -> f16 {
    f16::from_f32(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::NF4_CODE;

    fn roundtrip(x: &[f32], qt: QuantType, bs: usize, kernel: BnbKernel) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
        let (p, a) = quantize(x, to_f32, qt, bs, kernel);
        let mut out = vec![0.0f32; x.len()];
        dequantize_into(&p, &a, qt, bs, &mut out, to_f32);
        (p, a, out)
    }

    #[test]
    fn code_values_scaled_by_absmax_round_trip_exactly() {
        // A block holding each NF4 code times 2 (absmax 2) decodes to itself.
        let x: Vec<f32> = NF4_CODE.iter().map(|c| c * 2.0).collect();
        let (p, a, out) = roundtrip(&x, QuantType::Nf4, 32, BnbKernel::Cuda);
        assert_eq!(a, vec![2.0]);
        assert_eq!(p, vec![0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(out, x);
    }

    #[test]
    fn odd_length_pads_the_low_nibble_with_the_code_of_zero() {
        let x = [1.0f32, -1.0, 0.5];
        let (p, a, out) = roundtrip(&x, QuantType::Nf4, 64, BnbKernel::Cuda);
        assert_eq!(a, vec![1.0]);
        assert_eq!(p, vec![0xf0, 0xc7]);
        assert_eq!(out, [1.0, -1.0, NF4_CODE[12]]);
    }

    #[test]
    fn zero_blocks_differ_between_implementations_but_decode_to_zero() {
        let x = vec![0.0f32; 100];
        let (pc, ac, oc) = roundtrip(&x, QuantType::Nf4, 64, BnbKernel::Cuda);
        assert!(pc.iter().all(|&b| b == 0x00));
        assert_eq!(ac, vec![0.0, 0.0]);
        let (pp, ap, op) = roundtrip(&x, QuantType::Nf4, 64, BnbKernel::Cpu);
        assert!(pp.iter().all(|&b| b == 0x77));
        assert_eq!(ap, vec![0.0, CPU_ABSMAX_FLOOR]);
        assert!(oc.iter().chain(&op).all(|&v| v == 0.0));
    }

    #[test]
    fn non_finite_input_names_its_index() {
        let mut x = vec![0.5f32; 70];
        x[67] = f32::NEG_INFINITY;
        match check_finite(&x, to_f32, "w") {
            Err(Error::NonFinite { what, index, value }) => {
                assert_eq!((what.as_str(), index), ("w", 67));
                assert_eq!(value, f32::NEG_INFINITY);
            }
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
}
