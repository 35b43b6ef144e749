//! The SFT loop: micro-batches → loss → backward → accumulated LoRA gradients → global-norm
//! clip → AdamW → schedule; with logging, evaluation and checkpoints.
//!
//! With `gradient_checkpointing` (the default, as in HF's recipes) each decoder block is
//! recomputed in the backward ([`crate::recompute`]).
//!
//! Determinism: the data order of epoch `e` is a function of `(seed, e)`, the adapter init of
//! `seed`, and dropout at step `t`, micro-batch `k` of `(seed, t, k)` — and of the block `i`,
//! `(seed, t, k, i)`, with recomputation. The device RNG is re-seeded before each micro-batch
//! (or block) that draws dropout masks; it is process-wide, so a lock makes the steps of
//! concurrent runs in one process — and the dropout forwards of thread ranks — take turns, and
//! nothing re-seeds it outside that lock. A run resumed from a checkpoint therefore repeats the
//! uninterrupted run's computation exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use llama_model::Llama;
use lora::LoraConfig;

use crate::args::TrainingArgs;
use crate::callback::{Callback, LogRecord};
use crate::checkpoint::{self, FileSystem, Storage, TrainerState};
use crate::data::{Batch, Example, collate, epoch_batches};
use crate::loss::{causal_lm_loss, causal_lm_loss_sum_from_hidden};
use crate::optim::{AdamW, AdamWConfig, clip};
use crate::parallel::{Collective, SingleRank};
use crate::recompute::{self, BlockSeeds, NoDraws, Reseed};
use crate::schedule::Schedule;
use crate::{Error, Result};

/// What a run needs besides the model.
pub struct RunSetup {
    /// Loop settings.
    pub args: TrainingArgs,
    /// Adapter settings.
    pub lora: LoraConfig,
    /// Written into `adapter_config.json`.
    pub base_model_name: String,
    /// The run folder.
    pub output_dir: PathBuf,
    /// Padding id (EOS).
    pub pad_id: u32,
    /// Training examples.
    pub train: Vec<Example>,
    /// Held-out examples.
    pub eval: Vec<Example>,
    /// Continue from the latest checkpoint in `output_dir` when there is one.
    pub resume: bool,
    /// Stop (as if killed) after this many steps of this process — for tests and budgets.
    pub stop_after: Option<usize>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Steps completed (total, including before a resume).
    pub steps: usize,
    /// Training loss of every step, `(step, loss)`.
    pub losses: Vec<(usize, f64)>,
    /// Held-out loss before the first step (`None` without eval data).
    pub eval_loss_before: Option<f64>,
    /// Held-out loss after the last step.
    pub eval_loss_after: Option<f64>,
    /// Trained tokens per second over the run (this process).
    pub tokens_per_s: f64,
    /// Peak resident memory in MiB.
    pub peak_rss_mib: Option<f64>,
    /// The step the run resumed from, if any.
    pub resumed_from: Option<usize>,
}

/// A model being fine-tuned.
pub struct Trainer {
    model: Llama,
    setup: RunSetup,
    device: Device,
    optimizer: AdamW,
    schedule: Schedule,
    state: TrainerState,
    batches_per_epoch: usize,
    storage: Box<dyn Storage>,
    callbacks: Vec<Box<dyn Callback>>,
    resumed_from: Option<usize>,
    checkpoints: bool,
    collective: Box<dyn Collective>,
    /// Under `lora_autocast`: the adapters' f32 factors, which the optimizer updates, while the
    /// model holds their bf16 copies (see [`Trainer::new`]); `None` otherwise.
    masters: Option<Vec<Tensor<2>>>,
}

/// Held for the whole of an optimizer step: burn's device RNG (dropout) is process-wide, so
/// steps of concurrent runs in one process take turns, each re-seeding it first.
static STEP_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `KINDLING_LORA_FACTORS=cast`: under `lora_autocast`, keep the f32 factors in the model and
/// cast them to bf16 at each use (three casts per factor and step with recomputation, and their
/// gradients cast back to f32) instead of keeping bf16 copies beside f32 masters — the same
/// values either way, to compare the two on a device.
static CAST_FACTORS: gpu_kernels::env_switch::EnvSwitch = gpu_kernels::env_switch::EnvSwitch::new("KINDLING_LORA_FACTORS", "cast");

