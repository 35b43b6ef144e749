//! The LoRA side path: `Δy = s · (dropout(x) · Aᵀ) · Bᵀ`.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{DType, Device, Distribution, Tensor};

use crate::autocast::bf16_side_path;

/// One adapter: two low-rank factors and a scale.
///
/// Shapes follow peft: `a: [r, in]`, `b: [out, r]`.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// Down projection `A: [r, in]`.
    pub a: Param<Tensor<2>>,
    /// Up projection `B: [out, r]`.
    pub b: Param<Tensor<2>>,
    /// Input dropout (active only on autodiff devices in training mode).
    pub dropout: Dropout,
    /// `s = α/r` (or `α/√r`).
    pub scaling: f64,
    /// When false the adapter contributes nothing (peft's `disable_adapter`).
    pub enabled: bool,
}

impl LoraAdapter {
    /// A fresh adapter initialized as peft does: `A ~ U(-1/√in, 1/√in)` (Kaiming-uniform with
    /// `a = √5`), `B = 0`, so the wrapped projection's output is unchanged at step 0.
    ///
    /// # Panics
    /// If `dropout` is not in `[0, 1)`.
    pub fn init(d_in: usize, d_out: usize, r: usize, scaling: f64, dropout: f64, device: &Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = Tensor::<2>::random([r, d_in], Distribution::Uniform(-bound, bound), device);
        let b = Tensor::<2>::zeros([d_out, r], device);
        Self::from_tensors(a, b, scaling, dropout)
    }

