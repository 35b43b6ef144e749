//! Choosing the compute backend: the only place a device is created.

use anyhow::{Result, bail};
use burn::tensor::{DType, Device};
use clap::ValueEnum;

/// A compute backend the binary may have been built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The CPU (burn's Flex backend).
    Cpu,
    /// NVIDIA GPUs through CUDA (build with `--features cuda`).
    Cuda,
    /// Vulkan/Metal/DX12 GPUs through wgpu (build with `--features wgpu`).
    Wgpu,
}

impl Backend {
    /// The device, or an error saying how to build with this backend.
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => cpu(),
            Backend::Cuda => cuda(),
            Backend::Wgpu => wgpu(),
        }
    }

    /// The float dtype to compute in: f32 on the CPU, bf16 on GPUs.
    pub fn dtype(self) -> DType {
        match self {
            Backend::Cpu => DType::F32,
            Backend::Cuda | Backend::Wgpu => DType::BF16,
        }
    }
}

#[cfg(feature = "flex")]
fn cpu() -> Result<Device> {
    Ok(Device::flex())
}
#[cfg(not(feature = "flex"))]
fn cpu() -> Result<Device> {
    bail!("this binary was built without the `flex` feature (the CPU backend)")
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    // Fail early (and clearly) when cuBLASLt cannot be loaded, rather than at the first GEMM.
    gpu_kernels::cuda::cublaslt_ready(0).map_err(|e| anyhow::anyhow!("CUDA: {e} (is /usr/local/cuda/lib64 on LD_LIBRARY_PATH?)"))?;
    Ok(Device::cuda(0))
}
#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    bail!("this binary was built without CUDA: build it with `cargo run --release -p xtask --features cuda -- ...`")
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}
#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device> {
    bail!("this binary was built without wgpu: build it with `cargo run --release -p xtask --features wgpu -- ...`")
}
