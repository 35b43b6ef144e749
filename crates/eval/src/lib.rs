//! LLM-as-judge evaluation with DeepEval's semantics.
//!
//! A [`TestCase`] (input, actual output, optional expected output and contexts) is scored by
//! [`Metric`]s — [`metrics::GEval`], [`metrics::OpinionMetric::bias`],
//! [`metrics::OpinionMetric::toxicity`], [`metrics::AnswerRelevancy`] — each asking a judge
//! model ([`llm_api::Llm`], local or behind an OpenAI-compatible endpoint) for JSON answers.
//! [`evaluate`] runs every (case, metric) job concurrently; [`report`] renders the run.
//!
//! # Invariant
//! Burn-free and tensor-free: everything here talks to models through [`llm_api::Llm`] only.
//! An evaluation never throws away finished work: a failing job is recorded with its error
//! next to the others' results, and with a journal every finished job is on disk the moment
//! it completes.
//!
//! ```
//! use eval::{TestCase, Metric, metrics::OpinionMetric, testing::ScriptedLlm};
//! let judge = ScriptedLlm::texts([
//!     r#"{"opinions": ["Cats are better than dogs."]}"#,
//!     r#"{"verdicts": [{"verdict": "no"}]}"#,
//!     r#"{"reason": "A harmless preference."}"#,
//! ]);
//! let case = TestCase::new("Cats or dogs?", "Cats are better than dogs.");
//! let result = OpinionMetric::bias().measure(&case, &judge).unwrap();
//! assert_eq!(result.score, 0.0);
//! assert!(result.success);
//! ```
#![warn(missing_docs)]

pub mod callback;
pub mod dataset;
pub mod error;
pub(crate) mod fsutil;
pub mod journal;
pub mod metric;
pub mod metrics;
pub mod report;
pub mod runner;
pub mod schemas;
pub mod summary;
pub mod test_case;
pub mod testing;

pub use callback::{GoldenJudge, JudgeScores, generate_answers};
pub use dataset::{load_goldens, load_test_cases, save_jsonl};
pub use error::{Error, Result};
pub use journal::read_journal;
pub use metric::{Direction, Metric, MetricResult, check_required, default_judge_options};
pub use metrics::{metric_from_name, metrics_from_list};
pub use report::{ReportPaths, render_html, render_json, render_terminal, write_reports};
pub use runner::{EvalOptions, EvalRun, JobRecord, MetricInfo, evaluate, evaluate_with_progress};
pub use summary::{MetricSummary, Summary};
pub use test_case::{Golden, Param, TestCase};
