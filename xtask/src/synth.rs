//! `cargo xtask synth`: goldens (test inputs with expected outputs and their provenance) from
//! documents — the seed's "two per document" by default.
//!
//! Every document is read before any model is loaded, so a bad file fails at once, naming
//! itself. The output files are written atomically, and only when the whole run succeeded.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use llm_api::Llm;
use synth_data::{Document, Progress, SynthConfig, Synthesizer};

use crate::backend::Backend;
use crate::generate::DEFAULT_MODEL;
use crate::llm_spec::{LlmSpec, LocalOptions, RemoteArgs, local_tokenizer, open_embedder, open_llm, tokenizer_file};

/// Goldens per document when neither the command line nor the config file says (the seed's).
pub const DEFAULT_GOLDENS_PER_DOC: usize = 2;

/// Arguments of `synth`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Documents (.txt, .md, .pdf, .docx), or folders whose documents are all used.
    #[arg(long, num_args = 1.., required = true)]
    pub docs: Vec<PathBuf>,
    /// Where to write the goldens (JSON Lines).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the goldens as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Goldens per document at most [default: the config file's, else 2].
    #[arg(long)]
    pub max_goldens_per_doc: Option<usize>,
    /// The generator: `local:PATH` or `openai:URL[#MODEL]` [default: local SmolLM2-135M-Instruct].
    #[arg(long, value_parser = LlmSpec::parse)]
    pub llm: Option<LlmSpec>,
    /// The critic that scores contexts and inputs [default: the generator].
    #[arg(long, value_parser = LlmSpec::parse)]
    pub critic: Option<LlmSpec>,
    /// The sentence embedder: `local:DIR` (a MiniLM folder) or `openai:URL[#MODEL]`.
    #[arg(long, value_parser = LlmSpec::parse, default_value = "local:asset:all-minilm-l6-v2")]
    pub embedder: LlmSpec,
    /// The `tokenizer.json` that chunking counts tokens with [default: the local generator's,
    /// else SmolLM2's].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Prompt format of local models (`auto`, `raw`, `llama2`, `llama3`, `chatml`, `alpaca`).
    #[arg(long, default_value = "auto")]
    pub template: String,
    /// Seed of every random choice and of the models' sampling [default: the config file's, else 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most new tokens per model call [default: the config file's, else 512].
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// A TOML file with the pipeline's settings (`SynthConfig`, at top level or under `[synth]`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How to reach `openai:` endpoints.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Compute backend of local models.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
}

/// Runs `synth`.
pub fn run(args: Args) -> Result<()> {
    let config = resolve_config(&args)?;
    let paths = expand_docs(&args.docs)?;
    let docs = paths.iter().map(|p| synth_data::load_document(p).map_err(anyhow::Error::from)).collect::<Result<Vec<Document>>>()?;
    for out in std::iter::once(&args.out).chain(args.csv.as_ref()) {
        ensure_parent(out)?;
    }

    let generator_spec = args.llm.clone().unwrap_or_else(|| LlmSpec::Local(DEFAULT_MODEL.into()));
    let tokenizer = match (&args.tokenizer, &generator_spec) {
        (Some(path), _) => tokenizer_file(path)?,
        (None, LlmSpec::Local(reference)) => local_tokenizer(reference, args.backend)?,
        (None, LlmSpec::OpenAi { .. }) => tokenizer_file(&assets::require(assets::known::SMOLLM2_TOKENIZER)?)?,
    };
    let local = LocalOptions { template: Some(args.template.clone()), ..LocalOptions::default() };
    let generator = open_llm(&generator_spec, &local, &args.remote, args.backend)?;
    let critic = match &args.critic {
        Some(spec) => Some(open_llm(spec, &local, &args.remote, args.backend)?),
        None => None,
    };
    let embedder = open_embedder(&args.embedder, &args.remote, args.backend)?;

    let mut synth = Synthesizer::new(generator.as_ref(), embedder.as_ref(), &tokenizer, config)?;
    if let Some(critic) = &critic {
        synth = synth.with_critic(critic.as_ref());
    }
    let bars = Bars::new();
    let goldens = synth.generate_goldens_from_documents(&docs, &mut |p| bars.show(p));
    bars.finish();
    let goldens = goldens.map_err(|e| explain(e, &synth, generator.as_ref(), critic.as_deref()))?;
    if goldens.is_empty() {
        bail!("no goldens were made from {} document(s): the generator gave no usable inputs; nothing was written", docs.len());
    }
    synth_data::write_jsonl(&args.out, &goldens)?;
    if let Some(csv) = &args.csv {
        synth_data::write_csv(csv, &goldens)?;
    }
    eprintln!("wrote {} golden(s) from {} document(s) to {}", goldens.len(), docs.len(), args.out.display());
    Ok(())
}

