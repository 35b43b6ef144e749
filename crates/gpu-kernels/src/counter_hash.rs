//! A counter-based hash: 32 uniform bits for element `index` under a 64-bit `seed`, computed
//! alike on the host and in kernels (u32 arithmetic), so that random choices made per element
//! on the device (dropout masks, stochastic rounding) can be regenerated and checked anywhere.
//!
//! `h = fmix(fmix(index · 0x9E3779B1 ⊕ seed_lo) ⊕ seed_hi)`, `fmix` murmur3's 32-bit finalizer.

/// murmur3's 32-bit finalizer.
pub fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// The 32 hash bits of element `index` under `seed`.
pub fn counter_hash(seed: u64, index: u32) -> u32 {
    fmix(fmix(index.wrapping_mul(0x9E37_79B1) ^ seed as u32) ^ (seed >> 32) as u32)
}
