//! Greedy decoding with each step recorded once as a CUDA graph and replayed
//! ([`gpu_kernels::StepGraph`]): a token costs one graph launch on the host instead of the
//! step's ≈ 185 kernel launches (each ≈ 19 µs of cubecl's server work on the H200 machine, as
//! much as the kernels themselves take).
//!
//! For one recording to serve every position, the step reads everything that changes from
//! device buffers it updates in place: the input id `[1, 1]` (the last chosen one), the position
//! `[1]` (the RoPE rows and the cache row are read at it: [`RopeTables::at_device_position`]),
//! and a history `[1, max_new_tokens − 1]` where each step leaves its chosen id
//! ([`gpu_kernels::advance_decoding`]). The cache is reserved for the whole run before the
//! prompt is processed, so nothing grows. The host replays and reads the history in batches
//! (1, 2, 4, … up to [`crate::greedy::MAX_BATCH`] steps), as [`crate::greedy`] reads its ids.
//!
//! Same tokens as [`crate::greedy`]: the same kernels on the same values; only the position's
//! source differs. Chosen by [`crate::StepIssue`]: by default on CUDA when every block takes the
//! fused decoding route.

use burn::tensor::{Int, Tensor, TensorData};
use gpu_kernels::decode_position::MAX_POSITIONS;
use gpu_kernels::env_switch::EnvSwitch;
use gpu_kernels::{StepGraph, advance_decoding};

use crate::generate::{Finish, Generated, ids_tensor};
use crate::greedy::{MAX_BATCH, choose, emit, read_ids};
use crate::model::Llama;
use crate::nn::RopeTables;
use crate::{Error, Result, StepIssue};

/// `KINDLING_DECODE_GRAPH=off`: [`StepIssue::Auto`] launches each step's kernels.
static GRAPH_OFF: EnvSwitch = EnvSwitch::new("KINDLING_DECODE_GRAPH", "off");
/// `KINDLING_DECODE_GRAPH=eager`: [`StepIssue::Auto`] launches each step's kernels at the device position.
static GRAPH_EAGER: EnvSwitch = EnvSwitch::new("KINDLING_DECODE_GRAPH", "eager");

/// How the steps after the first are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Recorded once as a CUDA graph, then replayed.
    Graph,
    /// Issued kernel by kernel each time (every backend; the reference of the graph).
    Eager,
}

/// Whether a recorded graph serves this run (see [`StepIssue::Auto`]).
fn graph_applies(model: &Llama, prompt_len: usize, max_new_tokens: usize) -> bool {
    prompt_len + max_new_tokens <= MAX_POSITIONS && StepGraph::supported(&model.embed_tokens.device()) && model.decodes_fused()
}

/// The way `asked` resolves for this run: `Auto` becomes one of the others; `Graph` where it
/// does not apply, or `DevicePosition` past the positions it takes, is an error.
///
/// # Errors
/// As said.
pub(crate) fn steps_for(model: &Llama, prompt_len: usize, max_new_tokens: usize, asked: StepIssue) -> Result<StepIssue> {
    let graph = graph_applies(model, prompt_len, max_new_tokens);
    let fits = prompt_len + max_new_tokens <= MAX_POSITIONS;
    match asked {
        StepIssue::Auto if GRAPH_OFF.is_on() => Ok(StepIssue::Launched),
        StepIssue::Auto if GRAPH_EAGER.is_on() && fits => Ok(StepIssue::DevicePosition),
        StepIssue::Auto if graph => Ok(StepIssue::Graph),
        StepIssue::Auto => Ok(StepIssue::Launched),
        StepIssue::Graph if !graph => Err(Error::Generation(format!(
            "decoding as a recorded graph needs a CUDA device (in a `cuda` build), every block on the fused decoding route \
             (packed projections, no enabled adapter) and at most {MAX_POSITIONS} positions (asked {})",
            prompt_len + max_new_tokens
        ))),
        StepIssue::DevicePosition if !fits => Err(Error::Generation(format!(
            "decoding at a device position takes at most {MAX_POSITIONS} positions (asked {})",
            prompt_len + max_new_tokens
        ))),
        other => Ok(other),
    }
}

