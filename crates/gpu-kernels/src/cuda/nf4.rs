//! The fused NF4/FP4 dequantization kernel (CubeCL, compiled by NVRTC).
//!
//! A unit decodes 32-bit words of packed bytes — 8 values each, all in one scale block since
//! every blocksize is a multiple of 8 — and writes each as 16-byte vectors (8 × bf16/f16 or
//! 2 × 4 × f32); it decodes [`WORDS`] words, a cube's width apart, loading all of them and
//! their scales before its first store. Bytes are read little-endian: byte `j` of the word holds values `2j` (high
//! nibble) and `2j + 1` (low nibble).
//!
//! Bit-exactness: each value is one f32 product `code[q] · scale`, rounded once to the output
//! type. The double-quantized scale `nested_code[c] · nested_absmax + offset` must round the
//! product before the sum, but NVRTC contracts `a · b + c` into an FMA by default. Taking the
//! product in f64 does not stop it (measured on the H200, 2026-11-29: 1029 of 8192 blocks were
//! 1 ulp off — LLVM narrows `(float)((double)a * (double)b)` back to an f32 multiply, which is
//! exact, and then contracts). The product therefore crosses an integer XOR with a kernel
//! argument that is 0 at run time: no compiler can see through it, so the multiply and the add
//! stay separate instructions.

use burn::tensor::{DType, FloatDType, Int, Tensor};
use burn_cubecl::{CubeBackend, tensor::CubeTensor};
use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::nf4::{DeviceScales, PackedNf4};

/// The scale of `block`: its f32 absmax, or with double quantization
/// `nested_code[q] · nested_absmax + offset`, the product rounded to f32 before the sum.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_scale(
    absmax: &[f32],
    qcodes: &[u8],
    nested_code: &[f32],
    block: usize,
    offset: f32,
    zero: u32,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) -> f32 {
    if comptime![double] {
        let q = qcodes[block];
        double_scale(nested_code[usize::cast_from(q)], absmax[block / nested_blocksize], offset, zero)
    } else {
        absmax[block]
    }
}

/// A double-quantized scale from its nested code's value and its nested absmax:
/// `code_value · nested_absmax + offset`, the product rounded to f32 before the sum (as the
/// host codec computes it; `zero` is 0 and keeps the compiler from fusing the two).
#[cube]
pub(crate) fn double_scale(code_value: f32, nested_absmax: f32, offset: f32, zero: u32) -> f32 {
    let product = code_value * nested_absmax;
    // Rounding barrier: `zero` is 0, so this is `product`, rounded to f32, never fused.
    let product = f32::reinterpret(u32::reinterpret(product) ^ zero);
    product + offset
}

/// Words each unit decodes (`KINDLING_DEQUANT=word`: one, the earlier mapping). A cube of `D`
/// units covers `D · WORDS` consecutive words; unit `u` takes words `u, u + D, u + 2D, …` of
/// them, so each of its loads and stores is coalesced across the cube, and its loads are all
/// issued before the first store (four independent reads in flight per unit, not one).
const WORDS: usize = 4;

static ONE_WORD: crate::env_switch::EnvSwitch = crate::env_switch::EnvSwitch::new("KINDLING_DEQUANT", "word");

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn dequant_kernel<F: Float, N: Size>(
    packed: &[u32],
    code: &[f32],
    absmax: &[f32],
    qcodes: &[u8],
    nested_code: &[f32],
    out: &mut [Vector<F, N>],
    offset: f32,
    zero: u32,
    #[comptime] words: usize,
    #[comptime] blocksize: usize,
    #[comptime] nested_blocksize: usize,
    #[comptime] double: bool,
) {
    // The 16 code values in shared memory: the lookups are then no global loads, and the
    // compiler need not order them after this unit's earlier stores.
    let mut table = Shared::<[f32]>::new_slice(16usize);
    let unit = UNIT_POS as usize;
    if unit < 16 {
        table[unit] = code[unit];
    }
    sync_cube();
    let len = packed.len();
    let dim = CUBE_DIM as usize;
    let first = CUBE_POS * dim * words + unit;
    if first >= len {
        terminate!();
    }
    // Loads first: the words (an index past the end reads the last word, never stored) and
    // their scales.
    let mut held = Array::<u32>::new(words);
    let mut scales = Array::<f32>::new(words);
    #[unroll]
    for k in 0..words {
        let t = min(first + k * dim, len - 1);
        held[k] = packed[t];
        scales[k] = block_scale(absmax, qcodes, nested_code, (t * 8) / blocksize, offset, zero, nested_blocksize, double);
    }
    let vs = out.vector_size().comptime();
    let groups = comptime![8 / vs];
    #[unroll]
    for k in 0..words {
        let t = first + k * dim;
        if t < len {
            let word = held[k];
            let scale = scales[k];
            #[unroll]
            for g in 0..groups {
                let mut v = Vector::<F, N>::empty();
                #[unroll]
                for l in 0..vs {
                    let shift = comptime![{
                        let i = g * vs + l;
                        (8 * (i / 2) + if i.is_multiple_of(2) { 4 } else { 0 }) as u32
                    }];
                    let nibble = (word >> shift) & 0xFu32;
                    let value = table[usize::cast_from(nibble)] * scale;
                    v.insert(l, F::cast_from(value));
                }
                out[t * groups + g] = v;
            }
        }
    }
}

