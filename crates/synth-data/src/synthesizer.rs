//! The `generate_goldens_from_docs` pipeline.
//!
//! For each document, in order: load → chunk by tokens → embed the chunks → build contexts
//! (critic-scored seed chunks grouped with their nearest neighbours, see [`crate::contexts`]) →
//! per context, ask for inputs → score each input with the critic and rewrite it with the
//! critic's feedback until it reaches the threshold (bounded) → apply `num_evolutions` evolutions
//! drawn by weight → optionally restyle → optionally write the expected output.
//!
//! Every random choice comes from one RNG per document, seeded from the configured seed and the
//! document's position, and that document seed is passed to the models: the same inputs, seed
//! and deterministic models give byte-identical output.

use std::path::Path;

use llm_api::{CompletionOptions, Embedder, Llm};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::Result;
use crate::chunking::{Chunk, TokenChunker};
use crate::config::SynthConfig;
use crate::contexts::{BuiltContext, build_contexts, embed_chunks};
use crate::document::{Document, load_document};
use crate::golden::{ChunkRef, Golden};
use crate::json::{Asker, Score};
use crate::prompts;

/// Where the pipeline is, for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Documents finished.
    pub documents_done: usize,
    /// Documents in the run.
    pub documents_total: usize,
    /// Goldens made so far.
    pub goldens_made: usize,
    /// Goldens the run can make at most (`documents × goldens per document`).
    pub goldens_target: usize,
}

#[derive(Deserialize)]
struct InputItem {
    input: String,
}

#[derive(Deserialize)]
struct InputList {
    data: Vec<InputItem>,
}

#[derive(Deserialize)]
struct InputFeedback {
    #[serde(default)]
    feedback: String,
    score: Score,
}

#[derive(Deserialize)]
struct RewrittenInput {
    rewritten_input: String,
}

/// Makes goldens from documents through a generator [`Llm`], a critic [`Llm`] (the generator
/// unless set) and an [`Embedder`].
pub struct Synthesizer<'a> {
    generator: &'a dyn Llm,
    critic: &'a dyn Llm,
    embedder: &'a dyn Embedder,
    chunker: TokenChunker,
    config: SynthConfig,
}

/// A well-mixed 64-bit seed for document `index` (SplitMix64 finalizer).
fn document_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Trims a free-text rewrite: drops a leading label and surrounding quotes.
fn clean_rewrite(text: &str) -> String {
    let mut t = text.trim();
    for label in ["rewritten input:", "evolved input:", "input:"] {
        if t.len() >= label.len() && t.is_char_boundary(label.len()) && t[..label.len()].eq_ignore_ascii_case(label) {
            t = t[label.len()..].trim();
        }
    }
    let t = t.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(t);
    t.trim().to_string()
}

impl<'a> Synthesizer<'a> {
    /// A synthesizer that chunks with `tokenizer` and uses `generator` for generation and
    /// critique alike (see [`Synthesizer::with_critic`]).
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is invalid.
    pub fn new(generator: &'a dyn Llm, embedder: &'a dyn Embedder, tokenizer: &Tokenizer, config: SynthConfig) -> Result<Self> {
        config.validate()?;
        let chunker = TokenChunker::new(tokenizer, config.context.chunk_size, config.context.chunk_overlap)?;
        Ok(Self { generator, critic: generator, embedder, chunker, config })
    }

