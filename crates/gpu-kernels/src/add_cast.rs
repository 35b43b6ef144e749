//! `y = round_{dtype(base)}(base + delta)`: a sum of two tensors of different float dtypes,
//! computed in f32 and rounded once to `base`'s dtype — how a LoRA adapter's f32 output joins
//! the bf16 output of its frozen base (peft: `result + lora_out` promotes to f32, then casts
//! back). One kernel forward on CUDA (instead of a cast and an add); the backward passes `dy`
//! to `base` and `dy` cast to `delta`'s dtype to `delta`.

use burn::tensor::Tensor;

use crate::env_switch::EnvSwitch;

/// `KINDLING_ADD_CAST=separate`: burn's cast and add on CUDA too (an A/B switch).
static SEPARATE: EnvSwitch = EnvSwitch::new("KINDLING_ADD_CAST", "separate");

/// `base + delta` in f32, in `base`'s dtype.
///
/// # Shapes
/// - `base`, `delta`: `[...]` (one shape) → `[...]`.
///
/// # Panics
/// If the shapes differ.
pub fn add_cast<const D: usize>(base: Tensor<D>, delta: Tensor<D>) -> Tensor<D> {
    assert_eq!(base.dims(), delta.dims(), "add_cast: base and delta differ in shape");
    let fused = base.dtype() != delta.dtype() && crate::gemm::uses_extension(&base.device()) && !SEPARATE.is_on();
    if fused {
        #[cfg(any(test, feature = "cuda"))]
        {
            use crate::extension::KernelBackend;
            use burn::backend::Dispatch;
            let dims = base.dims();
            let n = dims.iter().product::<usize>();
            let (b, d) = (base.reshape([n]), delta.reshape([n]));
            let y: Tensor<1> = Tensor::from_dispatch(<Dispatch as KernelBackend>::add_cast(b.into_dispatch(), d.into_dispatch()));
            return y.reshape(dims);
        }
    }
    portable_add_cast(base, delta)
}

/// [`add_cast`] as burn ops: `delta` cast to `base`'s dtype, then added (two roundings when the
/// dtypes differ; every backend, differentiable).
pub fn portable_add_cast<const D: usize>(base: Tensor<D>, delta: Tensor<D>) -> Tensor<D> {
    let dtype = base.dtype();
    if delta.dtype() == dtype { base + delta } else { base + delta.cast(dtype) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device, Distribution, FloatDType, Tolerance};

    #[test]
    fn one_rounding_of_the_f32_sum_and_both_gradients() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let b0 = Tensor::<2>::random([3, 50], Distribution::Normal(0.0, 1.0), &plain).cast(FloatDType::BF16);
        let d0 = Tensor::<2>::random([3, 50], Distribution::Normal(0.0, 1e-2), &plain);
        let w = Tensor::<2>::random([3, 50], Distribution::Normal(0.0, 1.0), &plain).cast(FloatDType::BF16);
        let base = Tensor::<2>::from_data(b0.to_data(), (&device, DType::BF16)).require_grad();
        let delta = Tensor::<2>::from_data(d0.to_data(), &device).require_grad();
        let y = add_cast(base.clone(), delta.clone());
        assert_eq!(y.dtype(), DType::BF16);
        let want = (b0.cast(FloatDType::F32) + d0).cast(FloatDType::BF16);
        y.clone().into_data().assert_eq(&want.into_data(), true);
        let grads = (y * Tensor::from_data(w.to_data(), (&device, DType::BF16))).sum().backward();
        let (db, dd) = (base.grad(&grads).expect("d base"), delta.grad(&grads).expect("d delta"));
        assert_eq!((db.dtype(), dd.dtype()), (DType::BF16, DType::F32));
        db.into_data().assert_eq(&w.to_data(), true);
        dd.into_data().assert_approx_eq::<f32>(&w.cast(FloatDType::F32).into_data(), Tolerance::absolute(0.0));
    }
}
