//! Causal language-modeling loss, as HF computes it.
//!
//! Position `t` predicts token `t + 1`: with logits `z: [b, s, V]` and labels `y: [b, s]`
//! (`-100` = ignored), `loss = Σ_{t<s−1, y_{t+1} ≠ −100} −log softmax(z_t)[y_{t+1}] / N`,
//! `N` the number of counted positions. The per-position terms are `gpu_kernels::cross_entropy`
//! (on CUDA one kernel each way, never holding the logits in f32).

use burn::tensor::{Int, Tensor};

/// The label value that is not trained on.
pub const IGNORE_INDEX: i64 = -100;

/// Summed next-token cross-entropy over counted positions (divide by the batch's — or the
/// global batch's — counted positions for the mean).
///
/// # Shapes
/// - logits: `[batch, len, vocab]`, labels: `[batch, len]`
/// - output: `[1]`
pub fn causal_lm_loss_sum(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [b, s, v] = logits.dims();
    assert_eq!(labels.dims(), [b, s], "labels must be [batch, len]");
    // Row t predicts label t + 1; each sequence's last row predicts nothing.
    let last = labels.clone().narrow(1, 0, 1).full_like(IGNORE_INDEX);
    let next = Tensor::cat(vec![labels.narrow(1, 1, s - 1), last], 1);
    gpu_kernels::cross_entropy(logits.reshape([b * s, v]), next.reshape([b * s]), IGNORE_INDEX).sum()
}

/// Mean next-token cross-entropy over counted positions.
///
/// # Shapes
/// - logits: `[batch, len, vocab]` (position `t` predicts token `t + 1`)
/// - labels: `[batch, len]`, `-100` where not trained
/// - output: `[1]`
///
/// # Panics
/// If the shapes disagree.
pub fn causal_lm_loss(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [b, s, _] = logits.dims();
    assert_eq!(labels.dims(), [b, s], "labels must be [batch, len]");
    let total = labels.clone().narrow(1, 1, s - 1).not_equal_elem(IGNORE_INDEX).float().sum().clamp_min(1.0);
    causal_lm_loss_sum(logits, labels) / total
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn matches_a_hand_computed_value() {
        let d = Device::flex();
        // One sequence of 3 positions over a vocabulary of 2; position 0 predicts label[1]=1,
        // position 1 predicts label[2] which is ignored.
        let logits = Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 0.0, 5.0, 5.0], [1, 3, 2]), &d);
        let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, -100], [1, 3]), &d);
        let loss: f32 = causal_lm_loss(logits, labels).into_scalar();
        // −log(e¹ / (e⁰ + e¹)) = log(1 + e⁻¹)
        let expected = (1.0f32 + (-1.0f32).exp()).ln();
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }
}
