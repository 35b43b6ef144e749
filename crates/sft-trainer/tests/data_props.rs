//! Properties of collation, truncation, packing and epoch order over random examples.

use proptest::prelude::*;
use sft_trainer::data::{Example, IGNORE_INDEX, PackingStrategy, collate, collate_with, epoch_batches, length_grouped_indices, pack};

fn example() -> impl Strategy<Value = Example> {
    prop::collection::vec((0u32..50_000, any::<bool>()), 0..40).prop_map(|tokens| Example {
        input_ids: tokens.iter().map(|t| t.0).collect(),
        loss_mask: tokens.iter().map(|t| t.1).collect(),
        seq_lengths: Vec::new(),
    })
}

fn segments(blocks: &[Example]) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for block in blocks {
        let mut at = 0;
        for &n in &block.seq_lengths {
            out.push(block.input_ids[at..at + n].to_vec());
            at += n;
        }
        assert_eq!(at, block.len(), "seq_lengths cover the block");
    }
    out.sort();
    out
}

proptest! {
    #[test]
    fn collate_pads_right_and_loses_nothing(examples in prop::collection::vec(example(), 1..6), pad in 0u32..5, multiple in prop::option::of(1usize..9)) {
        let refs: Vec<&Example> = examples.iter().collect();
        let batch = collate_with(&refs, pad, multiple);
        let longest = examples.iter().map(Example::len).max().unwrap_or(0);
        prop_assert!(batch.seq_len >= longest);
        if let Some(m) = multiple { prop_assert_eq!(batch.seq_len % m, 0); prop_assert!(batch.seq_len < longest + m); } else { prop_assert_eq!(batch.seq_len, longest); }
        prop_assert_eq!(batch.batch, examples.len());
        for v in [&batch.input_ids, &batch.labels, &batch.attention_mask, &batch.position_ids] {
            prop_assert_eq!(v.len(), batch.batch * batch.seq_len);
        }
        let mut loss = 0;
        for (r, e) in examples.iter().enumerate() {
            let row = r * batch.seq_len..(r + 1) * batch.seq_len;
            let (ids, labels, mask) = (&batch.input_ids[row.clone()], &batch.labels[row.clone()], &batch.attention_mask[row]);
            for t in 0..batch.seq_len {
                if t < e.len() {
                    prop_assert_eq!(ids[t], i64::from(e.input_ids[t]));
                    prop_assert_eq!(mask[t], 1);
                    let expected = if e.loss_mask[t] { i64::from(e.input_ids[t]) } else { IGNORE_INDEX };
                    prop_assert_eq!(labels[t], expected);
                    if t > 0 && e.loss_mask[t] { loss += 1; }
                } else {
                    prop_assert_eq!((ids[t], labels[t], mask[t]), (i64::from(pad), IGNORE_INDEX, 0));
                }
            }
        }
        prop_assert_eq!(batch.num_tokens, examples.iter().map(Example::len).sum::<usize>());
        prop_assert_eq!(batch.num_loss_tokens, loss);
    }

    #[test]
    fn truncation_keeps_a_prefix_within_the_bound(e in example(), max in 1usize..50) {
        let mut cut = e.clone();
        let truncated = cut.truncate(max);
        prop_assert_eq!(truncated, e.len() > max);
        prop_assert!(cut.len() <= max && cut.loss_mask.len() == cut.len());
        prop_assert_eq!(&e.input_ids[..cut.len()], &cut.input_ids[..]);
    }

    #[test]
    fn bfd_packing_keeps_each_truncated_sequence_once(examples in prop::collection::vec(example(), 0..30), block in 1usize..48) {
        let blocks = pack(&examples, block, PackingStrategy::Bfd);
        prop_assert!(blocks.iter().all(|b| b.len() <= block && !b.is_empty() && b.loss_mask.len() == b.len()));
        let mut expected: Vec<Vec<u32>> = examples.iter().filter(|e| !e.is_empty()).map(|e| e.input_ids[..e.len().min(block)].to_vec()).collect();
        expected.sort();
        prop_assert_eq!(segments(&blocks), expected);
        // The loss mask travels with its tokens.
        let learned: usize = examples.iter().map(|e| e.loss_mask[..e.len().min(block)].iter().filter(|m| **m).count()).sum();
        prop_assert_eq!(blocks.iter().map(Example::num_loss_tokens).sum::<usize>(), learned);
        // Collating packed blocks masks each sequence start.
        let refs: Vec<&Example> = blocks.iter().collect();
        let batch = collate(&refs, 0);
        let starts = blocks.iter().map(|b| b.seq_lengths.len()).sum::<usize>();
        prop_assert_eq!(batch.position_ids.iter().zip(&batch.attention_mask).filter(|(p, m)| **p == 0 && **m == 1).count(), starts);
    }

    #[test]
    fn split_and_wrapped_packing_conserve_tokens(examples in prop::collection::vec(example(), 0..30), block in 1usize..48) {
        let total: usize = examples.iter().map(Example::len).sum();
        let split = pack(&examples, block, PackingStrategy::BfdSplit);
        prop_assert_eq!(split.iter().map(Example::len).sum::<usize>(), total);
        prop_assert!(split.iter().all(|b| b.len() <= block));
        let wrapped = pack(&examples, block, PackingStrategy::Wrapped);
        let flat: Vec<u32> = examples.iter().flat_map(|e| e.input_ids.clone()).collect();
        prop_assert_eq!(wrapped.iter().flat_map(|b| b.input_ids.clone()).collect::<Vec<_>>(), flat);
        prop_assert!(wrapped.iter().rev().skip(1).all(|b| b.len() == block));
    }

    #[test]
    fn an_epoch_visits_every_example_once(lengths in prop::collection::vec(1usize..30, 0..60), batch in 1usize..9, grouped in any::<bool>(), seed in any::<u64>(), epoch in 0usize..4) {
        let examples: Vec<Example> = lengths.iter().map(|&n| Example::all_learned(vec![0; n])).collect();
        let batches = epoch_batches(&examples, batch, grouped, seed, epoch);
        prop_assert_eq!(&batches, &epoch_batches(&examples, batch, grouped, seed, epoch));
        prop_assert!(batches.iter().rev().skip(1).all(|b| b.len() == batch));
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..examples.len()).collect::<Vec<_>>());
        if grouped && !examples.is_empty() {
            prop_assert_eq!(lengths[batches[0][0]], *lengths.iter().max().unwrap_or(&0));
        }
    }

    #[test]
    fn length_grouping_sorts_megabatches(lengths in prop::collection::vec(1usize..20, 1..80), group in 1usize..6) {
        let perm: Vec<usize> = (0..lengths.len()).rev().collect();
        let order = length_grouped_indices(&lengths, group, &perm);
        let size = (lengths.len() / (group * 4)).clamp(1, 50) * group;
        for (m, chunk) in order.chunks(size).enumerate() {
            // Apart from the swapped-in first element, each megabatch is sorted by decreasing length.
            prop_assert!(chunk[1..].windows(2).all(|w| lengths[w[0]] >= lengths[w[1]]), "megabatch {}", m);
        }
    }
}
