//! CUDA checks (feature `cuda`, a CUDA device 0, cuBLASLt on the loader path):
//! cuBLASLt GEMMs and the `linear` backward against f64 host references with bf16 tolerances,
//! and the NF4 kernel bit for bit against the host codec. Inputs are fresh random draws.

use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor};
use gpu_kernels::{HostScales, PackedNf4, gemm, linear, nf4_dequantize, nf4_linear};
use nf4_quant::{Absmax, Nf4Tensor, QuantConfig};

fn cuda() -> Device {
    Device::cuda(0)
}

/// Host copy as f64 (any float dtype).
fn host(t: Tensor<2>) -> Vec<f64> {
    t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect()
}

/// Row-major `[r, c]` → its transpose.
fn transpose(x: &[f64], r: usize, c: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = x[i * c + j];
        }
    }
    out
}

fn matmul_f64(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = a[i * k + p];
            for j in 0..n {
                out[i * n + j] += av * b[p * n + j];
            }
        }
    }
    out
}

/// Every element within `rel · |ref| + abs_frac · rms(ref)`, and the relative Frobenius error
/// under `fro`; NaN never passes.
fn assert_close(what: &str, got: &[f64], want: &[f64], rel: f64, abs_frac: f64, fro: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let rms = (want.iter().map(|v| v * v).sum::<f64>() / want.len() as f64).sqrt();
    let (mut num, mut den) = (0.0, 0.0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: element {i} is {g}");
        assert!((g - w).abs() <= rel * w.abs() + abs_frac * rms, "{what}: element {i}: {g} vs {w} (rms {rms})");
        num += (g - w) * (g - w);
        den += w * w;
    }
    let err = (num / den).sqrt();
    assert!(err < fro, "{what}: relative Frobenius error {err:e} ≥ {fro:e}");
}

#[test]
fn cublaslt_gemm_matches_an_f64_reference_for_every_transpose_and_dtype() {
    let device = cuda();
    for (m, k, n) in [(1, 64, 96), (37, 65, 19), (128, 256, 64), (300, 512, 136)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for (dtype, tol) in [(DType::BF16, (1e-2, 4e-3, 6e-3)), (DType::F32, (1e-5, 1e-6, 1e-6))] {
                let a = Tensor::<2>::random(if ta { [k, m] } else { [m, k] }, Distribution::Normal(0.0, 1.0), (&device, dtype));
                let b = Tensor::<2>::random(if tb { [n, k] } else { [k, n] }, Distribution::Normal(0.0, 1.0), (&device, dtype));
                let (ha, hb) = (host(a.clone()), host(b.clone()));
                let opa = if ta { transpose(&ha, k, m) } else { ha };
                let opb = if tb { transpose(&hb, n, k) } else { hb };
                let want = matmul_f64(&opa, &opb, m, k, n);
                let out = gemm(a, b, ta, tb);
                assert_eq!((out.dims(), out.dtype()), ([m, n], dtype));
                assert_close(&format!("{dtype:?} {m}x{k}x{n} ta={ta} tb={tb}"), &host(out), &want, tol.0, tol.1, tol.2);
            }
        }
    }
}

#[test]
fn strided_views_are_read_in_place_or_copied_correctly() {
    let device = cuda();
    let (m, k, n) = (48, 80, 40);
    // A transposed view (column-major storage) and a column slice (row stride > cols).
    let at = Tensor::<2>::random([k, m], Distribution::Normal(0.0, 1.0), (&device, DType::BF16));
    let wide = Tensor::<2>::random([k, n + 24], Distribution::Normal(0.0, 1.0), (&device, DType::BF16));
    let b = wide.narrow(1, 8, n);
    let a = at.clone().transpose();
    let want = matmul_f64(&transpose(&host(at), k, m), &host(b.clone()), m, k, n);
    assert_close("strided", &host(gemm(a, b, false, false)), &want, 1e-2, 4e-3, 6e-3);
}

