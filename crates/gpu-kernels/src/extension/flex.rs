//! [`KernelBackend`] on Flex, for this crate's tests: each primitive as the burn-ops reference
//! it is checked against, so that the autodiff backward passes run on the CPU.

use burn::backend::tensor::{FloatTensor, IntTensor};

use super::KernelBackend;
use crate::nf4::Nf4Meta;

impl KernelBackend for burn::backend::Flex {
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let y = crate::norm::portable_rms_norm(Tensor::<2>::from_primitive::<F>(x), Tensor::<1>::from_primitive::<F>(w), eps);
        y.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>, ignore: i64) -> FloatTensor<Self> {
        use burn::tensor::{Int, Tensor};
        type F = burn::backend::Flex;
        let l = crate::cross_entropy::portable_cross_entropy(
            Tensor::<2>::from_primitive::<F>(logits),
            Tensor::<1, Int>::from_primitive::<F>(targets),
            ignore,
        );
        l.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
        ignore: i64,
    ) -> FloatTensor<Self> {
        use burn::tensor::{DType, Int, Tensor, activation::softmax};
        type F = burn::backend::Flex;
        let z = Tensor::<2>::from_primitive::<F>(logits);
        let (t, g) = (Tensor::<1, Int>::from_primitive::<F>(targets), Tensor::<1>::from_primitive::<F>(grad));
        let [n, v] = z.dims();
        let dtype = z.dtype();
        let counted = t.clone().not_equal_elem(ignore).float();
        let onehot = t.clamp_min(0).one_hot::<2>(v).float();
        let dz = (softmax(z.cast(DType::F32), 1) - onehot) * (g * counted).reshape([n, 1]);
        dz.cast(dtype).try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn dropout(x: FloatTensor<Self>, p: f64, scale: f64, seed: u64, dtype: burn::tensor::DType) -> FloatTensor<Self> {
        use burn::tensor::{DType, Tensor, TensorData};
        type F = burn::backend::Flex;
        let x = Tensor::<1>::from_primitive::<F>(x);
        let device = x.device();
        let values: Vec<f32> = x.cast(DType::F32).into_data().try_into_vec::<f32>().expect("f32");
        let (threshold, scale) = (crate::dropout::drop_threshold(p), (scale / (1.0 - p)) as f32);
        let out: Vec<f32> = values
            .iter()
            .enumerate()
            .map(|(i, v)| if crate::dropout::keep_bits(seed, i as u32) >= threshold { v * scale } else { 0.0 })
            .collect();
        let n = out.len();
        Tensor::<1>::from_data(TensorData::new(out, [n]), &device).cast(dtype).try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, inverse: bool) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let (x, cos, sin) =
            (Tensor::<4>::from_primitive::<F>(x), Tensor::<3>::from_primitive::<F>(cos), Tensor::<3>::from_primitive::<F>(sin));
        let y = if inverse {
            crate::rope::portable_rope(x, cos, sin.neg()).swap_dims(1, 2)
        } else {
            crate::rope::portable_rope(x.swap_dims(1, 2), cos, sin)
        };
        y.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn scaled_softmax(scores: FloatTensor<Self>, scale: f64, causal: bool) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let p = crate::softmax::portable_scaled_softmax(Tensor::<3>::from_primitive::<F>(scores), scale, causal, None);
        p.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn scaled_softmax_backward(probs: FloatTensor<Self>, grad: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        use burn::tensor::{DType, Tensor};
        type F = burn::backend::Flex;
        let (p, g) = (Tensor::<3>::from_primitive::<F>(probs), Tensor::<3>::from_primitive::<F>(grad));
        let dtype = p.dtype();
        let (p, g) = (p.cast(DType::F32), g.cast(DType::F32));
        let dot = (p.clone() * g.clone()).sum_dim(2);
        let ds = (p * (g - dot)).mul_scalar(scale).cast(dtype);
        ds.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn add_cast(base: FloatTensor<Self>, delta: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::tensor::{DType, Tensor};
        type F = burn::backend::Flex;
        let (b, d) = (Tensor::<1>::from_primitive::<F>(base), Tensor::<1>::from_primitive::<F>(delta));
        let dtype = b.dtype();
        (b.cast(DType::F32) + d.cast(DType::F32)).cast(dtype).try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let h = crate::swiglu::portable_swiglu(Tensor::<1>::from_primitive::<F>(gate), Tensor::<1>::from_primitive::<F>(up));
        h.try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn swiglu_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, grad: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        use burn::tensor::{DType, Tensor, activation::sigmoid};
        type F = burn::backend::Flex;
        let (g, u, dh) =
            (Tensor::<1>::from_primitive::<F>(gate), Tensor::<1>::from_primitive::<F>(up), Tensor::<1>::from_primitive::<F>(grad));
        let dtype = g.dtype();
        let (g, u, dh) = (g.cast(DType::F32), u.cast(DType::F32), dh.cast(DType::F32));
        let sig = sigmoid(g.clone());
        let du = dh.clone() * g.clone() * sig.clone();
        let dg = dh * u * sig.clone() * (g * (sig.neg().add_scalar(1.0))).add_scalar(1.0);
        let back = |t: Tensor<1>| t.cast(dtype).try_into_primitive::<F>().expect("a Flex tensor");
        (back(dg), back(du))
    }

    fn rms_norm_backward(x: FloatTensor<Self>, w: FloatTensor<Self>, g: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        use burn::tensor::Tensor;
        type F = burn::backend::Flex;
        let (x, w, g) = (Tensor::<2>::from_primitive::<F>(x), Tensor::<1>::from_primitive::<F>(w), Tensor::<2>::from_primitive::<F>(g));
        crate::norm::portable_rms_norm_backward(x, w, g, eps).try_into_primitive::<F>().expect("a Flex tensor")
    }

    fn nf4_dense(
        packed: IntTensor<Self>,
        code: FloatTensor<Self>,
        absmax: FloatTensor<Self>,
        qcodes: IntTensor<Self>,
        nested_code: FloatTensor<Self>,
        meta: Nf4Meta,
    ) -> FloatTensor<Self> {
        use burn::tensor::{Int, Tensor};
        type F = burn::backend::Flex;
        let w = crate::nf4::PackedNf4::from_parts(
            Tensor::<1, Int>::from_primitive::<F>(packed),
            Tensor::<1>::from_primitive::<F>(code),
            Tensor::<1>::from_primitive::<F>(absmax),
            Tensor::<1, Int>::from_primitive::<F>(qcodes),
            Tensor::<1>::from_primitive::<F>(nested_code),
            meta,
        );
        crate::nf4::nf4_dequantize_unfused(&w, meta.dtype).try_into_primitive::<F>().expect("a Flex tensor")
    }
}
