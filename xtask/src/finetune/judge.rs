//! The `[judge]` section: every evaluation step, the model being trained answers a small golden
//! set and an LLM judge (local or OpenAI-compatible) scores the answers; the scores land in
//! `metrics.jsonl` beside the held-out loss.

use std::path::PathBuf;

use anyhow::{Context, Result};
use eval::{GoldenJudge, load_goldens, metrics::metrics_from_list};
use llama_model::{ChatModel, Llama, Pretrained, Tokenizer};
use llm_api::CompletionOptions;
use prompt_templates::ModelChatConfig;
use serde::{Deserialize, Serialize};
use sft_trainer::Callback;

use crate::backend::Backend;
use crate::llm_spec::{LlmSpec, LocalOptions, RemoteArgs, open_llm};

/// Judged evaluation during training (off unless `goldens` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeSection {
    /// A goldens file (JSONL or JSON array with at least `input`).
    pub goldens: Option<PathBuf>,
    /// Metrics, as `xtask eval --metrics` takes them.
    pub metrics: String,
    /// The judge: `local:PATH` or `openai:URL[#MODEL]`.
    pub judge: String,
    /// Prompt format for the model's answers (`auto`, `raw`, `llama2`, ...).
    pub template: String,
    /// Longest answer, in tokens.
    pub max_new_tokens: usize,
}

impl Default for JudgeSection {
    fn default() -> Self {
        Self {
            goldens: None,
            metrics: "helpfulness,bias,toxicity".into(),
            judge: "local:asset:smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            template: "llama2".into(),
            max_new_tokens: 64,
        }
    }
}

/// The callback: answers goldens with the model under training, judges them.
pub struct JudgeCallback {
    seam: GoldenJudge,
    tokenizer: Tokenizer,
    chat: ModelChatConfig,
    template: String,
}

impl JudgeCallback {
    /// Builds the callback when `[judge].goldens` is set.
    ///
    /// # Errors
    /// Unreadable goldens, unknown metrics, a judge that does not open.
    pub fn from_section(section: &JudgeSection, tokenizer: &Tokenizer, chat: &ModelChatConfig, backend: Backend) -> Result<Option<Self>> {
        let Some(path) = &section.goldens else { return Ok(None) };
        let goldens = load_goldens(path).with_context(|| format!("[judge] goldens {}", path.display()))?;
        let metrics = metrics_from_list(&section.metrics).context("[judge] metrics")?;
        let spec = LlmSpec::parse(&section.judge).context("[judge] judge")?;
        let judge = open_llm(&spec, &LocalOptions::default(), &RemoteArgs::default(), backend).context("[judge] judge")?;
        let mut seam = GoldenJudge::new(goldens, metrics, judge);
        seam.generation = CompletionOptions { max_tokens: section.max_new_tokens, ..CompletionOptions::default() };
        Ok(Some(Self { seam, tokenizer: tokenizer.clone(), chat: chat.clone(), template: section.template.clone() }))
    }
}

impl Callback for JudgeCallback {
    fn on_evaluate(&mut self, _step: usize, model: &Llama) -> sft_trainer::Result<Option<serde_json::Value>> {
        let pretrained =
            Pretrained { model: model.clone(), tokenizer: self.tokenizer.clone(), chat: self.chat.clone(), origin: PathBuf::new() };
        let chat = ChatModel::new(pretrained, &self.template, "model under training")?;
        let scores = self.seam.judge(&chat).map_err(|e| sft_trainer::Error::Config(format!("judged eval: {e}")))?;
        Ok(Some(serde_json::json!({
            "judge_mean_scores": scores.mean_scores,
            "judge_pass_rates": scores.pass_rates,
            "judge_overall_pass_rate": scores.overall_pass_rate,
            "judge_errors": scores.errors,
        })))
    }
}