#[test]
fn linear_forward_and_backward_match_f64_references() {
    let device = cuda().autodiff();
    let plain = cuda();
    let (batch, seq, inp, out) = (2, 33, 64, 48);
    let x0 = Tensor::<3>::random([batch, seq, inp], Distribution::Normal(0.0, 1.0), (&plain, DType::BF16));
    let w0 = Tensor::<2>::random([out, inp], Distribution::Normal(0.0, 0.5), (&plain, DType::BF16));
    let t0 = Tensor::<3>::random([batch, seq, out], Distribution::Normal(0.0, 1.0), (&plain, DType::BF16));
    let m = batch * seq;
    let hx = host(x0.clone().reshape([m, inp]));
    let hw = host(w0.clone());
    let ht = host(t0.clone().reshape([m, out]));

    for w_tracked in [true, false] {
        let x = Tensor::<3>::from_data(x0.to_data(), (&device, DType::BF16)).require_grad();
        let w = Tensor::<2>::from_data(w0.to_data(), (&device, DType::BF16));
        let w = if w_tracked { w.require_grad() } else { w };
        let y = linear(x.clone(), w.clone());
        assert_eq!(y.dims(), [batch, seq, out]);
        let grads = (y.clone() * Tensor::<3>::from_data(t0.to_data(), (&device, DType::BF16))).sum().backward();

        let want_y = matmul_f64(&hx, &transpose(&hw, out, inp), m, inp, out);
        assert_close("y", &host(y.reshape([m, out])), &want_y, 1e-2, 4e-3, 6e-3);
        // dL/dy = t: dx = t · W, dW = tᵀ · x.
        let want_dx = matmul_f64(&ht, &hw, m, out, inp);
        let dx = x.grad(&grads).expect("dx");
        assert_close("dx", &host(dx.reshape([m, inp])), &want_dx, 2e-2, 6e-3, 8e-3);
        match w.grad(&grads) {
            Some(dw) => {
                assert!(w_tracked, "a frozen weight got a gradient");
                let want_dw = matmul_f64(&transpose(&ht, m, out), &hx, out, m, inp);
                assert_close("dW", &host(dw), &want_dw, 2e-2, 6e-3, 8e-3);
            }
            None => assert!(!w_tracked, "the tracked weight got no gradient"),
        }
    }
}

fn random_weights(n: usize, seed: u64) -> Vec<f32> {
    // SplitMix64 → roughly normal values via the sum of uniforms, plus a few outliers.
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let u: f64 = (0..4).map(|_| next()).sum::<f64>() - 2.0;
            let v = (u * 0.05) as f32;
            if i % 997 == 0 { v * 20.0 } else { v }
        })
        .collect()
}

fn upload(t: &Nf4Tensor, device: &Device) -> PackedNf4 {
    let shape = [t.shape()[0], t.shape()[1]];
    let code = t.quant_type().decode_table();
    let scales = match t.absmax() {
        Absmax::Plain(a) => HostScales::Plain(a),
        Absmax::Double(d) => HostScales::Double {
            codes: &d.codes,
            nested_absmax: &d.nested_absmax,
            nested_code: &d.nested_code,
            nested_blocksize: d.nested_blocksize,
            offset: d.offset,
        },
    };
    PackedNf4::upload(t.packed(), scales, code, shape, t.blocksize(), device).expect("upload")
}

#[test]
fn nf4_kernel_equals_the_host_codec_bit_for_bit() {
    let device = cuda();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
    // (rows, cols, blocksize): kernel shapes, a partial last block, and an odd count (ops path).
    for (i, (rows, cols, bs)) in
        [(512usize, 1024usize, 64usize), (96, 200, 64), (64, 72, 32), (33, 256, 4096), (7, 9, 64)].into_iter().enumerate()
    {
        for cfg in [QuantConfig::nf4(), QuantConfig::nf4().with_double_quant(true), QuantConfig::fp4().with_double_quant(true)] {
            let x = random_weights(rows * cols, seed ^ (i as u64 * 7919));
            let t = Nf4Tensor::quantize(&x, &[rows, cols], &cfg.with_blocksize(bs)).expect("quantize");
            let w = upload(&t, &device);

            let want: Vec<u32> = t.dequantize_to_vec().iter().map(|v| v.to_bits()).collect();
            let got: Vec<u32> =
                nf4_dequantize(&w, FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "f32 {rows}x{cols} bs={bs} double={}", t.is_double_quant());

            let mut want16 = vec![half::bf16::ZERO; t.numel()];
            t.dequantize_bf16_into(&mut want16).expect("bf16");
            let got16 = nf4_dequantize(&w, FloatDType::BF16).into_data().try_to_vec::<half::bf16>().expect("bf16");
            let diff = got16.iter().zip(&want16).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(diff, None, "bf16 {rows}x{cols} bs={bs} double={}", t.is_double_quant());

            let mut want_h = vec![half::f16::ZERO; t.numel()];
            t.dequantize_f16_into(&mut want_h).expect("f16");
            let got_h = nf4_dequantize(&w, FloatDType::F16).into_data().try_to_vec::<half::f16>().expect("f16");
            assert!(got_h.iter().zip(&want_h).all(|(a, b)| a.to_bits() == b.to_bits()), "f16 {rows}x{cols}");
        }
    }
}

