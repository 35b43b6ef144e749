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
        self.device_at(0)
    }

    /// The `index`-th device of this backend (data-parallel ranks); the CPU has only one.
    pub fn device_at(self, index: usize) -> Result<Device> {
        match self {
            Backend::Cpu if index == 0 => cpu(),
            Backend::Cpu => bail!("the CPU backend has one device; data parallelism needs --device cuda"),
            Backend::Cuda => cuda(index),
            Backend::Wgpu if index == 0 => wgpu(),
            Backend::Wgpu => bail!("data parallelism is implemented for CUDA devices only"),
        }
    }

    /// The float dtype to compute in: bf16 on CUDA, f32 on the CPU and on wgpu (WGSL has no
    /// bf16 type).
    pub fn dtype(self) -> DType {
        match self {
            Backend::Cpu | Backend::Wgpu => DType::F32,
            Backend::Cuda => DType::BF16,
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
fn cuda(index: usize) -> Result<Device> {
    // Fail early (and clearly) when cuBLASLt cannot be loaded, rather than at the first GEMM.
    gpu_kernels::cuda::cublaslt_ready(index).map_err(|e| anyhow::anyhow!("CUDA: {e} (is /usr/local/cuda/lib64 on LD_LIBRARY_PATH?)"))?;
    Ok(Device::cuda(index))
}
#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device> {
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
