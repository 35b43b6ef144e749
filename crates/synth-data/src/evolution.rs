//! The ways an input is made harder ("evolved"), and a seeded weighted choice among them.
//!
//! Evol-Instruct style rewriting (Xu et al., 2023, <https://arxiv.org/abs/2304.12244>), with the
//! seven kinds DeepEval's synthesizer uses. The choice draws `u ~ U[0, Σw)` and takes the first
//! kind whose cumulative weight exceeds `u`.

use std::collections::BTreeMap;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One kind of evolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evolution {
    /// Require several logical steps to answer.
    Reasoning,
    /// Require information from every part of the context.
    MultiContext,
    /// Replace general concepts by specific ones.
    Concretizing,
    /// Add a constraint or condition.
    Constrained,
    /// Ask for a comparison of two or more things.
    Comparative,
    /// Put the question in a hypothetical scenario.
    Hypothetical,
    /// A new input on a related but rarer topic of the same domain.
    InBreadth,
}

impl Evolution {
    /// All kinds, in a fixed order.
    pub const ALL: [Evolution; 7] = [
        Evolution::Reasoning,
        Evolution::MultiContext,
        Evolution::Concretizing,
        Evolution::Constrained,
        Evolution::Comparative,
        Evolution::Hypothetical,
        Evolution::InBreadth,
    ];

    /// The name DeepEval gives it (`"Multi-context"`, `"In-Breadth"`, …).
    pub fn display_name(self) -> &'static str {
        match self {
            Evolution::Reasoning => "Reasoning",
            Evolution::MultiContext => "Multi-context",
            Evolution::Concretizing => "Concretizing",
            Evolution::Constrained => "Constrained",
            Evolution::Comparative => "Comparative",
            Evolution::Hypothetical => "Hypothetical",
            Evolution::InBreadth => "In-Breadth",
        }
    }
}

/// How many evolutions each input gets, and how likely each kind is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvolutionConfig {
    /// Evolutions applied one after another to each input (0 = none).
    pub num_evolutions: usize,
    /// Relative weights (need not sum to 1); kinds left out are never chosen.
    pub weights: BTreeMap<Evolution, f64>,
}

impl Default for EvolutionConfig {
    /// One evolution, every kind equally likely (weight 1/7 each).
    fn default() -> Self {
        Self { num_evolutions: 1, weights: Evolution::ALL.iter().map(|&e| (e, 1.0 / 7.0)).collect() }
    }
}

impl EvolutionConfig {
    /// Checks that weights are finite, non-negative, and not all zero when evolutions are asked for.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad weight.
    pub fn validate(&self) -> Result<()> {
        for (evolution, &w) in &self.weights {
            if !w.is_finite() || w < 0.0 {
                return Err(Error::Config(format!("evolution weight for {evolution:?} is {w}; must be finite and ≥ 0")));
            }
        }
        if self.num_evolutions > 0 && self.weights.values().sum::<f64>() <= 0.0 {
            return Err(Error::Config("num_evolutions > 0 but every evolution weight is 0".into()));
        }
        Ok(())
    }

    /// Draws one kind by weight.
    ///
    /// # Panics
    /// When the weights are all zero; [`EvolutionConfig::validate`] rules that out.
    pub fn choose<R: Rng + ?Sized>(&self, rng: &mut R) -> Evolution {
        let total: f64 = self.weights.values().sum();
        assert!(total > 0.0, "evolution weights must not all be zero");
        let u = rng.random::<f64>() * total;
        let mut cumulative = 0.0;
        let mut last = None;
        for (&evolution, &w) in &self.weights {
            if w <= 0.0 {
                continue;
            }
            cumulative += w;
            last = Some(evolution);
            if u < cumulative {
                return evolution;
            }
        }
        // Rounding can leave `u` a hair above the sum: the last positive kind takes it.
        last.unwrap_or(Evolution::Reasoning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn zero_weights_are_never_chosen_and_shares_follow_weights() {
        let cfg = EvolutionConfig {
            num_evolutions: 1,
            weights: [(Evolution::Reasoning, 3.0), (Evolution::Comparative, 1.0), (Evolution::InBreadth, 0.0)].into_iter().collect(),
        };
        cfg.validate().expect("valid");
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts: BTreeMap<Evolution, usize> = BTreeMap::new();
        for _ in 0..4000 {
            *counts.entry(cfg.choose(&mut rng)).or_default() += 1;
        }
        assert!(!counts.contains_key(&Evolution::InBreadth));
        let reasoning = counts[&Evolution::Reasoning] as f64 / 4000.0;
        assert!((reasoning - 0.75).abs() < 0.03, "{reasoning}");
    }

    #[test]
    fn bad_weights_are_refused() {
        let mut cfg = EvolutionConfig::default();
        cfg.weights.insert(Evolution::Hypothetical, -1.0);
        assert!(cfg.validate().expect_err("negative").to_string().contains("Hypothetical"));
        let cfg = EvolutionConfig { num_evolutions: 2, weights: BTreeMap::new() };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn same_seed_same_choices() {
        let cfg = EvolutionConfig::default();
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20).map(|_| cfg.choose(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
    }
}
