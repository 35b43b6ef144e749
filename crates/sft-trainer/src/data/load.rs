//! The whole data side in one call: find the files, read and check every row, render
//! prompt/completion rows through the chat template, tokenize and truncate as trl does, split
//! off the eval rows, and pack when asked.

use std::path::{Path, PathBuf};

use llama_model::Tokenizer;
use llama_model::weights::hub::HubOptions;
use prompt_templates::{ChatTemplate, RenderOptions, Renderer, SpecialTokens};

use super::config::{DatasetConfig, RowFormat};
use super::pack::{PackingStrategy, pack};
use super::report::{RowIssue, SkipReason, SkipReport, Truncation};
use super::rows::{RawRow, RowContent};
use super::shape::{self, Problem, Sample};
use super::source::{FileKind, file_kind};
use super::split::train_eval_split;
use super::tokenize::{Encoder, Example};
use super::{Error, Result, parquet, rows, source};

/// trl's cap on the model's context when no `max_seq_length` is given.
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 1024;

/// The training sequence length: the configured one, else the model's context capped at 1024.
///
/// The seed's `max_seq_length = None` meant, in the trl it was written for,
/// `min(tokenizer.model_max_length, 1024)`; current trl defaults `max_length` to 1024. We use
/// the model's `max_position_embeddings` for the tokenizer's limit (a tokenizer without one
/// reports a huge value, which the cap replaces).
///
/// ```
/// use sft_trainer::data::resolve_max_seq_length;
/// assert_eq!(resolve_max_seq_length(None, Some(8192)), 1024);
/// assert_eq!(resolve_max_seq_length(None, Some(512)), 512);
/// assert_eq!(resolve_max_seq_length(None, None), 1024);
/// assert_eq!(resolve_max_seq_length(Some(200), Some(512)), 200);
/// ```
pub fn resolve_max_seq_length(configured: Option<usize>, model_max_positions: Option<usize>) -> usize {
    configured.unwrap_or_else(|| model_max_positions.unwrap_or(usize::MAX).min(DEFAULT_MAX_SEQ_LENGTH))
}

/// What loading needs besides the config.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Examples are truncated to (or packed into) this many tokens.
    pub max_seq_length: usize,
    /// Where hub datasets come from.
    pub hub: HubOptions,
    /// The model's own Jinja chat template (for `template = "auto"` / `"model"`).
    pub model_template: Option<String>,
    /// The tokenizer's named special tokens for templates; by default its BOS and EOS texts.
    pub special_tokens: Option<SpecialTokens>,
    /// Prepend BOS to text rows when the tokenizer does not add it itself, as transformers'
    /// Llama tokenizers do (`add_bos_token: true` in `tokenizer_config.json`).
    pub add_bos_token: bool,
}

impl LoadOptions {
    /// Options with `max_seq_length` and defaults for the rest.
    pub fn new(max_seq_length: usize) -> Self {
        Self { max_seq_length, hub: HubOptions::default(), model_template: None, special_tokens: None, add_bos_token: false }
    }
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Training examples (packed blocks when packing), in file order.
    pub train: Vec<Example>,
    /// Eval examples (from the split or the eval source).
    pub eval: Vec<Example>,
    /// Skipped and truncated rows of every source.
    pub report: SkipReport,
    /// The row shape used (detected when `auto`).
    pub format: RowFormat,
    /// The files read, train source first.
    pub files: Vec<PathBuf>,
}

/// Loads, checks, tokenizes, splits and packs a dataset.
///
/// # Errors
/// [`Error::Config`] for invalid settings; [`Error::MissingSource`], [`Error::Io`],
/// [`Error::Json`], [`Error::Parquet`], [`Error::Hub`] for unreadable sources;
/// [`Error::FieldNotFound`] / [`Error::UnknownShape`] listing the fields a file has;
/// [`Error::BadRow`] in strict mode; [`Error::EmptyDataset`] / [`Error::NoUsableRows`].
pub fn load_dataset(config: &DatasetConfig, tokenizer: &Tokenizer, options: &LoadOptions) -> Result<Loaded> {
    config.validate()?;
    if options.max_seq_length == 0 {
        return Err(Error::Config("max_seq_length must be at least 1".into()));
    }
    let eos_id = tokenizer
        .eos_ids
        .first()
        .copied()
        .ok_or_else(|| Error::Tokenizer("the tokenizer has no EOS token (trl appends it to text rows and pads with it)".into()))?;
    let eos_text = token_text(tokenizer, eos_id)?;
    let mut loader = SourceLoader { config, tokenizer, options, eos_text, report: SkipReport::default(), files: Vec::new() };

    let (train, format) = loader.load(&config.source, &config.split)?;
    let (train, eval) = match &config.eval_source {
        Some(eval_source) => (train, loader.load(eval_source, &config.eval_split)?.0),
        None => train_eval_split(train, config.eval_count, config.eval_fraction, config.seed)?,
    };
    let (train, eval) = if config.packing {
        let block = options.max_seq_length;
        (pack(&train, block, config.packing_strategy), pack(&eval, block, config.packing_strategy))
    } else {
        (train, eval)
    };
    let report = loader.report;
    tracing::info!(source = %config.source, train = train.len(), eval = eval.len(), %report, "dataset loaded");
    Ok(Loaded { train, eval, report, format, files: loader.files })
}

