//! Choosing the next token from logits: greedy, temperature, top-k, top-p, with a seeded RNG.
//!
//! With temperature `T > 0`: `p = softmax(logits / T)`, keep the `k` most likely tokens
//! (top-k), then the smallest most-likely set whose mass reaches `top_p` (nucleus), renormalize
//! and draw. `T = 0` is greedy (the first index of the maximum, as `torch.argmax`).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// `0` = greedy.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`None` = all).
    pub top_k: Option<usize>,
    /// Nucleus mass in `(0, 1]`.
    pub top_p: f32,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: 1.0, seed: 0 }
    }
}

/// A seeded sampler.
#[derive(Debug)]
pub struct Sampler {
    config: SamplingConfig,
    rng: StdRng,
}

/// Index of the first maximum.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// `log_softmax` of a logit vector, computed in f64 for accuracy.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&v| (v as f64 - lse) as f32).collect()
}

impl Sampler {
    /// A sampler seeded with `config.seed`.
    pub fn new(config: SamplingConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    /// Picks the next token id.
    pub fn sample(&mut self, logits: &[f32]) -> usize {
        if self.config.temperature <= 0.0 {
            return argmax(logits);
        }
        let t = self.config.temperature;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if let Some(k) = self.config.top_k.filter(|&k| k > 0) {
            order.truncate(k);
        }
        let max = logits[order[0]];
        let mut probs: Vec<f64> = order.iter().map(|&i| (((logits[i] - max) / t) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.config.top_p < 1.0 {
            let mut mass = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                mass += p;
                if mass >= self.config.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            order.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut draw = self.rng.random::<f64>() * total;
        for (i, p) in probs.iter().enumerate() {
            if draw < *p {
                return order[i];
            }
            draw -= p;
        }
        order[probs.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_maximum() {
        let mut s = Sampler::new(SamplingConfig::default());
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, 1.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproduces() {
        let logits = [0.1, 0.5, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(SamplingConfig { temperature: 1.0, top_k: Some(1), top_p: 1.0, seed: 3 });
        assert!((0..20).all(|_| s.sample(&logits) == 2));
        let draws = |seed| {
            let mut s = Sampler::new(SamplingConfig { temperature: 1.0, top_k: None, top_p: 1.0, seed });
            (0..32).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn top_p_keeps_the_nucleus_only() {
        // Probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.8 keeps the first two tokens.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(SamplingConfig { temperature: 1.0, top_k: None, top_p: 0.8, seed: 1 });
        let seen: std::collections::BTreeSet<usize> = (0..500).map(|_| s.sample(&logits)).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn log_softmax_normalizes() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f32 = lp.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
