//! CUDA checks (feature `cuda`, a CUDA device 0, cuBLASLt on the loader path):
//! cuBLASLt GEMMs and the `linear` backward against f64 host references with bf16 tolerances,
//! and the NF4 kernel bit for bit against the host codec. Inputs are fresh random draws.

use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor, TensorData};
use gpu_kernels::{HostScales, PackedNf4, gemm, linear, nf4_dequantize, nf4_linear};
use nf4_quant::{Absmax, Nf4Tensor, QuantConfig};

fn cuda() -> Device {
    Device::cuda(0)
}

/// One profile at a time: the profiler's counters are process-wide and tests run in parallel.
static PROFILE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One dropout test at a time: the stream of dropout seeds is process-wide.
static DROPOUT: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
fn tf32_products_round_f32_operands_and_keep_bf16_valued_ones_exact() {
    use gpu_kernels::F32MatmulPrecision::{Highest, Tf32};
    use gpu_kernels::with_f32_matmul_precision;
    let device = cuda();
    let (m, k, n) = (256, 4096, 64);
    let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), (&device, DType::F32));
    let b = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), (&device, DType::F32));
    let want = matmul_f64(&host(a.clone()), &transpose(&host(b.clone()), n, k), m, k, n);
    let highest = host(with_f32_matmul_precision(Highest, || gemm(a.clone(), b.clone(), false, true)));
    let tf32 = host(with_f32_matmul_precision(Tf32, || gemm(a.clone(), b.clone(), false, true)));
    assert_close("f32 highest", &highest, &want, 1e-5, 1e-6, 1e-6);
    // TF32 keeps 10 mantissa bits of each operand: products err by ~2⁻¹¹ relative, sums by √k.
    assert_close("f32 as tf32", &tf32, &want, 5e-2, 4e-3, 2e-3);
    let moved = tf32.iter().zip(&highest).filter(|(t, h)| t != h).count();
    assert!(moved > m * n / 2, "TF32 changed only {moved} of {} outputs: the setting did not reach cuBLASLt", m * n);
    // Operands with bf16 values (LoRA's input in bf16 training) lose nothing to the rounding.
    let (a16, b16) = (a.cast(FloatDType::BF16).cast(FloatDType::F32), b.cast(FloatDType::BF16).cast(FloatDType::F32));
    let want16 = matmul_f64(&host(a16.clone()), &transpose(&host(b16.clone()), n, k), m, k, n);
    let tf32_16 = host(with_f32_matmul_precision(Tf32, || gemm(a16, b16, false, true)));
    assert_close("bf16 values as tf32", &tf32_16, &want16, 1e-5, 1e-6, 1e-6);
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
        let dx = host(x.grad(&grads).expect("dx").reshape([m, inp]));
        assert_close("nf4 dx", &dx, &want_dx, 2e-2, 6e-3, 8e-3);

        // By its gradient only: zeros, nothing dequantized or multiplied forward, the same dx
        // bit for bit (the same backward).
        let x = Tensor::<3>::from_data(x0.to_data(), (&device, DType::BF16)).require_grad();
        let y = gpu_kernels::nf4_linear_gradient_only(x.clone(), &w);
        assert_eq!((y.dims(), y.dtype()), ([batch, seq, out], DType::BF16));
        let grads = (y.clone() * Tensor::<3>::from_data(g0.to_data(), (&device, DType::BF16))).sum().backward();
        assert!(host(y.reshape([m, out])).iter().all(|&v| v == 0.0), "a gradient-only product's value is zeros");
        let dx_only = host(x.grad(&grads).expect("dx").reshape([m, inp]));
        assert!(dx_only.iter().zip(&dx).all(|(a, b)| a.to_bits() == b.to_bits()), "gradient-only dx differs from nf4_linear's");
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
fn attention_and_its_gradients_match_the_cpu_whole_and_in_blocks() {
    use burn::tensor::TensorData;
    let (gpu, cpu) = (cuda().autodiff(), Device::flex().autodiff());
    let plain = Device::flex();
    let draw = |heads: usize| Tensor::<4>::random([2, heads, 24, 16], Distribution::Normal(0.0, 1.0), &plain).into_data();
    // 24 rows: one block (the product and softmax as before); 7 and 1: causal blocks over key
    // prefixes, the key and value gradients summed over blocks. Two K/V heads for four query
    // heads: shared in one block (the CPU repeats them), repeated on the GPU too in several.
    for kv_heads in [4, 2] {
        let draws: Vec<TensorData> = vec![draw(4), draw(kv_heads), draw(kv_heads), draw(4)];
        for rows in [24, 7, 1] {
            let run = |device: &Device| {
                let lift = |d: &TensorData| Tensor::<4>::from_data(d.clone(), device).require_grad();
                let (q, k, v) = (lift(&draws[0]), lift(&draws[1]), lift(&draws[2]));
                let o = gpu_kernels::attention::attention_in_blocks(q.clone(), k.clone(), v.clone(), true, None, rows);
                let grads = (o.clone() * Tensor::<4>::from_data(draws[3].clone(), device)).sum().backward();
                let host = |t: Tensor<4>| {
                    t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect::<Vec<f64>>()
                };
                [host(o), host(q.grad(&grads).expect("dq")), host(k.grad(&grads).expect("dk")), host(v.grad(&grads).expect("dv"))]
            };
            let (got, want) = (run(&gpu), run(&cpu));
            for (name, (g, w)) in ["output", "dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
                assert_close(&format!("attention {name}, {kv_heads} K/V heads, {rows} rows per block"), g, w, 1e-4, 1e-5, 1e-5);
            }
        }
    }
}

/// AdamW's scalars at step `t`: rate 2·10⁻⁴, decay 0.01, torch's betas and ε.
fn adamw_step(t: i32, seed: u64) -> gpu_kernels::optim::AdamWStep {
    gpu_kernels::optim::AdamWStep {
        lr: 2e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        bias_correction1: 1.0 - 0.9f64.powi(t),
        bias_correction2: 1.0 - 0.999f64.powi(t),
        seed,
    }
}

