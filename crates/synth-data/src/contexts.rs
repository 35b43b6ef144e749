//! Context construction for one document, as DeepEval's `ContextGenerator` does it:
//!
//! 1. **Selection.** Sample `n·r` distinct candidate chunks (`n` contexts, `r = max_retries`)
//!    with the seeded RNG and have the critic score each one,
//!    `quality = (clarity + depth + structure + relevance) / 4`. Walk the candidates in order:
//!    a chunk scoring above the threshold is taken; after `r` rejections in a row the best of
//!    those `r` is taken anyway. When the document has fewer than `n·r` chunks, `n` are sampled
//!    and all are taken with their scores.
//! 2. **Grouping.** Each taken chunk seeds a context and is joined by its `max_context_length − 1`
//!    most similar chunks of the same document (cosine of the embeddings) whose similarity
//!    exceeds the similarity threshold.
//!
//! Chunks that are only whitespace are never candidates.

use llm_api::Embedder;
use rand::Rng;
use serde::Deserialize;

use crate::chunking::Chunk;
use crate::config::ContextConfig;
use crate::document::Document;
use crate::json::{Asker, Score};
use crate::prompts;
use crate::similarity::cosine;
use crate::{Error, Result};

/// A context: a seed chunk and its most similar neighbours.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltContext {
    /// Indices into the document's chunks, seed first.
    pub chunk_indices: Vec<usize>,
    /// Cosine similarity of each chunk to the seed (1 for the seed).
    pub similarities: Vec<f64>,
    /// The critic's quality score of the seed.
    pub quality: f64,
}

#[derive(Deserialize)]
struct ContextScore {
    clarity: Score,
    depth: Score,
    structure: Score,
    relevance: Score,
}

/// The critic's quality score of one chunk.
fn rate_chunk(critic: &Asker<'_>, doc: &Document, chunk: &Chunk) -> Result<f64> {
    let stage = format!("context quality of chunk {} of {}", chunk.index, doc.path.display());
    let s: ContextScore = critic.json(
        &stage,
        prompts::rate_context(&chunk.text),
        r#"{"clarity": number, "depth": number, "structure": number, "relevance": number}"#,
    )?;
    Ok((s.clarity.0 + s.depth.0 + s.structure.0 + s.relevance.0) / 4.0)
}

/// Embeds every chunk of a document, checking the embedder's answer.
pub(crate) fn embed_chunks(embedder: &dyn Embedder, doc: &Document, chunks: &[Chunk]) -> Result<Vec<Vec<f32>>> {
    let stage = format!("embedding the chunks of {}", doc.path.display());
    let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
    let vectors = embedder.embed(&texts).map_err(|e| Error::llm(&stage, e))?;
    let malformed =
        |detail: String| Error::llm(&stage, llm_api::Error::Malformed { what: "embeddings".into(), detail, answer: String::new() });
    if vectors.len() != texts.len() {
        return Err(malformed(format!("{} vectors for {} texts", vectors.len(), texts.len())));
    }
    if let Some(first) = vectors.first()
        && (first.is_empty() || vectors.iter().any(|v| v.len() != first.len()))
    {
        return Err(malformed("vectors are empty or of different lengths".into()));
    }
    Ok(vectors)
}

/// Builds up to `n_contexts` contexts for one document.
///
/// # Errors
/// [`Error::TooFewChunks`] when the document has fewer usable chunks than
/// `min_contexts_per_document` or `min_context_length`; [`Error::Llm`] from the critic.
pub(crate) fn build_contexts<R: Rng + ?Sized>(
    doc: &Document,
    chunks: &[Chunk],
    embeddings: &[Vec<f32>],
    n_contexts: usize,
    cfg: &ContextConfig,
    critic: &Asker<'_>,
    rng: &mut R,
) -> Result<Vec<BuiltContext>> {
    let usable: Vec<usize> = chunks.iter().filter(|c| !c.text.trim().is_empty()).map(|c| c.index).collect();
    let total = usable.len();
    let too_few = |what: &str, need: usize| Error::TooFewChunks {
        path: doc.path.clone(),
        detail: format!(
            "{total} usable chunk(s) of {} tokens, fewer than {what} = {need}; lower it or reduce context.chunk_size",
            cfg.chunk_size
        ),
    };
    if total < cfg.min_contexts_per_document {
        return Err(too_few("min_contexts_per_document", cfg.min_contexts_per_document));
    }
    if total < cfg.min_context_length {
        return Err(too_few("min_context_length", cfg.min_context_length));
    }
    let n = n_contexts.min(total);
    let context_length = cfg.max_context_length.min(total);
    let seeds = select_seeds(doc, chunks, &usable, n, cfg, critic, rng)?;
    Ok(seeds
        .into_iter()
        .map(|(seed, quality)| {
            let (chunk_indices, similarities) = group(seed, &usable, embeddings, context_length, cfg.context_similarity_threshold);
            BuiltContext { chunk_indices, similarities, quality }
        })
        .collect())
}

