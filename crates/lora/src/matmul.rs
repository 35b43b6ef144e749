//! `y = x · Wᵀ` routed to the fastest kernel for the device and shape.

use burn::tensor::Tensor;

/// `y = x · Wᵀ` for `w: [out, in]`: cuBLASLt (with its own backward) on CUDA at every size,
/// burn's `linear` elsewhere. (burn's own CUDA matmul did not return on the H200 even for a
/// 7-row input, see `docs/cuda.md`, so no CUDA shape is routed to it.)
///
/// # Shapes
/// - x: `[..., in]`
/// - output: `[..., out]`
pub fn linear<const D: usize>(x: Tensor<D>, w_out_in: Tensor<2>) -> Tensor<D> {
    if gpu_kernels::is_cuda(&x.device()) { gpu_kernels::linear(x, w_out_in) } else { gpu_kernels::portable_linear(x, w_out_in) }
}