#[test]
fn fused_adamw_and_squared_norm_match_the_burn_ops_path() {
    use gpu_kernels::optim::{adamw_update, portable_adamw_update, portable_squared_norm, squared_norm};
    let device = cuda();
    let s = adamw_step(4, 0x1234_5678_9ABC);
    // The clipping factor, as the trainer passes it: a one-element f32 tensor on the device.
    let scale = Tensor::<1>::from_data(TensorData::new(vec![0.37f32], [1]), &device);
    // Odd sizes (partial blocks), a transposed (non-contiguous) gradient, three dtype pairs.
    for (shape, p_dtype, g_dtype) in
        [([64, 4099], DType::F32, DType::F32), ([1000, 64], DType::BF16, DType::BF16), ([33, 7], DType::F32, DType::BF16)]
    {
        let draw = |scale: f64| Tensor::<2>::random(shape, Distribution::Normal(0.0, scale), &device);
        let p = draw(0.02).cast(p_dtype);
        let g = Tensor::<2>::random([shape[1], shape[0]], Distribution::Normal(0.0, 1e-3), &device).cast(g_dtype).transpose();
        let m = draw(1e-4);
        let v = draw(1e-6).abs();
        let fused = adamw_update(p.clone(), g.clone(), m.clone(), v.clone(), &s, &scale);
        let plain = portable_adamw_update(p, g, m, v, &s, &scale);
        assert_eq!(fused.0.dtype(), p_dtype);
        // One bf16 ulp for p in bf16; f32 rounding differences otherwise.
        let rel = if p_dtype == DType::BF16 { 8e-3 } else { 1e-5 };
        assert_close("adamw p", &host(fused.0), &host(plain.0), rel, 1e-5, rel);
        assert_close("adamw m", &host(fused.1), &host(plain.1), 1e-5, 1e-5, 1e-5);
        assert_close("adamw v", &host(fused.2), &host(plain.2), 1e-5, 1e-5, 1e-5);

        let grads = [draw(1.0).cast(g_dtype), draw(0.5).cast(g_dtype).transpose().transpose()];
        let fused: f32 = squared_norm(&grads).into_scalar();
        let plain: f32 = portable_squared_norm(&grads).into_scalar();
        assert!(((fused - plain) / plain).abs() < 1e-4, "squared norm {fused} vs {plain}");
    }
    // bf16 moments: the kernel's stochastic rounding draws what the host path draws, so the
    // moments agree bit for bit except where an f32 rounding difference (fused multiply-adds)
    // crosses a draw's threshold — then by one bf16 step.
    let shape = [257, 1031];
    let draw = |scale: f64| Tensor::<2>::random(shape, Distribution::Normal(0.0, scale), &device);
    let (p, g) = (draw(0.02), draw(1e-3));
    let (m, v) = (draw(1e-4).cast(DType::BF16), draw(1e-6).abs().cast(DType::BF16));
    let fused = adamw_update(p.clone(), g.clone(), m.clone(), v.clone(), &s, &scale);
    let plain = portable_adamw_update(p, g, m, v, &s, &scale);
    assert_eq!((fused.1.dtype(), fused.2.dtype()), (DType::BF16, DType::BF16));
    assert_close("adamw p (bf16 moments)", &host(fused.0), &host(plain.0), 1e-5, 1e-5, 1e-5);
    for (name, a, b) in [("m", fused.1, plain.1), ("v", fused.2, plain.2)] {
        let bits = |t: Tensor<2>| t.into_data().convert::<half::bf16>().try_to_vec::<half::bf16>().expect("bf16");
        let (a, b) = (bits(a), bits(b));
        let same = a.iter().zip(&b).filter(|(x, y)| x.to_bits() == y.to_bits()).count();
        assert!(same as f64 >= 0.999 * a.len() as f64, "adamw {name}: {same} of {} equal", a.len());
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x.to_bits() as i32 - y.to_bits() as i32).abs() <= 1),
            "adamw {name}: more than one bf16 step apart"
        );
    }
}

/// The multi-tensor path (groups of 48 tensors per launch; one fresh allocation per output)
/// against the per-tensor kernels, over 79 tensors (odd sizes; two groups and a part).
#[test]
fn multi_tensor_adamw_and_norm_match_the_per_tensor_kernels() {
    use gpu_kernels::optim::{AdamWStep, adamw_update, adamw_update_all, portable_squared_norm, squared_norm_grouped};
    let device = cuda();
    let s = adamw_step(7, 0);
    let scale = Tensor::<1>::from_data(TensorData::new(vec![0.61f32], [1]), &device);
    // 61 small tensors, then 18 of 4 MiB (f32).
    let shapes: Vec<[usize; 2]> =
        (0..61).map(|k| [2 + (k * 37) % 97, 2 + (k * 53) % 1031]).chain(std::iter::repeat_n([1024, 1024], 18)).collect();
    let seeds: Vec<u64> = (0..shapes.len() as u64).map(|k| 9 << 32 | k).collect();
    for (g_dtype, m_dtype) in [(DType::F32, DType::F32), (DType::F32, DType::BF16), (DType::BF16, DType::BF16)] {
        let draw = |shape: [usize; 2], scale: f64| Tensor::<2>::random(shape, Distribution::Normal(0.0, scale), &device);
        let items: Vec<_> = shapes
            .iter()
            .map(|&shape| {
                (draw(shape, 0.02), draw(shape, 1e-3).cast(g_dtype), draw(shape, 1e-4).cast(m_dtype), draw(shape, 1e-6).abs().cast(m_dtype))
            })
            .collect();
        let per_tensor: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(k, (p, g, m, v))| adamw_update(p.clone(), g.clone(), m.clone(), v.clone(), &AdamWStep { seed: seeds[k], ..s }, &scale))
            .collect();
        let before = gpu_kernels::cuda::multi_tensor_calls();
        // bf16 copies of the new parameters in one of the cases.
        let copies = g_dtype == DType::BF16;
        let multi = adamw_update_all(items.clone(), &s, &seeds, &scale, copies).expect("multi-tensor update");
        assert_eq!(gpu_kernels::cuda::multi_tensor_calls(), before + 1, "the update took the multi-tensor path");
        for (k, (out, (pt, mt, vt))) in multi.into_iter().zip(per_tensor).enumerate() {
            let (pm, mm, vm) = (out.p, out.m, out.v);
            assert_eq!((pm.dims(), mm.dtype(), vm.dtype()), (pt.dims(), m_dtype, m_dtype));
            let case = format!("tensor {k} {:?}, g {g_dtype:?}, moments {m_dtype:?}", shapes[k]);
            assert_eq!(out.p_bf16.is_some(), copies, "{case}: a copy when asked for");
            if let Some(copy) = out.p_bf16 {
                let cast = pm.clone().cast(DType::BF16).into_data();
                assert_eq!(copy.into_data(), cast, "{case}: the kernel's bf16 copy is the cast of its f32 output");
            }
            assert_close(&format!("p, {case}"), &host(pm), &host(pt), 1e-6, 1e-6, 1e-6);
            for (name, a, b) in [("m", mm, mt), ("v", vm, vt)] {
                if m_dtype == DType::F32 {
                    assert_close(&format!("{name}, {case}"), &host(a), &host(b), 1e-6, 1e-6, 1e-6);
                    continue;
                }
                let bits = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
                let (a, b) = (bits(a), bits(b));
                let apart = a.iter().zip(&b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
                // An f32 rounding difference (fused multiply-adds) can cross a draw's threshold.
                let allowed = a.len() / 500 + 1;
                assert!(apart <= allowed, "{name}, {case}: {apart} of {} differ", a.len());
            }
        }
        let grads: Vec<Tensor<2>> = shapes.iter().map(|&shape| draw(shape, 0.3).cast(g_dtype)).collect();
        let before = gpu_kernels::cuda::multi_tensor_calls();
        let multi: f32 = squared_norm_grouped(&grads).into_scalar();
        assert_eq!(gpu_kernels::cuda::multi_tensor_calls(), before + 1, "the norm took the multi-tensor path");
        let plain: f32 = portable_squared_norm(&grads).into_scalar();
        assert!(((multi - plain) / plain).abs() < 1e-4, "squared norm {multi} vs {plain}");
    }
}