/// Step 1: seed chunks and their quality scores.
fn select_seeds<R: Rng + ?Sized>(
    doc: &Document,
    chunks: &[Chunk],
    usable: &[usize],
    n: usize,
    cfg: &ContextConfig,
    critic: &Asker<'_>,
    rng: &mut R,
) -> Result<Vec<(usize, f64)>> {
    let r = cfg.max_retries;
    let total = usable.len();
    if total < n * r {
        let picks = rand::seq::index::sample(rng, total, n).into_vec();
        return picks.into_iter().map(|p| Ok((usable[p], rate_chunk(critic, doc, &chunks[usable[p]])?))).collect();
    }
    let candidates = rand::seq::index::sample(rng, total, n * r).into_vec();
    let mut taken = Vec::with_capacity(n);
    let mut best_rejected: Option<(usize, f64)> = None;
    let mut rejections = 0;
    for p in candidates {
        let index = usable[p];
        let score = rate_chunk(critic, doc, &chunks[index])?;
        if score > cfg.context_quality_threshold {
            taken.push((index, score));
            rejections = 0;
            best_rejected = None;
        } else {
            rejections += 1;
            if best_rejected.is_none_or(|(_, best)| score > best) {
                best_rejected = Some((index, score));
            }
            if rejections == r {
                taken.extend(best_rejected.take());
                rejections = 0;
                tracing::debug!(path = %doc.path.display(), "no chunk above the quality threshold; taking the best seen");
            }
        }
        if taken.len() == n {
            break;
        }
    }
    Ok(taken)
}