fn step_error(e: gpu_kernels::Error) -> Error {
    Error::Generation(format!("decoding step: {e}"))
}

/// Greedy generation after `prompt` with the position held on the device (see the module
/// docs); the caller has checked the prompt, the length limit and [`steps_for`].
///
/// # Errors
/// Reading ids back; recording or replaying the graph.
pub(crate) fn generate_at_device_position(
    model: &Llama,
    prompt: &[u32],
    max_new_tokens: usize,
    stop_tokens: &[u32],
    on_token: &mut dyn FnMut(u32) -> bool,
    replay: Replay,
) -> Result<Generated> {
    let mut out = Generated { tokens: Vec::new(), logprobs: Vec::new(), finish: Finish::Length };
    if max_new_tokens == 0 {
        return Ok(out);
    }
    let mut cache = model.new_cache();
    let capacity = model.reserve_cache(&mut cache, prompt.len() + max_new_tokens);
    let first = choose(model, model.forward_hidden(ids_tensor(model, prompt), Some(&mut cache)));
    let first_id = read_ids(first.clone())?[0];
    if !emit(first_id, &mut out, stop_tokens, on_token) || max_new_tokens == 1 {
        return Ok(out);
    }
    // Step k (k = 0, 1, …) reads the id at position `base + k` and leaves the next in history[k].
    let base = prompt.len();
    let steps = max_new_tokens - 1;
    let (device, int_dtype) = (first.device(), first.dtype());
    let position = Tensor::<1, Int>::from_data(TensorData::new(vec![base as i64], [1]).convert_dtype(int_dtype), (&device, int_dtype));
    let tables = RopeTables::at_device_position(&model.inv_freq, capacity, position.clone(), model.embed_tokens.dtype());
    let mut state = State { ids: first, position, history: Tensor::zeros([1, steps], (&device, int_dtype)), cache, tables };
    // The first step runs eagerly either way (for a graph: its warm-up run).
    let graph = match replay {
        Replay::Graph => Some(
            StepGraph::record(&device, || {
                state.step(model, base);
                Ok(())
            })
            .map_err(step_error)?,
        ),
        Replay::Eager => {
            state.step(model, base);
            None
        }
    };
    let (mut done, mut issued, mut batch) = (0, 1, 1);
    while done < steps {
        while issued < steps && issued - done < batch {
            match &graph {
                Some(g) => g.replay().map_err(step_error)?,
                None => state.step(model, base),
            }
            issued += 1;
        }
        let ids = read_ids(state.history.clone().narrow(1, done, issued - done))?;
        done = issued;
        for id in ids {
            if !emit(id, &mut out, stop_tokens, on_token) {
                return Ok(out);
            }
        }
        batch = (batch * 2).min(MAX_BATCH);
    }
    Ok(out)
}

/// What a step reads and writes across steps: buffers written in place on CUDA, so a recorded
/// graph's addresses stay valid (see the module docs).
struct State {
    /// `[1, 1]`: the id the next step embeds.
    ids: Tensor<2, Int>,
    /// `[1]`: the position of that id.
    position: Tensor<1, Int>,
    /// `[1, steps]`: step `k`'s chosen id in column `k`.
    history: Tensor<2, Int>,
    /// Reserved for every position of the run.
    cache: crate::KvCache,
    /// RoPE tables of every position of the cache.
    tables: RopeTables,
}

impl State {
    /// One decoding step at the device position. (The tables take the position anew each step:
    /// off CUDA, advancing replaces the position's tensor instead of writing it in place.)
    fn step(&mut self, model: &Llama, base: usize) {
        let rope = RopeTables { device_position: Some(self.position.clone()), ..self.tables.clone() };
        let chosen = choose(model, model.forward_hidden_at(self.ids.clone(), &rope, &mut self.cache));
        advance_decoding(chosen, &mut self.ids, &mut self.history, &mut self.position, base);
    }
}
