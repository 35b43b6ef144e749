//! The codec against bitsandbytes 0.50.2's own outputs (`tests/fixtures/bnb_codec`, made by
//! `make_fixture.py` on CPU and on an H200): packed bytes, absmax, nested state and dequantized
//! values, bit for bit, for each of bitsandbytes' two implementations.

mod common;

use common::{bits, f32s, first_diff, parse, read, u8s, u16s};
use half::{bf16, f16};
use nf4_quant::dynamic::{dequantize_blockwise_into, dynamic_code, quantize_dynamic};
use nf4_quant::{Absmax, BnbKernel, DoubleQuant, Nf4Tensor, QuantConfig, QuantType, SourceDType};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quant_type: String,
    blocksize: usize,
    double_quant: bool,
}

#[derive(Deserialize)]
struct DynCase {
    name: String,
    blocksize: usize,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
    dynamic: Vec<DynCase>,
}

fn cases() -> Cases {
    serde_json::from_slice(&read("bnb_codec/cases.json")).expect("cases.json")
}

fn kernel_file(kernel: BnbKernel) -> &'static str {
    match kernel {
        BnbKernel::Cpu => "bnb_codec/bnb_cpu.safetensors",
        BnbKernel::Cuda => "bnb_codec/bnb_cuda.safetensors",
    }
}

fn config(case: &Case, kernel: BnbKernel) -> QuantConfig {
    let quant_type = QuantType::parse(&case.quant_type, "quant_type").expect("quant type");
    QuantConfig { quant_type, blocksize: case.blocksize, double_quant: case.double_quant, kernel }
}