/// Rows of a mapped host table gathered on the device equal the table's own bytes, for i32 and
/// i64 ids, the first and last rows included; an id past the table gives zeros; an autodiff
/// device gets an autodiff tensor.
#[test]
fn host_rows_gathered_on_the_device_are_the_tables_bytes() {
    use burn::tensor::Int;
    let device = cuda();
    let (vocab, d) = (300usize, 72usize);
    let values: Vec<half::bf16> = (0..vocab * d).map(|i| half::bf16::from_f32(((i * 7919) % 1000) as f32 * 0.01 - 5.0)).collect();
    let table = std::sync::Arc::new(TensorData::new(values.clone(), [vocab, d]));
    let rows = gpu_kernels::HostRows::map(table, &device).expect("a CUDA device maps the table");
    let ids = [0i64, 299, 17, 17, 42, 1, 298, 150];
    for dtype in [DType::I32, DType::I64] {
        let before = gpu_kernels::cuda::host_row_gathers();
        let t = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [2, 4]).convert_dtype(dtype), (&device, dtype));
        let got = rows.gather(&t).expect("the device gathers the rows");
        assert_eq!(gpu_kernels::cuda::host_row_gathers(), before + 1, "the gather took the mapped path ({dtype:?})");
        assert_eq!(got.dims(), [2, 4, d]);
        let got = got.into_data().try_to_vec::<half::bf16>().expect("bf16 rows");
        let want: Vec<half::bf16> = ids.iter().flat_map(|&i| values[i as usize * d..(i as usize + 1) * d].to_vec()).collect();
        assert_eq!(got, want, "rows gathered with {dtype:?} ids");
    }
    let outside = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, 300], [1, 2]), &device);
    let got = rows.gather(&outside).expect("gathered").into_data().try_to_vec::<half::bf16>().expect("bf16 rows");
    assert_eq!(&got[..d], &values[5 * d..6 * d]);
    assert!(got[d..].iter().all(|v| v.to_f32() == 0.0), "an id past the table gives zeros");
    // Unmapped before the next mapping (small tables can share pages, which the driver pins once).
    drop(rows);
    let autodiff = device.clone().autodiff();
    let table = std::sync::Arc::new(TensorData::new(values.clone(), [vocab, d]));
    let rows = gpu_kernels::HostRows::map(table, &autodiff).expect("mapped for the autodiff device");
    let t = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 4], [1, 2]), &autodiff);
    let got = rows.gather(&t).expect("gathered");
    assert!(got.is_autodiff());
    let got = got.into_data().try_to_vec::<half::bf16>().expect("bf16 rows");
    assert_eq!(got, values[3 * d..5 * d].to_vec(), "rows gathered for the autodiff device");
}

#[test]
fn rms_norm_kernels_match_the_burn_ops_path_and_its_autodiff() {
    use gpu_kernels::norm::{portable_rms_norm, rms_norm};
    let device = cuda().autodiff();
    let plain = cuda();
    // Up to 64 rows the forward takes the one-row-per-cube kernel (decoding: one row).
    let cases = [
        (37, 4096, DType::BF16, 2e-2),
        (5, 100, DType::F32, 1e-5),
        (3, 4096, DType::F32, 1e-5),
        (1, 4096, DType::BF16, 2e-2),
        (130, 600, DType::F32, 1e-5),
        (300, 256, DType::BF16, 2e-2),
        (70, 4096, DType::F32, 1e-5),
        // Rows of 100 bf16 values are no whole number of 16-byte vectors: the scalar kernels.
        (70, 100, DType::BF16, 2e-2),
    ];
    for (rows, d, dtype, tol) in cases {
        let x0 = Tensor::<2>::random([rows, d], Distribution::Normal(0.3, 2.0), &plain).cast(dtype);
        let w = Tensor::<1>::random([d], Distribution::Normal(1.0, 0.2), &plain).cast(dtype);
        let t = Tensor::<2>::random([rows, d], Distribution::Normal(0.0, 1.0), &plain).cast(dtype);
        let run = |fast: bool| {
            let x = Tensor::<2>::from_data(x0.to_data(), &device).require_grad();
            let w = Tensor::<1>::from_data(w.to_data(), &device);
            let y = if fast { rms_norm(x.clone(), w, 1e-5) } else { portable_rms_norm(x.clone(), w, 1e-5) };
            let grads = (y.clone() * Tensor::from_data(t.to_data(), &device)).sum().backward();
            (host(y.inner()), host(x.grad(&grads).expect("dx")))
        };
        let (fast, slow) = (run(true), run(false));
        assert_close("rms_norm y", &fast.0, &slow.0, tol, tol, tol);
        assert_close("rms_norm dx", &fast.1, &slow.1, tol, tol, tol);
    }
}

/// Flattened host copy of any-rank tensor as f64.
fn host_n<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect()
}

#[test]
fn fused_rope_softmax_and_swiglu_match_the_burn_ops_path_and_its_autodiff() {
    use gpu_kernels::{rope::portable_rope, rope_heads, scaled_softmax, softmax::portable_scaled_softmax, swiglu, swiglu::portable_swiglu};
    let device = cuda().autodiff();
    let plain = cuda();
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::BF16, 2e-2)] {
        let lift = |t: &Tensor<4>| Tensor::<4>::from_data(t.to_data(), &device).require_grad();
        let weight = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &plain).cast(dtype);

        // RoPE: [b, s, n, d] → [b, n, s, d], per-batch and shared tables; heads of 128 (halves
        // of whole 16-byte vectors) and of 20 (halves of 10: not).
        for (rows, dh) in [(1, 128), (2, 128), (2, 20)] {
            let x0 = Tensor::<4>::random([2, 37, 3, dh], Distribution::Normal(0.0, 1.0), &plain).cast(dtype);
            let half = Tensor::<3>::random([rows, 37, dh / 2], Distribution::Uniform(-3.0, 3.0), &plain);
            let full = Tensor::cat(vec![half.clone(), half], 2);
            let (cos, sin) = (full.clone().cos().cast(dtype), full.sin().cast(dtype));
            let w = weight([2, 3, 37, dh]);
            let run = |fast: bool| {
                let x = lift(&x0);
                let (c, s) = (Tensor::<3>::from_data(cos.to_data(), &device), Tensor::<3>::from_data(sin.to_data(), &device));
                let y = if fast { rope_heads(x.clone(), c, s) } else { portable_rope(x.clone().swap_dims(1, 2), c, s) };
                let grads = (y.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
                (host_n(y.inner()), host_n(x.grad(&grads).expect("dx")))
            };
            let (fast, slow) = (run(true), run(false));
            assert_close("rope y", &fast.0, &slow.0, tol, tol, tol);
            assert_close("rope dx", &fast.1, &slow.1, tol, tol, tol);
        }

        // Softmax: causal square and rectangular (cached) rows, and plain rows.
        // 512 and 136 keys: rows of whole 16-byte vectors; 67, 70, 300: not.
        for (s, t, causal) in [(67, 67, true), (5, 70, true), (1, 300, false), (40, 512, true), (8, 136, true), (2, 512, false)] {
            let s0 = Tensor::<3>::random([6, s, t], Distribution::Normal(0.0, 4.0), &plain).cast(dtype);
            let w = Tensor::<3>::random([6, s, t], Distribution::Normal(0.0, 1.0), &plain).cast(dtype);
            let run = |fast: bool| {
                let x = Tensor::<3>::from_data(s0.to_data(), &device).require_grad();
                let p =
                    if fast { scaled_softmax(x.clone(), 0.088, causal) } else { portable_scaled_softmax(x.clone(), 0.088, causal, None) };
                let grads = (p.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
                (host_n(p.inner()), host_n(x.grad(&grads).expect("dS")))
            };
            let (fast, slow) = (run(true), run(false));
            assert_close("softmax P", &fast.0, &slow.0, tol, tol, tol);
            assert_close("softmax dS", &fast.1, &slow.1, tol, tol, 2.0 * tol);
        }

        // SwiGLU: a length of 9,990 (one value per thread) and 10,080 (16-byte vectors).
        for width in [333, 336] {
            let (g0, u0, w) = (weight([2, 3, 5, width]), weight([2, 3, 5, width]), weight([2, 3, 5, width]));
            let run = |fast: bool| {
                let (g, u) = (lift(&g0), lift(&u0));
                let h = if fast { swiglu(g.clone(), u.clone()) } else { portable_swiglu(g.clone(), u.clone()) };
                let grads = (h.clone() * Tensor::from_data(w.to_data(), &device)).sum().backward();
                (host_n(h.inner()), host_n(g.grad(&grads).expect("dg")), host_n(u.grad(&grads).expect("du")))
            };
            let (fast, slow) = (run(true), run(false));
            assert_close(&format!("swiglu h {width}"), &fast.0, &slow.0, tol, tol, tol);
            assert_close(&format!("swiglu dg {width}"), &fast.1, &slow.1, tol, tol, tol);
            assert_close(&format!("swiglu du {width}"), &fast.2, &slow.2, tol, tol, tol);
        }
    }
}

