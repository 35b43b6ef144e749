//! Packed rows: each sequence of a packed row gets the logits it gets alone (its own positions,
//! no attention across sequences), in f32 on the tiny GQA model of the HF parity fixtures.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData, Tolerance};
use llama_model::{LlamaConfig, LoadOptions, load, weights};

#[test]
fn packed_sequences_get_the_logits_they_get_alone() {
    let device = Device::flex();
    let dir = common::fixture("gqa");
    let config = LlamaConfig::from_hf_file(dir.join("config.json")).expect("config");
    let model = load(weights::open(&dir).expect("weights").as_ref(), &config, &LoadOptions::f32(&device)).expect("model");

    let seqs: [&[i64]; 5] = [&[5, 17, 9], &[40, 2, 33, 8, 61], &[12, 12], &[7, 70, 3, 19], &[50]];
    // Row 0: seqs 0, 1, 2 (10 tokens); row 1: seqs 3, 4, then one pad token.
    let rows: [&[usize]; 2] = [&[0, 1, 2], &[3, 4]];
    let len = 10;
    let (mut ids, mut positions) = (Vec::new(), Vec::new());
    for row in rows {
        let mut n = 0;
        for &s in row {
            ids.extend_from_slice(seqs[s]);
            positions.extend(0..seqs[s].len() as i64);
            n += seqs[s].len();
        }
        ids.extend(std::iter::repeat_n(0, len - n));
        positions.extend(std::iter::repeat_n(0, len - n));
    }
    let packed = model.forward_packed(Tensor::<2, Int>::from_data(TensorData::new(ids, [2, len]), &device), &positions);
    let vocab = config.vocab_size;

    // The plain causal forward over a packed row does differ (the point of the mask).
    let unmasked = model.forward(packed_row_0(&rows, &seqs, &device), None);
    let mut max_gap = 0f32;

    for (r, row) in rows.iter().enumerate() {
        let mut offset = 0;
        for &s in *row {
            let n = seqs[s].len();
            let alone = model.forward(Tensor::<2, Int>::from_data(TensorData::new(seqs[s].to_vec(), [1, n]), &device), None);
            let got = packed.clone().slice([r..r + 1, offset..offset + n, 0..vocab]);
            got.clone().into_data().assert_approx_eq::<f32>(&alone.clone().into_data(), Tolerance::rel_abs(1e-5, 1e-5));
            if r == 0 && offset > 0 {
                let plain = unmasked.clone().slice([0..1, offset..offset + n, 0..vocab]);
                max_gap = max_gap.max((plain - alone).abs().max().into_scalar::<f32>());
            }
            offset += n;
        }
    }
    assert!(max_gap > 1e-2, "packing without the mask should differ; gap {max_gap}");
}

fn packed_row_0(rows: &[&[usize]; 2], seqs: &[&[i64]; 5], device: &Device) -> Tensor<2, Int> {
    let ids: Vec<i64> = rows[0].iter().flat_map(|&s| seqs[s].iter().copied()).collect();
    let n = ids.len();
    Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device)
}