#[test]
fn nf4_linear_forward_and_input_gradient_match_f64_references() {
    let device = cuda().autodiff();
    let plain = cuda();
    let (batch, seq, inp, out) = (2, 17, 128, 96);
    let m = batch * seq;
    for double in [false, true] {
        let x_host = random_weights(out * inp, 11 + u64::from(double));
        let t = Nf4Tensor::quantize(&x_host, &[out, inp], &QuantConfig::nf4().with_double_quant(double)).expect("quantize");
        let w = upload(&t, &plain);
        // The layer computes in x's dtype (bf16): the reference uses the codec's bf16 weight.
        let mut dense = vec![half::bf16::ZERO; t.numel()];
        t.dequantize_bf16_into(&mut dense).expect("bf16");
        let hw: Vec<f64> = dense.iter().map(|v| f64::from(v.to_f32())).collect();

        let x0 = Tensor::<3>::random([batch, seq, inp], Distribution::Normal(0.0, 1.0), (&plain, DType::BF16));
        let g0 = Tensor::<3>::random([batch, seq, out], Distribution::Normal(0.0, 1.0), (&plain, DType::BF16));
        let (hx, hg) = (host(x0.clone().reshape([m, inp])), host(g0.clone().reshape([m, out])));
        let x = Tensor::<3>::from_data(x0.to_data(), (&device, DType::BF16)).require_grad();
        let y = nf4_linear(x.clone(), &w);
        assert_eq!((y.dims(), y.dtype()), ([batch, seq, out], DType::BF16));
        let grads = (y.clone() * Tensor::<3>::from_data(g0.to_data(), (&device, DType::BF16))).sum().backward();
        let want_y = matmul_f64(&hx, &transpose(&hw, out, inp), m, inp, out);
        assert_close("nf4 y", &host(y.reshape([m, out])), &want_y, 1e-2, 4e-3, 6e-3);
        let want_dx = matmul_f64(&hg, &hw, m, out, inp);
        assert_close("nf4 dx", &host(x.grad(&grads).expect("dx").reshape([m, inp])), &want_dx, 2e-2, 6e-3, 8e-3);
    }
}

/// `[n, r, c]` on the host → the same on `device` in `dtype`, and back as f64.
fn batch(shape: [usize; 3], dtype: DType, device: &Device) -> (Tensor<3>, Vec<f64>) {
    let t = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), (device, dtype));
    let h = t.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect();
    (t, h)
}

#[test]
fn strided_batched_gemm_matches_an_f64_reference() {
    let device = cuda();
    let (nb, m, k, n) = (6, 33, 40, 17);
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        for (dtype, tol) in [(DType::BF16, (1e-2, 4e-3, 6e-3)), (DType::F32, (1e-5, 1e-6, 1e-6))] {
            let (a, ha) = batch(if ta { [nb, k, m] } else { [nb, m, k] }, dtype, &device);
            let (b, hb) = batch(if tb { [nb, n, k] } else { [nb, k, n] }, dtype, &device);
            let mut want = Vec::with_capacity(nb * m * n);
            for i in 0..nb {
                let (sa, sb) = (&ha[i * m * k..(i + 1) * m * k], &hb[i * k * n..(i + 1) * k * n]);
                let opa = if ta { transpose(sa, k, m) } else { sa.to_vec() };
                let opb = if tb { transpose(sb, n, k) } else { sb.to_vec() };
                want.extend(matmul_f64(&opa, &opb, m, k, n));
            }
            let out = gpu_kernels::bmm(a, b, ta, tb);
            assert_eq!(out.dims(), [nb, m, n]);
            let got: Vec<f64> =
                out.cast(FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect();
            assert_close(&format!("bmm {dtype:?} ta={ta} tb={tb}"), &got, &want, tol.0, tol.1, tol.2);
        }
    }
}

#[test]
fn attention_and_its_gradients_match_the_cpu() {
    use burn::tensor::TensorData;
    let (gpu, cpu) = (cuda().autodiff(), Device::flex().autodiff());
    let shape = [2, 4, 24, 16];
    let plain = Device::flex();
    let draws: Vec<TensorData> = (0..4).map(|_| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &plain).into_data()).collect();
    let run = |device: &Device| {
        let lift = |d: &TensorData| Tensor::<4>::from_data(d.clone(), device).require_grad();
        let (q, k, v) = (lift(&draws[0]), lift(&draws[1]), lift(&draws[2]));
        let o = gpu_kernels::attention(q.clone(), k.clone(), v.clone(), true, None);
        let grads = (o.clone() * Tensor::<4>::from_data(draws[3].clone(), device)).sum().backward();
        let host = |t: Tensor<4>| {
            t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect::<Vec<f64>>()
        };
        [host(o), host(q.grad(&grads).expect("dq")), host(k.grad(&grads).expect("dk")), host(v.grad(&grads).expect("dv"))]
    };
    let (got, want) = (run(&gpu), run(&cpu));
    for (name, (g, w)) in ["output", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
        assert_close(&format!("attention {name}"), g, w, 1e-4, 1e-5, 1e-5);
    }
}