/// Quantizes a case's input, read in its own dtype (bf16/f16 inputs are stored as bit patterns).
fn quantize(case: &Case, inputs: &safetensors::SafeTensors<'_>, kernel: BnbKernel) -> Nf4Tensor {
    let cfg = config(case, kernel);
    let t = match case.dtype.as_str() {
        "float32" => Nf4Tensor::quantize(&f32s(inputs, &case.name), &case.shape, &cfg),
        "bfloat16" => {
            Nf4Tensor::quantize_bf16(&u16s(inputs, &case.name).into_iter().map(bf16::from_bits).collect::<Vec<_>>(), &case.shape, &cfg)
        }
        "float16" => {
            Nf4Tensor::quantize_f16(&u16s(inputs, &case.name).into_iter().map(f16::from_bits).collect::<Vec<_>>(), &case.shape, &cfg)
        }
        other => panic!("unknown dtype {other}"),
    };
    t.unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

fn check_quantization(kernel: BnbKernel) {
    let inputs_bytes = read("bnb_codec/inputs.safetensors");
    let inputs = parse(&inputs_bytes);
    let out_bytes = read(kernel_file(kernel));
    let out = parse(&out_bytes);
    let mut failures = Vec::new();
    for case in cases().cases {
        let p = |s: &str| format!("{}.{s}", case.name);
        let ours = quantize(&case, &inputs, kernel);
        let mut check = |what: &str, ok: Option<usize>| {
            if let Some(i) = ok {
                failures.push(format!("{} {what}: first difference at {i}", case.name));
            }
        };
        check("packed", first_diff(ours.packed(), &u8s(&out, &p("packed"))));
        check("quant_map", first_diff(&bits(ours.quant_type().code()), &bits(&f32s(&out, &p("quant_map")))));
        match ours.absmax() {
            Absmax::Plain(a) => check("absmax", first_diff(&bits(a), &bits(&f32s(&out, &p("absmax"))))),
            Absmax::Double(d) => {
                check("absmax codes", first_diff(&d.codes, &u8s(&out, &p("absmax"))));
                check("nested_absmax", first_diff(&bits(&d.nested_absmax), &bits(&f32s(&out, &p("nested_absmax")))));
                check("nested_quant_map", first_diff(&bits(&d.nested_code), &bits(&f32s(&out, &p("nested_quant_map")))));
                check("offset", first_diff(&[d.offset.to_bits()], &bits(&f32s(&out, &p("offset")))));
            }
        }
    }
    assert!(failures.is_empty(), "{kernel:?} quantization differs from bitsandbytes:\n{}", failures.join("\n"));
}

/// bitsandbytes' stored state for a case, as an `Nf4Tensor`.
fn bnb_state(case: &Case, out: &safetensors::SafeTensors<'_>) -> Nf4Tensor {
    let p = |s: &str| format!("{}.{s}", case.name);
    let absmax = if case.double_quant {
        Absmax::Double(DoubleQuant {
            codes: u8s(out, &p("absmax")),
            nested_absmax: f32s(out, &p("nested_absmax")),
            nested_code: f32s(out, &p("nested_quant_map")),
            nested_blocksize: 256,
            offset: f32s(out, &p("offset"))[0],
        })
    } else {
        Absmax::Plain(f32s(out, &p("absmax")))
    };
    let cfg = config(case, BnbKernel::Cuda);
    let dtype = SourceDType::parse(&case.dtype, "dtype").expect("dtype");
    Nf4Tensor::from_parts(u8s(out, &p("packed")), case.shape.clone(), cfg.quant_type, case.blocksize, dtype, absmax, &case.name)
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

/// Equal bit patterns; with `zero_sign_free`, +0 and -0 also match (FP4 code 8 decodes to -0 on
/// CUDA and to +0 in bitsandbytes' portable CPU kernel).
fn same(a: u32, b: u32, zero_sign_free: bool) -> bool {
    a == b || (zero_sign_free && (a | b) & 0x7fff_ffff == 0)
}

fn same16(a: u16, b: u16, zero_sign_free: bool) -> bool {
    a == b || (zero_sign_free && (a | b) & 0x7fff == 0)
}

fn check_dequantization(kernel: BnbKernel) {
    let out_bytes = read(kernel_file(kernel));
    let out = parse(&out_bytes);
    let mut failures = Vec::new();
    for case in cases().cases {
        let p = |s: &str| format!("{}.{s}", case.name);
        let state = bnb_state(&case, &out);
        let zero_sign_free = kernel == BnbKernel::Cpu && state.quant_type() == QuantType::Fp4;
        if state.dtype() == SourceDType::F32 {
            let ours = state.dequantize_to_vec();
            let want = f32s(&out, &p("dequant_f32"));
            assert_eq!(ours.len(), want.len(), "{}", case.name);
            if let Some(i) = (0..want.len()).find(|&i| !same(ours[i].to_bits(), want[i].to_bits(), zero_sign_free)) {
                failures.push(format!("{} f32: at {i} ours {} bnb {}", case.name, ours[i], want[i]));
            }
        }
        let native: Option<Vec<u16>> = match state.dtype() {
            SourceDType::F32 => None,
            SourceDType::Bf16 => {
                let mut v = vec![bf16::ZERO; state.numel()];
                state.dequantize_bf16_into(&mut v).expect("bf16");
                Some(v.iter().map(|x| x.to_bits()).collect())
            }
            SourceDType::F16 => {
                let mut v = vec![f16::ZERO; state.numel()];
                state.dequantize_f16_into(&mut v).expect("f16");
                Some(v.iter().map(|x| x.to_bits()).collect())
            }
        };
        if let Some(native) = native {
            let want = u16s(&out, &p("dequant_native"));
            assert_eq!(native.len(), want.len(), "{}", case.name);
            if let Some(i) = (0..want.len()).find(|&i| !same16(native[i], want[i], zero_sign_free)) {
                failures.push(format!("{} {}: at {i} ours {:#06x} bnb {:#06x}", case.name, case.dtype, native[i], want[i]));
            }
        }
    }
    assert!(failures.is_empty(), "{kernel:?} dequantization differs from bitsandbytes:\n{}", failures.join("\n"));
}

fn check_dynamic(kernel: BnbKernel) {
    let inputs_bytes = read("bnb_codec/inputs.safetensors");
    let inputs = parse(&inputs_bytes);
    let out_bytes = read(kernel_file(kernel));
    let out = parse(&out_bytes);
    assert_eq!(bits(dynamic_code()), bits(&f32s(&out, "dynamic_map")), "dynamic map");
    for case in cases().dynamic {
        let p = |s: &str| format!("{}.{s}", case.name);
        let x = f32s(&inputs, &case.name);
        let (codes, absmax) = quantize_dynamic(&x, case.blocksize, kernel);
        assert_eq!(first_diff(&codes, &u8s(&out, &p("codes"))), None, "{} codes ({kernel:?})", case.name);
        assert_eq!(bits(&absmax), bits(&f32s(&out, &p("absmax"))), "{} absmax", case.name);
        let mut back = vec![0.0f32; x.len()];
        dequantize_blockwise_into(&u8s(&out, &p("codes")), &f32s(&out, &p("absmax")), dynamic_code(), case.blocksize, &mut back);
        assert_eq!(first_diff(&bits(&back), &bits(&f32s(&out, &p("dequant")))), None, "{} dequant", case.name);
    }
}

#[test]
fn quantization_matches_bitsandbytes_cuda() {
    check_quantization(BnbKernel::Cuda);
}

#[test]
fn quantization_matches_bitsandbytes_cpu() {
    check_quantization(BnbKernel::Cpu);
}

#[test]
fn dequantization_matches_bitsandbytes_cuda() {
    check_dequantization(BnbKernel::Cuda);
}

#[test]
fn dequantization_matches_bitsandbytes_cpu() {
    check_dequantization(BnbKernel::Cpu);
}

#[test]
fn dynamic_8bit_matches_bitsandbytes_cuda() {
    check_dynamic(BnbKernel::Cuda);
}

#[test]
fn dynamic_8bit_matches_bitsandbytes_cpu() {
    check_dynamic(BnbKernel::Cpu);
}

/// The two implementations really differ on these fixtures, so each test above can fail.
#[test]
fn cpu_and_cuda_fixtures_differ_where_bitsandbytes_differs() {
    let cpu_bytes = read(kernel_file(BnbKernel::Cpu));
    let cuda_bytes = read(kernel_file(BnbKernel::Cuda));
    let (cpu, cuda) = (parse(&cpu_bytes), parse(&cuda_bytes));
    for name in ["nf4_f32_threshold_probe.packed", "nf4_f32_zero_blocks_b64.packed", "fp4_f32_threshold_probe.packed", "dyn_probe.codes"] {
        assert_ne!(u8s(&cpu, name), u8s(&cuda, name), "{name}");
    }
}
