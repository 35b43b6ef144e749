//! Autoregressive generation over token ids: prefill, then one token at a time with the KV
//! cache (or, for checking, a full forward per step).

use burn::tensor::{Int, Tensor, TensorData};

use crate::model::Llama;
use crate::sampling::{Sampler, SamplingConfig, log_softmax};
use crate::{Error, Result};

/// `KINDLING_GREEDY=host`: greedy decoding chooses each token on the host, one read per token
/// (to compare the two routes on a device).
static HOST_GREEDY: gpu_kernels::env_switch::EnvSwitch = gpu_kernels::env_switch::EnvSwitch::new("KINDLING_GREEDY", "host");

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most new tokens.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: SamplingConfig,
    /// Generation ends when one of these is produced (it is not returned).
    pub stop_tokens: Vec<u32>,
    /// Reuse keys/values across steps (the normal path); `false` recomputes the whole
    /// sequence every step.
    pub use_cache: bool,
    /// Also return each chosen token's logprob and this many top alternatives.
    pub top_logprobs: Option<usize>,
    /// How greedy decoding with the cache issues its steps (the same tokens every way).
    pub steps: StepIssue,
}

/// How the steps of greedy decoding with the cache reach the device. Every way gives the same
/// tokens; they differ in the host's work per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepIssue {
    /// [`StepIssue::Graph`] where it applies (a CUDA device, every block on the fused decoding
    /// route, at most 8,192 positions), else [`StepIssue::Launched`].
    /// `KINDLING_DECODE_GRAPH=off` / `=eager` choose `Launched` / `DevicePosition` instead.
    #[default]
    Auto,
    /// Each step's kernels launched one by one, the position passed with them.
    Launched,
    /// Each step's kernels launched one by one, the position held in a device buffer that the
    /// step advances (what a graph records); any backend.
    DevicePosition,
    /// The device-position step recorded once as a CUDA graph and replayed; an error where it
    /// does not apply.
    Graph,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            sampling: SamplingConfig::default(),
            stop_tokens: Vec::new(),
            use_cache: true,
            top_logprobs: None,
            steps: StepIssue::Auto,
        }
    }
}

/// The logprob of a chosen token and its top alternatives, `(id, logprob)` most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct StepLogprobs {
    /// The chosen token's logprob.
    pub logprob: f32,
    /// The most likely tokens at this step.
    pub top: Vec<(u32, f32)>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token was produced, or the callback asked to stop.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// Generated tokens.
#[derive(Debug, Clone)]
pub struct Generated {
    /// New token ids (stop token excluded).
    pub tokens: Vec<u32>,
    /// Per-token logprobs when asked for.
    pub logprobs: Vec<StepLogprobs>,
    /// Why it ended.
    pub finish: Finish,
}

/// Token ids as a `[1, n]` tensor on the model's device.
pub(crate) fn ids_tensor(model: &Llama, ids: &[u32]) -> Tensor<2, Int> {
    let data = TensorData::new(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, ids.len()]);
    Tensor::from_data(data, &model.embed_tokens.device())
}

/// The logits `[1, 1, V]` of the last position of `hidden` `[1, n, d]`.
pub(crate) fn last_position_logits(model: &Llama, hidden: Tensor<3>) -> Tensor<3> {
    let [_, len, d] = hidden.dims();
    model.logits(hidden.narrow(1, len - 1, 1).reshape([1, 1, d]))
}

fn last_logits(model: &Llama, ids: &[u32], cache: Option<&mut crate::KvCache>) -> Result<Vec<f32>> {
    let logits = last_position_logits(model, model.forward_hidden(ids_tensor(model, ids), cache));
    logits.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Generation(format!("reading logits: {e:?}")))
}

