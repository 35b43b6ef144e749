//! Layer recomputation (gradient checkpointing by decoder block): the loss and the adapters'
//! gradients of one micro-batch while only one block's graph is alive at a time.
//!
//! With `L` blocks, inputs `hᵢ: [batch, len, d]` and the loss `ℓ`:
//! 1. Forward without a graph: `h₀ = embed(ids)`, `hᵢ₊₁ = blockᵢ(hᵢ)` with the block's
//!    parameters untracked; the `L + 1` states are kept (detached).
//! 2. Head: `x = h_L` tracked, `ℓ = loss(head(x))`; its backward gives `g_L = ∂ℓ/∂h_L`.
//! 3. For `i = L−1 … 0`: `x = hᵢ` tracked, `y = blockᵢ(x)` with the block's adapters tracked; the
//!    backward of `⟨y, gᵢ₊₁⟩` (whose gradient in `y` is exactly `gᵢ₊₁`; on CUDA the root
//!    [`gpu_kernels::gradient_root`] registers `gᵢ₊₁` as `y`'s gradient without the product and
//!    the sum) gives `gᵢ = ∂ℓ/∂hᵢ` and the block's adapter gradients. `y`'s value is never read, so this
//!    pass runs the block for gradients only ([`llama_model::LayerContext::block_for_gradients`]):
//!    a packed `W_down` on the GPU is neither dequantized nor multiplied in it (the last product
//!    of the block feeds nothing but `y`; its backward `dx = dy · W_down` still runs).
//!
//! Memory: the `L + 1` states and one block's graph, instead of every block's graph. Cost: each
//! block's forward runs twice. Dropout: each block's random draws (burn's RNG and the fused
//! kernel's seed stream) restart from a seed of its own in both passes, so step 3 recomputes
//! exactly the forward of step 1.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use gpu_kernels::env_switch::EnvSwitch;
use llama_model::Llama;

use crate::error::{Error, Result};
use crate::loss::causal_lm_loss_sum_from_hidden;
use crate::step_phases;

/// `KINDLING_RECOMPUTE=whole`: the second pass runs each block whole (its output's value too), to
/// compare the two on a device.
static WHOLE_RECOMPUTE: EnvSwitch = EnvSwitch::new("KINDLING_RECOMPUTE", "whole");

/// One micro-batch's scaled loss value and its gradients.
pub struct LossAndGrads {
    /// `Σ ℓ / scale_div` as computed.
    pub loss: f32,
    /// One gradient per adapter factor, in [`Llama::projections`] order (`a` then `b`).
    pub grads: Vec<Tensor<2>>,
}

/// How the blocks draw their dropout masks: before block `i` runs (in either pass), `reseed(i)`
/// restarts every random source the block uses.
pub trait Reseed {
    /// Restarts the random sources for block `i`.
    fn reseed(&self, block: usize);
}

/// Nothing random in the blocks (no dropout): leaves every random source alone (another
/// thread may be drawing from burn's process-wide RNG).
pub struct NoDraws;

impl Reseed for NoDraws {
    fn reseed(&self, _block: usize) {}
}

/// Reseeds burn's RNG on `device` and the fused dropout's seed stream from `base` and the block.
pub struct BlockSeeds<'a> {
    /// The device whose RNG burn's dropout draws from.
    pub device: &'a Device,
    /// The micro-batch's seed.
    pub base: u64,
}

impl Reseed for BlockSeeds<'_> {
    fn reseed(&self, block: usize) {
        let seed = crate::trainer::mix(self.base, block as u64 + 1, 0x0B10_C4ED);
        self.device.seed(seed);
        gpu_kernels::dropout::set_seed(seed);
    }
}

/// The adapter factors of block `block`, tracked, in [`Llama::projections`] order (`a` then `b`
/// of each adapted projection).
pub fn block_trainable(model: &Llama, block: usize) -> Vec<Tensor<2>> {
    model.layers[block].projections().into_iter().filter_map(|(_, p)| p.lora.as_ref()).flat_map(|l| [l.a.val(), l.b.val()]).collect()
}

/// Loss `causal_lm_loss_sum(logits, labels) / divisor` and the adapters' gradients, recomputing
/// each block in the backward. `positions`: the packed rows' positions (`None`: unpacked).
/// `check` sees the loss value before any backward runs (e.g. to stop on a non-finite loss).
///
/// # Errors
/// `check`'s error, or an adapter factor without a gradient.
pub fn loss_and_grads(
    model: &Llama,
    ids: Tensor<2, Int>,
    labels: Tensor<2, Int>,
    positions: Option<&[i64]>,
    divisor: f64,
    seeds: &dyn Reseed,
    check: impl FnOnce(f32) -> Result<()>,
) -> Result<LossAndGrads> {
    let (h0, ctx) = model.embed(ids, positions);
    let device = h0.device();
    step_phases::mark("embed", &device);
    let mut states = Vec::with_capacity(model.layers.len() + 1);
    states.push(h0.detach());
    for (i, block) in model.layers.iter().enumerate() {
        seeds.reseed(i);
        let untracked = block.clone().no_grad();
        let x = states[i].clone();
        states.push(ctx.block(&untracked, x).detach());
    }
    step_phases::mark("blocks", &device);

    let x = states.pop().ok_or_else(|| Error::Tensor("a model without states".into()))?.require_grad();
    let loss = causal_lm_loss_sum_from_hidden(model, model.final_norm(x.clone()), labels).div_scalar(divisor);
    step_phases::mark("head", &device);
    let value: f32 = crate::host_wait::timed(|| loss.clone().into_scalar());
    check(value)?;
    let grads = loss.backward();
    let mut g = x.grad(&grads).ok_or_else(|| Error::Tensor("the last block's output received no gradient".into()))?;
    step_phases::mark("head backward", &device);

    let mut per_block: Vec<Vec<Tensor<2>>> = vec![Vec::new(); model.layers.len()];
    for i in (0..model.layers.len()).rev() {
        seeds.reseed(i);
        let x = states.pop().ok_or_else(|| Error::Tensor("a block without its input".into()))?.require_grad();
        let y = if WHOLE_RECOMPUTE.is_on() {
            ctx.block(&model.layers[i], x.clone())
        } else {
            ctx.block_for_gradients(&model.layers[i], x.clone())
        };
        // The upstream gradient as a constant of y's graph (on y's checkpointing strategy, if
        // burn's op-level checkpointing is on as well).
        let upstream = match y.gradient_checkpointing_strategy() {
            Some(strategy) => g.autodiff().with_gradient_checkpointing_strategy(strategy),
            None => g.autodiff(),
        };
        let grads = gpu_kernels::gradient_root(y, upstream).backward();
        for p in block_trainable(model, i) {
            per_block[i].push(p.grad(&grads).ok_or_else(|| Error::Tensor(format!("an adapter factor of block {i} received no gradient")))?);
        }
        if i == 0 {
            break;
        }
        g = x.grad(&grads).ok_or_else(|| Error::Tensor(format!("block {i}'s input received no gradient")))?;
    }
    step_phases::mark("blocks backward", &device);
    Ok(LossAndGrads { loss: value, grads: per_block.into_iter().flatten().collect() })
}
