//! Packing examples into `max_seq_length` blocks, as trl's `pack_dataset` (trl 1.16).
//!
//! trl's default strategy is **BFD** (best-fit decreasing, "Fewer Truncations Improve Language
//! Modeling", arXiv:2404.10830): sequences are truncated to the block size, sorted by decreasing
//! length (stably), and each goes into the open block with the least room that still fits it
//! (the oldest such block on ties), else into a new block. Blocks keep their sequences'
//! lengths ([`Example::seq_lengths`]); trl then trains padding-free, with position ids that
//! restart at each sequence and no attention across sequences (FlashAttention varlen). Our
//! collator gives the restarting position ids, masks the label at each sequence start and marks
//! the batch packed (see [`crate::data::collate`]); the trainer then runs
//! `Llama::forward_packed`, which rotates by those positions and keeps each sequence's
//! attention to itself, so a sequence trains as it would alone. **`bfd_split`** splits long sequences into
//! block-sized fragments instead of truncating them. **`wrapped`** concatenates everything and
//! cuts blocks regardless of boundaries (no `seq_lengths`). Since the EOS is appended to each
//! text row before tokenization, sequences in a block are separated by EOS.
//!
//! As in trl, which packs through `datasets.map(batched=True)`, each run of 1000 examples is
//! packed on its own.
//!
//! ```
//! use sft_trainer::data::{Example, PackingStrategy, pack};
//!
//! // trl's `pack_dataset` docstring example.
//! let examples: Vec<Example> = [vec![1, 2, 3, 4, 5], vec![6, 7], vec![8, 9, 10], vec![11]]
//!     .into_iter().map(Example::all_learned).collect();
//! let blocks = pack(&examples, 4, PackingStrategy::Bfd);
//! let ids: Vec<Vec<u32>> = blocks.iter().map(|b| b.input_ids.clone()).collect();
//! assert_eq!(ids, vec![vec![1, 2, 3, 4], vec![8, 9, 10, 11], vec![6, 7]]);
//! assert_eq!(blocks[1].seq_lengths, vec![3, 1]);
//! let split = pack(&examples, 4, PackingStrategy::BfdSplit);
//! assert_eq!(split[1].input_ids, vec![8, 9, 10, 5]);
//! ```

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::tokenize::Example;

/// The number of examples packed together (`datasets.map`'s default batch size).
pub const PACK_CHUNK: usize = 1000;

/// How to pack (trl's `packing_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackingStrategy {
    /// Best-fit decreasing; sequences longer than a block are truncated (trl's default).
    #[default]
    Bfd,
    /// Best-fit decreasing; longer sequences are split into block-sized fragments.
    BfdSplit,
    /// Concatenate and cut, ignoring sequence boundaries.
    Wrapped,
}

/// Packs `examples` into blocks of at most `block` tokens.
///
/// # Panics
/// If `block` is 0.
pub fn pack(examples: &[Example], block: usize, strategy: PackingStrategy) -> Vec<Example> {
    assert!(block > 0, "the block size must be positive");
    examples
        .chunks(PACK_CHUNK)
        .flat_map(|chunk| match strategy {
            PackingStrategy::Wrapped => wrapped(chunk, block),
            PackingStrategy::Bfd | PackingStrategy::BfdSplit => bfd(chunk, block, strategy == PackingStrategy::BfdSplit),
        })
        .collect()
}

fn wrapped(chunk: &[Example], block: usize) -> Vec<Example> {
    let ids: Vec<u32> = chunk.iter().flat_map(|e| e.input_ids.iter().copied()).collect();
    let mask: Vec<bool> = chunk.iter().flat_map(|e| e.loss_mask.iter().copied()).collect();
    ids.chunks(block)
        .zip(mask.chunks(block))
        .map(|(ids, mask)| Example { input_ids: ids.to_vec(), loss_mask: mask.to_vec(), seq_lengths: Vec::new() })
        .collect()
}

/// A piece of an example: (example, start, end).
type Piece = (usize, usize, usize);

fn bfd(chunk: &[Example], block: usize, split: bool) -> Vec<Example> {
    let mut pieces: Vec<Piece> = Vec::new();
    for (i, e) in chunk.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
        if split {
            pieces.extend((0..e.len()).step_by(block).map(|s| (i, s, (s + block).min(e.len()))));
        } else {
            pieces.push((i, 0, e.len().min(block)));
        }
    }
    let len = |p: &Piece| p.2 - p.1;
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by(|a, b| len(&pieces[*b]).cmp(&len(&pieces[*a])));

    let mut bins: Vec<Vec<usize>> = Vec::new();
    // Open bins by remaining room (> 0), oldest first.
    let mut by_room: BTreeMap<usize, VecDeque<usize>> = BTreeMap::new();
    for p in order {
        let n = len(&pieces[p]);
        let fit = by_room.range(n..).next().map(|(room, _)| *room);
        let (bin, room) = match fit {
            Some(room) => {
                let queue = by_room.entry(room).or_default();
                let bin = queue.pop_front();
                if queue.is_empty() {
                    by_room.remove(&room);
                }
                match bin {
                    Some(bin) => (bin, room),
                    None => continue, // unreachable: queues in the map are never empty
                }
            }
            None => {
                bins.push(Vec::new());
                (bins.len() - 1, block)
            }
        };
        bins[bin].push(p);
        if room > n {
            by_room.entry(room - n).or_default().push_back(bin);
        }
    }
    bins.into_iter()
        .map(|members| {
            let mut out = Example::default();
            for p in members {
                let (e, s, t) = pieces[p];
                out.input_ids.extend_from_slice(&chunk[e].input_ids[s..t]);
                out.loss_mask.extend_from_slice(&chunk[e].loss_mask[s..t]);
                out.seq_lengths.push(t - s);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32]) -> Example {
        Example::all_learned(ids.to_vec())
    }

    #[test]
    fn wrapped_cuts_across_examples() {
        let blocks = pack(&[ex(&[1, 2, 3]), ex(&[4, 5, 6, 7])], 3, PackingStrategy::Wrapped);
        let ids: Vec<Vec<u32>> = blocks.iter().map(|b| b.input_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
        assert!(blocks[0].seq_lengths.is_empty());
    }

    #[test]
    fn bfd_split_matches_trl_docstring() {
        let examples = [ex(&[1, 2, 3, 4, 5]), ex(&[6, 7]), ex(&[8, 9, 10]), ex(&[11])];
        let blocks = pack(&examples, 4, PackingStrategy::BfdSplit);
        let ids: Vec<Vec<u32>> = blocks.iter().map(|b| b.input_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3, 4], vec![8, 9, 10, 5], vec![6, 7, 11]]);
        let lengths: Vec<Vec<usize>> = blocks.iter().map(|b| b.seq_lengths.clone()).collect();
        assert_eq!(lengths, vec![vec![4], vec![3, 1], vec![2, 1]]);
    }

    #[test]
    fn empty_examples_are_dropped() {
        assert!(pack(&[ex(&[])], 4, PackingStrategy::Bfd).is_empty());
    }
}
