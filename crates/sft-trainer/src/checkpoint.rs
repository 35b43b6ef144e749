//! Resumable checkpoints: `checkpoints/step-N/` holds the adapter (peft format), the optimizer
//! moments, and the trainer state (step, epoch, position in the epoch's batch order, seed).
//!
//! A checkpoint is written into a hidden temporary folder and renamed into place, so a folder
//! named `step-N` is always complete: a crash or a full disk mid-save leaves the previous
//! checkpoints untouched and no partial `step-N`.

use std::io::Write;
use std::path::{Path, PathBuf};

use lora::PeftAdapter;
use safetensors::Dtype;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where checkpoint bytes go; the file system by default. Tests substitute a store that fails
/// (e.g. a full disk).
pub trait Storage: Send + Sync {
    /// Writes a whole file durably.
    ///
    /// # Errors
    /// Any I/O failure.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
}

/// The local file system, with `fsync`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileSystem;

impl Storage for FileSystem {
    fn write_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }
}

/// Everything besides tensors needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Micro-batches of the current epoch already consumed.
    pub cursor: usize,
    /// The run's seed; data order is a function of `(seed, epoch)` and dropout of `(seed, step)`.
    pub seed: u64,
    /// Tokens trained on so far.
    pub tokens_seen: u64,
    /// Training loss of every completed step, `(step, loss)`.
    pub losses: Vec<(usize, f64)>,
    /// A digest of the settings that must not change across a resume.
    pub fingerprint: String,
}

/// The optimizer moments `(m, v, shape)` per trainable tensor.
pub type Moments = Vec<(Vec<f32>, Vec<f32>, [usize; 2])>;

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// The folder of step `n`'s checkpoint.
pub fn step_dir(output: &Path, n: usize) -> PathBuf {
    output.join("checkpoints").join(format!("step-{n}"))
}

