//! Property tests of the codec: error bounds, zero blocks, non-finite inputs, arbitrary lengths
//! and the HF layout round trip.

use std::collections::HashMap;

use nf4_quant::config::VALID_BLOCKSIZES;
use nf4_quant::{Absmax, BnbKernel, Error, HfTensor, Nf4Tensor, QuantConfig, QuantType};
use proptest::prelude::*;

fn config() -> impl Strategy<Value = QuantConfig> {
    (
        prop_oneof![Just(QuantType::Nf4), Just(QuantType::Fp4)],
        prop::sample::select(VALID_BLOCKSIZES.to_vec()),
        any::<bool>(),
        prop_oneof![Just(BnbKernel::Cuda), Just(BnbKernel::Cpu)],
    )
        .prop_map(|(quant_type, blocksize, double_quant, kernel)| QuantConfig { quant_type, blocksize, double_quant, kernel })
}

/// Finite values over a wide dynamic range, with exact zeros.
fn values(max_len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(prop_oneof![8 => -1.0e3f32..1.0e3, 1 => -1.0e-3f32..1.0e-3, 1 => Just(0.0f32)], 1..max_len)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Every value decodes within half the widest code gap times its block's scale (plus the
    /// rounding of the scaling itself); with double quant, plus the error of the decoded scale.
    #[test]
    fn round_trip_error_is_bounded_per_block(x in values(3000), cfg in config()) {
        let t = Nf4Tensor::quantize(&x, &[x.len()], &cfg).expect("finite input quantizes");
        let back = t.dequantize_to_vec();
        let exact: Vec<f32> = x.chunks(cfg.blocksize).map(|b| b.iter().fold(0.0f32, |m, v| m.max(v.abs()))).collect();
        let decoded = t.absmax().to_f32();
        let half_gap = cfg.quant_type.max_half_gap();
        for (i, (a, b)) in x.iter().zip(&back).enumerate() {
            let blk = i / cfg.blocksize;
            let (true_max, scale) = (exact[blk], decoded[blk]);
            let bound = half_gap * scale.abs() + (true_max - scale).abs() + 4.0 * f32::EPSILON * true_max;
            prop_assert!((a - b).abs() <= bound, "value {} at {}: {} decodes to {} (bound {})", a, i, a, b, bound);
        }
        if let Absmax::Plain(a) = t.absmax() {
            for (blk, (&got, &want)) in a.iter().zip(&exact).enumerate() {
                // The CPU implementation floors a partial tail block's absmax at 1e-38.
                let want = if cfg.kernel == BnbKernel::Cpu && x.len() % cfg.blocksize != 0 && blk + 1 == a.len() { want.max(1e-38) } else { want };
                prop_assert_eq!(got.to_bits(), want.to_bits());
            }
        }
    }

    /// All-zero blocks decode to exact zeros, whatever their neighbours — except on CUDA with
    /// double quant: there a zero block gets code 0 (`0 · ∞ = NaN`), i.e. `-1 · a'`, and the
    /// double-quantized scale `a'` of a zero block is only approximately zero (bitsandbytes does
    /// the same), so those values are bounded by `|a'|` instead.
    #[test]
    fn zero_blocks_decode_to_zero(
        blocks in prop::collection::vec(any::<bool>(), 1..12),
        tail in 0usize..64,
        cfg in config(),
    ) {
        let bs = cfg.blocksize.min(256);
        let cfg = QuantConfig { blocksize: bs, ..cfg };
        let mut x = Vec::new();
        for (b, zero) in blocks.iter().enumerate() {
            x.extend((0..bs).map(|i| if *zero { 0.0 } else { ((b * bs + i) % 17) as f32 - 8.0 }));
        }
        x.extend(std::iter::repeat_n(0.0f32, tail));
        let t = Nf4Tensor::quantize(&x, &[x.len()], &cfg).expect("quantize");
        let back = t.dequantize_to_vec();
        let scales = t.absmax().to_f32();
        let cuda_dq = cfg.kernel == BnbKernel::Cuda && cfg.double_quant;
        let zero_blocks = blocks.iter().enumerate().filter(|(_, z)| **z).map(|(b, _)| b);
        let tail_block = (tail > 0).then_some(blocks.len());
        for b in zero_blocks.chain(tail_block) {
            let end = ((b + 1) * bs).min(x.len());
            for v in &back[b * bs..end] {
                if cuda_dq {
                    prop_assert!(v.abs() <= scales[b].abs(), "block {}: {} vs scale {}", b, v, scales[b]);
                } else {
                    prop_assert_eq!(*v, 0.0, "block {}", b);
                }
            }
        }
    }

    /// NaN or ±inf anywhere is refused with the index of the first one.
    #[test]
    fn non_finite_values_are_refused_with_their_index(
        x in values(2000),
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)],
        cfg in config(),
    ) {
        let mut x = x;
        let i = at.index(x.len());
        x[i] = bad;
        match Nf4Tensor::quantize(&x, &[x.len()], &cfg) {
            Err(Error::NonFinite { index, .. }) => prop_assert_eq!(index, i),
            other => prop_assert!(false, "expected NonFinite at {}, got {:?}", i, other),
        }
    }

    /// Any length and shape: the layout invariants hold and the HF tensors read back unchanged.
    #[test]
    fn arbitrary_shapes_round_trip_through_the_hf_layout(
        rows in 1usize..40,
        cols in 1usize..300,
        cfg in config(),
        seed in any::<u32>(),
    ) {
        let n = rows * cols;
        let x: Vec<f32> = (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect();
        let t = Nf4Tensor::quantize(&x, &[rows, cols], &cfg).expect("quantize");
        prop_assert_eq!(t.packed().len(), n.div_ceil(2));
        prop_assert_eq!(t.absmax().blocks(), n.div_ceil(cfg.blocksize));
        let tensors = t.to_hf_tensors("layer.weight");
        let map: HashMap<String, HfTensor> = tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
        let back = Nf4Tensor::from_hf_tensors("layer.weight", |name| map.get(name).map(HfTensor::view)).expect("read back");
        prop_assert_eq!(back, t);
    }
}
