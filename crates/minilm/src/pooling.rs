//! Sentence pooling as sentence-transformers' `Pooling(mean)` + `Normalize` modules do it.
//!
//! For hidden states `h` `[B, S, d]` and attention mask `m` `[B, S]`:
//!
//! ```text
//! u_b = Σ_s m_bs · h_bs / max(Σ_s m_bs, 1e-9)        (mean over real tokens)
//! e_b = u_b / max(‖u_b‖₂, 1e-12)                     (unit length)
//! ```

use burn::tensor::Tensor;

/// Mean of the hidden states over the real (mask = 1) tokens.
///
/// # Shapes
/// - `hidden`: `[B, S, d]`
/// - `mask`: `[B, S]`
/// - output: `[B, d]`
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
    let [batch, seq, d] = hidden.dims();
    let mask = mask.reshape([batch, seq, 1]);
    let summed = (hidden * mask.clone()).sum_dim(1).reshape([batch, d]);
    let counts = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
    summed / counts
}

/// Scales each row to unit L2 norm (rows of norm below `1e-12` are divided by `1e-12`).
///
/// # Shapes
/// - `x`, output: `[B, d]`
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn mean_ignores_padding_and_normalize_gives_unit_rows() {
        let device = Device::flex();
        // Sequence 0: tokens [1,2], [3,4] real, [100,100] padded. Sequence 1: one real token.
        let hidden =
            Tensor::<3>::from_data(TensorData::new(vec![1f32, 2., 3., 4., 100., 100., 6., 8., 50., 50., 50., 50.], [2, 3, 2]), &device);
        let mask = Tensor::<2>::from_data(TensorData::new(vec![1f32, 1., 0., 1., 0., 0.], [2, 3]), &device);
        let pooled = mean_pool(hidden, mask);
        let v = pooled.clone().into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(v, vec![2.0, 3.0, 6.0, 8.0]);
        let n = l2_normalize(pooled).into_data().try_to_vec::<f32>().expect("f32");
        let s = 13f32.sqrt();
        let want = [2.0 / s, 3.0 / s, 0.6, 0.8];
        for (a, b) in n.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