#[test]
fn batch_one_nf4_gemv_matches_an_f64_reference_on_the_codecs_weight() {
    let plain = cuda();
    // (out, in, blocksize): decode shapes, a block larger than a row, a row of 3 vectors;
    // rows of 32k values take the 16-byte-vector kernel, the last shape (13 words) the word kernel.
    for (out, inp, bs) in [(4096usize, 1024usize, 64usize), (37, 768, 64), (40, 96, 32), (24, 4096, 4096), (40, 104, 32)] {
        for double in [false, true] {
            let t = Nf4Tensor::quantize(
                &random_weights(out * inp, (out * inp) as u64 + u64::from(double)),
                &[out, inp],
                &QuantConfig::nf4().with_double_quant(double).with_blocksize(bs),
            )
            .expect("quantize");
            let w = upload(&t, &plain);
            for dtype in [DType::BF16, DType::F32] {
                let dense: Vec<f64> = if dtype == DType::BF16 {
                    let mut d = vec![half::bf16::ZERO; t.numel()];
                    t.dequantize_bf16_into(&mut d).expect("bf16");
                    d.iter().map(|v| f64::from(v.to_f32())).collect()
                } else {
                    t.dequantize_to_vec().into_iter().map(f64::from).collect()
                };
                let x = Tensor::<2>::random([1, inp], Distribution::Normal(0.0, 1.0), (&plain, dtype));
                let y = nf4_linear(x.clone(), &w);
                assert_eq!((y.dims(), y.dtype()), ([1, out], dtype));
                let want = matmul_f64(&host(x), &transpose(&dense, out, inp), 1, inp, out);
                let (rel, fro) = if dtype == DType::BF16 { (1e-2, 6e-3) } else { (1e-5, 1e-6) };
                assert_close(&format!("gemv {out}x{inp} bs={bs} double={double} {dtype:?}"), &host(y), &want, rel, rel, fro);
            }
        }
    }
}

#[test]
fn fused_dropout_keeps_scales_and_reuses_its_mask_in_the_backward() {
    use gpu_kernels::dropout::fused_dropout;
    let _turn = DROPOUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let device = cuda().autodiff();
    let plain = cuda();
    for (in_dtype, out_dtype) in [(DType::BF16, DType::F32), (DType::F32, DType::F32), (DType::BF16, DType::BF16)] {
        let x = Tensor::<2>::random([300, 517], Distribution::Normal(0.0, 1.0), &plain).cast(in_dtype);
        let w = Tensor::<2>::random([300, 517], Distribution::Normal(0.0, 1.0), &plain).cast(out_dtype);
        let xa = Tensor::<2>::from_data(x.to_data(), (&device, in_dtype)).require_grad();
        let y = fused_dropout(xa.clone(), 0.1, 0.25, out_dtype).expect("fused on CUDA autodiff");
        assert_eq!(y.dtype(), out_dtype);
        let grads = (y.clone() * Tensor::<2>::from_data(w.to_data(), (&device, out_dtype))).sum().backward();
        let dx = xa.grad(&grads).expect("dx");
        assert_eq!(dx.dtype(), in_dtype);
        let (x, y, w, dx) = (host(x), host(y.inner()), host(w), host(dx));
        let dropped = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
        assert!((dropped - 0.1).abs() < 0.01, "{in_dtype:?}: dropped {dropped}");
        let round = |v: f64, dtype: DType| {
            if dtype == DType::BF16 { f64::from(half::bf16::from_f32(v as f32).to_f32()) } else { f64::from(v as f32) }
        };
        for i in 0..x.len() {
            let kept = y[i] != 0.0 || x[i] == 0.0;
            let c = f64::from((0.25f64 / 0.9) as f32);
            let (want_y, want_dx) = if kept { (round(x[i] * c, out_dtype), round(w[i] * c, in_dtype)) } else { (0.0, 0.0) };
            assert!((y[i] - want_y).abs() <= 1e-6 * want_y.abs(), "{in_dtype:?} y[{i}] {} vs {want_y}", y[i]);
            assert!((dx[i] - want_dx).abs() <= 1e-6 * want_dx.abs(), "{in_dtype:?} dx[{i}] {} vs {want_dx}", dx[i]);
        }
    }
}

/// `gemm_add` reads a contiguous addend inside the cuBLASLt call (`beta = 1`, one `+Y` product
/// in the profile); a transposed view takes the product and an add. Each gives `a·bᵀ + y`
/// within the dtype's rounding of the f64 sum (f32: no TF32); `dy` reaches the addend bit for
/// bit and `a`, `b` get the GEMM's gradients.
#[test]
fn gemm_add_accumulates_onto_its_addend_and_passes_the_gradient_to_all_three() {
    use gpu_kernels::cuda::profile::Profiler;
    use gpu_kernels::gemm_add;
    let device = cuda().autodiff();
    // Rows of a power-of-two byte width: CubeCL's allocations pad other widths to one (a padded
    // addend takes the product and an add).
    let (m, k, n) = (300, 64, 128);
    for (dtype, tol) in [(DType::BF16, (8e-3, 4e-3, 6e-3)), (DType::F32, (1e-5, 1e-6, 1e-6))] {
        for view in [false, true] {
            let draw = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), (&cuda(), dtype));
            // The view: a `[n, m]` leaf read through its transpose (not contiguous).
            let (a0, b0, w0, y0) = (draw([m, k]), draw([n, k]), draw([m, n]), draw(if view { [n, m] } else { [m, n] }));
            let lift = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), (&device, dtype)).require_grad();
            let (a, b, y) = (lift(&a0), lift(&b0), lift(&y0));
            let one = PROFILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let profiler = Profiler::start(true);
            let out = gemm_add(a.clone(), b.clone(), false, true, if view { y.clone().transpose() } else { y.clone() });
            cuda().sync().expect("sync");
            let fused = profiler.finish().gemm_shapes.iter().any(|g| g.shape.ends_with("+Y"));
            drop(one);
            assert_eq!(fused, !view, "{dtype:?} view={view}: the addend read inside the product");
            assert_eq!((out.dims(), out.dtype()), ([m, n], dtype));
            let as_mn = |h: Vec<f64>| if view { transpose(&h, n, m) } else { h };
            let (ha, hb, hy, hw) = (host(a0), host(b0), as_mn(host(y0)), host(w0.clone()));
            let mut want = matmul_f64(&ha, &transpose(&hb, n, k), m, k, n);
            want.iter_mut().zip(&hy).for_each(|(p, y)| *p += y);
            let what = format!("{dtype:?} view={view}");
            assert_close(&format!("{what} out"), &host(out.clone().inner()), &want, tol.0, tol.1, tol.2);
            let grads = (out * Tensor::<2>::from_data(w0.to_data(), (&device, dtype))).sum().backward();
            let grad = |t: &Tensor<2>| t.grad(&grads).expect("a gradient");
            assert_eq!(as_mn(host(grad(&y))), hw, "{what}: d y = dy");
            assert_close(&format!("{what} d a"), &host(grad(&a)), &matmul_f64(&hw, &hb, m, n, k), tol.0, tol.1, tol.2);
            assert_close(&format!("{what} d b"), &host(grad(&b)), &matmul_f64(&transpose(&hw, m, n), &ha, n, m, k), tol.0, tol.1, tol.2);
        }
    }
}

