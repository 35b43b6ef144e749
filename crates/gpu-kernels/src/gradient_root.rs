//! A root for `backward()` that hands a given gradient to a tensor: backpropagating an upstream
//! gradient `g` through the graph of `y` (a recomputed block, say) without a loss.
//!
//! The textbook root is `⟨y, g⟩ = Σ y ⊙ g`, whose gradient in `y` is exactly `g`; as burn ops it
//! costs a product, a reduction, and in the backward a fill and another product, each over all of
//! `y`. On the kernel path (CUDA, or this crate's Flex tests) the root is one op whose value is
//! not computed (a one-element zero) and whose backward registers `g` itself as `y`'s gradient:
//! nothing runs over `y` at all. Elsewhere it is `⟨y, g⟩` as burn ops.

use burn::tensor::Tensor;

/// A one-element root whose `backward()` gives `y` the gradient `upstream` (the gradient of
/// `⟨y, upstream⟩`), for pulling a known gradient back through `y`'s graph.
///
/// Only the backward is specified: the value is `⟨y, upstream⟩` on burn's ops and 0 on the
/// kernel path (autodiff devices that take this crate's kernels), where it is never computed.
///
/// # Shapes
/// - `y`, `upstream`: the same shape → `[1]`.
///
/// # Panics
/// If the shapes differ.
pub fn gradient_root<const D: usize>(y: Tensor<D>, upstream: Tensor<D>) -> Tensor<1> {
    assert_eq!(y.dims(), upstream.dims(), "gradient_root: y and its upstream gradient differ in shape");
    let device = y.device();
    if !(device.is_autodiff() && crate::gemm::uses_extension(&device)) {
        return (y * upstream).sum();
    }
    #[cfg(any(test, feature = "cuda"))]
    {
        use crate::extension::KernelBackend;
        use burn::backend::Dispatch;
        let dtype = y.dtype();
        let root = <Dispatch as KernelBackend>::gradient_root(y.into_dispatch(), upstream.cast(dtype).into_dispatch());
        return Tensor::from_dispatch(root);
    }
    #[allow(unreachable_code)]
    {
        (y * upstream).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device, Distribution, Tolerance};

    #[test]
    fn the_root_gives_every_leaf_the_gradient_of_the_inner_product() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let x0 = Tensor::<2>::random([6, 5], Distribution::Normal(0.0, 1.0), &plain);
        let w0 = Tensor::<2>::random([5, 4], Distribution::Normal(0.0, 1.0), &plain);
        let g = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &plain);
        let run = |kernel_path: bool| {
            let x = Tensor::<2>::from_data(x0.to_data(), &device).require_grad();
            let w = Tensor::<2>::from_data(w0.to_data(), &device).require_grad();
            // y is used twice, so its gradient is a sum the root must leave intact.
            let y = x.clone().matmul(w.clone()).tanh() + x.clone().matmul(w.clone());
            let upstream = Tensor::<2>::from_data(g.to_data(), &device);
            let root = if kernel_path { gradient_root(y, upstream) } else { (y * upstream).sum() };
            assert_eq!(root.dims(), [1]);
            if kernel_path {
                // The op itself ran (not burn's product and sum): its value is never computed.
                assert_eq!(root.clone().into_data().try_to_vec::<f32>().expect("f32"), vec![0.0]);
            }
            let grads = root.backward();
            (x.grad(&grads).expect("dx").into_data(), w.grad(&grads).expect("dw").into_data())
        };
        let (fast, slow) = (run(true), run(false));
        fast.0.assert_approx_eq::<f32>(&slow.0, Tolerance::rel_abs(1e-6, 1e-6));
        fast.1.assert_approx_eq::<f32>(&slow.1, Tolerance::rel_abs(1e-6, 1e-6));
    }

    #[test]
    fn the_upstream_gradient_reaches_y_in_ys_dtype() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::ones([2, 3], (&device, DType::F32)).require_grad();
        let y = x.clone().mul_scalar(2.0);
        let upstream = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &device);
        let grads = gradient_root(y, upstream).backward();
        let dx = x.grad(&grads).expect("dx");
        assert_eq!(dx.dtype(), DType::F32);
        assert_eq!(dx.into_data().try_to_vec::<f32>().expect("f32"), vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
    }

    #[test]
    #[should_panic(expected = "differ in shape")]
    fn shapes_must_agree() {
        let device = Device::flex().autodiff();
        let _ = gradient_root(Tensor::<2>::ones([2, 3], &device), Tensor::<2>::ones([3, 2], &device));
    }
}
