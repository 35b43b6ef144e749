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

/// Free space a clean build and its tests need on the target folder's disk (they fill ≈ 5 GiB).
const MIN_FREE_GIB: f64 = 8.0;

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

/// GiB free on the filesystem holding `path` (`df -Pk`), if `df` answers.
fn free_gib(path: &Path) -> Option<f64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let kib: f64 = text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// Fails early, and says why, when the build would fill the disk (the linker then dies with a
/// bus error minutes later).
fn check_disk(root: &Path) -> Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let probe = if target.exists() { target } else { root.to_path_buf() };
    match free_gib(&probe) {
        Some(free) if free < MIN_FREE_GIB => bail!(
            "only {free:.1} GiB free on the disk holding {}: a clean build and its tests need ≈ {MIN_FREE_GIB} GiB; free some space or point CARGO_TARGET_DIR at a roomier disk",
            probe.display()
        ),
        _ => Ok(()),
    }
}

/// Runs the CI steps.
pub fn run(args: Args) -> Result<()> {
    let root = workspace_root();
    let total = Instant::now();
    check_disk(&root)?;
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
            // Its own profile: the wgpu + CubeCL tree is built unoptimized for this one test
            // binary (`Cargo.toml`, `[profile.wgpu-ci]`).
            .args(["test", "--profile", "wgpu-ci", "-p", "llama-model", "--locked", "--features", "wgpu", "--test", "hf_parity"])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_off_df() {
        let free = free_gib(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("df answers for the workspace");
        assert!(free > 0.0 && free < 1e6, "{free} GiB");
    }
}
