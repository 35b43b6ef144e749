//! Stochastic rounding of f32 to bf16, for optimizer states kept in bf16.
//!
//! A bf16 keeps 8 significant bits, so an update smaller than half a unit in the last place
//! (relative 2⁻⁹–2⁻⁸) is lost by rounding to nearest: AdamW's second moment, which moves by
//! `(1 − β₂) = 10⁻³` of itself per step, would never decay. Stochastic rounding rounds `x` up
//! to the next bf16 with probability equal to its distance from the lower one (in units of the
//! gap), so `E[round(x)] = x` and small updates survive on average.
//!
//! With `b` the f32 bits of `x` and `r` 16 uniform bits: `round(x) = bf16((b + r) & 0xFFFF0000)`
//! (magnitude bits, so negative values round away from zero with the same probability); NaN
//! and ±∞ convert as usual. The CUDA kernels compute the same from the same `r`.

use half::bf16;

/// `x` rounded to a bf16 neighbour, up with probability (distance to the lower) / gap, where
/// `r`'s low 16 bits are the uniform draw.
pub fn to_bf16_stochastic(x: f32, r: u32) -> bf16 {
    let b = x.to_bits();
    if b & 0x7F80_0000 == 0x7F80_0000 {
        return bf16::from_f32(x);
    }
    bf16::from_bits((b.wrapping_add(r & 0xFFFF) >> 16) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values_stay_and_the_mean_is_the_value() {
        for x in [1.0f32, -3.5, 0.0, 1e-30] {
            let exact = bf16::from_f32(x);
            assert!((0..1000u32).all(|r| to_bf16_stochastic(exact.to_f32(), r * 65) == exact), "{x}");
        }
        // A third of a gap above 1 (gap 2⁻⁷): up a third of the time; the mean is the value.
        for x in [1.0f32 + 1.0 / 384.0, -(1.0f32 + 1.0 / 384.0), 3.0e-3] {
            let n = 1 << 16;
            let mean: f64 = (0..n).map(|r| f64::from(to_bf16_stochastic(x, r).to_f32())).sum::<f64>() / f64::from(n);
            let gap = f64::from(x.abs()) * 2f64.powi(-7);
            assert!((mean - f64::from(x)).abs() < gap * 1e-3, "{x}: mean {mean}");
            let lo = bf16::from_bits((x.to_bits() >> 16) as u16).to_f32();
            assert!((0..n).all(|r| {
                let y = to_bf16_stochastic(x, r).to_f32();
                y == lo || (y - lo).abs() > 0.0 && (y - lo).abs() as f64 <= gap * 2.0
            }));
        }
        assert!(to_bf16_stochastic(f32::NAN, 0xFFFF).is_nan());
        assert_eq!(to_bf16_stochastic(f32::INFINITY, 0xFFFF), bf16::INFINITY);
    }
}