/// The pipeline's error, with a hint when a model could not write the JSON a stage needs.
fn explain(e: synth_data::Error, synth: &Synthesizer<'_>, generator: &dyn Llm, critic: Option<&dyn Llm>) -> anyhow::Error {
    let malformed = matches!(&e, synth_data::Error::Llm { source: llm_api::Error::Malformed { .. }, .. });
    let e = anyhow::Error::from(e);
    if !malformed {
        return e;
    }
    let critic = critic.map_or_else(|| "the generator".to_string(), |c| format!("`{}`", c.name()));
    e.context(format!(
        "synthesis stopped: a model's answer was not the JSON its stage asks for, even after {} attempt(s) \
         (generator `{}`, critic {critic}); small models often cannot follow these prompts: \
         try a larger model with --llm or --critic; nothing was written",
        synth.config().max_json_retries + 1,
        generator.name(),
    ))
}

/// The configuration: defaults, then the config file, then the command line.
fn resolve_config(args: &Args) -> Result<SynthConfig> {
    let mut config = match &args.config {
        Some(path) => load_config(path)?,
        None => SynthConfig::default(),
    };
    config.max_goldens_per_document = args.max_goldens_per_doc.or(config.max_goldens_per_document).or(Some(DEFAULT_GOLDENS_PER_DOC));
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(max_tokens) = args.max_tokens {
        config.max_tokens = max_tokens;
    }
    config.validate().context("synth settings")?;
    Ok(config)
}

/// Reads a `SynthConfig` from TOML (top level or a `[synth]` table); unknown keys are errors.
pub fn load_config(path: &Path) -> Result<SynthConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
    let table = match table.get("synth") {
        Some(toml::Value::Table(inner)) if table.len() == 1 => inner.clone(),
        _ => table,
    };
    let value = serde_json::to_value(&table)?;
    let known = serde_json::to_value(SynthConfig::default())?;
    if let Some(key) = unknown_key(&value, &known, "") {
        bail!("{}: unknown setting `{key}`", path.display());
    }
    serde_json::from_value(value).with_context(|| format!("{}: invalid settings", path.display()))
}

/// The first key of `value` that `known` (the defaults) does not have, as a dotted path.
fn unknown_key(value: &serde_json::Value, known: &serde_json::Value, prefix: &str) -> Option<String> {
    let (serde_json::Value::Object(given), serde_json::Value::Object(known)) = (value, known) else {
        return None;
    };
    given.iter().find_map(|(key, v)| {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match known.get(key) {
            None => Some(path),
            Some(k) => unknown_key(v, k, &path),
        }
    })
}

