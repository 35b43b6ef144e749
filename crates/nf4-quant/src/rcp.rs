//! The CUDA kernels' fast-math arithmetic: bitsandbytes builds with `--use_fast_math`, so
//! `1.0f / absmax` compiles to a bare `MUFU.RCP` (no refinement) and subnormals flush to zero.
//!
//! `MUFU.RCP` returns the IEEE round-to-nearest reciprocal or a neighbour one ulp away; which, for
//! a normal input, depends only on the input's mantissa. Measured on an H200 (sm_90) over all
//! 2^23 mantissas: 13.2 % differ. This module carries the difference for the mantissas that bf16
//! and f16 values can have (low 13 bits zero, 1024 of them), which covers every absmax of a bf16
//! or f16 weight; for other f32 mantissas it returns the IEEE reciprocal. The tables are
//! printed by `tests/fixtures/mufu_rcp/make_table.py`; the `fp4_bf16_rcp_probe_b64` codec fixture
//! (one block per bf16 mantissa) checks them against bitsandbytes on CUDA.

/// `k` such that `MUFU.RCP(1 + k/1024) = RN(1/(1 + k/1024)) + 1 ulp`.
const RCP_PLUS: [u16; 90] = [
    11, 17, 18, 20, 48, 91, 97, 98, 104, 105, 113, 138, 147, 148, 153, 203, 204, 209, 225, 226, 252, 260, 296, 298, 304, 305, 346, 371,
    386, 395, 396, 403, 408, 409, 417, 425, 439, 449, 453, 454, 458, 467, 481, 488, 498, 505, 507, 519, 520, 521, 528, 531, 543, 547, 563,
    564, 627, 647, 648, 650, 651, 667, 675, 676, 687, 700, 701, 724, 728, 785, 786, 787, 789, 805, 807, 813, 823, 872, 874, 876, 878, 893,
    920, 923, 928, 944, 968, 987, 988, 997,
];

/// `k` such that `MUFU.RCP(1 + k/1024) = RN(1/(1 + k/1024)) - 1 ulp`.
const RCP_MINUS: [u16; 40] = [
    6, 14, 32, 46, 62, 70, 77, 86, 87, 88, 126, 127, 135, 160, 176, 179, 214, 219, 221, 274, 287, 325, 349, 401, 415, 443, 445, 473, 474,
    558, 614, 751, 783, 950, 954, 956, 957, 965, 1010, 1016,
];

/// Flushes a subnormal to zero (keeping the sign), as fast-math CUDA code does.
#[inline(always)]
pub fn ftz(v: f32) -> f32 {
    if v.abs() < f32::MIN_POSITIVE { 0.0f32.copysign(v) } else { v }
}

/// `1.0f / a` as bitsandbytes' CUDA kernels compute it (`MUFU.RCP`, flush to zero).
#[inline]
pub fn cuda_rcp(a: f32) -> f32 {
    let a = ftz(a);
    let r = ftz(1.0 / a);
    if !a.is_normal() || !r.is_normal() {
        return r;
    }
    let mantissa = a.to_bits() & 0x007f_ffff;
    if mantissa & 0x1fff != 0 {
        return r;
    }
    // mantissa >> 13 < 1024 fits u16.
    let k = (mantissa >> 13) as u16;
    if RCP_PLUS.binary_search(&k).is_ok() {
        f32::from_bits(r.to_bits() + 1)
    } else if RCP_MINUS.binary_search(&k).is_ok() {
        f32::from_bits(r.to_bits() - 1)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_disjoint() {
        assert!(RCP_PLUS.windows(2).all(|w| w[0] < w[1]));
        assert!(RCP_MINUS.windows(2).all(|w| w[0] < w[1]));
        assert!(RCP_PLUS.iter().all(|k| RCP_MINUS.binary_search(k).is_err()));
    }

    #[test]
    fn differs_from_ieee_by_at_most_one_ulp_and_scales_with_the_exponent() {
        for k in 0..1024u32 {
            let a = f32::from_bits(0x3f80_0000 | (k << 13));
            let ieee = 1.0 / a;
            let ours = cuda_rcp(a);
            assert!((ours.to_bits() as i64 - ieee.to_bits() as i64).abs() <= 1);
            // Same correction at another exponent.
            let b = a * 0.0625;
            assert_eq!(cuda_rcp(b), ours * 16.0);
        }
        assert_eq!(cuda_rcp(0.0), f32::INFINITY);
        assert_eq!(cuda_rcp(1e-40), f32::INFINITY);
        assert_eq!(ftz(-1e-45), 0.0);
        assert!(ftz(-1e-45).is_sign_negative());
    }
}
