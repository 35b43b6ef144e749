//! `--profile`: where a GPU run's time goes. Every CubeCL kernel launched during the timed part
//! is counted and timed on the device (events read at the end, so kernels still run back to
//! back; the extra host work per launch makes the profiled run itself slower), and the cuBLASLt
//! GEMMs are counted (how many were queued on burn's stream) with the host time spent issuing
//! them, and timed on the device by shape. `idle_s` = wall − kernels − GEMMs: the GPU waiting for
//! the host. Reported per step (or per token).

use anyhow::{Result, bail};

/// A profile in progress (nothing when `--profile` is off).
pub struct Session {
    #[cfg(feature = "cuda")]
    profiler: Option<gpu_kernels::cuda::profile::Profiler>,
}

/// Checks that `--profile` can be honoured by this build.
///
/// # Errors
/// `--profile` on a build without the `cuda` feature.
pub fn check(enabled: bool) -> Result<()> {
    if enabled && !cfg!(feature = "cuda") {
        bail!("--profile needs a build with the `cuda` feature");
    }
    Ok(())
}

/// Starts a profile when `enabled` (CUDA builds only).
///
/// # Errors
/// `--profile` on a build without the `cuda` feature.
pub fn start(enabled: bool) -> Result<Session> {
    #[cfg(feature = "cuda")]
    {
        Ok(Session { profiler: enabled.then(|| gpu_kernels::cuda::profile::Profiler::start(true)) })
    }
    #[cfg(not(feature = "cuda"))]
    {
        check(enabled)?;
        Ok(Session {})
    }
}

/// Ends the profile (after the device has synced) and summarizes it per `units` (steps or
/// tokens): launches, kernel device time, GEMMs and their host time, the 30 costliest kernels.
pub fn finish(session: Session, units: usize) -> Option<serde_json::Value> {
    #[cfg(feature = "cuda")]
    {
        let p = session.profiler?.finish();
        let per = |x: f64| x / units.max(1) as f64;
        let top: Vec<serde_json::Value> = p
            .kernels
            .iter()
            .take(30)
            .map(|k| serde_json::json!({"kernel": k.name, "launches": per(k.launches as f64), "device_ms": per(k.device_s) * 1e3}))
            .collect();
        let gemm_top: Vec<serde_json::Value> = p
            .gemm_shapes
            .iter()
            .take(30)
            .map(|g| serde_json::json!({"gemm": g.shape, "calls": per(g.calls as f64), "device_ms": per(g.device_s) * 1e3, "tflops": g.flops_per_s * 1e-12}))
            .collect();
        Some(serde_json::json!({
            "per": units, "wall_s": per(p.wall_s), "launches": per(p.launches() as f64), "kernel_device_s": per(p.device_s()),
            "gemms": per(p.gemms as f64), "gemms_queued": per(p.gemms_queued as f64), "gemm_host_s": per(p.gemm_host_s),
            "gemm_device_s": per(p.gemm_device_s()), "idle_s": per(p.wall_s - p.device_s() - p.gemm_device_s()), "top": top, "gemm_top": gemm_top,
        }))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (session, units);
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn profiling_needs_cuda_and_off_is_nothing() {
        let off = super::start(false).expect("off");
        assert!(super::finish(off, 3).is_none());
        #[cfg(not(feature = "cuda"))]
        {
            assert!(super::start(true).is_err());
            assert!(super::check(true).unwrap_err().to_string().contains("cuda"));
        }
        assert!(super::check(false).is_ok());
    }
}
