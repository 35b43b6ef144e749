//! `op(A) · op(B)` on 2-D tensors and on batches of matrices (3-D), as a burn backend extension
//! with its own backward.
//!
//! `KernelBackend::gemm` (`crate::extension`) is the one primitive: cuBLASLt on CUDA (`cuda`
//! feature), burn's `matmul` elsewhere. Its autodiff implementation stores only what the
//! backward needs and computes the gradients with the same primitive, so on CUDA the backward
//! GEMMs run on cuBLASLt too. For `C = op(A) · op(B)` and upstream gradient `G`:
//!
//! | | `op(A) = A` | `op(A) = Aᵀ` |
//! |---|---|---|
//! | `dA` | `G · op(B)ᵀ` | `op(B) · Gᵀ` |
//!
//! | | `op(B) = B` | `op(B) = Bᵀ` |
//! |---|---|---|
//! | `dB` | `op(A)ᵀ · G` | `Gᵀ · op(A)` |
//!
//! `dB` (and what it needs, `A`) is computed and kept only when `B` is tracked, and likewise
//! for `A`: a frozen weight costs no gradient and keeps no activation alive.

use burn::backend::{Backend, tensor::FloatTensor};
use burn::tensor::{Device, Tensor};

/// The reference `op(a) · op(b)` from burn's primitives (any backend, any float dtype).
pub fn reference_gemm<B: Backend>(a: FloatTensor<B>, b: FloatTensor<B>, transpose_a: bool, transpose_b: bool) -> FloatTensor<B> {
    let a = if transpose_a { B::float_transpose(a) } else { a };
    let b = if transpose_b { B::float_transpose(b) } else { b };
    B::float_matmul(a, b)
}

/// The reference `op(a) · op(b) + y` from burn's primitives (the product rounded to the dtype,
/// then the sum: two roundings).
pub fn reference_gemm_add<B: Backend>(
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    transpose_a: bool,
    transpose_b: bool,
    y: FloatTensor<B>,
) -> FloatTensor<B> {
    B::float_add(reference_gemm::<B>(a, b, transpose_a, transpose_b), y)
}

/// The CUDA ordinal of `device` (autodiff or not), `None` for another device.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_index(device: &Device) -> Option<usize> {
    match device.as_dispatch().clone().inner() {
        burn::backend::DispatchDevice::Cube(cubecl::Device::Cuda(d)) => Some(d.index),
        _ => None,
    }
}

/// Whether `device` is a CUDA device (autodiff or not) and the `cuda` feature is on.
pub fn is_cuda(device: &Device) -> bool {
    #[cfg(feature = "cuda")]
    {
        cuda_index(device).is_some()
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        false
    }
}

/// Whether calls on `device` go through the `KernelBackend` extension (`crate::extension`).
pub(crate) fn uses_extension(device: &Device) -> bool {
    #[cfg(test)]
    if matches!(device.as_dispatch().clone().inner(), burn::backend::DispatchDevice::Flex(_)) {
        return true;
    }
    is_cuda(device)
}

/// `op(a) · op(b)` on 2-D tensors: cuBLASLt on CUDA devices (bf16, f16 or f32 operands of one
/// dtype), burn's `matmul` otherwise. Differentiable in both operands.
///
/// # Shapes
/// - `op(a)`: `[m, k]`, `op(b)`: `[k, n]` → `[m, n]`.
///
/// # Panics
/// If the inner dimensions differ, or a CUDA library call fails.
pub fn gemm(a: Tensor<2>, b: Tensor<2>, transpose_a: bool, transpose_b: bool) -> Tensor<2> {
    product(a, b, transpose_a, transpose_b)
}

/// [`gemm`] over a batch: `out[i] = op(a[i]) · op(b[i])` (strided-batched cuBLASLt on CUDA).
///
/// # Shapes
/// - `op(a)`: `[batch, m, k]`, `op(b)`: `[batch, k, n]` → `[batch, m, n]`.
///
/// # Panics
/// If the batch sizes or inner dimensions differ, or a CUDA library call fails.
pub fn bmm(a: Tensor<3>, b: Tensor<3>, transpose_a: bool, transpose_b: bool) -> Tensor<3> {
    assert_eq!(a.dims()[0], b.dims()[0], "bmm: batch sizes differ ({:?}, {:?})", a.dims(), b.dims());
    product(a, b, transpose_a, transpose_b)
}

