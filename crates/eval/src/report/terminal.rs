//! The plain-text report: one table per test case, then pass rates per metric and overall.

use super::{clip, fmt_rate, fmt_score};
use crate::EvalRun;

/// Widest reason shown in a case table (characters).
const REASON_WIDTH: usize = 60;

/// An ASCII table with a header row; widths fit the longest cell of each column.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule = format!("+{}+\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!(" {c}{} ", " ".repeat(w - c.chars().count()))).collect();
        format!("|{}|\n", padded.join("|"))
    };
    let mut out = rule.clone();
    out.push_str(&line(headers.to_vec()));
    out.push_str(&rule);
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out.push_str(&rule);
    out
}

/// The whole report as text (what `xtask eval` prints and saves as `report.txt`).
pub fn render_terminal(run: &EvalRun) -> String {
    let mut out = format!("Evaluation of {} test case(s) with {} metric(s), judged by {}\n", run.cases.len(), run.metrics.len(), run.judge);
    for (i, case) in run.cases.iter().enumerate() {
        out.push_str(&format!("\nTest case {}: {}\n", i + 1, case.display_label()));
        let rows: Vec<Vec<String>> = run
            .case_records(i)
            .map(|r| {
                let info = run.metrics.iter().find(|m| m.name == r.metric);
                let threshold = info.map_or(String::new(), |m| format!("{} {:.2}", m.direction.symbol(), m.threshold));
                match (&r.result, &r.error) {
                    (Some(res), _) => vec![
                        r.metric.clone(),
                        fmt_score(res.score),
                        threshold,
                        if res.success { "PASS".into() } else { "FAIL".into() },
                        clip(res.reason.as_deref().unwrap_or("-"), REASON_WIDTH),
                    ],
                    (None, error) => vec![
                        r.metric.clone(),
                        "-".into(),
                        threshold,
                        "ERROR".into(),
                        clip(error.as_deref().unwrap_or("unknown error"), REASON_WIDTH),
                    ],
                }
            })
            .collect();
        out.push_str(&table(&["Metric", "Score", "Threshold", "Result", "Reason"], &rows));
    }
    let summary = run.summary();
    out.push_str("\nSummary\n");
    let rows: Vec<Vec<String>> = summary
        .metrics
        .iter()
        .map(|m| {
            vec![
                m.metric.clone(),
                m.passed.to_string(),
                m.failed.to_string(),
                m.errored.to_string(),
                fmt_rate(m.pass_rate),
                m.mean_score.map_or("-".into(), fmt_score),
            ]
        })
        .collect();
    out.push_str(&table(&["Metric", "Passed", "Failed", "Errors", "Pass rate", "Mean score"], &rows));
    out.push_str(&format!(
        "Overall: {} of {} test case(s) passed every metric ({}); {} job(s) failed with an error.\n",
        summary.cases_passed,
        summary.cases,
        fmt_rate(summary.pass_rate),
        summary.errors
    ));
    for w in &run.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::sample_run;

    #[test]
    fn terminal_report_snapshot() {
        insta::assert_snapshot!(render_terminal(&sample_run()));
    }

    #[test]
    fn table_pads_to_the_widest_cell() {
        let t = table(&["a", "bb"], &[vec!["ccc".into(), "d".into()]]);
        assert_eq!(t, "+-----+----+\n| a   | bb |\n+-----+----+\n| ccc | d  |\n+-----+----+\n");
    }
}
