//! `y = x · Wᵀ` for HF-layout `[out, in]` weights.

use burn::tensor::Tensor;

use crate::gemm::{gemm, is_cuda};

/// `y = x · Wᵀ` with `w_out_in: [out, in]` (HF layout), no bias.
///
/// On a CUDA device (`cuda` feature) the product runs on cuBLASLt (bf16/f16/f32 operands of one
/// dtype, f32 accumulation) with a custom backward: `dx = dy · W`, and `dW = dyᵀ · x` only when
/// `W` is tracked. Elsewhere it is burn's `linear` (`x · (Wᵀ)`), differentiated by burn.
///
/// # Shapes
/// - `x`: `[..., in]`, `w_out_in`: `[out, in]` → `[..., out]`.
///
/// # Panics
/// If `x`'s last dimension is not `in`, or a CUDA library call fails.
///
/// ```
/// use burn::tensor::{Device, Tensor, TensorData};
/// # let device = Device::flex();
/// let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), &device);
/// let w = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2]), &device);
/// let y: Vec<f32> = gpu_kernels::linear(x, w).into_data().try_to_vec().unwrap();
/// assert_eq!(y, vec![1.0, 2.0, 3.0]);
/// ```
pub fn linear<const D: usize>(x: Tensor<D>, w_out_in: Tensor<2>) -> Tensor<D> {
    let dims = x.dims();
    let [out, inp] = w_out_in.dims();
    assert_eq!(dims[D - 1], inp, "linear: x is {dims:?} but the weight is [{out}, {inp}]");
    if !(is_cuda(&x.device()) || cfg!(test)) {
        return portable_linear(x, w_out_in);
    }
    let rows: usize = dims[..D - 1].iter().product();
    let y = gemm(x.reshape([rows, inp]), w_out_in, false, true);
    let mut out_dims = dims;
    out_dims[D - 1] = out;
    y.reshape(out_dims)
}

/// Rows below which the portable path computes `(W · xᵀ)ᵀ`: CPU GEMMs then read `W` in its
/// stored `[out, in]` layout instead of copying a transposed `W` on every call (decode).
const SMALL_ROWS: usize = 64;

/// `y = x · Wᵀ` with burn's own ops, choosing the operand order that avoids copying `W`.
///
/// # Shapes
/// - x: `[..., in]`, w: `[out, in]` → `[..., out]`
pub fn portable_linear<const D: usize>(x: Tensor<D>, w_out_in: Tensor<2>) -> Tensor<D> {
    let dims = x.dims();
    let [out, inp] = w_out_in.dims();
    let rows: usize = dims[..D - 1].iter().product();
    if rows >= SMALL_ROWS {
        return burn::tensor::module::linear(x, w_out_in.transpose(), None);
    }
    let y = w_out_in.matmul(x.reshape([rows, inp]).transpose()).transpose();
    let mut out_dims = dims;
    out_dims[D - 1] = out;
    y.reshape(out_dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    #[test]
    fn matches_burns_linear_and_its_gradients() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let x0 = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &plain);
        let w0 = Tensor::<2>::random([5, 8], Distribution::Normal(0.0, 1.0), &plain);
        let t = Tensor::<3>::random([2, 3, 5], Distribution::Normal(0.0, 1.0), &plain);
        let run = |fast: bool| {
            let x = Tensor::<3>::from_data(x0.to_data(), &device).require_grad();
            let w = Tensor::<2>::from_data(w0.to_data(), &device).require_grad();
            let y = if fast { linear(x.clone(), w.clone()) } else { burn::tensor::module::linear(x.clone(), w.clone().transpose(), None) };
            let grads = (y.clone() * Tensor::from_data(t.to_data(), &device)).sum().backward();
            (y.into_data(), x.grad(&grads).expect("dx").into_data(), w.grad(&grads).expect("dw").into_data())
        };
        let (fast, slow) = (run(true), run(false));
        let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-5);
        fast.0.assert_approx_eq::<f32>(&slow.0, tol);
        fast.1.assert_approx_eq::<f32>(&slow.1, tol);
        fast.2.assert_approx_eq::<f32>(&slow.2, tol);
    }

    #[test]
    fn a_vector_input_keeps_its_rank() {
        let device = Device::flex();
        let x = Tensor::<1>::random([4], Distribution::Default, &device);
        let w = Tensor::<2>::random([6, 4], Distribution::Default, &device);
        assert_eq!(linear(x, w).dims(), [6]);
    }
}
