//! Every knob of the synthesis pipeline, with DeepEval's defaults, serde-ready (a `[synth]`
//! table of a run file maps onto [`SynthConfig`]).

use serde::{Deserialize, Serialize};

use crate::evolution::EvolutionConfig;
use crate::{Error, Result};

/// Chunking and context construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContextConfig {
    /// Tokens per chunk (default 1024).
    pub chunk_size: usize,
    /// Tokens shared by consecutive chunks (default 0).
    pub chunk_overlap: usize,
    /// Contexts built per document at most (default 3).
    pub max_contexts_per_document: usize,
    /// A document with fewer usable chunks than this is an error (default 1).
    pub min_contexts_per_document: usize,
    /// Chunks per context at most (default 3).
    pub max_context_length: usize,
    /// A document with fewer usable chunks than this is an error (default 1).
    pub min_context_length: usize,
    /// A chunk is accepted as a context seed when its quality score exceeds this (default 0.5).
    pub context_quality_threshold: f64,
    /// A neighbour joins a context when its cosine similarity exceeds this (default 0.0).
    pub context_similarity_threshold: f64,
    /// Candidate chunks tried per context before the best one seen is taken (default 3).
    pub max_retries: usize,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            chunk_size: 1024,
            chunk_overlap: 0,
            max_contexts_per_document: 3,
            min_contexts_per_document: 1,
            max_context_length: 3,
            min_context_length: 1,
            context_quality_threshold: 0.5,
            context_similarity_threshold: 0.0,
            max_retries: 3,
        }
    }
}

/// Filtering of synthetic inputs by a critic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FiltrationConfig {
    /// An input is kept as is when its quality score reaches this (default 0.5).
    pub synthetic_input_quality_threshold: f64,
    /// Critic scorings per input at most; between two of them the input is rewritten with the
    /// critic's feedback (default 3).
    pub max_quality_retries: usize,
}

impl Default for FiltrationConfig {
    fn default() -> Self {
        Self { synthetic_input_quality_threshold: 0.5, max_quality_retries: 3 }
    }
}

/// Optional styling of inputs and expected outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StylingConfig {
    /// Who asks and in what situation (e.g. "a student revising for an exam").
    pub scenario: Option<String>,
    /// What the system under test does (e.g. "answer questions about the documents").
    pub task: Option<String>,
    /// The shape of an input (e.g. "a one-sentence question").
    pub input_format: Option<String>,
    /// The shape of an expected output (e.g. "two sentences").
    pub expected_output_format: Option<String>,
}

impl StylingConfig {
    /// Whether inputs get a styling rewrite (any of scenario, task, input format set).
    pub fn styles_inputs(&self) -> bool {
        self.scenario.is_some() || self.task.is_some() || self.input_format.is_some()
    }
}

/// The whole pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    /// Chunking and contexts.
    pub context: ContextConfig,
    /// Input filtering.
    pub filtration: FiltrationConfig,
    /// Input evolution.
    pub evolution: EvolutionConfig,
    /// Styling.
    pub styling: StylingConfig,
    /// Inputs asked for per context (default 2).
    pub max_goldens_per_context: usize,
    /// Goldens per document at most; fewer contexts are built when it is small (default none).
    pub max_goldens_per_document: Option<usize>,
    /// Whether each golden gets an expected output (default true).
    pub include_expected_output: bool,
    /// Seed of every random choice, also passed to the models (default 0).
    pub seed: u64,
    /// Sampling temperature of the generator and critic (default 0, greedy).
    pub temperature: f32,
    /// Most new tokens per model call (default 512).
    pub max_tokens: usize,
    /// Extra calls allowed when an answer is not the JSON asked for (default 2).
    pub max_json_retries: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            context: ContextConfig::default(),
            filtration: FiltrationConfig::default(),
            evolution: EvolutionConfig::default(),
            styling: StylingConfig::default(),
            max_goldens_per_context: 2,
            max_goldens_per_document: None,
            include_expected_output: true,
            seed: 0,
            temperature: 0.0,
            max_tokens: 512,
            max_json_retries: 2,
        }
    }
}