    /// An adapter from existing factors `a: [r, in]`, `b: [out, r]`.
    ///
    /// # Panics
    /// If the ranks of `a` and `b` differ, or `dropout` is not in `[0, 1)`.
    pub fn from_tensors(a: Tensor<2>, b: Tensor<2>, scaling: f64, dropout: f64) -> Self {
        assert_eq!(a.dims()[0], b.dims()[1], "LoRA factors disagree on the rank");
        Self { a: Param::from_tensor(a), b: Param::from_tensor(b), dropout: DropoutConfig::new(dropout).init(), scaling, enabled: true }
    }

    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.a.shape().dims::<2>()[0]
    }

    /// The adapter's contribution for input `x`, computed in the factors' dtype (as peft does:
    /// the input is cast to `A`'s dtype, e.g. bf16 activations through f32 factors) or, for bf16
    /// inputs through f32 factors under [`crate::autocast`]'s bf16 setting, in bf16 through
    /// bf16 copies of the factors; returned in `x`'s dtype.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn delta<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let y = self.delta_unrounded(x);
        if y.dtype() == dtype { y } else { y.cast(dtype) }
    }

    /// [`LoraAdapter::delta`] left in the products' dtype (f32 for bf16 inputs through f32
    /// factors; [`LoraAdapter::add_delta`] joins it to a base output).
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn delta_unrounded<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (h, b) = self.down(x);
        crate::matmul::linear(h, b)
    }

    /// `base + Δy`: the adapter's contribution for `x` joined to its base's output `base`, in
    /// `base`'s dtype with one rounding. When the products run in `base`'s dtype (bf16 under
    /// [`crate::autocast`], f32 models) the second product reads `base` as its addend
    /// ([`gpu_kernels::gemm_add`]: `base + h · Bᵀ` accumulated in f32, one cuBLASLt call on
    /// CUDA, no separate add); otherwise the f32 `Δy` joins through [`gpu_kernels::add_cast`].
    ///
    /// # Shapes
    /// - base: `[..., out]`, x: `[..., in]`
    /// - output: `[..., out]`
    pub fn add_delta<const D: usize>(&self, base: Tensor<D>, x: Tensor<D>) -> Tensor<D> {
        let (h, b) = self.down(x);
        if h.dtype() != base.dtype() {
            return gpu_kernels::add_cast(base, crate::matmul::linear(h, b));
        }
        let dims = base.dims();
        let rows = dims[..D - 1].iter().product::<usize>();
        let (r, out) = (self.rank(), dims[D - 1]);
        gpu_kernels::gemm_add(h.reshape([rows, r]), b, false, true, base.reshape([rows, out])).reshape(dims)
    }

    /// `x · Wᵀ + Δy` for a packed 4-bit base `w` (no bias, `x`'s dtype its compute dtype) as one
    /// op ([`gpu_kernels::nf4_lora_linear`]: the backward joins the two input gradients inside the
    /// base's product) when the kernel path takes it — CUDA training with dropout, the products
    /// in `x`'s dtype (bf16 inputs under [`crate::autocast`]'s bf16 setting, or factors of `x`'s
    /// dtype); `None` otherwise. With `value` false the value is zeros and only the gradients
    /// are the product's ([`gpu_kernels::nf4_linear_gradient_only`]'s contract).
    ///
    /// # Shapes
    /// - x: `[..., in]` → `[..., out]`
    pub fn with_packed_base<const D: usize>(&self, x: Tensor<D>, w: &gpu_kernels::PackedNf4, value: bool) -> Option<Tensor<D>> {
        let dtype = x.dtype();
        if self.side_dtype(dtype) != dtype
            || self.b.val().dtype() != self.a.val().dtype()
            || self.dropout.prob <= 0.0
            || !x.device().is_autodiff()
            || !gpu_kernels::is_cuda(&x.device())
        {
            return None;
        }
        let (a, b) = self.factors_in(dtype);
        gpu_kernels::nf4_lora_linear(x, w, a, b, self.dropout.prob, self.scaling, value)
    }

    /// The dtype the side path's products run in for inputs of `dtype`: bf16 for bf16 inputs
    /// through f32 factors under [`crate::autocast`]'s bf16 setting, else the factors' own.
    fn side_dtype(&self, dtype: DType) -> DType {
        let factors = self.a.val().dtype();
        if dtype == DType::BF16 && factors == DType::F32 && bf16_side_path() { DType::BF16 } else { factors }
    }

    /// `A` and `B` for inputs of `dtype`, cast to [`LoraAdapter::side_dtype`] where it differs.
    fn factors_in(&self, dtype: DType) -> (Tensor<2>, Tensor<2>) {
        let (a, b, side) = (self.a.val(), self.b.val(), self.side_dtype(dtype));
        if a.dtype() == side { (a, b) } else { (a.cast(side), b.cast(side)) }
    }

    /// The side path's first half: `h = s · dropout(x) · Aᵀ` and `B`, both in the products' dtype
    /// (the factors' dtype, or bf16 for bf16 inputs under [`crate::autocast`]'s bf16 setting).
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - h: `[..., r]`, B: `[out, r]`
    fn down<const D: usize>(&self, x: Tensor<D>) -> (Tensor<D>, Tensor<2>) {
        let dtype = x.dtype();
        let (a, b) = self.factors_in(dtype);
        let side = a.dtype();
        // CUDA training: one kernel casts, drops and scales (the path is linear in x, so `s`
        // moves to its input), and no mask is kept for the backward.
        let h = match gpu_kernels::dropout::fused_dropout(x.clone(), self.dropout.prob, self.scaling, side) {
            Some(scaled) => crate::matmul::linear(scaled, a),
            None => {
                let x = self.dropout.forward(if side == dtype { x } else { x.cast(side) });
                crate::matmul::linear(x, a).mul_scalar(self.scaling)
            }
        };
        (h, b)
    }

    /// The dense weight update `s · B · A`, shape `[out, in]` (for merging).
    pub fn delta_weight(&self) -> Tensor<2> {
        gpu_kernels::gemm(self.b.val(), self.a.val(), false, false).mul_scalar(self.scaling)
    }

    /// Trainable parameter count `r · (in + out)`.
    pub fn num_trainable(&self) -> usize {
        let [r, d_in] = self.a.shape().dims::<2>();
        let [d_out, _] = self.b.shape().dims::<2>();
        r * (d_in + d_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, FloatDType, Tolerance};

    #[test]
    fn bf16_inputs_run_through_f32_factors_and_come_back_in_bf16() {
        let device = Device::flex();
        let a = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &device);
        let adapter = LoraAdapter::from_tensors(a, b, 0.5, 0.0);
        let x = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let want = adapter.delta(x.clone().cast(FloatDType::BF16).cast(FloatDType::F32));
        let got = adapter.delta(x.cast(FloatDType::BF16));
        assert_eq!((got.dims(), got.dtype()), ([2, 3, 6], DType::BF16));
        got.cast(FloatDType::F32).into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::rel_abs(1e-2, 1e-2));
    }

    #[test]
    fn under_the_bf16_setting_the_products_use_bf16_factors_and_f32_gradients() {
        let device = Device::flex().autodiff();
        let plain = device.clone().without_autodiff();
        let a0 = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &plain);
        let b0 = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &plain);
        let x0 = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &plain).cast(FloatDType::BF16);
        let adapter = LoraAdapter::from_tensors(
            Tensor::from_data(a0.to_data(), &device).require_grad(),
            Tensor::from_data(b0.to_data(), &device).require_grad(),
            0.5,
            0.0,
        );
        let x = Tensor::<3>::from_data(x0.to_data(), (&device, DType::BF16));
        let got = crate::autocast::with_bf16_side_path(true, || adapter.delta_unrounded(x.clone()));
        assert_eq!(got.dtype(), DType::BF16, "the products ran in bf16");
        // The same products by hand: bf16 factors, x·Aᵀ rounded to bf16, then ·Bᵀ and the scale.
        let (a16, b16) = (a0.clone().cast(FloatDType::BF16), b0.clone().cast(FloatDType::BF16));
        let h = x0.clone().matmul(a16.transpose().unsqueeze::<3>());
        let want = h.matmul(b16.transpose().unsqueeze::<3>()).mul_scalar(0.5);
        got.clone().into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::rel_abs(1e-2, 1e-2));
        let off = crate::autocast::with_bf16_side_path(false, || adapter.delta_unrounded(x.clone()));
        assert_eq!(off.dtype(), DType::F32, "off: the products run in the factors' f32");
        // Joined to a bf16 base output: the second product accumulates onto it (one rounding).
        let base0 = Tensor::<3>::random([2, 3, 6], Distribution::Normal(0.0, 1.0), &plain).cast(FloatDType::BF16);
        let base = Tensor::<3>::from_data(base0.to_data(), (&device, DType::BF16)).require_grad();
        let joined = crate::autocast::with_bf16_side_path(true, || adapter.add_delta(base.clone(), x.clone()));
        assert_eq!(joined.dtype(), DType::BF16);
        let want = (base0.cast(FloatDType::F32) + got.clone().cast(FloatDType::F32)).cast(FloatDType::BF16);
        joined.clone().into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::rel_abs(1e-2, 1e-2));
        let grads = joined.cast(FloatDType::F32).sum().backward();
        let dbase = base.grad(&grads).expect("the base output's gradient");
        assert_eq!(dbase.dtype(), DType::BF16);
        dbase.into_data().assert_eq(&Tensor::<3>::ones([2, 3, 6], (&plain, DType::BF16)).into_data(), true);
        let grads = got.cast(FloatDType::F32).sum().backward();
        let (da, db) = (adapter.a.grad(&grads).expect("dA"), adapter.b.grad(&grads).expect("dB"));
        assert_eq!((da.dtype(), db.dtype()), (DType::F32, DType::F32), "the factors' gradients stay f32");
    }
}
