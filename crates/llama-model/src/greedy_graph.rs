//! Greedy decoding with each step recorded once as a CUDA graph and replayed
//! ([`gpu_kernels::StepGraph`]): a token costs one graph launch on the host instead of the
//! step's ≈ 185 kernel launches (each ≈ 19 µs of cubecl's server work on the H200 machine, as
//! much as the kernels themselves take).
//!
//! For one recording to serve every position, the step reads everything that changes from
//! device buffers it updates in place: the input id `[1, 1]` (the last chosen one), the position
//! `[1]` (the RoPE rows and the cache row are read at it: [`RopeTables::at_device_position`]),
//! and a history `[1, capacity]` where each step leaves its chosen id at its position
//! ([`gpu_kernels::advance_decoding`]). The step's cache is reserved for every position of the
//! run; the prompt is processed into a cache of its own, whose keys and values are then copied
//! into the step's buffers and the input id and position set — in place
//! ([`gpu_kernels::copy_positions`], [`gpu_kernels::start_decoding`]). The host replays and
//! reads the history in batches (1, 2, 4, … up to [`crate::greedy::MAX_BATCH`] steps), as
//! [`crate::greedy`] reads its ids.
//!
//! A [`crate::Decoder`] keeps the step (its state buffers and graph, a [`KeptStep`]) between
//! its calls: a later generation of the same cache capacity, on the same thread, starts the
//! kept buffers over the same way and replays the graph it already has — no recording (a
//! warm-up step, the capture, the instantiation and the pool's preparation: 10–50 ms on the
//! H200 machine) per call. Positions past the prompt hold the previous generation's keys until
//! each step overwrites its own row before attending to it.
//!
//! Same tokens as [`crate::greedy`]: the same kernels on the same values; only the position's
//! source differs. Chosen by [`crate::StepIssue`]: by default on CUDA when every block takes the
//! fused decoding route.

use burn::tensor::{Int, Tensor};
use gpu_kernels::decode_position::{MAX_POSITIONS, attends_on_device};
use gpu_kernels::env_switch::EnvSwitch;
use gpu_kernels::{StepGraph, advance_decoding, start_decoding};

use crate::generate::{Finish, Generated, ids_tensor};
use crate::greedy::{MAX_BATCH, choose, emit, read_ids};
use crate::model::Llama;
use crate::nn::RopeTables;
use crate::nn::cache::capacity_for;
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
    let c = &model.config;
    prompt_len + max_new_tokens <= MAX_POSITIONS
        && StepGraph::supported(&model.embed_tokens.device())
        && model.decodes_fused()
        && attends_on_device(c.num_heads, c.num_kv_heads, c.head_dim)
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
             (packed projections, no enabled adapter), heads of a multiple of 32 up to 128 values and at most {MAX_POSITIONS} \
             positions (asked {})",
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

/// A decoding step kept between the calls of a [`crate::Decoder`] (see the module docs).
pub(crate) struct KeptStep {
    /// The cache's positions.
    capacity: usize,
    /// The thread that recorded it (a graph replays on its recording thread's stream).
    thread: std::thread::ThreadId,
    replay: Replay,
    /// `None` until the first step has run (recorded, for [`Replay::Graph`]).
    graph: Option<StepGraph>,
    state: State,
}

/// Greedy generation after `prompt` with the position held on the device (see the module
/// docs); the caller has checked the prompt, the length limit and [`steps_for`]. `kept`: a
/// decoder's slot — a step kept there is used when it fits this run (else dropped), and the
/// run's step is left there.
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
    kept: Option<&mut Option<KeptStep>>,
) -> Result<Generated> {
    if max_new_tokens == 0 {
        return Ok(Generated { tokens: Vec::new(), logprobs: Vec::new(), finish: Finish::Length });
    }
    let capacity = capacity_for(prompt.len() + max_new_tokens);
    let thread = std::thread::current().id();
    let mut slot = kept;
    // A kept step of another capacity, thread or replay is dropped here (a graph's drop waits
    // for its replays).
    let reusable =
        slot.as_deref_mut().and_then(Option::take).filter(|k| k.capacity == capacity && k.thread == thread && k.replay == replay);
    // The prompt into a cache of its own, then into the step's buffers: a kept step's or a new
    // one's, the same way (so the first call also runs — and compiles — every kernel a kept
    // step's later calls run).
    let base = prompt.len();
    let mut cache = model.new_cache();
    let first = choose(model, model.forward_hidden(ids_tensor(model, prompt), Some(&mut cache)));
    let mut step =
        reusable.unwrap_or_else(|| KeptStep { capacity, thread, replay, graph: None, state: State::new(model, &first, capacity) });
    step.state.start(&cache, first, base);
    let out = run_steps(model, &mut step, base, max_new_tokens, stop_tokens, on_token)?;
    if let Some(slot) = slot {
        *slot = Some(step);
    }
    Ok(out)
}

