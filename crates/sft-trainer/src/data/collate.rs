//! Examples to a padded batch, as trl's `DataCollatorForLanguageModeling`: right padding with
//! the pad id (trl's `pad = eos`), labels equal to the ids where learned and -100 elsewhere
//! (padding, masked prompt tokens), an attention mask of ones then zeros.
//!
//! Labels are *not* shifted: as in HF, the loss at position `t` predicts `labels[t + 1]` from
//! the logits at `t`, so `labels[.., 0]` never counts and [`Batch::num_loss_tokens`] counts
//! `labels[.., 1..] != -100` (HF's `num_items_in_batch`).
//!
//! A block made by BFD packing ([`Example::seq_lengths`] non-empty) is collated as trl's
//! padding-free collator treats it: position ids restart at 0 at each sequence, and the label
//! at each sequence start is -100 so no sequence is predicted from the one before it. trl
//! flattens such a batch into one row for FlashAttention's varlen kernels; we keep one row per
//! block (the same learned tokens) and hand the position ids to the model.
//!
//! ```
//! use sft_trainer::data::{Example, collate};
//!
//! let a = Example { input_ids: vec![5, 6, 7], loss_mask: vec![false, true, true], seq_lengths: vec![] };
//! let b = Example::all_learned(vec![8, 9]);
//! let batch = collate(&[&a, &b], 2);
//! assert_eq!((batch.batch, batch.seq_len), (2, 3));
//! assert_eq!(batch.input_ids, vec![5, 6, 7, 8, 9, 2]);
//! assert_eq!(batch.labels, vec![-100, 6, 7, 8, 9, -100]);
//! assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 0]);
//! assert_eq!((batch.num_tokens, batch.num_loss_tokens), (5, 3));
//! ```

use super::tokenize::Example;

/// The label of a token that is not learned.
pub const IGNORE_INDEX: i64 = -100;

/// A padded batch, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Token ids, padded on the right with the pad id.
    pub input_ids: Vec<i64>,
    /// Unshifted labels: the id where learned, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Positions: `0..len` per row, restarting at each sequence of a packed block; 0 on padding.
    pub position_ids: Vec<i64>,
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq_len: usize,
    /// Real (non-padding) tokens.
    pub num_tokens: usize,
    /// Labels that enter the shifted loss: `labels[.., 1..] != -100`.
    pub num_loss_tokens: usize,
    /// Whether a row holds several sequences (a BFD block): the model must then rotate by
    /// `position_ids` and keep each sequence's attention to itself
    /// (`llama_model::Llama::forward_packed`).
    pub packed: bool,
}

/// Pads `examples` into a batch as wide as the longest one.
pub fn collate(examples: &[&Example], pad_id: u32) -> Batch {
    collate_with(examples, pad_id, None)
}

/// [`collate`], with the width rounded up to a multiple of `pad_to_multiple_of` (trl's option).
pub fn collate_with(examples: &[&Example], pad_id: u32, pad_to_multiple_of: Option<usize>) -> Batch {
    let longest = examples.iter().map(|e| e.len()).max().unwrap_or(0);
    let seq_len = match pad_to_multiple_of {
        Some(m) if m > 1 => longest.div_ceil(m) * m,
        _ => longest,
    };
    let cells = examples.len() * seq_len;
    let mut batch = Batch {
        input_ids: vec![i64::from(pad_id); cells],
        labels: vec![IGNORE_INDEX; cells],
        attention_mask: vec![0; cells],
        position_ids: vec![0; cells],
        batch: examples.len(),
        seq_len,
        num_tokens: 0,
        num_loss_tokens: 0,
        packed: examples.iter().any(|e| e.seq_lengths.len() > 1),
    };
    for (row, example) in examples.iter().enumerate() {
        let base = row * seq_len;
        let mut starts = vec![false; example.len()];
        let mut positions: Vec<i64> = Vec::with_capacity(example.len());
        if example.seq_lengths.is_empty() {
            positions.extend(0..example.len() as i64);
        } else {
            let mut at = 0;
            for &n in &example.seq_lengths {
                if let Some(s) = starts.get_mut(at) {
                    *s = true;
                }
                positions.extend(0..n as i64);
                at += n;
            }
        }
        for (t, (&id, &learned)) in example.input_ids.iter().zip(&example.loss_mask).enumerate() {
            let i = base + t;
            batch.input_ids[i] = i64::from(id);
            batch.attention_mask[i] = 1;
            batch.position_ids[i] = positions.get(t).copied().unwrap_or(t as i64);
            if learned && !starts[t] {
                batch.labels[i] = i64::from(id);
                if t > 0 {
                    batch.num_loss_tokens += 1;
                }
            }
        }
        batch.num_tokens += example.len();
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_blocks_restart_positions_and_mask_starts() {
        let block = Example { input_ids: vec![1, 2, 3, 4, 5], loss_mask: vec![true; 5], seq_lengths: vec![2, 3] };
        let batch = collate_with(&[&block], 0, Some(4));
        assert_eq!(batch.seq_len, 8);
        assert_eq!(batch.position_ids, vec![0, 1, 0, 1, 2, 0, 0, 0]);
        assert!(batch.packed && !collate(&[&Example::all_learned(vec![1, 2])], 0).packed);
        assert_eq!(batch.labels, vec![-100, 2, -100, 4, 5, -100, -100, -100]);
        assert_eq!(batch.num_loss_tokens, 3);
    }

    #[test]
    fn empty_input_gives_an_empty_batch() {
        let batch = collate(&[], 0);
        assert_eq!((batch.batch, batch.seq_len, batch.input_ids.len()), (0, 0, 0));
    }
}
