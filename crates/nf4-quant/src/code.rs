//! The two 4-bit codes (NF4, FP4) and bitsandbytes' rule for picking a code for a scaled value.
//!
//! A 4-bit value is an index `q ∈ 0..16` into a 16-entry code `c`; a block with scale `absmax`
//! decodes to `c[q] · absmax`. Quantization picks `q` for `x / absmax ∈ [-1, 1]` by comparing
//! against fixed decision thresholds (the f32 midpoints between neighbouring codes, or for FP4
//! on CUDA the literals of `dQuantizeFP4`).

use crate::config::{BnbKernel, QuantType};

/// The NF4 code, exactly as bitsandbytes' `get_4bit_type("nf4")` and the CUDA
/// `nf4_dequantization_lut` (index = nibble).
// Digits as bitsandbytes writes them (the rounding of the decimal is part of the reference).
#[allow(clippy::excessive_precision)]
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_430_228_233_34,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

/// The FP4 code as bitsandbytes' `get_4bit_type("fp4")` computes it (and writes as `quant_map`):
/// the values `[0, 0.0625, 8, 12, 4, 6, 2, 3]` (sign bit 3 clear) and their negations, divided in
/// f32 by 12. Entry 8 is +0: the `-0` in bitsandbytes' Python list is the integer zero.
pub const FP4_CODE: [f32; 16] = [
    0.0 / 12.0,
    0.0625 / 12.0,
    8.0 / 12.0,
    1.0, // 12 / 12
    4.0 / 12.0,
    6.0 / 12.0,
    2.0 / 12.0,
    3.0 / 12.0,
    0.0 / 12.0,
    -0.0625 / 12.0,
    -8.0 / 12.0,
    -1.0, // -12 / 12
    -4.0 / 12.0,
    -6.0 / 12.0,
    -2.0 / 12.0,
    -3.0 / 12.0,
];

/// The FP4 values the CUDA kernel decodes to (`fp4_dequantization_lut[q & 7] · sign`): equal to
/// [`FP4_CODE`] except that code 8 decodes to -0.
pub const FP4_DECODE: [f32; 16] = {
    let mut d = FP4_CODE;
    d[8] = -0.0;
    d
};

/// NF4 decision thresholds of the CPU path: `t[i] = (c[i] + c[i+1]) / 2` in f32, the bounds it
/// bucketizes on. A scaled value `x` gets `q = #{i : x > t[i]}`; a value on a threshold takes the
/// lower code.
pub const NF4_THRESHOLDS_CPU: [f32; 15] = midpoints(&NF4_CODE);

/// NF4 decision thresholds of the CUDA comparison tree `dQuantizeNF4`, sorted ascending: the
/// kernel's decimal literals rounded directly to f32 (as the compiler does). Four of them
/// (indices 0, 8, 12, 14) are one ulp from the f32 midpoints, because bitsandbytes' Python code
/// rounds the code values through f64 first.
#[allow(clippy::excessive_precision)]
pub const NF4_THRESHOLDS_CUDA: [f32; 15] = [
    -0.848_096_400_499_343_9,
    -0.610_632_926_225_662_2,
    -0.459_995_269_775_390_6,
    -0.339_679_434_895_515_44,
    -0.234_607_405_960_559_84,
    -0.137_911_733_239_889_14,
    -0.045_525_018_125_772_476,
    0.039_790_149_778_127_67,
    0.120_255_250_483_751_3,
    0.203_521_251_678_466_8,
    0.292_013_771_831_989_3,
    0.389_312_535_524_368_3,
    0.501_663_416_624_069_2,
    0.642_786_920_070_648_2,
    0.861_478_418_111_801_1,
];

/// `torch.argsort` of [`FP4_CODE`] as bitsandbytes' CPU path computes it (ascending; `+0` before
/// `-0`): sorted position → code index.
pub const FP4_SORT_ORDER: [u8; 16] = [11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3];

/// Midpoints between neighbouring FP4 codes in sorted order (f32), the CPU path's bounds.
pub const FP4_SORTED_MIDPOINTS: [f32; 15] = {
    let mut sorted = [0.0f32; 16];
    let mut i = 0;
    while i < 16 {
        sorted[i] = FP4_CODE[FP4_SORT_ORDER[i] as usize];
        i += 1;
    }
    midpoints(&sorted)
};

/// Magnitude thresholds of the CUDA FP4 tree `dQuantizeFP4`, sorted ascending (the literals as
/// written in the kernel, which differ from the f32 midpoints by a few ulps).
pub const FP4_CUDA_THRESHOLDS: [f32; 7] = [0.002_604_17, 0.085_937_5, 0.208_333_33, 0.291_666_67, 0.416_666_7, 0.583_333, 0.833_333_3];

/// Code bits (without sign) for each magnitude rank of the CUDA FP4 tree.
const FP4_CUDA_MAGNITUDE_BITS: [u8; 8] = [0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011];

const fn midpoints<const N: usize, const M: usize>(code: &[f32; N]) -> [f32; M] {
    let mut out = [0.0f32; M];
    let mut i = 0;
    while i < M {
        out[i] = (code[i] + code[i + 1]) / 2.0;
        i += 1;
    }
    out
}