/// `KINDLING_GEMM_ADD=separate`: [`gemm_add`] as a product and an add on CUDA too (an A/B switch).
static SEPARATE_ADD: crate::env_switch::EnvSwitch = crate::env_switch::EnvSwitch::new("KINDLING_GEMM_ADD", "separate");

/// `op(a) · op(b) + y` on 2-D tensors: on CUDA one cuBLASLt call reading `y` (`beta = 1`), the
/// sum accumulated in f32 and rounded once to the dtype — how a LoRA adapter's second product
/// joins its base's output without a separate add. Elsewhere [`gemm`] and an add.
/// Differentiable in all three: `dy` passes to `y` unchanged, and `a`, `b` get [`gemm`]'s
/// gradients.
///
/// # Shapes
/// - `op(a)`: `[m, k]`, `op(b)`: `[k, n]`, `y`: `[m, n]` → `[m, n]`.
///
/// # Panics
/// If the inner dimensions differ, `y` is not `[m, n]`, the dtypes differ, or a CUDA library call
/// fails.
pub fn gemm_add(a: Tensor<2>, b: Tensor<2>, transpose_a: bool, transpose_b: bool, y: Tensor<2>) -> Tensor<2> {
    let m = if transpose_a { a.dims()[1] } else { a.dims()[0] };
    let n = if transpose_b { b.dims()[0] } else { b.dims()[1] };
    assert_eq!(y.dims(), [m, n], "gemm_add: the addend is {:?}, the product [{m}, {n}]", y.dims());
    assert!(
        a.dtype() == b.dtype() && b.dtype() == y.dtype(),
        "gemm_add: dtypes differ ({:?}, {:?}, {:?})",
        a.dtype(),
        b.dtype(),
        y.dtype()
    );
    if uses_extension(&a.device()) && !SEPARATE_ADD.is_on() {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            return Tensor::from_dispatch(<Dispatch as KernelBackend>::gemm_add(
                a.into_dispatch(),
                b.into_dispatch(),
                transpose_a,
                transpose_b,
                y.into_dispatch(),
            ));
        }
    }
    product(a, b, transpose_a, transpose_b) + y
}