/// `add_cast` rounds the f32 sum once, bit for bit as the host does, in vectors (a length of
/// 4·k) and one value per thread (a view one element in); `d base = dy`, `d delta = f32(dy)`.
#[test]
fn add_cast_rounds_the_f32_sum_once_and_passes_the_gradient_to_both() {
    use gpu_kernels::add_cast;
    let device = cuda().autodiff();
    let plain = cuda();
    let n = 4099 * 4;
    for (base_dtype, shift) in [(DType::BF16, 0), (DType::BF16, 1), (DType::F16, 0), (DType::F32, 1)] {
        let b0 = Tensor::<1>::random([n + shift], Distribution::Normal(0.0, 1.0), &plain).cast(base_dtype).narrow(0, shift, n);
        let d0 = Tensor::<1>::random([n + shift], Distribution::Normal(0.0, 0.05), &plain).narrow(0, shift, n);
        let w = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &plain).cast(base_dtype);
        let base = Tensor::<1>::from_data(b0.to_data(), (&device, base_dtype)).require_grad();
        let delta = Tensor::<1>::from_data(d0.to_data(), &device).require_grad();
        // `shift` = 1 feeds the kernel views one element in (one value per thread).
        let (bv, dv) = if shift == 0 {
            (base.clone(), delta.clone())
        } else {
            (
                Tensor::cat(vec![base.clone().narrow(0, 0, 1), base.clone()], 0).narrow(0, 1, n),
                Tensor::cat(vec![delta.clone().narrow(0, 0, 1), delta.clone()], 0).narrow(0, 1, n),
            )
        };
        let y = add_cast(bv, dv);
        assert_eq!(y.dtype(), base_dtype);
        let want = (b0.clone().cast(FloatDType::F32) + d0.clone()).cast(base_dtype);
        let bits = |t: Tensor<1>| {
            t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let (got, want) = (bits(y.clone().inner()), bits(want));
        let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{base_dtype:?} shift {shift}: {differ} of {n} sums differ from the host's");
        let grads = (y * Tensor::<1>::from_data(w.to_data(), (&device, base_dtype))).sum().backward();
        let (db, dd) = (base.grad(&grads).expect("d base"), delta.grad(&grads).expect("d delta"));
        assert_eq!((db.dtype(), dd.dtype()), (base_dtype, DType::F32));
        assert_eq!(bits(db), bits(w.clone()), "{base_dtype:?}: d base");
        assert_eq!(bits(dd), bits(w), "{base_dtype:?}: d delta");
    }
}

/// The vector kernel (aligned buffer) and the one-value-per-thread kernel (a view one element
/// in) draw the same mask for the same seed: every element's mask comes from its own index.
#[test]
fn dropout_masks_do_not_depend_on_the_kernels_vector_width() {
    use gpu_kernels::dropout::{fused_dropout, set_seed};
    let _turn = DROPOUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let device = cuda().autodiff();
    let n = 300 * 520;
    for (in_dtype, out_dtype) in [(DType::BF16, DType::F32), (DType::F32, DType::F32), (DType::BF16, DType::BF16)] {
        let base = Tensor::<1>::random([n + 1], Distribution::Normal(0.0, 1.0), (&device, in_dtype));
        let shifted = base.narrow(0, 1, n);
        let fresh = Tensor::<1>::from_data(shifted.to_data(), (&device, in_dtype));
        let bits = |t: Tensor<1>| {
            t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        set_seed(7);
        let wide = bits(fused_dropout(fresh, 0.1, 0.25, out_dtype).expect("fused"));
        set_seed(7);
        let narrow = bits(fused_dropout(shifted, 0.1, 0.25, out_dtype).expect("fused"));
        let differ = wide.iter().zip(&narrow).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{in_dtype:?} → {out_dtype:?}: {differ} of {n} elements differ");
    }
}

#[test]
fn autodiff_parameters_take_the_one_kernel_adamw_update() {
    use gpu_kernels::cuda::profile::Profiler;
    use gpu_kernels::optim::{AdamWStep, adamw_update, portable_adamw_update};
    let device = cuda().autodiff();
    let s = AdamWStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        bias_correction1: 0.1,
        bias_correction2: 0.001,
        seed: 3,
    };
    let one = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device);
    let t = || Tensor::<2>::random([64, 96], Distribution::Normal(0.0, 1.0), &device);
    let (p, g, m, v) = (t().require_grad(), t().inner(), t(), t().abs());
    let _one = PROFILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let profiler = Profiler::start(false);
    let (pn, mn, vn) = adamw_update(p.clone().detach(), g.clone(), m.clone(), v.clone(), &s, &one);
    cuda().sync().expect("sync");
    let profile = profiler.finish();
    // One update kernel and none of the burn-ops path (a contiguity copy may precede it).
    let names: Vec<&str> = profile.kernels.iter().map(|k| k.name.as_str()).collect();
    let updates: usize = profile.kernels.iter().filter(|k| k.name.contains("AdamwKernel")).map(|k| k.launches).sum();
    assert!(updates == 1 && !names.iter().any(|n| n.contains("Binop") || n.contains("UnaryFloat")), "launched {names:?}");
    assert!(pn.is_autodiff() && mn.is_autodiff() && vn.is_autodiff());
    let (pw, mw, vw) = portable_adamw_update(p.detach(), g, m, v, &s, &one);
    assert_close("p", &host(pn.inner()), &host(pw.inner()), 1e-5, 1e-5, 1e-5);
    assert_close("m", &host(mn.inner()), &host(mw.inner()), 1e-5, 1e-5, 1e-5);
    assert_close("v", &host(vn.inner()), &host(vw.inner()), 1e-5, 1e-5, 1e-5);
}

