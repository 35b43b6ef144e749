//! G-Eval's probability-weighted score.
//!
//! Following G-Eval (Liu et al., 2023, <https://arxiv.org/abs/2303.16634>) as DeepEval computes
//! it: find the first generated token whose text is exactly the score the judge wrote (e.g.
//! `"8"`); over that position's top alternatives, drop those with probability below 1%
//! (`logprob < ln 0.01`) and those whose text is not all decimal digits (`" 8"`, `"eight"`,
//! `"."`); weight each remaining integer by its probability and divide by the kept mass:
//!
//! `score = Σ sᵢ·pᵢ / Σ pᵢ`, with `pᵢ = exp(logprobᵢ)` and equal integers summed together.
//!
//! When no token matches the score, or nothing survives the filters, there is no weighted
//! score and the judge's integer is used as is.

use llm_api::TokenLogprob;

/// Alternatives below this probability are ignored.
pub const MIN_PROBABILITY: f64 = 0.01;

/// The outcome of weighting a score by its token's alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedScore {
    /// The probability-weighted mean, on the judge's scale (0–10).
    pub score: f64,
    /// Position of the score token among the generated tokens.
    pub token_index: usize,
    /// The kept `(integer, probability)` pairs, in order of first appearance.
    pub kept: Vec<(u64, f64)>,
}

/// The judge's score as Python's `str()` writes it (`8`, `7.5`).
fn score_text(raw: f64) -> String {
    if raw.fract() == 0.0 && raw.abs() < 1e15 { format!("{}", raw as i64) } else { format!("{raw}") }
}

/// Whether a token is a non-empty run of decimal digits.
fn is_decimal(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|c| c.is_ascii_digit())
}

/// The probability-weighted score, or `None` when the logprobs cannot give one.
pub fn weighted_score(raw: f64, logprobs: &[TokenLogprob]) -> Option<WeightedScore> {
    let wanted = score_text(raw);
    let token_index = logprobs.iter().position(|t| t.token == wanted)?;
    let min_logprob = MIN_PROBABILITY.ln();
    let mut kept: Vec<(u64, f64)> = Vec::new();
    for alt in &logprobs[token_index].top_logprobs {
        let logprob = f64::from(alt.logprob);
        if logprob < min_logprob || !is_decimal(&alt.token) {
            continue;
        }
        let Ok(value) = alt.token.parse::<u64>() else {
            continue;
        };
        let p = logprob.exp();
        match kept.iter_mut().find(|(v, _)| *v == value) {
            Some((_, mass)) => *mass += p,
            None => kept.push((value, p)),
        }
    }
    let mass: f64 = kept.iter().map(|(_, p)| p).sum();
    if mass <= 0.0 {
        return None;
    }
    let score = kept.iter().map(|(v, p)| *v as f64 * p).sum::<f64>() / mass;
    Some(WeightedScore { score, token_index, kept })
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_api::TopLogprob;

    fn token(text: &str, alts: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: text.into(),
            logprob: alts.first().map_or(0.0, |(_, p)| p.ln() as f32),
            top_logprobs: alts.iter().map(|(t, p)| TopLogprob { token: (*t).into(), logprob: p.ln() as f32 }).collect(),
        }
    }

    /// The generated tokens of `{"score": 8, ...` with the given alternatives at the score.
    fn answer(score_token: &str, alts: &[(&str, f64)]) -> Vec<TokenLogprob> {
        vec![
            token("{\"", &[("{\"", 0.99)]),
            token("score", &[("score", 0.99)]),
            token("\":", &[("\":", 0.99)]),
            token(" ", &[(" ", 0.97)]),
            token(score_token, alts),
            token(",", &[(",", 0.99)]),
        ]
    }

    #[test]
    fn weights_by_probability_dropping_rare_and_non_integer_tokens() {
        // Kept: 8 (0.60), 7 (0.30), 9 (0.05). Dropped: " 8" (not decimal), "eight" (not
        // decimal), "6" (0.005 < 1%).
        // Σ s·p = 8·0.60 + 7·0.30 + 9·0.05 = 4.80 + 2.10 + 0.45 = 7.35; Σ p = 0.95;
        // score = 7.35 / 0.95 = 7.736842105263158.
        let logprobs = answer("8", &[("8", 0.60), ("7", 0.30), (" 8", 0.02), ("9", 0.05), ("eight", 0.015), ("6", 0.005)]);
        let w = weighted_score(8.0, &logprobs).expect("weighted");
        assert_eq!(w.token_index, 4);
        assert_eq!(w.kept.iter().map(|(v, _)| *v).collect::<Vec<_>>(), vec![8, 7, 9]);
        assert!((w.score - 7.736842105263158).abs() < 1e-6, "{}", w.score);
    }

    #[test]
    fn equal_integers_are_summed_and_multi_digit_tokens_count() {
        // "10" (0.5) and "010" (0.1) are both 10; "9" 0.4.
        // Σ s·p = 10·0.6 + 9·0.4 = 9.6; Σ p = 1.0; score = 9.6.
        let logprobs = answer("10", &[("10", 0.5), ("9", 0.4), ("010", 0.1)]);
        let w = weighted_score(10.0, &logprobs).expect("weighted");
        assert_eq!(w.kept.len(), 2);
        assert!((w.score - 9.6).abs() < 1e-6, "{}", w.score);
    }

    #[test]
    fn the_first_matching_token_is_used() {
        // An earlier "3" (e.g. inside a number elsewhere) is the one DeepEval picks.
        let mut logprobs = answer("3", &[("3", 0.5), ("4", 0.5)]);
        logprobs.insert(1, token("3", &[("3", 0.9), ("2", 0.1)]));
        // At index 1: 3·0.9 + 2·0.1 = 2.9 over mass 1.0.
        let w = weighted_score(3.0, &logprobs).expect("weighted");
        assert_eq!(w.token_index, 1);
        assert!((w.score - 2.9).abs() < 1e-6, "{}", w.score);
    }

    #[test]
    fn no_matching_token_or_nothing_kept_gives_none() {
        // The score token is " 8" (space included), which never equals "8".
        assert_eq!(weighted_score(8.0, &answer(" 8", &[(" 8", 0.9)])), None);
        // Only rare or non-integer alternatives.
        assert_eq!(weighted_score(8.0, &answer("8", &[("eight", 0.9), ("8", 0.009)])), None);
        assert_eq!(weighted_score(8.0, &[]), None);
    }

    #[test]
    fn fractional_scores_match_their_python_text() {
        assert_eq!(score_text(7.5), "7.5");
        assert_eq!(score_text(7.0), "7");
        assert!(is_decimal("10") && !is_decimal("1.0") && !is_decimal("") && !is_decimal("-1"));
    }
}
