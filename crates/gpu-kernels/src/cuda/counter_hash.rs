//! [`crate::counter_hash::counter_hash`] as a cube function (u32 arithmetic wraps on the device
//! as `wrapping_mul` does on the host).

use cubecl::prelude::*;

#[cube]
fn fmix(h: u32) -> u32 {
    let h = h ^ (h >> 16u32);
    let h = h * 0x85EB_CA6Bu32;
    let h = h ^ (h >> 13u32);
    let h = h * 0xC2B2_AE35u32;
    h ^ (h >> 16u32)
}

/// The 32 hash bits of element `index` under the seed `seed_lo | seed_hi << 32`.
#[cube]
pub(crate) fn counter_hash(index: usize, seed_lo: u32, seed_hi: u32) -> u32 {
    fmix(fmix((u32::cast_from(index) * 0x9E37_79B1u32) ^ seed_lo) ^ seed_hi)
}