#[test]
fn fused_cross_entropy_and_its_gradient_match_the_burn_ops_path() {
    use burn::tensor::{Int, TensorData};
    use gpu_kernels::cross_entropy::{cross_entropy, portable_cross_entropy};
    let device = cuda().autodiff();
    let plain = cuda();
    let (n, v) = (37, 50_257);
    let ids: Vec<i64> = (0..n as i64).map(|i| if i % 5 == 3 { -100 } else { (i * 7919 + 11) % v as i64 }).collect();
    // f32: the two paths sum 50k exponentials in different orders with NVRTC's exp/log, so the
    // log-sum-exp agrees to ~1e-5 relative (≈ 1e-4 absolute at 20) and each gradient entry, which
    // carries exp(−lse), to ~1e-4 relative (measured 9.4e-5 on the H200).
    for (dtype, tol) in [(DType::F32, 5e-4), (DType::BF16, 2e-2)] {
        let z0 = Tensor::<2>::random([n, v], Distribution::Normal(0.0, 4.0), &plain).cast(dtype);
        let w = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &plain);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(ids.clone(), [n]), &device);
        let run = |fast: bool| {
            let z = Tensor::<2>::from_data(z0.to_data(), (&device, dtype)).require_grad();
            let l = if fast {
                cross_entropy(z.clone(), targets.clone(), -100)
            } else {
                portable_cross_entropy(z.clone(), targets.clone(), -100)
            };
            let grads = (l.clone() * Tensor::<1>::from_data(w.to_data(), &device)).sum().backward();
            let l = l.inner().into_data().try_to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect::<Vec<_>>();
            (l, host(z.grad(&grads).expect("dz")))
        };
        let (fast, slow) = (run(true), run(false));
        assert_close("ce loss", &fast.0, &slow.0, 1e-5, 1e-5, 1e-5);
        assert_close("ce dz", &fast.1, &slow.1, tol, tol, tol);
        assert!(fast.0.iter().zip(&ids).all(|(l, id)| (*id == -100) == (*l == 0.0)));
    }
}

#[test]
fn gemms_queued_on_burns_stream_keep_their_order_with_burns_kernels() {
    use gpu_kernels::cuda::{host_synchronized_gemms, profile::Profiler};
    let device = cuda();
    // Each product reads the previous element-wise kernel's output and the next kernel reads the
    // product: any missing order shows as a different result.
    let x = Tensor::<2>::random([512, 1024], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<2>::random([1024, 1024], Distribution::Normal(0.0, 1.0 / 32.0), &device);
    let chain = || {
        let mut y = x.clone();
        for _ in 0..40 {
            y = linear(y, w.clone()).mul_scalar(0.25).add(x.clone());
        }
        y
    };
    host_synchronized_gemms(true);
    let want = host(chain());
    host_synchronized_gemms(false);
    let _one = PROFILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let profiler = Profiler::start(false);
    let got = chain();
    device.sync().expect("sync");
    let profile = profiler.finish();
    // Other test threads' products may fall in the window (the counters are process-wide); none
    // of theirs is host-synchronized either.
    assert!(profile.gemms >= 40 && profile.gemms_queued == profile.gemms, "queued {} of {} products", profile.gemms_queued, profile.gemms);
    assert_close("chain", &host(got), &want, 1e-5, 1e-6, 1e-6);
}

#[test]
fn chunked_projection_and_cross_entropy_match_one_chunk() {
    use burn::tensor::{Int, TensorData};
    use gpu_kernels::linear_cross_entropy::linear_cross_entropy_in_chunks;
    let device = cuda().autodiff();
    let plain = cuda();
    let (n, d, v) = (37, 64, 5_003);
    let ids: Vec<i64> = (0..n as i64).map(|i| if i % 5 == 3 { -100 } else { (i * 7919 + 11) % v as i64 }).collect();
    for (dtype, tol) in [(DType::F32, 1e-3), (DType::BF16, 3e-2)] {
        let h0 = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &plain).cast(dtype);
        let w0 = Tensor::<2>::random([v, d], Distribution::Normal(0.0, 0.5), &plain).cast(dtype);
        let g = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &plain);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(ids.clone(), [n]), &device);
        // 37 rows: one chunk (the product and the cross-entropy kernel as before); 16: three.
        let run = |rows: usize| {
            let h = Tensor::<2>::from_data(h0.to_data(), (&device, dtype)).require_grad();
            let w = Tensor::<2>::from_data(w0.to_data(), (&device, dtype)).require_grad();
            let l = linear_cross_entropy_in_chunks(h.clone(), w.clone(), targets.clone(), -100, rows);
            let grads = (l.clone() * Tensor::<1>::from_data(g.to_data(), &device)).sum().backward();
            let l = l.inner().into_data().try_to_vec::<f32>().expect("f32").into_iter().map(f64::from).collect::<Vec<_>>();
            (l, host(h.grad(&grads).expect("dh")), host(w.grad(&grads).expect("dW")))
        };
        let (chunked, whole) = (run(16), run(n));
        assert_close("linear ce loss", &chunked.0, &whole.0, tol, tol, tol);
        assert_close("linear ce dh", &chunked.1, &whole.1, tol, tol, tol);
        assert_close("linear ce dW", &chunked.2, &whole.2, tol, tol, tol);
    }
}

#[test]
fn fused_decoding_products_equal_the_separate_kernels() {
    use gpu_kernels::{GemvEpilogue, nf4_gemv_fused, rms_norm, swiglu};
    let device = cuda();
    // (d, q rows, k/v rows, ffn): odd row counts that end inside a cube and inside a plane's
    // row group (257, 2819: the group's rows past the end read the last row and write nothing;
    // a down projection of 2,819 columns: not whole vectors, composed from the separate ops),
    // Llama-3-8B's widths (a
    // down projection of 14,336 columns staged in bf16, read from global memory in f32), and a
    // width of 72 (no kernel: the separate ops, composed on the device).
    for (d, nq, nkv, ffn) in [(1024usize, 2048usize, 257usize, 2819usize), (4096, 4096, 1024, 14336), (72, 64, 32, 96)] {
        // Llama-3-8B's widths once (their host quantization is slow), the others both ways.
        for double in if d == 4096 { vec![true] } else { vec![false, true] } {
            let weight = |rows: usize, cols: usize, seed: u64| {
                let cfg = QuantConfig::nf4().with_double_quant(double).with_blocksize(64);
                let t = Nf4Tensor::quantize(&random_weights(rows * cols, seed), &[rows, cols], &cfg).expect("quantize");
                upload(&t, &device)
            };
            let (q, k, v, o) = (weight(nq, d, 1), weight(nkv, d, 2), weight(nkv, d, 3), weight(d, nq, 4));
            let (g, u, down) = (weight(ffn, d, 5), weight(ffn, d, 6), weight(d, ffn, 7));
            for dtype in [DType::BF16, DType::F32] {
                let x = Tensor::<2>::random([1, d], Distribution::Normal(0.0, 1.0), (&device, dtype));
                let nw = Tensor::<1>::random([d], Distribution::Normal(1.0, 0.2), (&device, dtype));
                let res = Tensor::<2>::random([1, d], Distribution::Normal(0.0, 1.0), (&device, dtype));
                let xn = rms_norm(x.clone(), nw.clone(), 1e-5);
                let what = |name: &str| format!("{name} d={d} double={double} {dtype:?}");
                // Same kernels' arithmetic in the same order: equal up to the last bit of the
                // compute dtype (an output exactly on a rounding boundary may round either way).
                let (rel, fro) = if dtype == DType::BF16 { (8e-3, 1e-3) } else { (1e-6, 1e-7) };

                let fused = nf4_gemv_fused(x.clone(), &[&q, &k, &v], Some((nw.clone(), 1e-5)), GemvEpilogue::Concat, None);
                let apart = Tensor::cat(vec![nf4_linear(xn.clone(), &q), nf4_linear(xn.clone(), &k), nf4_linear(xn.clone(), &v)], 1);
                assert_eq!((fused.dims(), fused.dtype()), ([1, nq + 2 * nkv], dtype));
                assert_close(&what("norm+qkv"), &host(fused), &host(apart), rel, rel, fro);

                let fused = nf4_gemv_fused(x.clone(), &[&g, &u], Some((nw.clone(), 1e-5)), GemvEpilogue::SwiGlu, None);
                let apart = swiglu(nf4_linear(xn.clone(), &g), nf4_linear(xn.clone(), &u));
                assert_close(&what("norm+gate/up+swiglu"), &host(fused), &host(apart), rel, rel, fro);

                let h = Tensor::<2>::random([1, nq], Distribution::Normal(0.0, 1.0), (&device, dtype));
                let fused = nf4_gemv_fused(h.clone(), &[&o], None, GemvEpilogue::Residual, Some(res.clone()));
                assert_close(&what("o+residual"), &host(fused), &host(res.clone() + nf4_linear(h, &o)), rel, rel, fro);

                let m = Tensor::<2>::random([1, ffn], Distribution::Normal(0.0, 1.0), (&device, dtype));
                let fused = nf4_gemv_fused(m.clone(), &[&down], None, GemvEpilogue::Residual, Some(res.clone()));
                assert_close(&what("down+residual"), &host(fused), &host(res + nf4_linear(m, &down)), rel, rel, fro);
            }
        }
    }
}