/// The run after the prompt: the first id (the prompt's), then one step per token — the first
/// step of a fresh `step` run eagerly (for a graph: its warm-up, then recorded), every other a
/// replay — reading the history in batches.
fn run_steps(
    model: &Llama,
    step: &mut KeptStep,
    base: usize,
    max_new_tokens: usize,
    stop_tokens: &[u32],
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generated> {
    let mut out = Generated { tokens: Vec::new(), logprobs: Vec::new(), finish: Finish::Length };
    let first_id = read_ids(step.state.ids.clone())?[0];
    if !emit(first_id, &mut out, stop_tokens, on_token) || max_new_tokens == 1 {
        return Ok(out);
    }
    // Step k (k = 0, 1, …) reads the id at position `base + k` and leaves the next in
    // history[base + k].
    let steps = max_new_tokens - 1;
    let mut issued = 0;
    if step.graph.is_none() {
        let device = step.state.ids.device();
        let state = &mut step.state;
        step.graph = match step.replay {
            Replay::Graph => Some(
                StepGraph::record(&device, || {
                    state.step(model);
                    Ok(())
                })
                .map_err(step_error)?,
            ),
            Replay::Eager => {
                state.step(model);
                None
            }
        };
        issued = 1;
    }
    let (mut done, mut batch) = (0, 1);
    while done < steps {
        while issued < steps && issued - done < batch {
            match &step.graph {
                Some(g) => g.replay().map_err(step_error)?,
                None => step.state.step(model),
            }
            issued += 1;
        }
        let ids = read_ids(step.state.history.clone().narrow(1, base + done, issued - done))?;
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
    /// `[1, capacity]`: the id chosen at position `p` in column `p`.
    history: Tensor<2, Int>,
    /// Reserved for every position of the run.
    cache: crate::KvCache,
    /// RoPE tables of every position of the cache.
    tables: RopeTables,
}

impl State {
    /// Buffers for `capacity` positions, the ids in the dtype of `chosen` (a chosen id); to be
    /// started ([`State::start`]) before a step runs.
    fn new(model: &Llama, chosen: &Tensor<2, Int>, capacity: usize) -> Self {
        let (device, int_dtype) = (chosen.device(), chosen.dtype());
        let mut cache = model.new_cache();
        model.reserve_cache(&mut cache, capacity);
        let position = Tensor::<1, Int>::zeros([1], (&device, int_dtype));
        let tables = RopeTables::at_device_position(&model.inv_freq, capacity, position.clone(), model.embed_tokens.dtype());
        Self {
            ids: Tensor::zeros([1, 1], (&device, int_dtype)),
            position,
            history: Tensor::zeros([1, capacity], (&device, int_dtype)),
            cache,
            tables,
        }
    }

    /// Starts the kept state over for a new prompt (`prompt` its cache, `first` its chosen id),
    /// writing the kept buffers in place on CUDA.
    fn start(&mut self, prompt: &crate::KvCache, first: Tensor<2, Int>, base: usize) {
        for (kept, new) in self.cache.layers.iter_mut().zip(&prompt.layers) {
            kept.load_prefix(new);
        }
        self.cache.len = base;
        start_decoding(first, &mut self.ids, &mut self.position, base);
    }

    /// One decoding step at the device position. (The tables take the position anew each step:
    /// off CUDA, advancing replaces the position's tensor instead of writing it in place.)
    fn step(&mut self, model: &Llama) {
        let rope = RopeTables { device_position: Some(self.position.clone()), ..self.tables.clone() };
        let chosen = choose(model, model.forward_hidden_at(self.ids.clone(), &rope, &mut self.cache));
        advance_decoding(chosen, &mut self.ids, &mut self.history, &mut self.position, 0);
    }
}