/// `KINDLING_CLIP=sync`: wait for the gradient norm before queuing the updates (as a host-side
/// clipping coefficient would), to compare the two on a device.
static SYNC_CLIP: gpu_kernels::env_switch::EnvSwitch = gpu_kernels::env_switch::EnvSwitch::new("KINDLING_CLIP", "sync");

/// A stable seed for `(run seed, a, b)`.
pub(crate) fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^ (x >> 33)
}

/// The model's logits for a batch; packed rows keep their sequences apart.
fn logits(model: &Llama, ids: Tensor<2, Int>, batch: &Batch) -> Tensor<3> {
    model.logits(hidden(model, ids, batch))
}

/// The final hidden states (after the final norm), `[batch, len, d]`.
fn hidden(model: &Llama, ids: Tensor<2, Int>, batch: &Batch) -> Tensor<3> {
    if batch.packed { model.forward_hidden_packed(ids, &batch.position_ids) } else { model.forward_hidden(ids, None) }
}

fn trainable(model: &Llama) -> Vec<Tensor<2>> {
    (0..model.layers.len()).flat_map(|i| crate::recompute::block_trainable(model, i)).collect()
}

fn set_trainable(model: &mut Llama, values: Vec<Tensor<2>>) {
    let mut it = values.into_iter();
    for (_, p) in model.projections_mut() {
        if let Some(l) = p.lora.as_mut() {
            if let (Some(a), Some(b)) = (it.next(), it.next()) {
                l.a = Param::from_tensor(a.require_grad());
                l.b = Param::from_tensor(b.require_grad());
            }
        }
    }
}

impl Trainer {
    /// Prepares a run: freezes the base, attaches fresh adapters (seeded), and restores the
    /// latest checkpoint when resuming.
    ///
    /// `model` must live on an autodiff device (`Device::….autodiff()`).
    ///
    /// # Errors
    /// Invalid settings, an empty training set, or a checkpoint that does not fit the run.
    pub fn new(model: Llama, setup: RunSetup) -> Result<Self> {
        setup.args.validate()?;
        if setup.train.is_empty() {
            return Err(Error::Config("the training set is empty".into()));
        }
        let device = model.embed_tokens.device();
        if !device.is_autodiff() {
            return Err(Error::Config("the model must be on an autodiff device to train".into()));
        }
        let args = &setup.args;
        if let Some(tf32) = args.tf32 {
            use gpu_kernels::F32MatmulPrecision::{Highest, Tf32};
            gpu_kernels::set_f32_matmul_precision(if tf32 { Tf32 } else { Highest });
        }
        lora::autocast::set_bf16_side_path(args.lora_autocast);
        let mut model = model.no_grad();
        {
            let _turn = STEP_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            device.seed(mix(args.seed, 0, u64::MAX));
            gpu_kernels::dropout::set_seed(mix(args.seed, 1, u64::MAX));
            llama_model::adapters::attach_lora(&mut model, &setup.lora)?;
        }
        let shapes: Vec<[usize; 2]> = trainable(&model).iter().map(|t| t.dims()).collect();
        let optimizer = AdamW::new(
            AdamWConfig { beta1: args.adam_beta1, beta2: args.adam_beta2, eps: args.adam_epsilon, weight_decay: args.weight_decay },
            &shapes,
            &device,
            args.optim,
        );
        let batches_per_epoch = setup.train.len().div_ceil(args.per_device_train_batch_size);
        let total = args.total_steps(batches_per_epoch);
        let schedule = Schedule::new(args.lr_scheduler_type, args.learning_rate, total, args.warmup_ratio, args.warmup_steps);
        let fingerprint = fingerprint(&setup);
        let state = TrainerState { step: 0, epoch: 0, cursor: 0, seed: args.seed, tokens_seen: 0, losses: Vec::new(), fingerprint };
        let mut trainer = Self {
            model,
            setup,
            device,
            optimizer,
            schedule,
            state,
            batches_per_epoch,
            storage: Box::new(FileSystem),
            callbacks: Vec::new(),
            resumed_from: None,
            checkpoints: true,
            collective: Box::new(SingleRank),
            masters: None,
        };
        if trainer.setup.resume {
            trainer.restore()?;
        }
        if trainer.setup.args.lora_autocast && trainer.model.embed_tokens.dtype() == DType::BF16 && !CAST_FACTORS.is_on() {
            trainer.keep_masters();
        }
        Ok(trainer)
    }

