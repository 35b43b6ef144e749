//! CUDA-only pieces: cuBLASLt, burn-cuda buffer interop, the NF4, optimizer and fused layer kernels
//! (RMSNorm, RoPE, softmax, SwiGLU), the kernel profiler.

pub(crate) mod add_cast;
pub(crate) mod cache_copy;
pub(crate) mod counter_hash;
pub(crate) mod cross_entropy;
pub mod cublaslt;
pub(crate) mod decode_advance;
pub(crate) mod decode_attention;
pub(crate) mod dropout;
pub(crate) mod gemm;
pub(crate) mod graph;
pub(crate) mod host_rows;
pub(crate) mod interop;
pub(crate) mod multi_tensor;
pub(crate) mod nf4;
pub(crate) mod nf4_gemv;
pub(crate) mod nf4_gemv_fused;
pub(crate) mod norm;
pub(crate) mod nvrtc_module;
pub(crate) mod optim;
pub mod profile;
pub(crate) mod rope;
pub(crate) mod softmax;
pub(crate) mod stream;
pub(crate) mod swiglu;

pub use cublaslt::{GemmCall, GemmDType, Operand};
pub use gemm::time_cublaslt_linear;
pub use host_rows::host_row_gathers;
pub use multi_tensor::multi_tensor_calls;
pub use stream::host_synchronized_gemms;

/// Checks up front that cuBLASLt loads on CUDA device `ordinal`: creates (once) the handle,
/// stream and workspace the GEMMs use.
///
/// # Errors
/// The library is missing from the loader path, or the driver refuses the context/stream.
pub fn cublaslt_ready(ordinal: usize) -> crate::Result<()> {
    cublaslt::synchronize(ordinal)
}