/// Restricts which tokens may come next (e.g. JSON mode); generation stops once it is complete.
pub trait Constraint {
    /// Whether `token` may be generated next.
    fn allows(&self, token: u32) -> bool;
    /// Records that `token` was generated.
    fn accept(&mut self, token: u32);
    /// Whether the constrained text is complete.
    fn is_complete(&self) -> bool;
    /// Tells the constraint how many tokens are left in the budget (before each choice).
    fn set_budget(&mut self, _remaining: usize) {}
}

/// How many of the most likely tokens are checked against a constraint before all are.
const CONSTRAINT_CANDIDATES: usize = 256;

/// Logits with every token the constraint refuses set to −∞ (checking the most likely first).
fn constrain(logits: &[f32], constraint: &dyn Constraint) -> Vec<f32> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let mut masked = vec![f32::NEG_INFINITY; logits.len()];
    let mut any = false;
    for (rank, &i) in order.iter().enumerate() {
        if rank >= CONSTRAINT_CANDIDATES && any {
            break;
        }
        if constraint.allows(i as u32) {
            masked[i] = logits[i];
            any = true;
        }
    }
    masked
}

/// Generates after `prompt`, calling `on_token` with each new id; it returns `false` to stop.
///
/// Greedy decoding with the cache, no constraint and no logprobs keeps the chosen ids on the
/// device and reads them back in batches (`crate::greedy`): the same tokens, with `on_token`
/// called up to a batch late.
///
/// # Errors
/// An empty prompt, or a sequence longer than the model's position table.
pub fn generate(model: &Llama, prompt: &[u32], options: &GenerateOptions, on_token: impl FnMut(u32) -> bool) -> Result<Generated> {
    generate_constrained(model, prompt, options, None, on_token)
}

/// [`generate`] for many calls on one model: greedy decoding at a device position
/// ([`StepIssue::Graph`], [`StepIssue::DevicePosition`]) keeps its step — on CUDA the recorded
/// graph, with its cache and state buffers — for the next call of the same cache capacity
/// (a power of two of at least 256 positions) on the same thread, which then records nothing
/// (`crate::greedy_graph`). The borrow keeps the model unchanged while the decoder lives. Every
/// call gives the tokens [`generate`] gives.
///
/// ```no_run
/// # fn serve(model: &llama_model::Llama, prompts: &[Vec<u32>]) -> llama_model::Result<()> {
/// use llama_model::{Decoder, GenerateOptions};
/// let options = GenerateOptions { max_new_tokens: 128, ..GenerateOptions::default() };
/// let mut decoder = Decoder::new(model);
/// for prompt in prompts {
///     let out = decoder.generate(prompt, &options, |_| true)?;
///     println!("{:?}", out.tokens);
/// }
/// # Ok(())
/// # }
/// ```
/// (Tested against [`generate`] in `tests/hf_parity.rs` on every backend.)
pub struct Decoder<'m> {
    model: &'m Llama,
    kept: Option<crate::greedy_graph::KeptStep>,
}

impl<'m> Decoder<'m> {
    /// A decoder keeping nothing yet.
    pub fn new(model: &'m Llama) -> Self {
        Self { model, kept: None }
    }

    /// The model it decodes.
    pub fn model(&self) -> &'m Llama {
        self.model
    }

    /// [`generate`] with what the previous calls kept (see [`Decoder`]).
    ///
    /// # Errors
    /// As [`generate`].
    pub fn generate(&mut self, prompt: &[u32], options: &GenerateOptions, on_token: impl FnMut(u32) -> bool) -> Result<Generated> {
        generate_with(self.model, prompt, options, None, on_token, Some(&mut self.kept))
    }
}

impl std::fmt::Debug for Decoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("keeps_a_step", &self.kept.is_some()).finish_non_exhaustive()
    }
}

/// [`generate`] with an optional [`Constraint`] on the tokens (logprobs stay the model's own).
///
/// # Errors
/// See [`generate`]; also a constraint that allows no token.
pub fn generate_constrained(
    model: &Llama,
    prompt: &[u32],
    options: &GenerateOptions,
    constraint: Option<&mut dyn Constraint>,
    on_token: impl FnMut(u32) -> bool,
) -> Result<Generated> {
    generate_with(model, prompt, options, constraint, on_token, None)
}