/// Saves a checkpoint atomically and returns its folder.
///
/// # Errors
/// [`Error::Io`] naming the file that could not be written; nothing partial is left behind.
pub fn save(output: &Path, adapter: &PeftAdapter, moments: &Moments, state: &TrainerState, storage: &dyn Storage) -> Result<PathBuf> {
    let root = output.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let final_dir = step_dir(output, state.step);
    let tmp = root.join(format!(".step-{}.tmp-{}", state.step, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let written = (|| -> Result<()> {
        let (config, weights) = adapter.to_bytes()?;
        let put = |name: &str, bytes: &[u8]| storage.write_file(&tmp.join(name), bytes).map_err(|e| Error::io(tmp.join(name), e));
        put(lora::peft::CONFIG_FILE, &config)?;
        put(lora::peft::WEIGHTS_FILE, &weights)?;
        put(OPTIMIZER_FILE, &moments_bytes(moments)?)?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::io(tmp.join(STATE_FILE), e))?;
        put(STATE_FILE, &json)?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
        if let Ok(d) = std::fs::File::open(&root) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(final_dir)
}

fn moments_bytes(moments: &Moments) -> Result<Vec<u8>> {
    let names: Vec<(String, &[f32], [usize; 2])> = moments
        .iter()
        .enumerate()
        .flat_map(|(i, (m, v, s))| [(format!("m.{i}"), m.as_slice(), *s), (format!("v.{i}"), v.as_slice(), *s)])
        .collect();
    let views = names
        .iter()
        .map(|(n, data, s)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.to_vec(), bytemuck::cast_slice(data)).map(|v| (n.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Checkpoint(e.to_string()))?;
    safetensors::serialize(views, None).map_err(|e| Error::Checkpoint(e.to_string()))
}

/// The latest complete checkpoint under `output`, as `(step, folder)`.
pub fn latest(output: &Path) -> Option<(usize, PathBuf)> {
    let root = output.join("checkpoints");
    std::fs::read_dir(&root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: usize = name.strip_prefix("step-")?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
}

/// Removes temporary folders left by a save that was interrupted (a killed process); they were
/// never checkpoints. Returns how many were removed.
pub fn remove_stale_temporaries(output: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(output.join("checkpoints")) else { return 0 };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(".step-") && name.contains(".tmp-")
        })
        .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
        .count()
}

/// Every complete checkpoint's step, ascending.
pub fn all_steps(output: &Path) -> Vec<usize> {
    let mut steps: Vec<usize> = std::fs::read_dir(output.join("checkpoints"))
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_string_lossy().strip_prefix("step-")?.parse().ok()).collect())
        .unwrap_or_default();
    steps.sort_unstable();
    steps
}

/// Reads a checkpoint folder.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file that is missing or malformed.
pub fn load(dir: &Path) -> Result<(PeftAdapter, Moments, TrainerState)> {
    let adapter = PeftAdapter::load(dir)?;
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| Error::Checkpoint(format!("{}: {e}", state_path.display())))?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    let bytes = std::fs::read(&opt_path).map_err(|e| Error::io(&opt_path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Checkpoint(format!("{}: {e}", opt_path.display())))?;
    let mut moments = Vec::new();
    for i in 0.. {
        let (Ok(m), Ok(v)) = (st.tensor(&format!("m.{i}")), st.tensor(&format!("v.{i}"))) else { break };
        let shape: [usize; 2] =
            m.shape().try_into().map_err(|_| Error::Checkpoint(format!("{}: `m.{i}` is not 2-D", opt_path.display())))?;
        let f = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>();
        moments.push((f(m.data()), f(v.data()), shape));
    }
    Ok((adapter, moments, state))
}

/// Removes the oldest checkpoints beyond `keep`.
pub fn prune(output: &Path, keep: usize) {
    let steps = all_steps(output);
    if steps.len() > keep {
        for n in &steps[..steps.len() - keep] {
            let _ = std::fs::remove_dir_all(step_dir(output, *n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A disk that fills up after `budget` bytes.
    struct FullDisk {
        budget: AtomicUsize,
    }

    impl Storage for FullDisk {
        fn write_file(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
            let left = self.budget.load(Ordering::SeqCst);
            if bytes.len() > left {
                // Like a real full disk: part of the file lands, then the write fails.
                std::fs::write(path, &bytes[..left])?;
                self.budget.store(0, Ordering::SeqCst);
                return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device"));
            }
            self.budget.fetch_sub(bytes.len(), Ordering::SeqCst);
            FileSystem.write_file(path, bytes)
        }
    }

    fn sample() -> (PeftAdapter, Moments, TrainerState) {
        let mut modules = BTreeMap::new();
        modules.insert(
            "model.layers.0.self_attn.q_proj".into(),
            lora::AdapterWeights { a: vec![0.5; 8], a_shape: [2, 4], b: vec![0.25; 6], b_shape: [3, 2] },
        );
        let adapter = PeftAdapter { config: lora::PeftConfig::from_lora(&lora::LoraConfig::default(), "tiny"), modules };
        let moments = vec![(vec![0.1; 8], vec![0.2; 8], [2, 4]), (vec![0.3; 6], vec![0.4; 6], [3, 2])];
        let state = TrainerState {
            step: 3,
            epoch: 0,
            cursor: 3,
            seed: 7,
            tokens_seen: 99,
            losses: vec![(1, 2.0), (2, 1.5), (3, 1.25)],
            fingerprint: "x".into(),
        };
        (adapter, moments, state)
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, m, s) = sample();
        let path = save(dir.path(), &a, &m, &s, &FileSystem).expect("save");
        assert_eq!(latest(dir.path()).expect("one").0, 3);
        let (a2, m2, s2) = load(&path).expect("load");
        assert_eq!((a2.modules, m2, s2), (a.modules, m, s));
    }

    #[test]
    fn full_disk_keeps_the_previous_checkpoint_and_leaves_nothing_partial() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, m, mut s) = sample();
        save(dir.path(), &a, &m, &s, &FileSystem).expect("first save");
        s.step = 6;
        let disk = FullDisk { budget: AtomicUsize::new(300) };
        let err = save(dir.path(), &a, &m, &s, &disk).expect_err("disk full");
        let text = err.to_string();
        assert!(text.contains("No space left on device"), "{text}");
        assert_eq!(all_steps(dir.path()), vec![3], "no step-6 folder, step-3 intact");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("checkpoints")).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 1, "temporary folder removed: {leftovers:?}");
        load(&step_dir(dir.path(), 3)).expect("previous checkpoint still loads");
    }

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tmp");
        let (a, m, mut s) = sample();
        for step in [2, 4, 6] {
            s.step = step;
            save(dir.path(), &a, &m, &s, &FileSystem).expect("save");
        }
        prune(dir.path(), 2);
        assert_eq!(all_steps(dir.path()), vec![4, 6]);
    }
}
