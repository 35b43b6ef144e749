//! A deterministic train/eval split: a seeded permutation picks the eval rows (a count, or a
//! fraction rounded up as `datasets`' `train_test_split` does); both parts keep file order.
//!
//! ```
//! use sft_trainer::data::{Example, train_eval_split};
//!
//! let examples: Vec<Example> = (0..10).map(|i| Example::all_learned(vec![i])).collect();
//! let (train, eval) = train_eval_split(examples.clone(), Some(3), 0.0, 42).unwrap();
//! assert_eq!((train.len(), eval.len()), (7, 3));
//! assert_eq!(train_eval_split(examples.clone(), None, 0.25, 42).unwrap().1.len(), 3); // ceil(2.5)
//! assert_eq!(train_eval_split(examples, Some(3), 0.0, 42).unwrap().1, eval); // same seed, same split
//! ```

use super::order::{STREAM_SPLIT, permutation};
use super::tokenize::Example;
use super::{Error, Result};

/// How many of `n` rows go to eval: `count`, else `ceil(fraction · n)`.
pub fn eval_size(n: usize, count: Option<usize>, fraction: f64) -> usize {
    match count {
        Some(c) => c,
        None if fraction > 0.0 => (fraction * n as f64).ceil() as usize,
        None => 0,
    }
}

/// Splits `examples` into `(train, eval)`.
///
/// # Errors
/// [`Error::Config`] when the eval part would leave no training example.
pub fn train_eval_split(examples: Vec<Example>, count: Option<usize>, fraction: f64, seed: u64) -> Result<(Vec<Example>, Vec<Example>)> {
    let n = examples.len();
    let n_eval = eval_size(n, count, fraction);
    if n_eval == 0 {
        return Ok((examples, Vec::new()));
    }
    if n_eval >= n {
        return Err(Error::Config(format!("the eval split takes {n_eval} of {n} example(s), leaving none to train on")));
    }
    let mut is_eval = vec![false; n];
    for i in permutation(n, seed, STREAM_SPLIT, 0).into_iter().take(n_eval) {
        is_eval[i] = true;
    }
    let (mut train, mut eval) = (Vec::with_capacity(n - n_eval), Vec::with_capacity(n_eval));
    for (example, to_eval) in examples.into_iter().zip(is_eval) {
        if to_eval { eval.push(example) } else { train.push(example) }
    }
    Ok((train, eval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples(n: u32) -> Vec<Example> {
        (0..n).map(|i| Example::all_learned(vec![i])).collect()
    }

    #[test]
    fn split_is_a_partition_and_seeded() {
        let (train, eval) = train_eval_split(examples(20), None, 0.1, 3).expect("split");
        assert_eq!((train.len(), eval.len()), (18, 2));
        let mut all: Vec<u32> = train.iter().chain(&eval).map(|e| e.input_ids[0]).collect();
        all.sort_unstable();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        assert_eq!(eval, train_eval_split(examples(20), None, 0.1, 3).expect("again").1);
        assert!(train.windows(2).all(|w| w[0].input_ids[0] < w[1].input_ids[0]), "file order kept");
    }

    #[test]
    fn too_large_an_eval_split_is_an_error() {
        let err = train_eval_split(examples(3), Some(3), 0.0, 0).expect_err("all eval");
        assert!(err.to_string().contains("leaving none"), "{err}");
        assert_eq!(train_eval_split(examples(3), None, 0.0, 0).expect("none").1.len(), 0);
    }
}