#[test]
fn decode_attention_kernel_matches_the_separate_ops_and_writes_the_cache_row() {
    use burn::tensor::TensorData;
    use gpu_kernels::decode::portable_decode_attention;
    use gpu_kernels::decode_attention;
    let device = cuda();
    // (H, H_kv, d_h, capacity, pos): Llama-3-8B's heads at the first and a later position, and
    // a multi-head (H = H_kv) case.
    for (heads, hkv, dh, cap, pos) in [(32usize, 8usize, 128usize, 256usize, 0usize), (32, 8, 128, 512, 300), (4, 4, 64, 256, 17)] {
        for dtype in [DType::BF16, DType::F32] {
            let cache_shape = [1, hkv, cap, dh];
            let n = hkv * cap * dh;
            let host_k = random_weights(n, 3 + pos as u64).into_iter().map(|v| v * 20.0).collect::<Vec<f32>>();
            let host_v = random_weights(n, 5 + pos as u64).into_iter().map(|v| v * 20.0).collect::<Vec<f32>>();
            let buffer = |h: &[f32]| Tensor::<4>::from_data(TensorData::new(h.to_vec(), cache_shape), &device).cast(dtype);
            let qkv = Tensor::<2>::random([1, (heads + 2 * hkv) * dh], Distribution::Normal(0.0, 1.0), (&device, dtype));
            let angle = Tensor::<3>::random([1, 1, dh / 2], Distribution::Uniform(-3.0, 3.0), &device);
            let angle = Tensor::cat(vec![angle.clone(), angle], 2);
            let (cos, sin) = (angle.clone().cos().cast(dtype), angle.sin().cast(dtype));

            // Buffers held only by the call: written in place.
            let (o, keys, values) = decode_attention(qkv.clone(), cos.clone(), sin.clone(), buffer(&host_k), buffer(&host_v), pos, heads);
            let (want_o, want_k, want_v) = portable_decode_attention(qkv, cos, sin, buffer(&host_k), buffer(&host_v), pos, heads);
            let what = format!("H={heads} H_kv={hkv} d_h={dh} pos={pos} {dtype:?}");
            assert_eq!((o.dims(), o.dtype()), ([1, heads * dh], dtype), "{what}");
            // bf16: the scores are rounded to bf16 (as a GEMM's output is) at magnitudes in the
            // hundreds (keys × 20), where two summation orders can round one score a unit
            // apart (≈ 1 in the exponent), moving single outputs by several percent of the rms;
            // the Frobenius bound still holds the whole output to 2 %.
            let (tol, abs) = if dtype == DType::BF16 { (2e-2, 6e-2) } else { (1e-5, 1e-5) };
            assert_close(&format!("attention {what}"), &host(o), &host(want_o), tol, abs, tol);
            // The cache rows: the new one rotated exactly as the RoPE kernel rounds, the rest kept.
            let flat = |t: Tensor<4>| host(t.reshape([hkv * cap, dh]));
            assert_eq!(flat(keys), flat(want_k), "keys {what}");
            assert_eq!(flat(values), flat(want_v), "values {what}");
        }
    }
}

/// A step of `decode_attention_at` and `advance_decoding`, recorded once as a CUDA graph and
/// replayed, attends at the advancing device position exactly as the host-position kernel does
/// at each position (same kernel, same arithmetic: equal bits), and leaves the chosen ids and
/// the position in its buffers.
#[test]
fn a_recorded_decoding_step_replays_at_the_advancing_device_position() {
    use burn::tensor::{Int, TensorData};
    use gpu_kernels::{StepGraph, advance_decoding, decode_attention, decode_attention_at};
    let device = cuda();
    let (heads, hkv, dh, cap, start, replays) = (32usize, 8usize, 128usize, 512usize, 250usize, 20usize);
    let dtype = DType::BF16;
    let cache_shape = [1, hkv, cap, dh];
    let n = hkv * cap * dh;
    let buffer = |seed: u64| Tensor::<4>::from_data(TensorData::new(random_weights(n, seed), cache_shape), &device).cast(dtype);
    let qkv = Tensor::<2>::random([1, (heads + 2 * hkv) * dh], Distribution::Normal(0.0, 1.0), (&device, dtype));
    let angle = Tensor::<3>::random([1, cap, dh / 2], Distribution::Uniform(-3.0, 3.0), &device);
    let angle = Tensor::cat(vec![angle.clone(), angle], 2);
    let (cos, sin) = (angle.clone().cos().cast(dtype), angle.sin().cast(dtype));

    // The host-position reference: one call per position on its own cache copy.
    let (mut want_k, mut want_v) = (buffer(11), buffer(12));
    let mut want = Vec::new();
    for p in start..start + 1 + replays {
        let row = |t: &Tensor<3>| t.clone().narrow(1, p, 1);
        let (o, k, v) = decode_attention(qkv.clone(), row(&cos), row(&sin), want_k, want_v, p, heads);
        (want_k, want_v) = (k, v);
        want.push(host(o));
    }

    let int = |v: i64, dims: &[usize]| {
        let len = dims.iter().product();
        Tensor::<1, Int>::from_data(TensorData::new(vec![v; len], [len]), &device)
    };
    let mut position = int(start as i64, &[1]);
    let mut ids = int(0, &[1]).reshape([1, 1]);
    let mut history = int(-1, &[1 + replays]).reshape([1, 1 + replays]);
    let chosen = int(7, &[1]).reshape([1, 1]);
    let mut caches = Some((buffer(11), buffer(12)));
    let mut last: Option<Tensor<2>> = None;
    let graph = StepGraph::record(&device, || {
        let (keys, values) = caches.take().expect("caches");
        let (o, k, v) = decode_attention_at(qkv.clone(), cos.clone(), sin.clone(), keys, values, &position, heads);
        caches = Some((k, v));
        last = Some(o);
        advance_decoding(chosen.clone(), &mut ids, &mut history, &mut position, start);
        Ok(())
    })
    .expect("record");
    let output = last.expect("the recorded step's output");
    assert_eq!(host(output.clone()), want[0], "the warm-up step at position {start}");
    for (k, expected) in want.iter().enumerate().skip(1) {
        graph.replay().expect("replay");
        assert_eq!(&host(output.clone()), expected, "replay {k} at position {}", start + k);
    }
    let read = |t: Tensor<1, Int>| t.into_data().convert::<i64>().try_into_vec::<i64>().expect("ids");
    assert_eq!(read(position.clone()), vec![(start + 1 + replays) as i64]);
    assert_eq!(read(ids.clone().reshape([1])), vec![7]);
    assert_eq!(read(history.reshape([1 + replays])), vec![7; 1 + replays]);
    let (mut keys, mut values) = caches.take().expect("caches");
    let flat = |t: Tensor<4>| host(t.reshape([hkv * cap, dh]));
    assert_eq!(flat(keys.clone()), flat(want_k), "keys");
    assert_eq!(flat(values.clone()), flat(want_v), "values");

    // Started over in place for a new prompt of `again` positions (its keys and values from a
    // cache of another capacity), the same graph replays at the new position on the new prefix.
    let again = 100usize;
    let small = [1, hkv, 256, dh];
    let prompt_cache =
        |seed: u64| Tensor::<4>::from_data(TensorData::new(random_weights(hkv * 256 * dh, seed), small), &device).cast(dtype);
    let (pk, pv) = (prompt_cache(21), prompt_cache(22));
    let with_prefix = |kept: &Tensor<4>, prefix: &Tensor<4>| {
        kept.clone().slice_assign([0..1, 0..hkv, 0..again, 0..dh], prefix.clone().narrow(2, 0, again))
    };
    let row = |t: &Tensor<3>| t.clone().narrow(1, again, 1);
    let (want_o, _, _) =
        decode_attention(qkv.clone(), row(&cos), row(&sin), with_prefix(&keys, &pk), with_prefix(&values, &pv), again, heads);
    let (keys_before, values_before) = (keys.clone(), values.clone());
    gpu_kernels::copy_positions(&pk, &mut keys, again);
    gpu_kernels::copy_positions(&pv, &mut values, again);
    let first = int(9, &[1]).reshape([1, 1]);
    gpu_kernels::start_decoding(first, &mut ids, &mut position, again);
    assert_eq!(read(ids.clone().reshape([1])), vec![9], "the input id set in place");
    assert_eq!(read(position.clone()), vec![again as i64], "the position set in place");
    graph.replay().expect("replay after starting over");
    assert_eq!(host(output), host(want_o), "the replay on the new prefix at position {again}");
    // In place: the tensors held from before the copy see the new prefix.
    let prefix = |t: Tensor<4>| host(t.narrow(2, 0, again).reshape([hkv * again, dh]));
    assert_eq!(prefix(keys_before), prefix(pk), "keys copied in place");
    assert_eq!(prefix(values_before), prefix(pv), "values copied in place");
}

