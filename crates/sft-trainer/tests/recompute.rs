//! Layer recomputation gives the gradients of one whole graph: the loss and every adapter
//! factor's gradient from `recompute::loss_and_grads` equal those of a single backward through
//! the same blocks (drawing the same dropout masks), unpacked and packed, with and without
//! dropout.

mod common;

use burn::module::Param;
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};
use llama_model::adapters::attach_lora;
use lora::{LoraConfig, TargetModules};
use sft_trainer::loss::causal_lm_loss_sum;
use sft_trainer::recompute::{BlockSeeds, Reseed, block_trainable, loss_and_grads};

use common::tiny_model;

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32")
}

/// burn's RNG is process-wide and tests run in parallel: one check at a time.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(dropout: f64, packed: bool) {
    let _rng = RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let device = Device::flex().autodiff();
    let mut model = tiny_model(&device, DType::F32);
    let config = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout,
        target_modules: TargetModules::parse("all-linear").expect("targets"),
        ..LoraConfig::default()
    };
    attach_lora(&mut model, &config).expect("adapters");
    // peft starts B at zero (no gradient reaches A then): give it values.
    for (_, p) in model.projections_mut() {
        let l = p.lora.as_mut().expect("an adapter on every projection");
        let [out, r] = l.b.val().dims();
        l.b = Param::from_tensor(Tensor::<2>::random([out, r], Distribution::Normal(0.0, 0.2), &device).require_grad());
    }
    let (b, s) = (2, 9);
    let ids: Vec<i64> = (0..b * s).map(|i| 3 + (i as i64 * 37) % 90).collect();
    let mut labels = ids.clone();
    labels[4] = -100;
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), &device);
    let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [b, s]), &device);
    // Packed: row 0 holds sequences of 4 and 5 tokens, row 1 one of 9.
    let positions: Vec<i64> = [vec![0, 1, 2, 3, 0, 1, 2, 3, 4], (0..9).collect()].concat();
    let positions = packed.then_some(positions.as_slice());
    let seeds = BlockSeeds { device: &device, base: 77 };
    let divisor = 13.0;

    let (mut h, ctx) = model.embed(ids.clone(), positions);
    for (i, block) in model.layers.iter().enumerate() {
        seeds.reseed(i);
        h = ctx.block(block, h);
    }
    let loss = causal_lm_loss_sum(model.head(h), labels.clone()).div_scalar(divisor);
    let want_loss: f32 = loss.clone().into_scalar();
    let grads = loss.backward();
    let want: Vec<Vec<f32>> =
        (0..model.layers.len()).flat_map(|i| block_trainable(&model, i)).map(|p| host(p.grad(&grads).expect("a gradient"))).collect();

    let got = loss_and_grads(&model, ids, labels, positions, divisor, &seeds, |_| Ok(())).expect("recomputed");
    let case = format!("dropout {dropout}, packed {packed}");
    assert!((got.loss - want_loss).abs() <= 1e-6 * want_loss.abs(), "{case}: loss {} vs {want_loss}", got.loss);
    assert_eq!(got.grads.len(), want.len(), "{case}: one gradient per factor");
    assert_eq!(want.len(), 2 * 7 * model.layers.len());
    for (k, (g, w)) in got.grads.into_iter().map(host).zip(&want).enumerate() {
        let norm = w.iter().map(|v| v * v).sum::<f32>().sqrt();
        let diff = g.iter().zip(w).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
        assert!(norm > 0.0, "{case}: factor {k} has a zero gradient");
        assert!(diff <= 1e-5 * norm, "{case}: factor {k}: ‖Δ‖ {diff:e} vs ‖g‖ {norm:e}");
    }
}

#[test]
fn recomputed_gradients_equal_one_graphs_without_dropout() {
    check(0.0, false);
}

#[test]
fn recomputed_gradients_equal_one_graphs_with_dropout_and_packed_rows() {
    check(0.3, true);
}
