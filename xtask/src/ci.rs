//! `cargo xtask ci`: what CI runs (`.ci/run` calls it) — check formatting (`rustfmt.toml`),
//! fetch the real assets, make sure the browser the report test uses and a software Vulkan
//! driver (for the wgpu parity tests) are there, then build and run every test, the
//! tiny-model HF parity tests again on wgpu, and type-check the CUDA build.

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
    /// Skip type-checking the CUDA build (`cargo check --features cuda`; no GPU or CUDA
    /// toolkit needed: the CUDA libraries are loaded at run time).
    #[arg(long)]
    pub no_cuda_check: bool,
}

/// Mesa's software Vulkan driver (Debian's `mesa-vulkan-drivers`).
const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

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
    step("cargo fmt --check", Command::new("cargo").args(["fmt", "--all", "--", "--check"]).current_dir(&root))?;
    if !args.no_fetch {
        step("fetch assets", Command::new(root.join("scripts/fetch-assets.sh")).current_dir(&root))?;
    }
    let mut missing = Vec::new();
    if which("chromium").is_none() {
        missing.push("chromium");
    }
    if !Path::new(LAVAPIPE_ICD).is_file() {
        missing.extend(["mesa-vulkan-drivers", "libvulkan1"]);
    }
    if !missing.is_empty() {
        let packages = missing.join(" ");
        step(
            &format!("install {packages} (HTML report test, software Vulkan)"),
            Command::new("sh")
                .arg("-c")
                .arg(format!("(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages}) >/dev/null")),
        )?;
    }
    step("cargo test", Command::new("cargo").args(["test", "--workspace", "--locked", "--no-fail-fast"]).current_dir(&root))?;
    step(
        "cargo test (wgpu on software Vulkan: HF parity)",
        Command::new("cargo")
            .args(["test", "-p", "llama-model", "--locked", "--features", "wgpu", "--test", "hf_parity"])
            .env("VK_ICD_FILENAMES", LAVAPIPE_ICD)
            // Mesa's window-system code wants one, even headless.
            .env("XDG_RUNTIME_DIR", std::env::var_os("XDG_RUNTIME_DIR").unwrap_or_else(|| std::env::temp_dir().into_os_string()))
            .current_dir(&root),
    )?;
    if !args.no_cuda_check {
        step(
            "cargo check (cuda)",
            Command::new("cargo")
                .args([
                    "check",
                    "-p",
                    "xtask",
                    "-p",
                    "gpu-kernels",
                    "-p",
                    "llama-model",
                    "-p",
                    "minilm",
                    "--locked",
                    "--features",
                    "cuda",
                    "--tests",
                ])
                .current_dir(&root),
        )?;
    }
    eprintln!("ci: all steps passed in {:.0?}", total.elapsed());
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}
