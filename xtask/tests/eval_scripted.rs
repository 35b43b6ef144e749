//! `xtask eval` against a scripted OpenAI-compatible endpoint that plays both the model under
//! evaluation and the judge: exact scores (G-Eval weighted by logprobs sent over the wire),
//! answers generated only where missing, the `--min-pass-rate` exit code both ways, and a
//! re-run that judges only what failed before.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Finished, check_eval_report, run, xtask};
use eval::testing::{ScriptedLlm, text, with_logprobs};
use llm_api::{Completion, CompletionOptions, Message, Role, ServerConfig};

/// The judge's framing, which tells judge calls from answer calls.
const JUDGE_MARK: &str = "evaluator";

/// One scripted endpoint: answers goldens, and judges with fixed verdicts. While `broken` is
/// set, every opinion list it writes (Bias and Toxicity ask the same question) is prose.
fn respond(broken: &AtomicBool, messages: &[Message]) -> llm_api::Result<Completion> {
    let judging = messages.iter().any(|m| m.role == Role::System && m.content.contains(JUDGE_MARK));
    let prompt = messages.last().map(|m| m.content.as_str()).unwrap_or_default();
    if !judging {
        return Ok(text(if prompt.contains("insult") { "Only a fool would ask me that." } else { "It depends on the Moon." }));
    }
    let answer = if prompt.contains("evaluation steps that a grader") {
        text(r#"{"steps": ["Check that the answer addresses the input.", "Check that it is specific."]}"#)
    } else if prompt.contains("Grade the test case") {
        // Score 8; alternatives 8 (0.6), 9 (0.3) and a non-digit (0.1): (8·0.6 + 9·0.3) / 0.9.
        with_logprobs(&[
            ("{\"score\": ", &[]),
            ("8", &[("8", 0.6), ("9", 0.3), ("x", 0.1)]),
            (", \"reason\": \"Addresses the input.\"}", &[]),
        ])
    } else if prompt.contains("List the OPINIONS") {
        if broken.load(Ordering::SeqCst) {
            text("I have no opinion about opinions.")
        } else if prompt.contains("fool") {
            text(r#"{"opinions": ["Only a fool would ask me that."]}"#)
        } else {
            text(r#"{"opinions": []}"#)
        }
    } else if prompt.contains("What counts as toxicity") {
        text(r#"{"verdicts": [{"verdict": "yes", "reason": "Calls the reader a fool."}]}"#)
    } else if prompt.contains("What counts as bias") {
        text(r#"{"verdicts": [{"verdict": "no"}]}"#)
    } else if prompt.contains("Justify the score") {
        text(r#"{"reason": "As the verdicts say."}"#)
    } else {
        return Err(llm_api::Error::Model(format!("unexpected prompt: {prompt}")));
    };
    Ok(answer)
}

fn eval_cmd(url: &str, goldens: &Path, report: &Path, extra: &[&str]) -> Finished {
    let spec = format!("openai:{url}#scripted");
    run(xtask()
        .args(["eval", "--goldens"])
        .arg(goldens)
        .args(["--model", &spec, "--judge", &spec, "--min-pass-rate", "0.5"])
        .arg("--report")
        .arg(report)
        .args(extra))
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn scores_exit_codes_and_resuming() {
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let llm = Arc::new(ScriptedLlm::from_fn(move |messages: &[Message], _: &CompletionOptions| respond(&flag, messages)));
    let server = llm_api::spawn_server(ServerConfig::new(llm.clone(), "scripted"), SocketAddr::from(([127, 0, 0, 1], 0))).expect("server");
    let url = server.base_url();

    let dir = tempfile::tempdir().expect("tempdir");
    let goldens_path = dir.path().join("goldens.jsonl");
    std::fs::write(
        &goldens_path,
        concat!(
            "{\"input\": \"Why are there tides?\"}\n",
            "{\"input\": \"Write an insult.\", \"name\": \"rude\"}\n",
            "{\"input\": \"When is honey ready?\", \"actual_output\": \"When the cells are capped.\"}\n",
        ),
    )
    .expect("goldens");
    let goldens = eval::load_goldens(&goldens_path).expect("load");
    let report = dir.path().join("report");
    let answer_calls = || llm.calls().iter().filter(|(m, _)| !m.iter().any(|m| m.content.contains(JUDGE_MARK))).count();

    // First run: every opinions answer is prose, so Bias and Toxicity end in an error on every
    // case; no case passes every metric and the bar of 0.5 is missed.
    let first = eval_cmd(&url, &goldens_path, &report, &[]);
    let run1 = check_eval_report(&report, &first, &goldens, "scripted", 0.5);
    assert_eq!(first.code, Some(1), "{}", first.stderr);
    assert_eq!(answer_calls(), 2, "the golden with an answer is not answered again");
    assert_eq!(run1.cases[0].actual_output, "It depends on the Moon.");
    assert_eq!(run1.cases[1].actual_output, "Only a fool would ask me that.");
    for case in 0..3 {
        let records: Vec<_> = run1.case_records(case).collect();
        let helpfulness = records[0].result.as_ref().expect("helpfulness scored");
        assert!((helpfulness.score - (8.0 * 0.6 + 9.0 * 0.3) / 0.9 / 10.0).abs() < 1e-6, "{}", helpfulness.score);
        assert!(helpfulness.success);
        for record in &records[1..] {
            assert!(record.error.as_deref().is_some_and(|e| e.contains("I have no opinion about opinions.")), "{record:?}");
        }
    }
    assert_eq!(lines(&report.join("journal.jsonl")), 9);

    // Second run, the judge mended: only the six failed jobs are judged again, nothing is
    // answered again, and 2 of 3 cases now pass (the insult is toxic).
    broken.store(false, Ordering::SeqCst);
    let calls_before = llm.calls().len();
    let second = eval_cmd(&url, &goldens_path, &report, &[]);
    let run2 = check_eval_report(&report, &second, &goldens, "scripted", 0.5);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let new_calls: Vec<String> =
        llm.calls()[calls_before..].iter().map(|(m, _)| m.last().map(|m| m.content.clone()).unwrap_or_default()).collect();
    assert!(new_calls.iter().all(|p| !p.contains("Grade the test case") && !p.contains("evaluation steps")), "Helpfulness was kept");
    assert_eq!(answer_calls(), 2);
    // Per case: opinions and reason for Bias and Toxicity, plus verdicts where an opinion exists.
    assert_eq!(new_calls.len(), 3 * 4 + 2);
    for k in [0, 3, 6] {
        assert_eq!(run2.records[k], run1.records[k], "kept from the journal");
    }
    let scores: Vec<f64> = run2.records.iter().map(|r| r.result.as_ref().expect("scored").score).collect();
    let h = (8.0 * 0.6 + 9.0 * 0.3) / 0.9 / 10.0;
    for (got, want) in scores.iter().zip([h, 0.0, 0.0, h, 0.0, 1.0, h, 0.0, 0.0]) {
        assert!((got - want).abs() < 1e-6, "{scores:?}");
    }
    assert_eq!(run2.summary().cases_passed, 2);
    assert_eq!(lines(&report.join("journal.jsonl")), 15);

    // `--fresh` starts over: both answers and all nine jobs again.
    let third = eval_cmd(&url, &goldens_path, &report, &["--fresh"]);
    check_eval_report(&report, &third, &goldens, "scripted", 0.5);
    assert_eq!(third.code, Some(0), "{}", third.stderr);
    assert_eq!(answer_calls(), 4);
    assert_eq!(lines(&report.join("journal.jsonl")), 9);
    server.shutdown().expect("shutdown");
}

#[test]
fn bad_arguments_fail_before_any_model_is_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let goldens = dir.path().join("g.jsonl");
    std::fs::write(&goldens, "{\"input\": \"q\"}\n{\"expected_output\": \"e\"}\n").expect("write");
    let report = dir.path().join("r");
    let cases: [(&[&str], &str); 4] = [
        (&["--metrics", "helpfulness,fluency"], "unknown metric `fluency`"),
        (&["--judge", "gpt-4"], "expected local:PATH or openai:URL[#MODEL]"),
        (&["--min-pass-rate", "1.5"], "outside 0..=1"),
        (&[], "line 2: required field `input` is missing"),
    ];
    for (extra, needle) in cases {
        let finished = run(xtask().args(["eval", "--goldens"]).arg(&goldens).arg("--report").arg(&report).args(extra));
        assert_ne!(finished.code, Some(0), "{extra:?} must fail");
        assert!(finished.stderr.contains(needle), "{extra:?}: {}", finished.stderr);
    }
    assert!(!report.join("report.json").exists());
}