fn float_prim(t: &Tensor<1>) -> Option<CubeTensor> {
    t.clone().try_into_primitive::<CubeBackend>().ok()
}

fn int_prim(t: &Tensor<1, Int>) -> Option<CubeTensor> {
    t.clone().try_into_primitive::<CubeBackend>().ok()
}

/// Runs the fused kernel; `None` when `w` does not fit it (bytes not stored as u8, a length
/// that is not a multiple of 8 values, an unsupported dtype), so the caller takes the ops path.
pub(crate) fn dequantize(w: &PackedNf4, dtype: FloatDType) -> Option<Tensor<2>> {
    let [rows, cols] = w.shape;
    let n = rows * cols;
    if !n.is_multiple_of(8) || !w.blocksize.is_multiple_of(8) {
        return None;
    }
    let packed = int_prim(&w.packed)?;
    if packed.dtype != DType::U8 || !packed.is_contiguous() {
        return None;
    }
    let code = float_prim(&w.code)?;
    let (absmax, qcodes, nested_code, nested_blocksize, offset, double) = match &w.scales {
        DeviceScales::Plain(a) => {
            let a = float_prim(a)?;
            (a.clone(), a.clone(), a, 1, 0.0f32, false)
        }
        DeviceScales::Double { codes, nested_absmax, nested_code, nested_blocksize, offset } => {
            let codes = int_prim(codes)?;
            if codes.dtype != DType::U8 {
                return None;
            }
            (float_prim(nested_absmax)?, codes, float_prim(nested_code)?, *nested_blocksize, *offset, true)
        }
    };
    let (out_dtype, elem_size, vector_size) = match dtype {
        FloatDType::BF16 => (DType::BF16, 2, 8),
        FloatDType::F16 => (DType::F16, 2, 8),
        FloatDType::F32 => (DType::F32, 4, 4),
        _ => return None,
    };

    let client = packed.client.clone();
    let words = n / 8;
    let handle: Handle = client.empty(n * elem_size);
    let out = CubeTensor::new_contiguous(client.clone(), packed.device.clone(), [rows, cols].into(), handle.clone(), out_dtype);
    let cube_dim = CubeDim::new_1d(256);
    let per_unit = if ONE_WORD.is_on() { 1 } else { WORDS };
    let cube_count = cubecl::calculate_cube_count_elemwise(&client, words.div_ceil(per_unit), cube_dim);
    let len = |t: &CubeTensor| t.meta.num_elements();
    macro_rules! launch {
        ($f:ty) => {
            // SAFETY: every buffer holds at least the elements given (lengths checked at upload;
            // the output was allocated for n values) and the kernel guards its one data-dependent
            // index range.
            unsafe {
                dequant_kernel::launch_unchecked::<$f>(
                    &client,
                    cube_count,
                    cube_dim,
                    vector_size,
                    BufferArg::from_raw_parts(packed.handle.clone(), words),
                    BufferArg::from_raw_parts(code.handle.clone(), len(&code)),
                    BufferArg::from_raw_parts(absmax.handle.clone(), len(&absmax)),
                    BufferArg::from_raw_parts(qcodes.handle.clone(), len(&qcodes)),
                    BufferArg::from_raw_parts(nested_code.handle.clone(), len(&nested_code)),
                    BufferArg::from_raw_parts(handle, n),
                    offset,
                    0u32,
                    per_unit,
                    w.blocksize,
                    nested_blocksize,
                    double,
                )
            }
        };
    }
    match out_dtype {
        DType::BF16 => launch!(half::bf16),
        DType::F16 => launch!(half::f16),
        _ => launch!(f32),
    }
    Some(Tensor::from_primitive::<CubeBackend>(out))
}