impl QuantType {
    /// The 16-entry code (index = nibble) as bitsandbytes stores it in `quant_map`.
    pub fn code(self) -> &'static [f32; 16] {
        match self {
            QuantType::Nf4 => &NF4_CODE,
            QuantType::Fp4 => &FP4_CODE,
        }
    }

    /// The 16 values nibbles decode to, as the CUDA kernels decode them (differs from
    /// [`QuantType::code`] only in the sign of FP4's code 8, which decodes to -0; bitsandbytes'
    /// portable CPU kernel decodes it to +0).
    pub fn decode_table(self) -> &'static [f32; 16] {
        match self {
            QuantType::Nf4 => &NF4_CODE,
            QuantType::Fp4 => &FP4_DECODE,
        }
    }

    /// Half the widest gap between neighbouring code values: the largest rounding error of a
    /// scaled value in [-1, 1], so `|x - decode(quantize(x))| ≤ max_half_gap() · absmax`.
    pub fn max_half_gap(self) -> f32 {
        let mut sorted = *self.code();
        sorted.sort_by(f32::total_cmp);
        sorted.windows(2).map(|w| (w[1] - w[0]) / 2.0).fold(0.0, f32::max)
    }
}

/// Code index of `x` under NF4 for sorted thresholds `t`: `#{i : x > t[i]}`. This is what the
/// CUDA comparison tree computes (a binary search over sorted thresholds) and what the CPU
/// `bucketize` computes. NaN compares false everywhere and yields 0, as on CUDA.
#[inline(always)]
pub fn nf4_index(thresholds: &[f32; 15], x: f32) -> u8 {
    let mut q = 0u8;
    for &t in thresholds {
        q += u8::from(x > t);
    }
    q
}

/// Code index of `x` under FP4 as the CUDA kernel picks it: sign bit from `x < 0`, magnitude
/// rank from the tree's literals. NaN yields 0.
#[inline(always)]
pub fn fp4_index_cuda(x: f32) -> u8 {
    let sign = if x < 0.0 { 0b1000 } else { 0 };
    let a = x.abs();
    let mut rank = 0usize;
    for t in FP4_CUDA_THRESHOLDS {
        rank += usize::from(a > t);
    }
    FP4_CUDA_MAGNITUDE_BITS[rank] | sign
}

/// Code index of `x` under FP4 as bitsandbytes' CPU path picks it: `bucketize` on the sorted
/// midpoints (a value on a midpoint goes to the lower sorted code), mapped through the sort order.
#[inline(always)]
pub fn fp4_index_cpu(x: f32) -> u8 {
    let mut pos = 0usize;
    for t in FP4_SORTED_MIDPOINTS {
        pos += usize::from(t < x);
    }
    FP4_SORT_ORDER[pos]
}

/// Code index of an already scaled value for the given type and implementation.
#[inline(always)]
pub fn index_of(quant_type: QuantType, kernel: BnbKernel, x: f32) -> u8 {
    match (quant_type, kernel) {
        (QuantType::Nf4, BnbKernel::Cuda) => nf4_index(&NF4_THRESHOLDS_CUDA, x),
        (QuantType::Nf4, BnbKernel::Cpu) => nf4_index(&NF4_THRESHOLDS_CPU, x),
        (QuantType::Fp4, BnbKernel::Cuda) => fp4_index_cuda(x),
        (QuantType::Fp4, BnbKernel::Cpu) => fp4_index_cpu(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_literals_are_within_one_ulp_of_the_midpoints() {
        let mut differing = Vec::new();
        for (i, (m, l)) in NF4_THRESHOLDS_CPU.iter().zip(NF4_THRESHOLDS_CUDA).enumerate() {
            let ulps = (m.to_bits() as i64 - l.to_bits() as i64).abs();
            assert!(ulps <= 1, "threshold {i}: {m} vs {l}");
            if ulps == 1 {
                differing.push(i);
            }
        }
        assert_eq!(differing, vec![0, 8, 12, 14]);
    }

    #[test]
    fn every_code_value_maps_to_its_own_index() {
        for (i, &c) in NF4_CODE.iter().enumerate() {
            assert_eq!(usize::from(nf4_index(&NF4_THRESHOLDS_CPU, c)), i);
            assert_eq!(usize::from(nf4_index(&NF4_THRESHOLDS_CUDA, c)), i);
        }
        for (i, &c) in FP4_CODE.iter().enumerate() {
            // Codes 0 and 8 are both zero; both implementations send exact zero to code 0.
            let want = if i == 8 { 0 } else { i };
            assert_eq!(usize::from(fp4_index_cuda(c)), want, "cuda {i}");
            assert_eq!(usize::from(fp4_index_cpu(c)), want, "cpu {i}");
        }
    }

    #[test]
    fn thresholds_round_down_on_ties() {
        for t in [&NF4_THRESHOLDS_CPU, &NF4_THRESHOLDS_CUDA] {
            for (i, &v) in t.iter().enumerate() {
                assert_eq!(usize::from(nf4_index(t, v)), i);
                assert_eq!(usize::from(nf4_index(t, v.next_up())), i + 1);
            }
        }
    }

    #[test]
    fn nan_takes_code_zero_like_the_cuda_tree() {
        assert_eq!(nf4_index(&NF4_THRESHOLDS_CUDA, f32::NAN), 0);
        assert_eq!(fp4_index_cuda(f32::NAN), 0);
    }

    #[test]
    fn max_half_gap_is_the_widest_neighbour_gap() {
        // NF4's widest gap is between -1 and -0.696...; FP4's between 8/12 and 12/12.
        assert_eq!(QuantType::Nf4.max_half_gap(), (NF4_CODE[1] - NF4_CODE[0]) / 2.0);
        assert_eq!(QuantType::Fp4.max_half_gap(), (1.0 - 8.0 / 12.0) / 2.0);
    }
}
