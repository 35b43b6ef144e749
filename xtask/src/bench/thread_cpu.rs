//! CPU time of each of this process's threads (Linux: `/proc/self/task/<tid>/schedstat`, the
//! nanoseconds a thread spent running): the thread issuing the work and CubeCL's runner thread
//! executing it (launches, allocations, cuBLASLt calls). A thread's CPU time includes its
//! spin-waits (polling reads, the CUDA driver's full launch queue), so read it across batch
//! sizes: CPU time that grows with the tokens while the launches stay the same is waiting.

use std::collections::HashMap;

/// `tid → (name, nanoseconds on a CPU)` now; empty where `/proc` is not readable.
pub fn snapshot() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return out };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let path = entry.path();
        let ns = std::fs::read_to_string(path.join("schedstat")).ok().and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        let name = std::fs::read_to_string(path.join("comm")).map(|s| s.trim().to_string()).unwrap_or_default();
        if let Some(ns) = ns {
            out.insert(tid, (name, ns));
        }
    }
    out
}

/// The `top` threads by CPU time between two snapshots, as `{"tid", "name", "cpu_s"}` with the
/// seconds divided by `per` (e.g. the steps in between).
pub fn busiest(before: &HashMap<u32, (String, u64)>, after: &HashMap<u32, (String, u64)>, per: f64, top: usize) -> serde_json::Value {
    let mut rows: Vec<(u32, String, f64)> = after
        .iter()
        .map(|(tid, (name, ns))| {
            let start = before.get(tid).map_or(0, |(_, b)| *b);
            (*tid, name.clone(), ns.saturating_sub(start) as f64 * 1e-9 / per.max(1e-9))
        })
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    rows.truncate(top);
    serde_json::Value::Array(rows.into_iter().map(|(tid, name, s)| serde_json::json!({"tid": tid, "name": name, "cpu_s": s})).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_busy_thread_shows_its_cpu_time() {
        let before = snapshot();
        assert!(!before.is_empty(), "/proc/self/task/*/schedstat unreadable");
        let spin = std::thread::Builder::new()
            .name("spinner".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(200) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                (x, snapshot())
            })
            .expect("spawn");
        let (_, after) = spin.join().expect("join");
        let rows = busiest(&before, &after, 1.0, 64);
        let spinner = rows.as_array().expect("rows").iter().find(|r| r["name"] == "spinner").expect("the spinner's row");
        let cpu = spinner["cpu_s"].as_f64().expect("seconds");
        assert!(cpu > 0.1 && cpu < 1.0, "{cpu}");
    }
}
