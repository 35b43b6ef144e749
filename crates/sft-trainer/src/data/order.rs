//! The order of examples in an epoch, as a pure function of `(seed, epoch)` so that a resumed
//! run rebuilds exactly the batches it would have seen.
//!
//! Without `group_by_length` an epoch is a seeded permutation (HF's `RandomSampler`). With it,
//! the permutation is grouped as transformers' `LengthGroupedSampler` does
//! (`get_length_grouped_indices`): megabatches of `min(n / (4·group), 50)·group` indices (at least
//! one group), each sorted by decreasing length (stable, so ties keep the permutation's order),
//! and the longest example of all swapped into the first slot so that running out of memory
//! happens at the first step. HF draws the permutation from torch's RNG; ours comes from
//! SplitMix64 and a Fisher–Yates shuffle, so the grouping logic is identical but the random
//! permutation is not bit-identical to torch's.
//!
//! ```
//! use sft_trainer::data::{Example, epoch_batches};
//!
//! let examples: Vec<Example> = (1..=10).map(|n| Example::all_learned(vec![0; n])).collect();
//! let batches = epoch_batches(&examples, 4, true, 42, 0);
//! assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
//! assert_eq!(batches[0][0], 9); // the longest example comes first
//! assert_eq!(batches, epoch_batches(&examples, 4, true, 42, 0)); // pure in (seed, epoch)
//! assert_ne!(batches, epoch_batches(&examples, 4, true, 42, 1));
//! ```

use super::tokenize::Example;

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fixed, well-mixed generator, so the data
/// order never changes with a dependency's version.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for one purpose (`stream`) of one `(seed, epoch)`.
    pub(crate) fn new(seed: u64, stream: u64, epoch: usize) -> Self {
        let mut g = Self(seed);
        let a = g.next_u64() ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut g = Self(a);
        Self(g.next_u64() ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..bound` (`bound > 0`), without modulo bias.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }
}

/// Which use of the seed a permutation serves (so the split and the epochs are independent).
pub(crate) const STREAM_EPOCH: u64 = 1;
/// The train/eval split's stream.
pub(crate) const STREAM_SPLIT: u64 = 2;

/// A seeded permutation of `0..n` (Fisher–Yates).
pub(crate) fn permutation(n: usize, seed: u64, stream: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed, stream, epoch);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// transformers' `get_length_grouped_indices(lengths, group_size)` given the permutation torch
/// would have drawn.
///
/// # Panics
/// If `permutation` is not a permutation of `0..lengths.len()` or `group_size` is 0.
pub fn length_grouped_indices(lengths: &[usize], group_size: usize, permutation: &[usize]) -> Vec<usize> {
    assert!(group_size > 0, "group_size must be positive");
    assert_eq!(permutation.len(), lengths.len(), "the permutation must cover every example");
    if lengths.is_empty() {
        return Vec::new();
    }
    let mult = (lengths.len() / (group_size * 4)).clamp(1, 50);
    let mut megabatches: Vec<Vec<usize>> = permutation
        .chunks(mult * group_size)
        .map(|chunk| {
            let mut sorted = chunk.to_vec();
            sorted.sort_by(|a, b| lengths[*b].cmp(&lengths[*a]));
            sorted
        })
        .collect();
    // The first megabatch holding the overall longest example (torch.argmax takes the first).
    let mut longest = 0;
    for (i, megabatch) in megabatches.iter().enumerate() {
        if lengths[megabatch[0]] > lengths[megabatches[longest][0]] {
            longest = i;
        }
    }
    let first = megabatches[0][0];
    megabatches[0][0] = megabatches[longest][0];
    megabatches[longest][0] = first;
    megabatches.into_iter().flatten().collect()
}

/// The order of an epoch's examples: a seeded permutation, length-grouped when asked.
/// `group_size` is the sampler's batch size (HF uses `batch_size × gradient_accumulation_steps`).
///
/// # Panics
/// If `group_size` is 0.
pub fn epoch_order(lengths: &[usize], group_size: usize, group_by_length: bool, seed: u64, epoch: usize) -> Vec<usize> {
    let perm = permutation(lengths.len(), seed, STREAM_EPOCH, epoch);
    if group_by_length { length_grouped_indices(lengths, group_size, &perm) } else { perm }
}

/// An epoch's batches as example indices: [`epoch_order`] cut into `batch_size` chunks (the last
/// one may be shorter, as HF's default `drop_last = false`).
///
/// # Panics
/// If `batch_size` is 0.
pub fn epoch_batches(examples: &[Example], batch_size: usize, group_by_length: bool, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let lengths: Vec<usize> = examples.iter().map(Example::len).collect();
    epoch_order(&lengths, batch_size, group_by_length, seed, epoch).chunks(batch_size).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations_and_seeded() {
        let p = permutation(100, 7, STREAM_EPOCH, 0);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(p, permutation(100, 7, STREAM_EPOCH, 0));
        assert_ne!(p, permutation(100, 8, STREAM_EPOCH, 0));
        assert_ne!(p, permutation(100, 7, STREAM_SPLIT, 0));
        assert!(permutation(0, 1, 1, 1).is_empty());
    }

    #[test]
    fn grouping_by_hand() {
        // 8 examples, group 2: mult = 1, megabatches of 2.
        let lengths = [1, 5, 3, 9, 2, 2, 7, 4];
        let perm = [0, 1, 2, 3, 4, 5, 6, 7];
        // Sorted pairs: [1,0] [3,2] [4,5] [6,7]; longest (9) is index 3, in megabatch 1.
        assert_eq!(length_grouped_indices(&lengths, 2, &perm), vec![3, 0, 1, 2, 4, 5, 6, 7]);
    }

    #[test]
    fn grouping_keeps_every_index_once() {
        let lengths: Vec<usize> = (0..57).map(|i| (i * 37) % 11).collect();
        let order = epoch_order(&lengths, 3, true, 5, 2);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..57).collect::<Vec<_>>());
        assert_eq!(lengths[order[0]], 10);
    }
}