    /// Uses a different model to score contexts and inputs.
    pub fn with_critic(mut self, critic: &'a dyn Llm) -> Self {
        self.critic = critic;
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &SynthConfig {
        &self.config
    }

    fn asker<'m>(&self, llm: &'m dyn Llm, seed: u64) -> Asker<'m> {
        Asker {
            llm,
            options: CompletionOptions {
                max_tokens: self.config.max_tokens,
                temperature: self.config.temperature,
                seed: Some(seed),
                ..CompletionOptions::default()
            },
            max_json_retries: self.config.max_json_retries,
        }
    }

    /// Loads every document (failing on the first bad one, before any model call), then makes
    /// goldens from each. `on_progress` is called at the start, after each golden and after
    /// each document.
    ///
    /// # Errors
    /// Any loader [`Error`] naming the file, [`Error::TooFewChunks`], or [`Error::Llm`] naming
    /// the stage.
    pub fn generate_goldens_from_docs<P: AsRef<Path>>(&self, paths: &[P], on_progress: &mut dyn FnMut(&Progress)) -> Result<Vec<Golden>> {
        let docs = paths.iter().map(|p| load_document(p.as_ref())).collect::<Result<Vec<_>>>()?;
        self.generate_goldens_from_documents(&docs, on_progress)
    }

    /// Makes goldens from documents already loaded.
    ///
    /// # Errors
    /// As [`Synthesizer::generate_goldens_from_docs`].
    pub fn generate_goldens_from_documents(&self, docs: &[Document], on_progress: &mut dyn FnMut(&Progress)) -> Result<Vec<Golden>> {
        let mut progress = Progress {
            documents_done: 0,
            documents_total: docs.len(),
            goldens_made: 0,
            goldens_target: docs.len() * self.config.goldens_per_document(),
        };
        on_progress(&progress);
        let mut goldens = Vec::new();
        for (i, doc) in docs.iter().enumerate() {
            let made = self.goldens_for_document(i, doc, &mut progress, on_progress)?;
            tracing::info!(path = %doc.path.display(), goldens = made.len(), "document done");
            goldens.extend(made);
            progress.documents_done += 1;
            on_progress(&progress);
        }
        Ok(goldens)
    }

    fn goldens_for_document(
        &self,
        doc_index: usize,
        doc: &Document,
        progress: &mut Progress,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<Golden>> {
        let seed = document_seed(self.config.seed, doc_index);
        let mut rng = StdRng::seed_from_u64(seed);
        let generator = self.asker(self.generator, seed);
        let critic = self.asker(self.critic, seed);

        let chunks = self.chunker.chunk(&doc.text)?;
        let embeddings = embed_chunks(self.embedder, doc, &chunks)?;
        let contexts =
            build_contexts(doc, &chunks, &embeddings, self.config.contexts_per_document(), &self.config.context, &critic, &mut rng)?;
        let cap = self.config.goldens_per_document();
        let mut goldens = Vec::new();
        for (c, ctx) in contexts.iter().enumerate() {
            let remaining = cap - goldens.len();
            if remaining == 0 {
                break;
            }
            let want = remaining.min(self.config.max_goldens_per_context);
            let stage = format!("context {c} of {}", doc.path.display());
            for golden in self.goldens_for_context(&stage, doc, &chunks, ctx, want, &generator, &critic, &mut rng)? {
                goldens.push(golden);
                progress.goldens_made += 1;
                on_progress(progress);
            }
        }
        Ok(goldens)
    }

    #[allow(clippy::too_many_arguments)]
    fn goldens_for_context(
        &self,
        stage: &str,
        doc: &Document,
        chunks: &[Chunk],
        ctx: &BuiltContext,
        want: usize,
        generator: &Asker<'_>,
        critic: &Asker<'_>,
        rng: &mut StdRng,
    ) -> Result<Vec<Golden>> {
        let cfg = &self.config;
        let context: Vec<String> = ctx.chunk_indices.iter().map(|&i| chunks[i].text.trim().to_string()).collect();
        let list: InputList = generator.json(
            &format!("inputs for {stage}"),
            prompts::write_inputs(&context, want, &cfg.styling),
            r#"{"data": [{"input": string}]}"#,
        )?;
        let originals: Vec<String> =
            list.data.into_iter().map(|d| d.input.trim().to_string()).filter(|s| !s.is_empty()).take(want).collect();
        if originals.is_empty() {
            tracing::warn!(stage, "the model gave no inputs for this context");
        }

        let mut goldens = Vec::with_capacity(originals.len());
        for (k, original) in originals.into_iter().enumerate() {
            let stage = format!("input {k} of {stage}");
            // Filter: score, and rewrite with the feedback while below the threshold; the
            // recorded score is that of the input kept.
            let mut input = original.clone();
            let mut quality = 0.0;
            for attempt in 0..cfg.filtration.max_quality_retries {
                let fb: InputFeedback =
                    critic.json(&format!("quality of {stage}"), prompts::rate_input(&input), r#"{"feedback": string, "score": number}"#)?;
                quality = fb.score.0;
                if quality >= cfg.filtration.synthetic_input_quality_threshold || attempt + 1 == cfg.filtration.max_quality_retries {
                    break;
                }
                let rewritten: RewrittenInput = generator.json(
                    &format!("rewrite of {stage}"),
                    prompts::rewrite_input(&context, &input, &fb.feedback),
                    r#"{"rewritten_input": string}"#,
                )?;
                if !rewritten.rewritten_input.trim().is_empty() {
                    input = rewritten.rewritten_input.trim().to_string();
                }
            }

            let mut evolutions = Vec::with_capacity(cfg.evolution.num_evolutions);
            for _ in 0..cfg.evolution.num_evolutions {
                let evolution = cfg.evolution.choose(rng);
                let answer = generator.text(
                    &format!("{} evolution of {stage}", evolution.display_name()),
                    prompts::evolve_input(evolution, &input, &context),
                )?;
                let evolved = clean_rewrite(&answer);
                if evolved.is_empty() {
                    tracing::warn!(stage, ?evolution, "empty evolution answer; input kept");
                    continue;
                }
                input = evolved;
                evolutions.push(evolution);
            }

            if cfg.styling.styles_inputs() {
                let styled: InputItem =
                    generator.json(&format!("styling of {stage}"), prompts::style_input(&input, &cfg.styling), r#"{"input": string}"#)?;
                if !styled.input.trim().is_empty() {
                    input = styled.input.trim().to_string();
                }
            }

            let expected_output = if cfg.include_expected_output {
                Some(generator.text(
                    &format!("expected output of {stage}"),
                    prompts::answer_input(&input, &context, cfg.styling.expected_output_format.as_deref()),
                )?)
            } else {
                None
            };

            goldens.push(Golden {
                input,
                expected_output,
                context: context.clone(),
                source_file: doc.path.display().to_string(),
                context_chunks: ctx
                    .chunk_indices
                    .iter()
                    .map(|&i| ChunkRef { index: i, start: chunks[i].start, end: chunks[i].end })
                    .collect(),
                context_similarities: ctx.similarities.clone(),
                evolutions,
                context_quality: ctx.quality,
                synthetic_input_quality: quality,
                original_input: original,
            });
        }
        Ok(goldens)
    }
}

impl std::fmt::Debug for Synthesizer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Synthesizer")
            .field("generator", &self.generator.name())
            .field("critic", &self.critic.name())
            .field("embedder", &self.embedder.name())
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_lose_labels_and_quotes() {
        assert_eq!(clean_rewrite("Rewritten Input: \"How do bees see?\"\n"), "How do bees see?");
        assert_eq!(clean_rewrite("  plain  "), "plain");
        assert_eq!(clean_rewrite("Ünïcode first"), "Ünïcode first");
    }

    #[test]
    fn document_seeds_differ_by_position_and_seed() {
        assert_ne!(document_seed(0, 0), document_seed(0, 1));
        assert_ne!(document_seed(0, 0), document_seed(1, 0));
        assert_eq!(document_seed(5, 2), document_seed(5, 2));
    }
}