/// The documents named on the command line, a folder standing for the documents directly in
/// it (sorted by name); each file once.
fn expand_docs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("listing {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && synth_data::DocumentFormat::from_path(p).is_ok())
                .collect();
            if found.is_empty() {
                let kinds: Vec<String> = synth_data::FORMATS.iter().map(|(ext, _)| format!(".{ext}")).collect();
                bail!("{}: the folder holds no documents ({})", path.display(), kinds.join(", "));
            }
            found.sort();
            for p in found {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        } else if !out.contains(path) {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Creates the folder an output goes into; refuses an output that is a folder.
fn ensure_parent(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{}: is a folder; give a file name to write to", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Two progress bars on stderr: documents, and goldens.
struct Bars {
    _multi: MultiProgress,
    documents: ProgressBar,
    goldens: ProgressBar,
}

impl Bars {
    fn new() -> Self {
        let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let multi = MultiProgress::new();
        let documents = multi.add(ProgressBar::new(0).with_style(style.clone()).with_prefix("documents"));
        let goldens = multi.add(ProgressBar::new(0).with_style(style).with_prefix("goldens"));
        Self { _multi: multi, documents, goldens }
    }

    fn show(&self, p: &Progress) {
        self.documents.set_length(p.documents_total as u64);
        self.documents.set_position(p.documents_done as u64);
        self.goldens.set_length(p.goldens_target as u64);
        self.goldens.set_position(p.goldens_made as u64);
    }

    fn finish(&self) {
        self.documents.finish();
        self.goldens.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn config_files_are_read_at_top_level_or_under_synth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = write(dir.path(), "a.toml", "max_tokens = 64\n[context]\nchunk_size = 128\n");
        let cfg = load_config(&top).expect("top level");
        assert_eq!((cfg.max_tokens, cfg.context.chunk_size, cfg.context.max_retries), (64, 128, 3));
        let nested = write(dir.path(), "b.toml", "[synth]\nseed = 7\n[synth.filtration]\nmax_quality_retries = 1\n");
        let cfg = load_config(&nested).expect("nested");
        assert_eq!((cfg.seed, cfg.filtration.max_quality_retries), (7, 1));
        let styled = write(dir.path(), "c.toml", "[styling]\nscenario = \"a student\"\n");
        assert_eq!(load_config(&styled).expect("styling").styling.scenario.as_deref(), Some("a student"));
    }

    #[test]
    fn unknown_and_mistyped_settings_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let typo = write(dir.path(), "typo.toml", "[context]\nchunk_sise = 128\n");
        let err = load_config(&typo).expect_err("typo").to_string();
        assert!(err.contains("typo.toml") && err.contains("`context.chunk_sise`"), "{err}");
        let bad = write(dir.path(), "bad.toml", "max_tokens = \"many\"\n");
        let err = format!("{:#}", load_config(&bad).expect_err("type"));
        assert!(err.contains("bad.toml") && err.contains("invalid"), "{err}");
    }

    #[test]
    fn folders_expand_to_their_documents_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = write(dir.path(), "b.md", "# B");
        let a = write(dir.path(), "a.txt", "A");
        write(dir.path(), "notes.rtf", "skipped");
        std::fs::create_dir(dir.path().join("sub.txt")).expect("mkdir");
        let docs = expand_docs(&[dir.path().to_path_buf(), a.clone()]).expect("expand");
        assert_eq!(docs, vec![a, b]);
        let empty = tempfile::tempdir().expect("tempdir");
        let err = expand_docs(&[empty.path().to_path_buf()]).expect_err("empty").to_string();
        assert!(err.contains(&empty.path().display().to_string()) && err.contains("no documents"), "{err}");
    }

    #[test]
    fn the_command_line_overrides_the_file_and_the_seed_default_applies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "s.toml", "seed = 3\nmax_tokens = 100\nmax_goldens_per_document = 5\n");
        let parse = |extra: &[&str]| {
            let mut argv = vec!["synth", "--docs", "x.txt", "--out", "o.jsonl"];
            argv.extend_from_slice(extra);
            resolve_config(&Args::try_parse_from(argv).expect("args")).expect("config")
        };
        let cfg = parse(&[]);
        assert_eq!((cfg.max_goldens_per_document, cfg.seed, cfg.max_tokens), (Some(2), 0, 512));
        let path = file.to_string_lossy().to_string();
        let cfg = parse(&["--config", &path]);
        assert_eq!((cfg.max_goldens_per_document, cfg.seed, cfg.max_tokens), (Some(5), 3, 100));
        let cfg = parse(&["--config", &path, "--seed", "9", "--max-goldens-per-doc", "1", "--max-tokens", "32"]);
        assert_eq!((cfg.max_goldens_per_document, cfg.seed, cfg.max_tokens), (Some(1), 9, 32));
    }
}