/// Step 2: the seed and its most similar usable chunks above the threshold.
fn group(seed: usize, usable: &[usize], embeddings: &[Vec<f32>], length: usize, threshold: f64) -> (Vec<usize>, Vec<f64>) {
    let mut others: Vec<(usize, f64)> =
        usable.iter().filter(|&&i| i != seed).map(|&i| (i, cosine(&embeddings[seed], &embeddings[i]))).collect();
    // Most similar first; ties by position for determinism.
    others.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut indices = vec![seed];
    let mut sims = vec![1.0];
    for (i, s) in others.into_iter().take(length.saturating_sub(1)) {
        if s > threshold {
            indices.push(i);
            sims.push(s);
        }
    }
    (indices, sims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DocumentFormat;
    use llm_api::{Completion, CompletionOptions, FinishReason, Llm, Message, Usage};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Scores a passage `"chunk N q"` with quality `q` (one digit, tenths); counts its calls.
    struct DigitCritic(AtomicUsize);

    impl Llm for DigitCritic {
        fn name(&self) -> String {
            "digits".into()
        }
        fn complete(&self, messages: &[Message], _: &CompletionOptions) -> llm_api::Result<Completion> {
            self.0.fetch_add(1, Ordering::SeqCst);
            let passage = messages[0].content.rsplit("Passage:\n").next().unwrap_or("");
            let q: f64 = passage.trim().rsplit(' ').next().and_then(|d| d.parse().ok()).unwrap_or(0.0) / 10.0;
            let text = format!(r#"{{"clarity": {q}, "depth": {q}, "structure": {q}, "relevance": {q}}}"#);
            Ok(Completion { text, logprobs: None, finish_reason: FinishReason::Stop, usage: Usage::default() })
        }
    }

    fn setup(qualities: &[u8]) -> (Document, Vec<Chunk>, Vec<Vec<f32>>) {
        let doc = Document { path: "d.txt".into(), format: DocumentFormat::Text, text: String::new() };
        let chunks = qualities
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let text = format!("chunk {i} {q}");
                Chunk { index: i, start: 0, end: 0, token_start: i, token_end: i + 1, text }
            })
            .collect();
        let emb = qualities.iter().enumerate().map(|(i, _)| vec![1.0, i as f32]).collect();
        (doc, chunks, emb)
    }

    fn select(qualities: &[u8], n: usize) -> (Vec<BuiltContext>, usize) {
        let (doc, chunks, emb) = setup(qualities);
        let critic = DigitCritic(AtomicUsize::new(0));
        let asker = Asker { llm: &critic, options: CompletionOptions::default(), max_json_retries: 0 };
        let cfg = ContextConfig { max_context_length: 1, ..ContextConfig::default() };
        let mut rng = StdRng::seed_from_u64(11);
        let built = build_contexts(&doc, &chunks, &emb, n, &cfg, &asker, &mut rng).expect("contexts");
        (built, critic.0.load(Ordering::SeqCst))
    }

    #[test]
    fn good_chunks_are_taken_at_once() {
        let (built, calls) = select(&[9; 12], 3);
        assert_eq!(built.len(), 3);
        assert_eq!(calls, 3);
        assert!(built.iter().all(|c| (c.quality - 0.9).abs() < 1e-12));
    }

    #[test]
    fn after_r_rejections_the_best_of_them_is_taken() {
        // Nine chunks, all below the 0.5 threshold, qualities 0.1..0.4: every candidate is
        // scored, and each context gets the best of its three rejected candidates.
        let (built, calls) = select(&[1, 2, 3, 4, 1, 2, 3, 4, 1], 3);
        assert_eq!(calls, 9);
        assert_eq!(built.len(), 3);
        let qualities = [1u8, 2, 3, 4, 1, 2, 3, 4, 1];
        for c in &built {
            assert!(c.quality < 0.5);
            assert!((c.quality - f64::from(qualities[c.chunk_indices[0]]) / 10.0).abs() < 1e-12);
        }
        let distinct: std::collections::BTreeSet<usize> = built.iter().map(|c| c.chunk_indices[0]).collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn with_few_chunks_n_are_sampled_and_all_kept() {
        let (built, calls) = select(&[1, 9, 2, 8], 2);
        assert_eq!((built.len(), calls), (2, 2));
    }

    #[test]
    fn whitespace_chunks_are_never_candidates_and_too_few_is_an_error() {
        let (doc, mut chunks, emb) = setup(&[9, 9]);
        chunks[1].text = "  \n ".into();
        let critic = DigitCritic(AtomicUsize::new(0));
        let asker = Asker { llm: &critic, options: CompletionOptions::default(), max_json_retries: 0 };
        let cfg = ContextConfig { min_contexts_per_document: 2, ..ContextConfig::default() };
        let mut rng = StdRng::seed_from_u64(0);
        let err = build_contexts(&doc, &chunks, &emb, 2, &cfg, &asker, &mut rng).expect_err("one usable");
        assert!(matches!(err, Error::TooFewChunks { .. }) && err.to_string().contains("d.txt"), "{err}");
        assert_eq!(critic.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn grouping_takes_the_nearest_above_threshold() {
        let emb = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.9, 0.1], vec![0.6, 0.4], vec![-1.0, 0.0]];
        let usable = [0, 1, 2, 3, 4];
        let (idx, sims) = group(0, &usable, &emb, 3, 0.0);
        assert_eq!(idx, vec![0, 2, 3]);
        assert_eq!(sims[0], 1.0);
        assert!(sims[1] > sims[2]);
        // A high threshold leaves the seed alone; a length of 1 too.
        assert_eq!(group(0, &usable, &emb, 3, 0.999).0, vec![0]);
        assert_eq!(group(0, &usable, &emb, 1, 0.0).0, vec![0]);
        // Unusable chunks are never neighbours.
        assert_eq!(group(0, &[0, 1, 3], &emb, 3, 0.0).0, vec![0, 3]);
    }
}
