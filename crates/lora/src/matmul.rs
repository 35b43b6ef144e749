//! `y = x · Wᵀ` routed to the fastest kernel for the device and shape.

use burn::tensor::Tensor;

/// Rows below which burn's own matmul is used even on CUDA: the cuBLASLt path synchronizes the
/// host twice per call, which costs more than it saves on decode-sized inputs.
const CUBLAS_MIN_ROWS: usize = 64;

/// `y = x · Wᵀ` for `w: [out, in]`: cuBLASLt (with its own backward) on CUDA for
/// training-sized inputs, burn's `linear` otherwise.
///
/// # Shapes
/// - x: `[..., in]`
/// - output: `[..., out]`
pub fn linear<const D: usize>(x: Tensor<D>, w_out_in: Tensor<2>) -> Tensor<D> {
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    if rows >= CUBLAS_MIN_ROWS && gpu_kernels::is_cuda(&x.device()) {
        gpu_kernels::linear(x, w_out_in)
    } else {
        gpu_kernels::portable_linear(x, w_out_in)
    }
}