/// [`generate_constrained`] with a [`Decoder`]'s slot for a kept step.
fn generate_with(
    model: &Llama,
    prompt: &[u32],
    options: &GenerateOptions,
    mut constraint: Option<&mut dyn Constraint>,
    mut on_token: impl FnMut(u32) -> bool,
    kept: Option<&mut Option<crate::greedy_graph::KeptStep>>,
) -> Result<Generated> {
    if prompt.is_empty() {
        return Err(Error::Generation("the prompt is empty".into()));
    }
    let limit = model.config.max_position_embeddings;
    if prompt.len() + options.max_new_tokens > limit {
        return Err(Error::Generation(format!(
            "prompt ({}) + max_new_tokens ({}) exceeds the model's {limit} positions",
            prompt.len(),
            options.max_new_tokens
        )));
    }
    let vocab = model.config.vocab_size as u32;
    if let Some(&bad) = prompt.iter().find(|&&t| t >= vocab) {
        return Err(Error::Generation(format!("token id {bad} is outside the vocabulary ({vocab})")));
    }
    let greedy = options.sampling.temperature <= 0.0;
    if greedy && constraint.is_none() && options.top_logprobs.is_none() && options.use_cache && !HOST_GREEDY.is_on() {
        use crate::greedy_graph::{Replay, generate_at_device_position, steps_for};
        let (n, stops) = (options.max_new_tokens, &options.stop_tokens);
        return match steps_for(model, prompt.len(), n, options.steps)? {
            StepIssue::Graph => generate_at_device_position(model, prompt, n, stops, &mut on_token, Replay::Graph, kept),
            StepIssue::DevicePosition => generate_at_device_position(model, prompt, n, stops, &mut on_token, Replay::Eager, kept),
            _ => crate::greedy::generate_greedy(model, prompt, n, stops, &mut on_token),
        };
    }
    let mut sampler = Sampler::new(options.sampling.clone());
    let mut cache = options.use_cache.then(|| model.new_cache());
    let mut sequence = prompt.to_vec();
    let mut out = Generated { tokens: Vec::new(), logprobs: Vec::new(), finish: Finish::Length };
    let mut logits = last_logits(model, prompt, cache.as_mut())?;
    for step in 0..options.max_new_tokens {
        if let Some(c) = constraint.as_deref_mut() {
            c.set_budget(options.max_new_tokens - step);
        }
        let next = match constraint.as_deref() {
            Some(c) => {
                let masked = constrain(&logits, c);
                if masked.iter().all(|v| *v == f32::NEG_INFINITY) {
                    return Err(Error::Generation("the output constraint allows no token".into()));
                }
                sampler.sample(&masked) as u32
            }
            None => sampler.sample(&logits) as u32,
        };
        if let Some(k) = options.top_logprobs {
            let lp = log_softmax(&logits);
            let mut order: Vec<usize> = (0..lp.len()).collect();
            order.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]).then(a.cmp(&b)));
            let top = order.iter().take(k).map(|&i| (i as u32, lp[i])).collect();
            out.logprobs.push(StepLogprobs { logprob: lp[next as usize], top });
        }
        if options.stop_tokens.contains(&next) {
            out.logprobs.truncate(out.tokens.len());
            out.finish = Finish::Stop;
            break;
        }
        out.tokens.push(next);
        sequence.push(next);
        let complete = match constraint.as_deref_mut() {
            Some(c) => {
                c.accept(next);
                c.is_complete()
            }
            None => false,
        };
        if !on_token(next) || complete {
            out.finish = Finish::Stop;
            break;
        }
        if step + 1 == options.max_new_tokens {
            break;
        }
        logits = match cache.as_mut() {
            Some(c) => last_logits(model, &[next], Some(c))?,
            None => last_logits(model, &sequence, None)?,
        };
    }
    Ok(out)
}