    /// Under `lora_autocast` the side path reads bf16 factors: rather than casting each f32
    /// factor at every use (forward, recomputation, backward) and each gradient back to f32,
    /// the model holds bf16 copies and the optimizer updates f32 masters, from which the
    /// copies are made again after each update (the values autocast's casts give, so the run
    /// is the same; the gradients, bf16 products' outputs either way, stay bf16 until summed
    /// over micro-batches or ranks, which happens in f32). Memory: the bf16 copies take what
    /// the gradients' halving frees.
    fn keep_masters(&mut self) {
        let masters: Vec<Tensor<2>> = trainable(&self.model).into_iter().map(|t| t.detach()).collect();
        if masters.is_empty() || masters.iter().any(|m| m.dtype() != DType::F32) {
            return;
        }
        set_trainable(&mut self.model, masters.iter().map(crate::optim::bf16_copy).collect());
        self.masters = Some(masters);
    }

    /// Keeps the adapters' f32 factors in the model and casts them at each use under
    /// `lora_autocast` (`KINDLING_LORA_FACTORS=cast` does this for every run): slower, and the
    /// same values as the default.
    pub fn with_factors_cast_per_use(mut self) -> Self {
        if let Some(masters) = self.masters.take() {
            set_trainable(&mut self.model, masters);
        }
        self
    }

