//! A BFD block trains on exactly what its sequences would give unpacked: the first step's loss
//! of one packed block equals that of the same sequences as a padded batch.

mod common;

use std::path::Path;

use burn::tensor::{DType, Device};
use sft_trainer::Trainer;
use sft_trainer::data::Example;

use common::{tiny_model, tiny_setup};

fn first_loss(out: &Path, train: Vec<Example>) -> f64 {
    let device = Device::flex().autodiff();
    let mut trainer = Trainer::new(tiny_model(&device, DType::F32), tiny_setup(out, train)).expect("trainer");
    trainer.train(|_, _, _| {}).expect("train").losses[0].1
}

#[test]
fn a_packed_block_has_the_loss_of_its_sequences() {
    let dir = tempfile::tempdir().expect("tmp");
    let seqs: Vec<Vec<u32>> = vec![vec![5, 17, 9, 44], vec![40, 3, 33, 8, 61, 7], vec![12, 13, 14]];
    let unpacked: Vec<Example> = seqs.iter().cloned().map(Example::all_learned).collect();
    let ids: Vec<u32> = seqs.concat();
    let block = Example { loss_mask: vec![true; ids.len()], input_ids: ids.clone(), seq_lengths: seqs.iter().map(Vec::len).collect() };
    let concatenated = Example::all_learned(ids);

    let separate = first_loss(&dir.path().join("separate"), unpacked);
    let packed = first_loss(&dir.path().join("packed"), vec![block]);
    assert!((packed - separate).abs() <= 1e-5 * separate, "packed {packed} vs separate {separate}");
    // Without boundaries the same tokens attend across sequences and count their starts.
    let plain = first_loss(&dir.path().join("plain"), vec![concatenated]);
    assert!((plain - separate).abs() > 1e-3, "concatenation without packing should differ: {plain} vs {separate}");
}
