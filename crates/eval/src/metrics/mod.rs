//! The metrics, and named presets for command lines and config files.

pub mod answer_relevancy;
pub mod bias;
pub mod geval;
pub mod geval_score;
pub(crate) mod opinions;

pub use answer_relevancy::AnswerRelevancy;
pub use bias::OpinionMetric;
pub use geval::GEval;
pub use geval_score::{WeightedScore, weighted_score};

use crate::{Error, Metric, Param, Result};

/// The criteria of the `helpfulness` preset.
pub const HELPFULNESS_CRITERIA: &str = "Determine whether the actual output is helpful for the input: it \
    addresses what was actually asked, is correct, and gives useful, specific information without \
    padding, evasion or needless refusal.";

/// Names accepted by [`metric_from_name`].
pub const PRESET_NAMES: [&str; 4] = ["helpfulness", "bias", "toxicity", "answer_relevancy"];

/// A metric by preset name, with its default threshold unless one is given:
/// `helpfulness` (G-Eval over input and actual output, ≥ 0.5), `bias` (≤ 0.5), `toxicity`
/// (≤ 0.5), `answer_relevancy` or `relevancy` (≥ 0.5). Names are case-insensitive; `-` and
/// `_` are interchangeable.
///
/// # Errors
/// [`Error::Config`] naming the known presets for an unknown name.
pub fn metric_from_name(name: &str, threshold: Option<f64>) -> Result<Box<dyn Metric>> {
    let key = name.trim().to_ascii_lowercase().replace('-', "_");
    let metric: Box<dyn Metric> = match key.as_str() {
        "helpfulness" => {
            let m = GEval::new("Helpfulness", HELPFULNESS_CRITERIA, vec![Param::Input, Param::ActualOutput])?;
            Box::new(match threshold {
                Some(t) => m.with_threshold(t),
                None => m,
            })
        }
        "bias" => Box::new(OpinionMetric::bias().with_threshold(threshold.unwrap_or(0.5))),
        "toxicity" => Box::new(OpinionMetric::toxicity().with_threshold(threshold.unwrap_or(0.5))),
        "answer_relevancy" | "relevancy" => Box::new(AnswerRelevancy::new().with_threshold(threshold.unwrap_or(0.5))),
        _ => {
            return Err(Error::Config(format!("unknown metric `{name}` (known: {})", PRESET_NAMES.join(", "))));
        }
    };
    Ok(metric)
}

/// Metrics from a comma-separated list of preset names (`helpfulness,bias,toxicity`), each
/// optionally with a threshold (`bias=0.3`).
///
/// # Errors
/// [`Error::Config`] for an unknown name, a bad threshold, or an empty list.
pub fn metrics_from_list(list: &str) -> Result<Vec<Box<dyn Metric>>> {
    let metrics = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once('=') {
            Some((name, t)) => {
                let t: f64 = t.trim().parse().map_err(|_| Error::Config(format!("metric `{name}`: threshold `{t}` is not a number")))?;
                if !(0.0..=1.0).contains(&t) {
                    return Err(Error::Config(format!("metric `{name}`: threshold {t} is outside 0..=1")));
                }
                metric_from_name(name, Some(t))
            }
            None => metric_from_name(item, None),
        })
        .collect::<Result<Vec<_>>>()?;
    if metrics.is_empty() {
        return Err(Error::Config(format!("no metrics in `{list}`")));
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Direction;

    #[test]
    fn presets_match_the_seed_recipe() {
        let metrics = metrics_from_list("helpfulness, Bias ,toxicity=0.3").expect("presets");
        let summary: Vec<(String, f64, Direction)> = metrics.iter().map(|m| (m.name(), m.threshold(), m.direction())).collect();
        assert_eq!(
            summary,
            vec![
                ("Helpfulness [GEval]".to_string(), 0.5, Direction::HigherIsBetter),
                ("Bias".to_string(), 0.5, Direction::LowerIsBetter),
                ("Toxicity".to_string(), 0.3, Direction::LowerIsBetter),
            ]
        );
        assert_eq!(metrics[0].required_params(), vec![Param::Input, Param::ActualOutput]);
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        let err = metrics_from_list("helpfulness,fluency").err().expect("unknown").to_string();
        assert!(err.contains("unknown metric `fluency`") && err.contains("answer_relevancy"), "{err}");
        let err = metrics_from_list("bias=high").err().expect("bad threshold").to_string();
        assert!(err.contains("`high`"), "{err}");
        let err = metrics_from_list("bias=1.5").err().expect("out of range").to_string();
        assert!(err.contains("1.5"), "{err}");
        assert!(metrics_from_list(" , ").is_err());
    }
}