/// Operands of different dtypes compute in `a`'s (the cast is differentiable).
fn product<const D: usize>(a: Tensor<D>, b: Tensor<D>, transpose_a: bool, transpose_b: bool) -> Tensor<D> {
    let b = if b.dtype() == a.dtype() { b } else { b.cast(a.dtype()) };
    let (da, db) = (a.dims(), b.dims());
    let ka = if transpose_a { da[D - 2] } else { da[D - 1] };
    let kb = if transpose_b { db[D - 1] } else { db[D - 2] };
    assert_eq!(ka, kb, "gemm: inner dimensions differ ({da:?}, {db:?}, transpose {transpose_a}/{transpose_b})");
    if uses_extension(&a.device()) {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            return Tensor::from_dispatch(<Dispatch as KernelBackend>::gemm(
                a.into_dispatch(),
                b.into_dispatch(),
                transpose_a,
                transpose_b,
            ));
        }
    }
    let a = if transpose_a { a.transpose() } else { a };
    let b = if transpose_b { b.transpose() } else { b };
    a.matmul(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    fn rand(shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    fn close(a: Tensor<2>, b: Tensor<2>) {
        a.into_data().assert_approx_eq::<f32>(&b.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
    }

    #[test]
    fn every_transpose_combination_matches_matmul() {
        let device = Device::flex();
        let (m, k, n) = (5, 7, 3);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a = rand(if ta { [k, m] } else { [m, k] }, &device);
            let b = rand(if tb { [n, k] } else { [k, n] }, &device);
            let want = (if ta { a.clone().transpose() } else { a.clone() }).matmul(if tb { b.clone().transpose() } else { b.clone() });
            let got = gemm(a, b, ta, tb);
            assert_eq!(got.dims(), [m, n]);
            close(got, want);
        }
    }

    #[test]
    fn gradients_match_burns_autodiff_for_every_transpose() {
        let device = Device::flex().autodiff();
        let (m, k, n) = (4, 6, 3);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a0 = rand(if ta { [k, m] } else { [m, k] }, &device.clone().without_autodiff());
            let b0 = rand(if tb { [n, k] } else { [k, n] }, &device.clone().without_autodiff());
            let w = rand([m, n], &device.clone().without_autodiff());
            let lift = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &device).require_grad();

            let (a, b) = (lift(&a0), lift(&b0));
            let loss = (gemm(a.clone(), b.clone(), ta, tb) * Tensor::from_data(w.to_data(), &device)).sum();
            let grads = loss.backward();
            let (ga, gb) = (a.grad(&grads).expect("grad a"), b.grad(&grads).expect("grad b"));

            let (ra, rb) = (lift(&a0), lift(&b0));
            let opa = if ta { ra.clone().transpose() } else { ra.clone() };
            let opb = if tb { rb.clone().transpose() } else { rb.clone() };
            let loss = (opa.matmul(opb) * Tensor::from_data(w.to_data(), &device)).sum();
            let grads = loss.backward();
            close(ga, ra.grad(&grads).expect("ref grad a"));
            close(gb, rb.grad(&grads).expect("ref grad b"));
        }
    }

    #[test]
    fn gemm_add_is_the_product_plus_the_addend_with_all_three_gradients() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let (m, k, n) = (4, 6, 3);
        let (a0, b0, y0, w) = (rand([m, k], &plain), rand([n, k], &plain), rand([m, n], &plain), rand([m, n], &plain));
        let lift = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &device).require_grad();
        let run = |fused: bool| {
            let (a, b, y) = (lift(&a0), lift(&b0), lift(&y0));
            let out = if fused {
                gemm_add(a.clone(), b.clone(), false, true, y.clone())
            } else {
                a.clone().matmul(b.clone().transpose()) + y.clone()
            };
            let grads = (out.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
            let grad = |t: &Tensor<2>| t.grad(&grads).expect("a gradient");
            [out, grad(&a), grad(&b), grad(&y)]
        };
        for (got, want) in run(true).into_iter().zip(run(false)) {
            close(got, want);
        }
    }

    #[test]
    #[should_panic(expected = "gemm_add: the addend is [4, 4], the product [4, 3]")]
    fn gemm_add_names_a_misshapen_addend() {
        let device = Device::flex();
        gemm_add(rand([4, 6], &device), rand([3, 6], &device), false, true, rand([4, 4], &device));
    }

    #[test]
    fn a_frozen_operand_gets_no_gradient() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &device).require_grad();
        let w = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 2.0], [2, 2]), &device);
        let grads = gemm(x.clone(), w.clone(), false, true).sum().backward();
        // d/dx Σ (x·wᵀ) = 1·w: rows of ones times w.
        let gx: Vec<f32> = x.grad(&grads).expect("grad x").into_data().try_to_vec().expect("f32");
        assert_eq!(gx, vec![1.0, 2.0, 1.0, 2.0]);
        assert!(w.grad(&grads).is_none());
    }

    #[test]
    fn batched_products_and_their_gradients_match_burns_matmul() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let (nb, m, k, n) = (3, 4, 6, 5);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let r = |shape: [usize; 3]| Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &plain);
            let (a0, b0) = (r(if ta { [nb, k, m] } else { [nb, m, k] }), r(if tb { [nb, n, k] } else { [nb, k, n] }));
            let w = r([nb, m, n]);
            let lift = |t: &Tensor<3>| Tensor::<3>::from_data(t.to_data(), &device).require_grad();
            let run = |fast: bool| {
                let (a, b) = (lift(&a0), lift(&b0));
                let y = if fast {
                    bmm(a.clone(), b.clone(), ta, tb)
                } else {
                    (if ta { a.clone().transpose() } else { a.clone() }).matmul(if tb { b.clone().transpose() } else { b.clone() })
                };
                let grads = (y.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
                (y.into_data(), a.grad(&grads).expect("grad a").into_data(), b.grad(&grads).expect("grad b").into_data())
            };
            let (fast, slow) = (run(true), run(false));
            let tol = Tolerance::<f32>::rel_abs(1e-5, 1e-5);
            fast.0.assert_approx_eq::<f32>(&slow.0, tol);
            fast.1.assert_approx_eq::<f32>(&slow.1, tol);
            fast.2.assert_approx_eq::<f32>(&slow.2, tol);
        }
    }
}
