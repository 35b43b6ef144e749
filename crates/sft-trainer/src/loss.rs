//! Causal language-modeling loss, as HF computes it.
//!
//! Position `t` predicts token `t + 1`: with logits `z: [b, s, V]` and labels `y: [b, s]`
//! (`-100` = ignored), `loss = Σ_{t<s−1, y_{t+1} ≠ −100} −log softmax(z_t)[y_{t+1}] / N`,
//! `N` the number of counted positions. The per-position terms are `gpu_kernels::cross_entropy`
//! (on CUDA one kernel each way, never holding the logits in f32).

use burn::tensor::{Int, Tensor};
use llama_model::Llama;

/// The label value that is not trained on.
pub const IGNORE_INDEX: i64 = -100;

/// Each row's next label, `[b·s]`: row `t` predicts label `t + 1`; each sequence's last row
/// predicts nothing.
fn next_labels(labels: Tensor<2, Int>) -> Tensor<1, Int> {
    let [b, s] = labels.dims();
    let last = labels.clone().narrow(1, 0, 1).full_like(IGNORE_INDEX);
    Tensor::cat(vec![labels.narrow(1, 1, s - 1), last], 1).reshape([b * s])
}

/// Summed next-token cross-entropy over counted positions (divide by the batch's — or the
/// global batch's — counted positions for the mean).
///
/// # Shapes
/// - logits: `[batch, len, vocab]`, labels: `[batch, len]`
/// - output: `[1]`
pub fn causal_lm_loss_sum(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [b, s, v] = logits.dims();
    assert_eq!(labels.dims(), [b, s], "labels must be [batch, len]");
    gpu_kernels::cross_entropy(logits.reshape([b * s, v]), next_labels(labels), IGNORE_INDEX).sum()
}

/// [`causal_lm_loss_sum`] of `model.logits(hidden)`, from the final hidden states (after the
/// final norm). On CUDA, when the vocabulary projection is a plain `hidden · Wᵀ`
/// ([`Llama::vocab_weight`]), the projection and the loss run together over chunks of rows
/// (`gpu_kernels::linear_cross_entropy`): the `[b·s, V]` logits, 1 GiB of bf16 with their
/// gradient at 2,048 × 128,256, never exist whole.
///
/// # Shapes
/// - hidden: `[batch, len, d]`, labels: `[batch, len]`
/// - output: `[1]`
pub fn causal_lm_loss_sum_from_hidden(model: &Llama, hidden: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let fused = gpu_kernels::is_cuda(&hidden.device()) && !LOGITS_ONLY.is_on();
    loss_sum_from_hidden(model, hidden, labels, fused)
}

/// `KINDLING_LOSS=logits`: the whole-logits route on CUDA too, to compare the two on a device.
static LOGITS_ONLY: gpu_kernels::env_switch::EnvSwitch = gpu_kernels::env_switch::EnvSwitch::new("KINDLING_LOSS", "logits");

fn loss_sum_from_hidden(model: &Llama, hidden: Tensor<3>, labels: Tensor<2, Int>, fused: bool) -> Tensor<1> {
    match model.vocab_weight().filter(|_| fused) {
        Some(w) => {
            let [b, s, d] = hidden.dims();
            assert_eq!(labels.dims(), [b, s], "labels must be [batch, len]");
            gpu_kernels::linear_cross_entropy(hidden.reshape([b * s, d]), w, next_labels(labels), IGNORE_INDEX).sum()
        }
        None => causal_lm_loss_sum(model.logits(hidden), labels),
    }
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
    fn the_fused_vocabulary_loss_equals_the_logits_path_and_its_gradient() {
        use llama_model::{LlamaConfig, LoadOptions, load, weights};
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../llama-model/tests/fixtures/hf_parity/gqa");
        let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
        let device = Device::flex().autodiff();
        let options = LoadOptions::new(&device, burn::tensor::DType::F32);
        let model = load(weights::open(&dir).expect("weights").as_ref(), &config, &options).expect("model");
        assert!(model.vocab_weight().is_some(), "the fixture's projection is plain");
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 9, 2, 7, 3, 8, 4], [2, 4]), &device);
        let labels = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, -100, 2, 7, 3, 8, -100], [2, 4]), &device);
        let run = |fused: bool| {
            let hidden = model.forward_hidden(ids.clone(), None).detach().require_grad();
            let loss = loss_sum_from_hidden(&model, hidden.clone(), labels.clone(), fused);
            let grads = loss.clone().backward();
            (loss.into_data(), hidden.grad(&grads).expect("d hidden").into_data())
        };
        let (fused, logits) = (run(true), run(false));
        let tol = burn::tensor::Tolerance::<f32>::rel_abs(1e-5, 1e-6);
        fused.0.assert_approx_eq::<f32>(&logits.0, tol);
        fused.1.assert_approx_eq::<f32>(&logits.1, tol);
    }

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