impl SynthConfig {
    /// Checks ranges and relations between fields.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let c = &self.context;
        let fail = |m: String| Err(Error::Config(m));
        if c.chunk_size == 0 {
            return fail("context.chunk_size must be at least 1".into());
        }
        if c.chunk_overlap >= c.chunk_size {
            return fail(format!("context.chunk_overlap ({}) must be less than chunk_size ({})", c.chunk_overlap, c.chunk_size));
        }
        if c.max_contexts_per_document == 0 || c.min_contexts_per_document > c.max_contexts_per_document {
            return fail("context: need 1 ≤ min_contexts_per_document ≤ max_contexts_per_document".into());
        }
        if c.max_context_length == 0 || c.min_context_length > c.max_context_length {
            return fail("context: need 1 ≤ min_context_length ≤ max_context_length".into());
        }
        if c.max_retries == 0 {
            return fail("context.max_retries must be at least 1".into());
        }
        for (name, v) in [
            ("context.context_quality_threshold", c.context_quality_threshold),
            ("context.context_similarity_threshold", c.context_similarity_threshold),
            ("filtration.synthetic_input_quality_threshold", self.filtration.synthetic_input_quality_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return fail(format!("{name} is {v}; must be in [0, 1]"));
            }
        }
        if self.filtration.max_quality_retries == 0 {
            return fail("filtration.max_quality_retries must be at least 1".into());
        }
        if self.max_goldens_per_context == 0 {
            return fail("max_goldens_per_context must be at least 1".into());
        }
        if self.max_goldens_per_document == Some(0) {
            return fail("max_goldens_per_document must be at least 1 when set".into());
        }
        if self.max_tokens == 0 {
            return fail("max_tokens must be at least 1".into());
        }
        self.evolution.validate()
    }

    /// Contexts to build for one document: `min(max_contexts_per_document,
    /// ⌈max_goldens_per_document / max_goldens_per_context⌉)`.
    pub fn contexts_per_document(&self) -> usize {
        let cap = self.context.max_contexts_per_document;
        match self.max_goldens_per_document {
            Some(g) => cap.min(g.div_ceil(self.max_goldens_per_context)),
            None => cap,
        }
    }

    /// Goldens one document can yield at most.
    pub fn goldens_per_document(&self) -> usize {
        let most = self.contexts_per_document() * self.max_goldens_per_context;
        self.max_goldens_per_document.map_or(most, |g| g.min(most))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let cfg = SynthConfig::default();
        cfg.validate().expect("valid");
        let json = serde_json::to_string(&cfg).expect("ser");
        let back: SynthConfig = serde_json::from_str(&json).expect("de");
        assert_eq!(back, cfg);
        let partial: SynthConfig =
            serde_json::from_str(r#"{"max_goldens_per_document": 2, "context": {"chunk_size": 64}}"#).expect("partial");
        assert_eq!(partial.context.chunk_size, 64);
        assert_eq!(partial.context.max_retries, 3);
    }

    #[test]
    fn per_document_cap_limits_contexts() {
        let mut cfg = SynthConfig { max_goldens_per_document: Some(2), ..SynthConfig::default() };
        assert_eq!(cfg.contexts_per_document(), 1);
        assert_eq!(cfg.goldens_per_document(), 2);
        cfg.max_goldens_per_document = Some(5);
        assert_eq!(cfg.contexts_per_document(), 3);
        assert_eq!(cfg.goldens_per_document(), 5);
        cfg.max_goldens_per_document = None;
        assert_eq!(cfg.goldens_per_document(), 6);
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut cfg = SynthConfig::default();
        cfg.context.chunk_overlap = 1024;
        assert!(cfg.validate().expect_err("overlap").to_string().contains("chunk_overlap"));
        let mut cfg = SynthConfig::default();
        cfg.filtration.synthetic_input_quality_threshold = 1.5;
        assert!(cfg.validate().expect_err("threshold").to_string().contains("synthetic_input_quality_threshold"));
    }
}
