//! Rotary position embeddings in HF's rotate-half form.
//!
//! For head width `d` and position `p`: `inv_freq[i] = θ^(-2i/d)` for `i < d/2` (rescaled by
//! [`RopeScaling`]), `angle = p · inv_freq`, `cos`/`sin` of `[angle, angle]` (the half table
//! repeated), and `rope(x) = x·cos + rotate_half(x)·sin` with
//! `rotate_half([x₁, x₂]) = [−x₂, x₁]` over the two halves of the head.

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use crate::config::{LlamaConfig, RopeScaling};

/// The inverse frequencies of one head, `[d/2]`, as HF computes them (in f32).
pub fn inv_freq(config: &LlamaConfig) -> Vec<f32> {
    let d = config.head_dim;
    let base: Vec<f32> = (0..d / 2)
        .map(|i| {
            let exponent = (2 * i) as f32 / d as f32;
            1.0 / (config.rope_theta as f32).powf(exponent)
        })
        .collect();
    match config.rope_scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor as f32).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let old = original_max_position_embeddings as f32;
            let (factor, low, high) = (factor as f32, low_freq_factor as f32, high_freq_factor as f32);
            let low_wavelen = old / low;
            let high_wavelen = old / high;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// `cos` and `sin` tables: `[1, len, head_dim]` for the positions `start..start + len` of every
/// row, or `[batch, len, head_dim]` for per-token positions (packed sequences), or — for one
/// decoded position held on the device ([`RopeTables::at_device_position`]) — `[1, capacity,
/// head_dim]` for every position and that position.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// `cos(angle)`, `[rows, len, head_dim]`.
    pub cos: Tensor<3>,
    /// `sin(angle)`, `[rows, len, head_dim]`.
    pub sin: Tensor<3>,
    /// The one position `[1]` to rotate at, read on the device, when the tables hold every
    /// position `0..capacity` (graph-recorded decoding, `gpu_kernels::decode_attention_at`).
    pub device_position: Option<Tensor<1, Int>>,
}

impl RopeTables {
    /// Tables for positions `start..start + len`, shared by every row, in `dtype`.
    pub fn new(inv_freq: &[f32], start: usize, len: usize, device: &Device, dtype: DType) -> Self {
        let positions: Vec<i64> = (start..start + len).map(|p| p as i64).collect();
        Self::at_positions(inv_freq, &positions, [1, len], device, dtype)
    }

    /// Tables for the given positions, row-major `[rows, len]`, computed in f32 and stored in
    /// `dtype`, the activations' (as HF casts them): every element-wise op must see one dtype on
    /// both sides.
    ///
    /// # Panics
    /// If `positions` does not hold `rows · len` entries.
    pub fn at_positions(inv_freq: &[f32], positions: &[i64], [rows, len]: [usize; 2], device: &Device, dtype: DType) -> Self {
        assert_eq!(positions.len(), rows * len, "RoPE: {} positions for [{rows}, {len}]", positions.len());
        let half = inv_freq.len();
        let d = 2 * half;
        let mut cos = vec![0f32; rows * len * d];
        let mut sin = vec![0f32; rows * len * d];
        for (p, &pos) in positions.iter().enumerate() {
            for (i, &f) in inv_freq.iter().enumerate() {
                let angle = pos as f32 * f;
                let (s, c) = angle.sin_cos();
                for j in [i, i + half] {
                    cos[p * d + j] = c;
                    sin[p * d + j] = s;
                }
            }
        }
        let table = |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [rows, len, d]).convert_dtype(dtype), (device, dtype));
        Self { cos: table(cos), sin: table(sin), device_position: None }
    }

    /// Tables of every position `0..capacity` and the position `[1]` (held on the device) that
    /// one decoded token takes its rows from: the row `p` holds the same values as
    /// `RopeTables::new(inv_freq, p, 1, …)`.
    pub fn at_device_position(inv_freq: &[f32], capacity: usize, position: Tensor<1, Int>, dtype: DType) -> Self {
        let device = position.device();
        Self { device_position: Some(position), ..Self::new(inv_freq, 0, capacity, &device, dtype) }
    }

    /// Rotates `[b, s, n, d_h]` projections into `[b, n, s, d_h]` heads
    /// (`gpu_kernels::rope_heads`: the transpose and the rotation in one kernel on CUDA).
    ///
    /// # Shapes
    /// - x: `[batch, len, heads, head_dim]` (tables of 1 or `batch` rows)
    /// - output: `[batch, heads, len, head_dim]`
    pub fn apply_heads(&self, x: Tensor<4>) -> Tensor<4> {
        gpu_kernels::rope_heads(x, self.cos.clone(), self.sin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::presets;

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let config = presets::llama31_8b();
        let plain = inv_freq(&LlamaConfig { rope_scaling: RopeScaling::None, ..config.clone() });
        let scaled = inv_freq(&config);
        // Highest frequency (wavelength 2π) is kept; the lowest is divided by the factor 8.
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() <= f32::EPSILON * plain[last]);
    }

    #[test]
    fn position_zero_is_identity() {
        let device = Device::flex();
        let config = presets::tiny();
        let tables = RopeTables::new(&inv_freq(&config), 0, 1, &device, DType::F32);
        let x = Tensor::<4>::random([1, 2, 1, config.head_dim], burn::tensor::Distribution::Default, &device);
        let y = tables.apply_heads(x.clone().swap_dims(1, 2));
        y.into_data().assert_approx_eq::<f32>(&x.into_data(), burn::tensor::Tolerance::absolute(1e-7));
    }
}