    /// The model with the adapters' f32 factors (the masters under `lora_autocast`).
    fn model_with_masters(&self) -> std::borrow::Cow<'_, Llama> {
        match &self.masters {
            Some(masters) => {
                let mut model = self.model.clone();
                set_trainable(&mut model, masters.clone());
                std::borrow::Cow::Owned(model)
            }
            None => std::borrow::Cow::Borrowed(&self.model),
        }
    }

    /// Replaces where checkpoints are written (tests simulate a full disk).
    pub fn with_storage(mut self, storage: Box<dyn Storage>) -> Self {
        self.storage = storage;
        self
    }

    /// Makes this trainer one rank of a data-parallel group: each global batch is
    /// `per_device_train_batch_size × world_size` sequences, this rank trains on its shard,
    /// gradients are summed across ranks, and only rank 0 logs and saves. In-process thread
    /// ranks share burn's process-wide RNG: each re-seeds it and draws its dropout masks under
    /// a lock (only their dropout forwards take turns), so runs stay reproducible.
    pub fn with_collective(mut self, collective: Box<dyn Collective>) -> Self {
        let world = collective.world_size();
        let per_epoch = self.setup.train.len().div_ceil(self.setup.args.per_device_train_batch_size * world);
        self.batches_per_epoch = per_epoch;
        let args = &self.setup.args;
        let total = args.total_steps(per_epoch);
        self.schedule = Schedule::new(args.lr_scheduler_type, args.learning_rate, total, args.warmup_ratio, args.warmup_steps);
        self.collective = collective;
        self
    }

    fn is_main(&self) -> bool {
        self.collective.rank() == 0
    }

    /// Writes no checkpoints (benchmarks).
    pub fn without_checkpoints(mut self) -> Self {
        self.checkpoints = false;
        self
    }

    /// Trainable (adapter) parameters.
    pub fn trainable_params(&self) -> usize {
        trainable(&self.model).iter().map(|t| t.shape().num_elements()).sum()
    }

    /// Adds a callback.
    pub fn with_callback(mut self, callback: Box<dyn Callback>) -> Self {
        self.callbacks.push(callback);
        self
    }

    /// The total number of optimizer steps of the run.
    pub fn total_steps(&self) -> usize {
        self.schedule.total
    }

    /// The model (with its adapters; under `lora_autocast` their factors are the bf16 copies
    /// the steps compute with: [`Trainer::into_model`] gives the f32 ones).
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// Consumes the trainer, returning the model with the adapters' f32 factors.
    pub fn into_model(mut self) -> Llama {
        if let Some(masters) = self.masters.take() {
            set_trainable(&mut self.model, masters);
        }
        self.model
    }

    fn restore(&mut self) -> Result<()> {
        let Some((step, dir)) = checkpoint::latest(&self.setup.output_dir) else { return Ok(()) };
        let (adapter, moments, state) = checkpoint::load(&dir)?;
        if state.fingerprint != self.state.fingerprint {
            return Err(Error::Checkpoint(format!(
                "{} was written by a run with different settings (model, data, LoRA or training arguments); use a new output folder",
                dir.display()
            )));
        }
        // The factors keep the dtype the fresh adapters have (f32), whatever the model's.
        let dtype = trainable(&self.model).first().map_or(DType::F32, Tensor::dtype);
        llama_model::adapters::apply_adapter_as(&mut self.model, &adapter, &dir, dtype)?;
        for (_, p) in self.model.projections_mut() {
            if let Some(l) = p.lora.as_mut() {
                l.dropout = burn::nn::DropoutConfig::new(self.setup.lora.dropout).init();
                l.a = Param::from_tensor(l.a.val().require_grad());
                l.b = Param::from_tensor(l.b.val().require_grad());
            }
        }
        self.optimizer.import(moments, state.step, &self.device)?;
        self.state = state;
        self.resumed_from = Some(step);
        tracing::info!(step, dir = %dir.display(), "resumed");
        Ok(())
    }

    /// This rank's shard of the next global batch, and the loss positions of the whole global
    /// batch.
    fn next_batch(&mut self) -> (Batch, usize) {
        let args = &self.setup.args;
        let (world, rank) = (self.collective.world_size(), self.collective.rank());
        let global = args.per_device_train_batch_size * world;
        let order = epoch_batches(&self.setup.train, global, args.group_by_length, args.seed, self.state.epoch);
        if self.state.cursor >= order.len() {
            self.state.epoch += 1;
            self.state.cursor = 0;
            return self.next_batch();
        }
        let indices = &order[self.state.cursor];
        let global_tokens: usize = indices.iter().map(|&i| collate(&[&self.setup.train[i]], self.setup.pad_id).num_loss_tokens).sum();
        let per_rank = indices.len().div_ceil(world);
        let shard: Vec<&Example> = indices.iter().skip(rank * per_rank).take(per_rank).map(|&i| &self.setup.train[i]).collect();
        self.state.cursor += 1;
        (collate(&shard, self.setup.pad_id), global_tokens)
    }

    fn tensors(&self, batch: &Batch, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
        let shape = [batch.batch, batch.seq_len];
        let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.input_ids.clone(), shape), device);
        let labels = Tensor::<2, Int>::from_data(TensorData::new(batch.labels.clone(), shape), device);
        (ids, labels)
    }

    /// One optimizer step; returns `(loss, grad_norm, lr, tokens)`.
    ///
    /// The loss is the mean over every counted position of the step's micro-batches (of every
    /// rank): each micro-batch contributes `Σ ℓ / N`, `N` the counted positions of the step.
    fn step(&mut self) -> Result<(f64, f64, f64, usize)> {
        let world = self.collective.world_size();
        // Thread ranks cannot take turns mid-step (they meet in the all-reduce).
        let _turn = (world == 1).then(|| STEP_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let accum = self.setup.args.gradient_accumulation_steps;
        let dropout = self.setup.lora.dropout > 0.0;
        let batches: Vec<(Batch, usize)> = (0..accum).map(|_| self.next_batch()).collect();
        let step_tokens: usize = batches.iter().map(|(_, n)| n).sum::<usize>().max(1);
        let params = trainable(&self.model);
        let mut sums: Vec<Option<Tensor<2>>> = vec![None; params.len()];
        let mut loss_total = 0.0;
        let mut tokens = 0;
        crate::step_phases::start();
        for (micro, (batch, _)) in batches.iter().enumerate() {
            tokens += batch.num_tokens;
            let (ids, labels) = self.tensors(batch, &self.device);
            let stream = (micro * world + self.collective.rank()) as u64;
            let seed = mix(self.state.seed, self.state.step as u64 + 1, stream);
            let step = self.state.step + 1;
            let finite = |value: f32| if value.is_finite() { Ok(()) } else { Err(Error::NonFinite { step, loss: value as f64 }) };
            let (value, micro_grads) = if self.setup.args.gradient_checkpointing {
                // Both passes of every block draw dropout masks: thread ranks take turns for
                // the whole micro-batch (the all-reduce comes after it).
                let _draws = (dropout && world > 1).then(|| STEP_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                let positions = batch.packed.then_some(batch.position_ids.as_slice());
                let seeds = BlockSeeds { device: &self.device, base: seed };
                let seeds: &dyn Reseed = if dropout { &seeds } else { &NoDraws };
                let r = recompute::loss_and_grads(&self.model, ids, labels, positions, step_tokens as f64, seeds, finite)?;
                (r.loss, r.grads)
            } else {
                let hidden = if dropout {
                    // Thread ranks share the process-wide RNG with each other (and with a rank
                    // drawing its adapter init): re-seed and draw under the lock.
                    let _draws = (world > 1).then(|| STEP_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                    self.device.seed(seed);
                    hidden(&self.model, ids, batch)
                } else {
                    // Nothing random: leave the RNG alone (another rank may be drawing from it).
                    hidden(&self.model, ids, batch)
                };
                let loss = causal_lm_loss_sum_from_hidden(&self.model, hidden, labels).div_scalar(step_tokens as f64);
                let value: f32 = crate::host_wait::timed(|| loss.clone().into_scalar());
                finite(value)?;
                let grads = loss.backward();
                let g: Result<Vec<Tensor<2>>> = params
                    .iter()
                    .map(|p| p.grad(&grads).ok_or_else(|| Error::Tensor("an adapter parameter received no gradient".into())))
                    .collect();
                crate::step_phases::mark("forward and backward", &self.device);
                (value, g?)
            };
            loss_total += value as f64;
            // bf16 gradients (of the bf16 copies) are summed in f32, as the cast-per-use
            // path's f32 gradients are.
            let widen = self.masters.is_some() && (accum > 1 || world > 1);
            for (sum, g) in sums.iter_mut().zip(micro_grads) {
                let g = if widen { g.cast(DType::F32) } else { g };
                *sum = Some(match sum.take() {
                    Some(s) => s + g,
                    None => g,
                });
            }
        }
        let mut grads: Vec<Tensor<2>> = sums.into_iter().flatten().collect();
        if world > 1 {
            let device = grads.first().map(|g| g.device()).unwrap_or_else(|| self.device.clone());
            grads.push(Tensor::from_data(TensorData::new(vec![loss_total as f32], [1, 1]), &device));
            grads = self.collective.all_reduce_sum(grads)?;
            let loss = grads.pop().ok_or_else(|| Error::Tensor("all-reduce lost the loss".into()))?;
            loss_total = loss.into_scalar::<f32>() as f64;
        }
        let max_norm = (self.setup.args.max_grad_norm > 0.0).then_some(self.setup.args.max_grad_norm);
        // The clipping factor stays on the device: the updates are queued behind the backward
        // without waiting for it, and the norm is read once they are.
        let clipping = clip(&grads, max_norm, &self.device);
        crate::step_phases::mark("gradient norm", &self.device);
        if SYNC_CLIP.is_on() {
            clipping.norm()?;
        }
        let lr = self.schedule.lr_at(self.state.step);
        // The masters go to the optimizer by value, so that it frees each group's old values
        // as it goes (an error here leaves no masters: resume from the last checkpoint).
        let values = match self.masters.take() {
            Some(masters) => {
                drop(params);
                // The update's kernel also writes the bf16 copies the model computes with.
                let (updated, copies) = self.optimizer.update_with_bf16_copies(lr, masters, grads, &clipping.factor)?;
                self.masters = Some(updated);
                copies
            }
            None => {
                let detached = params.into_iter().map(|p| p.detach()).collect();
                self.optimizer.update_scaled(lr, detached, grads, Some(&clipping.factor))?
            }
        };
        crate::step_phases::mark("adamw", &self.device);
        set_trainable(&mut self.model, values);
        crate::step_phases::mark("new parameters", &self.device);
        Ok((loss_total, crate::host_wait::timed(|| clipping.norm())?, lr, tokens))
    }

    /// Mean held-out loss (token-weighted over batches), `None` without eval data.
    ///
    /// # Errors
    /// Tensor read-back failures.
    pub fn evaluate(&self) -> Result<Option<f64>> {
        if self.setup.eval.is_empty() {
            return Ok(None);
        }
        let model = self.model.valid();
        let device = model.embed_tokens.device();
        let bs = self.setup.args.per_device_eval_batch_size.max(1);
        let (mut weighted, mut count) = (0.0f64, 0usize);
        for chunk in self.setup.eval.chunks(bs) {
            let picked: Vec<&Example> = chunk.iter().collect();
            let batch = collate(&picked, self.setup.pad_id);
            let (ids, labels) = self.tensors(&batch, &device);
            let loss: f32 = causal_lm_loss(logits(&model, ids, &batch), labels).into_scalar();
            weighted += loss as f64 * batch.num_loss_tokens as f64;
            count += batch.num_loss_tokens;
        }
        Ok((count > 0).then(|| weighted / count as f64))
    }

    fn save(&mut self) -> Result<PathBuf> {
        if !self.is_main() {
            return Ok(self.setup.output_dir.clone());
        }
        let adapter = llama_model::adapters::extract_adapter(&self.model_with_masters(), &self.setup.lora, &self.setup.base_model_name)?;
        let moments = self.optimizer.export()?;
        let dir = checkpoint::save(&self.setup.output_dir, &adapter, &moments, &self.state, self.storage.as_ref())?;
        if let Some(keep) = self.setup.args.save_total_limit {
            checkpoint::prune(&self.setup.output_dir, keep.max(1));
        }
        for c in &mut self.callbacks {
            c.on_save(self.state.step, &dir);
        }
        Ok(dir)
    }

    fn log(&mut self, record: LogRecord) -> Result<()> {
        if !self.is_main() {
            return Ok(());
        }
        let path = self.setup.output_dir.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let line = serde_json::to_string(&record).map_err(|e| Error::io(&path, e))?;
        writeln!(f, "{line}").map_err(|e| Error::io(&path, e))?;
        for c in &mut self.callbacks {
            c.on_log(&record);
        }
        Ok(())
    }

    /// Runs to the end (or `stop_after`), calling `on_step(step, total, loss)` after each step.
    ///
    /// # Errors
    /// A non-finite loss (the last good checkpoint is kept), checkpoint or log write failures.
    pub fn train(&mut self, mut on_step: impl FnMut(usize, usize, f64)) -> Result<RunSummary> {
        let out = self.setup.output_dir.clone();
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
        let stale = checkpoint::remove_stale_temporaries(&out);
        if stale > 0 {
            tracing::warn!(stale, "removed the temporary folders of interrupted checkpoint saves");
        }
        truncate_metrics(&out.join("metrics.jsonl"), self.state.step)?;
        let total = self.schedule.total;
        let eval_every = self.setup.args.eval_steps.unwrap_or(self.setup.args.logging_steps);
        let eval_loss_before = if self.state.step == 0 { self.evaluate()? } else { None };
        if let Some(l) = eval_loss_before {
            let mut r = LogRecord::at(0, 0.0);
            r.eval_loss = Some(l);
            self.log(r)?;
        }
        let started = Instant::now();
        let mut window = (Instant::now(), 0usize, 0.0f64, 0usize);
        let mut run_tokens = 0usize;
        let mut done_here = 0usize;
        let mut last_eval = None;
        while self.state.step < total {
            if self.setup.stop_after.is_some_and(|n| done_here >= n) {
                break;
            }
            let (loss, norm, lr, tokens) = self.step()?;
            self.state.step += 1;
            self.state.tokens_seen += tokens as u64;
            self.state.losses.push((self.state.step, loss));
            done_here += 1;
            run_tokens += tokens;
            window.1 += tokens;
            window.2 += loss;
            window.3 += 1;
            on_step(self.state.step, total, loss);
            let step = self.state.step;
            let epoch = self.state.epoch as f64 + self.state.cursor as f64 / self.batches_per_epoch.max(1) as f64;
            if step % self.setup.args.logging_steps == 0 || step == total {
                let mut r = LogRecord::at(step, epoch);
                r.loss = Some(window.2 / window.3 as f64);
                r.learning_rate = Some(lr);
                r.grad_norm = Some(norm);
                r.tokens_per_s = Some(window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9));
                r.peak_rss_mib = crate::memory::peak_rss_mib();
                self.log(r)?;
                window = (Instant::now(), 0, 0.0, 0);
            }
            if step % eval_every == 0 || step == total {
                let eval_loss = self.evaluate()?;
                let valid = self.model.valid();
                let mut extra = serde_json::Map::new();
                for (i, c) in self.callbacks.iter_mut().enumerate() {
                    match c.on_evaluate(step, &valid) {
                        Ok(Some(v)) => {
                            extra.insert(format!("callback{i}"), v);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            extra.insert(format!("callback{i}_error"), serde_json::Value::from(e.to_string()));
                        }
                    }
                }
                if eval_loss.is_some() || !extra.is_empty() {
                    let mut r = LogRecord::at(step, epoch);
                    r.eval_loss = eval_loss;
                    r.extra = (!extra.is_empty()).then_some(serde_json::Value::Object(extra));
                    self.log(r)?;
                }
                last_eval = eval_loss.or(last_eval);
            }
            if self.checkpoints && (step % self.setup.args.save_steps == 0 || step == total) {
                self.save()?;
            }
        }
        let eval_loss_after = if self.state.step == total { last_eval } else { None };
        Ok(RunSummary {
            steps: self.state.step,
            losses: self.state.losses.clone(),
            eval_loss_before,
            eval_loss_after,
            tokens_per_s: run_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
            peak_rss_mib: crate::memory::peak_rss_mib(),
            resumed_from: self.resumed_from,
        })
    }
}

/// Drops `metrics.jsonl` lines past `step` (a resumed run rewrites them).
fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: Vec<&str> =
        text.lines().filter(|l| serde_json::from_str::<LogRecord>(l).map(|r| r.step <= step && step > 0).unwrap_or(false)).collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    std::fs::write(path, body).map_err(|e| Error::io(path, e))
}

/// A digest of everything that must be equal for a resume to be exact.
fn fingerprint(setup: &RunSetup) -> String {
    let mut args = setup.args.clone();
    // Bookkeeping settings may change across a resume.
    args.logging_steps = 0;
    args.save_steps = 0;
    args.eval_steps = None;
    args.save_total_limit = None;
    let text = serde_json::json!({
        "args": args, "lora": setup.lora, "train": setup.train.len(), "eval": setup.eval.len(),
        "first": setup.train.first().map(|e| e.input_ids.clone()),
    })
    .to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    format!("{h:016x}")
}
