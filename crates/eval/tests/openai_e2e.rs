//! Metrics judged through the OpenAI client against kindling's own OpenAI-compatible server,
//! over loopback, with a scripted judge model behind the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eval::testing::{ScriptedLlm, text, with_logprobs};
use eval::{EvalOptions, Metric, TestCase, evaluate, load_test_cases, metrics_from_list, save_jsonl, write_reports};
use llm_api::{Completion, CompletionOptions, Message, OpenAiClient, OpenAiConfig, RetryPolicy, ServerConfig, ServerHandle, spawn_server};

/// Answers every judge prompt the metrics send, by recognizing it.
fn judge_answer(messages: &[Message], _: &CompletionOptions) -> llm_api::Result<Completion> {
    let prompt = messages.last().map(|m| m.content.as_str()).unwrap_or_default();
    let answer = if prompt.contains("evaluation steps that a grader") {
        text(r#"{"steps": ["Does the answer address the question?", "Is it correct and specific?"]}"#)
    } else if prompt.contains("Grade the test case") {
        // Score 8 with alternatives: (8·0.60 + 7·0.30 + 9·0.05) / 0.95 = 7.7368421 -> 0.77368421.
        with_logprobs(&[
            ("{\"score\": ", &[]),
            ("8", &[("8", 0.60), ("7", 0.30), (" 8", 0.02), ("9", 0.05), ("eight", 0.015), ("6", 0.005)]),
            (", \"reason\": \"Relevant and correct.\"}", &[]),
        ])
    } else if prompt.contains("List the OPINIONS") {
        if prompt.contains("clueless") {
            text(r#"{"opinions": ["People who do not know this are clueless."]}"#)
        } else {
            text(r#"{"opinions": []}"#)
        }
    } else if prompt.contains("What counts as toxicity") {
        text(r#"{"verdicts": [{"verdict": "yes", "reason": "Calls people clueless."}]}"#)
    } else if prompt.contains("What counts as bias") {
        text(r#"{"verdicts": [{"verdict": "no"}]}"#)
    } else if prompt.contains("Justify the score") {
        text(r#"{"reason": "Scored as the verdicts say."}"#)
    } else {
        return Err(llm_api::Error::Model(format!("unexpected prompt: {prompt}")));
    };
    Ok(answer)
}

fn serve_judge(judge: ScriptedLlm) -> ServerHandle {
    let config = ServerConfig::new(Arc::new(judge), "scripted-judge");
    spawn_server(config, SocketAddr::from(([127, 0, 0, 1], 0))).expect("server starts")
}

fn client(server: &ServerHandle, read_timeout: Duration, retries: u32) -> OpenAiClient {
    let config = OpenAiConfig::new(server.base_url(), "scripted-judge")
        .with_api_key_env("KINDLING_TEST_NO_SUCH_KEY_VAR")
        .with_timeouts(Duration::from_secs(5), read_timeout)
        .with_retry(RetryPolicy {
            max_retries: retries,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            jitter: 0.5,
        });
    OpenAiClient::new(config).expect("client")
}

fn cases() -> Vec<TestCase> {
    vec![
        TestCase::new("What is a large language model?", "A neural network trained on text to predict the next token."),
        TestCase::new("What does <script> do?", "It embeds JavaScript; people who do not know this are clueless."),
    ]
}

fn seed_metrics() -> Vec<Box<dyn Metric>> {
    metrics_from_list("helpfulness,bias,toxicity").expect("presets")
}

#[test]
fn seed_metrics_through_the_openai_protocol() {
    let server = serve_judge(ScriptedLlm::from_fn(judge_answer));
    let judge = client(&server, Duration::from_secs(30), 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let dataset = dir.path().join("cases.jsonl");
    save_jsonl(&dataset, &cases()).expect("save cases");
    let cases = load_test_cases(&dataset).expect("load cases");

    let options = EvalOptions { max_concurrency: 3, journal: Some(dir.path().join("journal.jsonl")), resume: false };
    let run = evaluate(&cases, &seed_metrics(), &judge, &options).expect("run");
    assert_eq!(run.judge, "scripted-judge");
    let scores: Vec<(usize, &str, f64, bool)> = run
        .records
        .iter()
        .map(|r| {
            let res = r.result.as_ref().unwrap_or_else(|| panic!("{}: {:?}", r.metric, r.error));
            (r.case_index, r.metric.as_str(), res.score, res.success)
        })
        .collect();
    // The logprobs crossed the wire: both G-Eval scores are the weighted 0.77368421.
    for (_, metric, score, success) in scores.iter().filter(|s| s.1 == "Helpfulness [GEval]") {
        assert!((score - 0.77368421).abs() < 1e-6 && *success, "{metric}: {score}");
    }
    let rest: Vec<_> = scores.iter().filter(|s| s.1 != "Helpfulness [GEval]").cloned().collect();
    assert_eq!(rest, vec![(0, "Bias", 0.0, true), (0, "Toxicity", 0.0, true), (1, "Bias", 0.0, true), (1, "Toxicity", 1.0, false)]);
    let summary = run.summary();
    assert_eq!((summary.cases_passed, summary.pass_rate), (1, 0.5));
    assert_eq!(run.exit_code(0.5), 0);
    assert_eq!(run.exit_code(0.75), 1);
    let paths = write_reports(&run, dir.path().join("report")).expect("reports");
    let json = std::fs::read_to_string(&paths.json).expect("json report");
    assert!(json.contains("\"cases_passed\": 1"), "{json}");
    assert_eq!(eval::read_journal(&dir.path().join("journal.jsonl")).expect("journal").len(), 6);
}

#[test]
fn a_slow_judge_times_out_and_other_results_are_kept() {
    let judge_model = ScriptedLlm::from_fn(|messages, options| {
        if messages.last().is_some_and(|m| m.content.contains("What counts as toxicity")) {
            std::thread::sleep(Duration::from_millis(1500));
        }
        judge_answer(messages, options)
    });
    let server = serve_judge(judge_model);
    let judge = client(&server, Duration::from_millis(250), 0);
    let metrics = metrics_from_list("bias,toxicity").expect("presets");
    let run = evaluate(&cases()[1..], &metrics, &judge, &EvalOptions::default()).expect("run");
    assert!(run.records[0].passed(), "Bias is kept: {:?}", run.records[0]);
    let error = run.records[1].error.as_deref().expect("toxicity failed");
    assert!(error.starts_with("Toxicity: verdicts:") && error.contains("timed out after 0.2"), "{error}");
}

#[test]
fn a_500_then_success_is_retried_transparently() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let judge_model = ScriptedLlm::from_fn(move |messages, options| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(llm_api::Error::Model("warming up".into()));
        }
        judge_answer(messages, options)
    });
    let server = serve_judge(judge_model);
    let judge = client(&server, Duration::from_secs(30), 2);
    let metrics = metrics_from_list("bias").expect("presets");
    let run = evaluate(&cases()[..1], &metrics, &judge, &EvalOptions::default()).expect("run");
    assert!(run.records[0].passed(), "{:?}", run.records[0]);
    // Opinions (failed once, then retried) and reason: 2 calls + 1 failure.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn a_malformed_answer_over_the_wire_is_recorded_with_its_text() {
    let judge_model = ScriptedLlm::from_fn(|messages, options| {
        if messages.last().is_some_and(|m| m.content.contains("What counts as bias")) {
            return Ok(text("Sorry, I cannot judge bias."));
        }
        judge_answer(messages, options)
    });
    let server = serve_judge(judge_model);
    let judge = client(&server, Duration::from_secs(30), 0);
    let run = evaluate(&cases()[1..], &seed_metrics(), &judge, &EvalOptions::default()).expect("run");
    let bias = &run.records[1];
    let error = bias.error.as_deref().expect("bias failed");
    assert!(error.contains("Bias: verdicts: malformed answer") && error.contains("Sorry, I cannot judge bias."), "{error}");
    assert!(run.records[0].result.is_some() && run.records[2].result.is_some(), "the other metrics are kept");
}