/// The backward root hands the upstream gradient to `y` on CUDA exactly as `⟨y, g⟩` does, in
/// bf16 (a recomputed block's dtype), without computing the product (its value is 0 there).
#[test]
fn gradient_root_backpropagates_the_upstream_gradient() {
    let device = cuda().autodiff();
    let plain = cuda();
    let x0 = Tensor::<2>::random([64, 96], Distribution::Normal(0.0, 1.0), &plain).cast(DType::BF16);
    let w0 = Tensor::<2>::random([48, 96], Distribution::Normal(0.0, 0.2), &plain).cast(DType::BF16);
    let g0 = Tensor::<2>::random([64, 48], Distribution::Normal(0.0, 1.0), &plain).cast(DType::BF16);
    let run = |root: bool| {
        let x = Tensor::<2>::from_data(x0.to_data(), (&device, DType::BF16)).require_grad();
        let w = Tensor::<2>::from_data(w0.to_data(), (&device, DType::BF16)).require_grad();
        let y = linear(x.clone(), w.clone());
        let g = Tensor::<2>::from_data(g0.to_data(), (&device, DType::BF16));
        let grads = if root {
            let r = gpu_kernels::gradient_root(y, g);
            assert_eq!(r.clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32"), vec![0.0], "the kernel path's root");
            r.backward()
        } else {
            (y.cast(DType::F32) * g.cast(DType::F32)).sum().backward()
        };
        (host(x.grad(&grads).expect("dx")), host(w.grad(&grads).expect("dw")))
    };
    let (fast, slow) = (run(true), run(false));
    assert_close("root dx", &fast.0, &slow.0, 2e-2, 2e-2, 2e-2);
    assert_close("root dw", &fast.1, &slow.1, 2e-2, 2e-2, 2e-2);
}

/// A LoRA-adapted packed projection as one op (`nf4_lora_linear`, bf16 as in training) gives
/// the separate ops' value and gradients (`dx` within bf16 rounding: the two input gradients now
/// meet inside the base's product instead of in an add), and by its gradient only the same
/// gradients under a zero value.
#[test]
fn lora_adapted_nf4_projection_as_one_op_matches_the_separate_ops() {
    use gpu_kernels::dropout::{fused_dropout, set_seed};
    use gpu_kernels::{gemm_add, nf4_linear_gradient_only, nf4_lora_linear};
    let _turn = DROPOUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let device = cuda().autodiff();
    let plain = cuda();
    let (rows, inp, out, r) = (96, 512, 320, 16);
    let t = Nf4Tensor::quantize(&random_weights(out * inp, 21), &[out, inp], &QuantConfig::nf4().with_blocksize(64)).expect("quantize");
    let w = upload(&t, &plain);
    let bf = |dims: [usize; 2], std: f64| Tensor::<2>::random(dims, Distribution::Normal(0.0, std), &plain).cast(DType::BF16);
    let (x0, a0, b0, g0) = (bf([rows, inp], 1.0), bf([r, inp], 0.05), bf([out, r], 0.05), bf([rows, out], 1.0));
    let run = |fused: bool, value: bool| {
        let lift = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), (&device, DType::BF16)).require_grad();
        let (x, a, b) = (lift(&x0), lift(&a0), lift(&b0));
        set_seed(5);
        let y = if fused {
            nf4_lora_linear(x.clone(), &w, a.clone(), b.clone(), 0.1, 0.5, value).expect("the kernel path on CUDA")
        } else {
            let base = if value { nf4_linear(x.clone(), &w) } else { nf4_linear_gradient_only(x.clone(), &w) };
            let xd = fused_dropout(x.clone(), 0.1, 0.5, DType::BF16).expect("fused dropout");
            gemm_add(linear(xd, a.clone()), b.clone(), false, true, base)
        };
        let grads =
            (y.clone().cast(DType::F32) * Tensor::<2>::from_data(g0.to_data(), (&device, DType::BF16)).cast(DType::F32)).sum().backward();
        (host(y.inner()), host(x.grad(&grads).expect("dx")), host(a.grad(&grads).expect("dA")), host(b.grad(&grads).expect("dB")))
    };
    let (fused, separate) = (run(true, true), run(false, true));
    assert_close("lora y", &fused.0, &separate.0, 1e-6, 1e-6, 1e-6);
    assert_close("lora dx", &fused.1, &separate.1, 2e-2, 2e-2, 1e-2);
    assert_close("lora dA", &fused.2, &separate.2, 1e-6, 1e-6, 1e-6);
    assert_close("lora dB", &fused.3, &separate.3, 1e-6, 1e-6, 1e-6);
    let gradient_only = run(true, false);
    assert!(gradient_only.0.iter().all(|&v| v == 0.0), "the value is not computed");
    assert_close("lora dx (gradient only)", &gradient_only.1, &fused.1, 1e-6, 1e-6, 1e-6);
    assert_close("lora dA (gradient only)", &gradient_only.2, &fused.2, 1e-6, 1e-6, 1e-6);
}