fn token_text(tokenizer: &Tokenizer, id: u32) -> Result<String> {
    tokenizer.inner().id_to_token(id).ok_or_else(|| Error::Tokenizer(format!("token id {id} is not in the vocabulary")))
}

struct SourceLoader<'a> {
    config: &'a DatasetConfig,
    tokenizer: &'a Tokenizer,
    options: &'a LoadOptions,
    eos_text: String,
    report: SkipReport,
    files: Vec<PathBuf>,
}

/// How prompt/completion rows are rendered.
struct Templating {
    renderer: Renderer,
    options: RenderOptions,
}

impl SourceLoader<'_> {
    /// Loads one source into (untruncated-then-truncated) examples.
    fn load(&mut self, reference: &str, split: &str) -> Result<(Vec<Example>, RowFormat)> {
        let files = source::resolve(reference, split, &self.options.hub)?;
        let mut format = self.config.format;
        let mut templating: Option<Templating> = None;
        let mut examples = Vec::new();
        let mut remaining = self.config.max_rows;
        let (rows_before, kept_before) = (self.report.rows_read, self.report.rows_kept);
        for path in &files {
            if remaining == Some(0) {
                break;
            }
            let (rows, file_format) = self.read_file(path, format, remaining)?;
            format = file_format;
            if templating.is_none() && matches!(format, RowFormat::Alpaca | RowFormat::Messages) {
                templating = Some(self.templating()?);
            }
            remaining = remaining.map(|r| r.saturating_sub(rows.len()));
            self.report.rows_read += rows.len();
            let completion_only = self.config.completion_only_loss.unwrap_or(format == RowFormat::Alpaca);
            let encoder = Encoder::new(self.tokenizer, self.eos_text.clone(), self.options.add_bos_token, completion_only);
            for raw in rows {
                match self.example(&raw, format, templating.as_ref(), &encoder) {
                    Ok(mut example) => {
                        let n = example.len();
                        let truncates = !self.config.packing || self.config.packing_strategy == PackingStrategy::Bfd;
                        if truncates && example.truncate(self.options.max_seq_length) {
                            self.report.truncate(Truncation { file: path.clone(), row: raw.row, tokens: n });
                        }
                        if !self.config.packing && example.num_loss_tokens() == 0 {
                            let detail = format!("{n} tokens, none to learn within max_seq_length {}", self.options.max_seq_length);
                            self.reject(path, &raw, (SkipReason::NoLossTokens, detail))?;
                        } else {
                            examples.push(example);
                        }
                    }
                    Err(problem) => self.reject(path, &raw, problem)?,
                }
            }
        }
        self.files.extend(files.iter().cloned());
        let (read, kept) = (self.report.rows_read - rows_before, examples.len());
        self.report.rows_kept = kept_before + kept;
        if read == 0 {
            return Err(Error::EmptyDataset { source_ref: reference.to_string(), files: files.len() });
        }
        if kept == 0 {
            return Err(Error::NoUsableRows { source_ref: reference.to_string(), rows: read, summary: self.report.to_string() });
        }
        if kept < read {
            tracing::warn!(source = reference, skipped = read - kept, "rows skipped: {}", self.report);
        }
        Ok((examples, format))
    }

    /// Reads one file's rows, detecting the shape (on the first file) and checking its fields.
    fn read_file(&self, path: &Path, format: RowFormat, limit: Option<usize>) -> Result<(Vec<RawRow>, RowFormat)> {
        let kind = file_kind(&path.to_string_lossy()).ok_or_else(|| Error::UnsupportedFile { path: path.to_path_buf() })?;
        let (columns, json_rows) = match kind {
            FileKind::Parquet => (parquet::columns(path)?, None),
            FileKind::Json | FileKind::Jsonl => {
                let read = if kind == FileKind::Json { rows::read_json(path, limit)? } else { rows::read_jsonl(path, limit)? };
                (read.columns, Some(read.rows))
            }
        };
        let text_field = &self.config.text_field;
        let available = || if columns.is_empty() { "(none)".to_string() } else { columns.join(", ") };
        let format = match format {
            RowFormat::Auto => match shape::detect(&columns, text_field) {
                Some(found) => found,
                // A file whose rows are all unparsable still reports them row by row.
                None if json_rows.as_ref().is_some_and(|r| !r.is_empty() && columns.is_empty()) => RowFormat::Text,
                None if json_rows.as_ref().is_some_and(Vec::is_empty) => RowFormat::Auto,
                None => {
                    return Err(Error::UnknownShape { path: path.to_path_buf(), text_field: text_field.clone(), available: available() });
                }
            },
            known => known,
        };
        let has_rows = json_rows.as_ref().is_none_or(|r| r.iter().any(|r| matches!(r.content, RowContent::Fields(_))));
        let missing = shape::required(format, text_field).into_iter().find(|f| !columns.contains(f));
        if let (true, Some(field)) = (has_rows, missing) {
            return Err(Error::FieldNotFound { path: path.to_path_buf(), field, available: available() });
        }
        let rows = match json_rows {
            Some(rows) => rows,
            None => parquet::read(path, &shape::wanted(format, text_field, &columns), limit)?,
        };
        Ok((rows, format))
    }

    fn example(
        &self,
        raw: &RawRow,
        format: RowFormat,
        templating: Option<&Templating>,
        encoder: &Encoder<'_>,
    ) -> std::result::Result<Example, Problem> {
        let fields = match &raw.content {
            RowContent::Fields(fields) => fields,
            RowContent::Invalid(reason, detail) => return Err((*reason, detail.clone())),
        };
        let sample = shape::extract(format, &self.config.text_field, fields)?;
        let template_error = |e: prompt_templates::Error| (SkipReason::Template, e.to_string());
        match (sample, templating) {
            (Sample::Text(text), _) => encoder.text(&text),
            (Sample::Alpaca(row), Some(t)) => encoder.pair(&t.renderer.render_alpaca(&row, &t.options).map_err(template_error)?),
            (Sample::Messages(messages), Some(t)) if encoder.completion_only_loss() => {
                encoder.pair(&t.renderer.render_pair(&messages, &t.options).map_err(template_error)?)
            }
            (Sample::Messages(messages), Some(t)) => {
                encoder.conversation(&t.renderer.render(&messages, &t.options).map_err(template_error)?)
            }
            (_, None) => Err((SkipReason::Template, "no chat template prepared".into())),
        }
    }

    fn reject(&mut self, path: &Path, raw: &RawRow, (reason, detail): Problem) -> Result<()> {
        let issue = RowIssue { file: path.to_path_buf(), row: raw.row, line: raw.line, reason, detail };
        if self.config.strict {
            return Err(Error::BadRow(issue));
        }
        self.report.skip(issue);
        Ok(())
    }

    /// The chat template the config asks for, compiled, with the tokenizer's special tokens.
    fn templating(&self) -> Result<Templating> {
        let model = self.options.model_template.clone().filter(|t| !t.trim().is_empty());
        let choice = self.config.template.trim().to_ascii_lowercase();
        let template = match choice.as_str() {
            "auto" => model.map(|source| ChatTemplate::Jinja { source }).unwrap_or(ChatTemplate::Llama2),
            "model" => ChatTemplate::Jinja {
                source: model.ok_or_else(|| Error::Config("`template = \"model\"` but the model has no chat template".into()))?,
            },
            "jinja" => ChatTemplate::Jinja {
                source: self
                    .config
                    .chat_template
                    .clone()
                    .ok_or_else(|| Error::Config("`template = \"jinja\"` needs `chat_template`".into()))?,
            },
            name => ChatTemplate::from_name(name)?,
        };
        let special = match &self.options.special_tokens {
            Some(tokens) => tokens.clone(),
            None => SpecialTokens {
                bos_token: self.tokenizer.bos_id.and_then(|id| self.tokenizer.inner().id_to_token(id)),
                eos_token: Some(self.eos_text.clone()),
                ..SpecialTokens::default()
            },
        };
        tracing::debug!(template = template.name(), "chat template for prompt/completion rows");
        Ok(Templating { renderer: template.prepare()?, options: RenderOptions::new().with_special_tokens(&special) })
    }
}
