//! A projection = a frozen base plus an optional LoRA adapter.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::{BaseLinear, DenseLinear, LoraAdapter};

/// `y = base(x) + s · B · A · dropout(x)`; the adapter is optional and switchable.
#[derive(Module, Debug)]
pub struct Projection {
    /// The frozen base.
    pub base: BaseLinear,
    /// The adapter, if any.
    pub lora: Option<LoraAdapter>,
}

impl Projection {
    /// A projection without adapter.
    pub fn new(base: BaseLinear) -> Self {
        Self { base, lora: None }
    }

    /// The output; the adapter's contribution joins the base's output with one rounding on CUDA
    /// ([`LoraAdapter::add_delta`]; a cast, then an add elsewhere). A packed base with an
    /// enabled adapter in CUDA training runs as one op ([`LoraAdapter::with_packed_base`]).
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(y) = self.packed_with_adapter(x.clone(), true) {
            return y;
        }
        self.with_adapter(self.base.forward(x.clone()), x)
    }

    /// [`Projection::forward`] for a recomputed forward whose output value nobody reads: the
    /// base enters by its gradient only ([`BaseLinear::forward_gradient_only`]: zeros for a packed
    /// base on the GPU), the adapter as in `forward` (or, as one op with a packed base in CUDA
    /// training, zeros for the whole value). The gradients of the input and of the adapter's
    /// factors are `forward`'s.
    ///
    /// # Shapes
    /// - x: `[..., in]`
    /// - output: `[..., out]`
    pub fn forward_gradient_only<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Some(y) = self.packed_with_adapter(x.clone(), false) {
            return y;
        }
        self.with_adapter(self.base.forward_gradient_only(x.clone()), x)
    }

    /// A packed base and its enabled adapter as one op, where the kernel path takes it
    /// ([`LoraAdapter::with_packed_base`]).
    fn packed_with_adapter<const D: usize>(&self, x: Tensor<D>, value: bool) -> Option<Tensor<D>> {
        let lora = self.lora.as_ref().filter(|l| l.enabled)?;
        let BaseLinear::Nf4(base) = &self.base else { return None };
        let packed = base.packed_plain(x.dtype())?;
        lora.with_packed_base(x, packed, value)
    }

    /// `base` (the base's output for `x`) plus the enabled adapter's contribution for `x`.
    fn with_adapter<const D: usize>(&self, base: Tensor<D>, x: Tensor<D>) -> Tensor<D> {
        match &self.lora {
            Some(lora) if lora.enabled => lora.add_delta(base, x),
            _ => base,
        }
    }

    /// `[out, in]` of the base.
    pub fn dims(&self) -> [usize; 2] {
        self.base.dims()
    }

    /// The weight `[out, in]` when the projection is exactly `x · Wᵀ`: a dense base without
    /// bias and no enabled adapter (so that callers may fuse the product with what follows).
    pub fn plain_weight(&self) -> Option<Tensor<2>> {
        let adapted = self.lora.as_ref().is_some_and(|l| l.enabled);
        match &self.base {
            BaseLinear::Dense(l) if l.bias.is_none() && !adapted => Some(l.weight.val()),
            _ => None,
        }
    }

    /// The GPU-resident packed weight when the projection is exactly `x · Wᵀ` in `dtype` with a
    /// packed base (no bias, no enabled adapter), for the fused decoding kernels
    /// ([`gpu_kernels::nf4_gemv_fused`]).
    pub fn packed_plain(&self, dtype: burn::tensor::DType) -> Option<&gpu_kernels::PackedNf4> {
        let adapted = self.lora.as_ref().is_some_and(|l| l.enabled);
        match &self.base {
            BaseLinear::Nf4(l) if !adapted => l.packed_plain(dtype),
            _ => None,
        }
    }

    /// Folds the adapter into a dense base: `W ← W + s·B·A`; the adapter is removed.
    /// A packed base is dequantized first (as peft does for 4-bit bases).
    pub fn merge(self) -> Self {
        match self.lora {
            None => self,
            Some(lora) => {
                let weight = self.base.dense_weight();
                let merged = weight.clone() + lora.delta_weight().cast(weight.dtype());
                Self::new(BaseLinear::Dense(DenseLinear::new(merged, self.base.bias())))
            }
        }
    }

    /// Undoes [`Projection::merge`] for a dense base given the adapter that was merged:
    /// `W ← W − s·B·A`, and re-attaches the adapter.
    pub fn unmerge(self, lora: LoraAdapter) -> Self {
        let weight = self.base.dense_weight();
        let weight = weight.clone() - lora.delta_weight().cast(weight.dtype());
        Self { base: BaseLinear::Dense(DenseLinear::new(weight, self.base.bias())), lora: Some(lora) }
    }

    /// Enables or disables the adapter without removing it.
    pub fn set_adapter_enabled(&mut self, enabled: bool) {
        if let Some(l) = self.lora.as_mut() {
            l.enabled = enabled;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tolerance};

    fn device() -> Device {
        Device::flex()
    }

    fn random(shape: [usize; 2], d: &Device) -> Tensor<2> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), d)
    }

    #[test]
    fn fresh_adapter_leaves_output_unchanged() {
        let d = device();
        let base = BaseLinear::Dense(DenseLinear::new(random([6, 5], &d), None));
        let mut p = Projection::new(base);
        let x = Tensor::<3>::random([2, 3, 5], Distribution::Normal(0.0, 1.0), &d);
        let before = p.forward(x.clone());
        p.lora = Some(LoraAdapter::init(5, 6, 4, 2.0, 0.0, &d));
        let after = p.forward(x);
        before.into_data().assert_approx_eq::<f32>(&after.into_data(), Tolerance::absolute(0.0));
    }

    #[test]
    fn delta_equals_scaled_b_a_x_and_merge_matches() {
        let d = device();
        let w = random([6, 5], &d);
        let (a, b) = (random([3, 5], &d), random([6, 3], &d));
        let p = Projection {
            base: BaseLinear::Dense(DenseLinear::new(w.clone(), None)),
            lora: Some(LoraAdapter::from_tensors(a.clone(), b.clone(), 0.5, 0.0)),
        };
        let x = random([4, 5], &d);
        // Hand-composed reference: x·Wᵀ + 0.5·x·Aᵀ·Bᵀ.
        let expected = x.clone().matmul(w.transpose()) + x.clone().matmul(a.transpose()).matmul(b.transpose()).mul_scalar(0.5);
        let y = p.forward(x.clone());
        y.clone().into_data().assert_approx_eq::<f32>(&expected.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
        let merged = p.merge();
        assert!(merged.lora.is_none());
        merged.forward(x).into_data().assert_approx_eq::<f32>(&y.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
    }

    #[test]
    fn disabled_adapter_is_skipped_and_unmerge_restores_base() {
        let d = device();
        let w = random([4, 4], &d);
        let lora = LoraAdapter::from_tensors(random([2, 4], &d), random([4, 2], &d), 1.0, 0.0);
        let mut p = Projection { base: BaseLinear::Dense(DenseLinear::new(w.clone(), None)), lora: Some(lora.clone()) };
        p.set_adapter_enabled(false);
        let x = random([3, 4], &d);
        p.forward(x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&x.clone().matmul(w.clone().transpose()).into_data(), Tolerance::rel_abs(1e-6, 1e-6));
        p.set_adapter_enabled(true);
        let restored = p.merge().unmerge(lora);
        restored.base.dense_weight().into_data().assert_approx_eq::<f32>(&w.into_data(), Tolerance::rel_abs(1e-5, 1e-5));
    }

    #[test]
    fn only_a_bare_dense_projection_offers_its_weight_for_fusion() {
        let d = device();
        let w = random([4, 3], &d);
        let lora = LoraAdapter::from_tensors(random([2, 3], &d), random([4, 2], &d), 1.0, 0.0);
        let mut p = Projection { base: BaseLinear::Dense(DenseLinear::new(w.clone(), None)), lora: Some(lora) };
        assert!(p.plain_weight().is_none(), "an enabled adapter adds to x·Wᵀ");
        p.set_adapter_enabled(false);
        let plain = p.plain_weight().expect("a disabled adapter leaves x·Wᵀ");
        plain.into_data().assert_approx_eq::<f32>(&w.clone().into_data(), Tolerance::absolute(0.0));
        let biased = Projection::new(BaseLinear::Dense(DenseLinear::new(w, Some(random([1, 4], &d).reshape([4])))));
        assert!(biased.plain_weight().is_none(), "a bias adds to x·Wᵀ");
    }
}
