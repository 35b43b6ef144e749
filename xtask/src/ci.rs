//! `cargo xtask ci`: what CI runs (`.ci/run` calls it) — fetch the real assets, make sure the
//! browser the report test uses is there, then build and run every test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Arguments of `ci`.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Skip fetching assets (they are already in the asset folder).
    #[arg(long)]
    pub no_fetch: bool,
    /// Also type-check the CUDA build (`cargo check --features cuda`).
    #[arg(long)]
    pub cuda_check: bool,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn step(name: &str, cmd: &mut Command) -> Result<()> {
    let start = Instant::now();
    eprintln!("==> {name}");
    let status = cmd.status().with_context(|| format!("starting `{name}`"))?;
    eprintln!("<== {name}: {status} in {:.0?}", start.elapsed());
    if !status.success() {
        bail!("`{name}` failed ({status})");
    }
    Ok(())
}

/// Runs the CI steps.
pub fn run(args: Args) -> Result<()> {
    let root = workspace_root();
    let total = Instant::now();
    if !args.no_fetch {
        step("fetch assets", Command::new(root.join("scripts/fetch-assets.sh")).current_dir(&root))?;
    }
    if which("chromium").is_none() {
        step(
            "install chromium (HTML report test)",
            Command::new("sh").arg("-c").arg("(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null"),
        )?;
    }
    step(
        "cargo test",
        Command::new("cargo").args(["test", "--workspace", "--locked", "--no-fail-fast"]).current_dir(&root),
    )?;
    if args.cuda_check {
        step(
            "cargo check (cuda)",
            Command::new("cargo").args(["check", "-p", "xtask", "--locked", "--features", "cuda", "--tests"]).current_dir(&root),
        )?;
    }
    eprintln!("ci: all steps passed in {:.0?}", total.elapsed());
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file())
    })
}
