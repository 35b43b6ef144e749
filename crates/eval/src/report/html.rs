//! The HTML report: one self-contained page (inline CSS, no scripts, fonts or images fetched).

use super::{fmt_rate, fmt_score};
use crate::EvalRun;

const STYLE: &str = r#"
:root { --pass: #1a7f37; --fail: #cf222e; --err: #9a6700; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 24px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: #d1d9e0; }
main { padding: 24px 32px; max-width: 1200px; }
.cards { display: flex; gap: 16px; flex-wrap: wrap; margin-bottom: 24px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; min-width: 180px; }
.card .big { font-size: 28px; font-weight: 700; }
.card .label { color: var(--muted); font-size: 13px; }
.bar { height: 8px; background: #eaeef2; border-radius: 4px; overflow: hidden; margin-top: 6px; }
.bar span { display: block; height: 100%; background: var(--pass); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eaeef2; font-size: 13px; text-transform: uppercase; letter-spacing: .03em; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 700; }
.pass { background: var(--pass); } .fail { background: var(--fail); } .error { background: var(--err); }
section.case { background: #fff; border: 1px solid var(--line); border-left: 6px solid var(--pass); border-radius: 8px; margin: 18px 0; padding: 14px 18px; }
section.case.bad { border-left-color: var(--fail); }
section.case h3 { margin: 0 0 8px; }
dl { display: grid; grid-template-columns: 140px 1fr; gap: 4px 12px; margin: 0 0 12px; }
dt { color: var(--muted); font-weight: 600; }
dd { margin: 0; white-space: pre-wrap; }
details { margin-top: 4px; } summary { cursor: pointer; color: var(--muted); font-size: 13px; }
pre { white-space: pre-wrap; background: #f6f8fa; padding: 8px; border-radius: 6px; font-size: 13px; }
.warn { color: var(--err); }
"#;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn badge(kind: &str, text: &str) -> String {
    format!("<span class=\"badge {kind}\">{text}</span>")
}

/// The whole report as one HTML document.
pub fn render_html(run: &EvalRun) -> String {
    let summary = run.summary();
    let mut body = String::new();
    body.push_str(&format!(
        "<header><h1>Evaluation report</h1><p>{} test case(s) &middot; {} metric(s) &middot; judged by {}</p></header>\n<main>\n",
        run.cases.len(),
        run.metrics.len(),
        escape(&run.judge)
    ));
    body.push_str("<div class=\"cards\">\n");
    body.push_str(&format!(
        "<div class=\"card\"><div class=\"label\">Overall pass rate</div><div class=\"big\">{}</div><div class=\"label\">{} of {} cases passed every metric</div><div class=\"bar\"><span style=\"width:{:.1}%\"></span></div></div>\n",
        fmt_rate(summary.pass_rate),
        summary.cases_passed,
        summary.cases,
        summary.pass_rate * 100.0
    ));
    for m in &summary.metrics {
        body.push_str(&format!(
            "<div class=\"card\"><div class=\"label\">{}</div><div class=\"big\">{}</div><div class=\"label\">mean score {} &middot; threshold {} {:.2}</div><div class=\"bar\"><span style=\"width:{:.1}%\"></span></div></div>\n",
            escape(&m.metric),
            fmt_rate(m.pass_rate),
            m.mean_score.map_or("-".into(), fmt_score),
            escape(m.direction.symbol()),
            m.threshold,
            m.pass_rate * 100.0
        ));
    }
    body.push_str("</div>\n<h2>Metrics</h2>\n<table><tr><th>Metric</th><th>Passed</th><th>Failed</th><th>Errors</th><th>Pass rate</th><th>Mean score</th></tr>\n");
    for m in &summary.metrics {
        body.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
            escape(&m.metric),
            m.passed,
            m.failed,
            m.errored,
            fmt_rate(m.pass_rate),
            m.mean_score.map_or("-".into(), fmt_score)
        ));
    }
    body.push_str("</table>\n<h2>Test cases</h2>\n");
    for (i, case) in run.cases.iter().enumerate() {
        let records: Vec<_> = run.case_records(i).collect();
        let ok = !records.is_empty() && records.iter().all(|r| r.passed());
        body.push_str(&format!(
            "<section class=\"case{}\"><h3>Case {}: {}</h3>\n<dl><dt>Input</dt><dd>{}</dd><dt>Actual output</dt><dd>{}</dd>",
            if ok { "" } else { " bad" },
            i + 1,
            escape(&case.display_label()),
            escape(&case.input),
            escape(&case.actual_output)
        ));
        if let Some(e) = &case.expected_output {
            body.push_str(&format!("<dt>Expected output</dt><dd>{}</dd>", escape(e)));
        }
        if let Some(c) = &case.context {
            body.push_str(&format!("<dt>Context</dt><dd>{}</dd>", escape(&c.join("\n"))));
        }
        body.push_str("</dl>\n<table><tr><th>Metric</th><th>Score</th><th>Threshold</th><th>Result</th><th>Reason</th></tr>\n");
        for r in records {
            let threshold = run
                .metrics
                .iter()
                .find(|m| m.name == r.metric)
                .map_or(String::new(), |m| format!("{} {:.2}", escape(m.direction.symbol()), m.threshold));
            let (score, result, reason, logs) = match (&r.result, &r.error) {
                (Some(res), _) => (
                    fmt_score(res.score),
                    if res.success { badge("pass", "PASS") } else { badge("fail", "FAIL") },
                    escape(res.reason.as_deref().unwrap_or("-")),
                    escape(&res.verbose_logs()),
                ),
                (None, e) => ("-".into(), badge("error", "ERROR"), escape(e.as_deref().unwrap_or("unknown error")), String::new()),
            };
            let details =
                if logs.is_empty() { String::new() } else { format!("<details><summary>steps</summary><pre>{logs}</pre></details>") };
            body.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{score}</td><td class=\"num\">{threshold}</td><td>{result}</td><td>{reason}{details}</td></tr>\n",
                escape(&r.metric)
            ));
        }
        body.push_str("</table></section>\n");
    }
    for w in &run.warnings {
        body.push_str(&format!("<p class=\"warn\">warning: {}</p>\n", escape(w)));
    }
    body.push_str("</main>\n");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Evaluation report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::sample_run;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let html = render_html(&sample_run());
        assert!(html.starts_with("<!DOCTYPE html>"));
        for external in ["<script", "<link", "src=", "@import", "url("] {
            assert!(!html.contains(external), "the page must not load `{external}`");
        }
        assert!(html.contains("Tell me about &lt;script&gt; tags &amp; &quot;quotes&quot;"));
        assert!(html.contains("50.0%"), "overall pass rate shown");
        assert!(html.contains("badge error"), "the failed job is shown");
    }
}
