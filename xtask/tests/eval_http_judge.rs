//! `xtask eval` end to end with a real judge over HTTP: `xtask serve` runs SmolLM2-135M-Instruct
//! and `xtask eval --judge openai:URL` judges the goldens of `datasets/goldens/smoke.jsonl` with
//! the seed's three metrics. A 135M judge's scores are not meaningful; what is checked is that
//! the protocol, the parsing of its answers and the reports are exact, and that the judge over
//! HTTP judges exactly as the same model in process.

mod common;

use common::{Server, asset, check_eval_report, root, run, xtask};

#[test]
fn eval_judged_by_a_served_model_over_http() {
    let model = asset(assets::known::SMOLLM2_GGUF);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&model, &dir.path().join("serve.log"));
    let goldens_path = root().join("datasets/goldens/smoke.jsonl");
    let goldens = eval::load_goldens(&goldens_path).expect("goldens");
    let report = dir.path().join("report");

    let finished = run(xtask()
        .args(["eval", "--goldens"])
        .arg(&goldens_path)
        .args(["--model"])
        .arg(&model)
        .args(["--metrics", "helpfulness,bias,toxicity", "--judge", &format!("openai:{}", server.url)])
        .args(["--max-new-tokens", "12", "--judge-max-tokens", "16", "--concurrency", "2", "--min-pass-rate", "1"])
        .arg("--report")
        .arg(&report));

    // Without `#MODEL` the judge is the one model the endpoint lists: `serve` names it by path.
    let judge = model.display().to_string();
    let over_http = check_eval_report(&report, &finished, &goldens, &judge, 1.0);
    drop(server);

    // Exactness of the wire: the same model judging in process, on the same answers, gives the
    // very same Bias records (scores, or errors quoting the same answers).
    let answered = dir.path().join("answered.jsonl");
    eval::save_jsonl(&answered, &over_http.cases).expect("answered goldens");
    let in_process = dir.path().join("in-process");
    let finished = run(xtask()
        .args(["eval", "--goldens"])
        .arg(&answered)
        .args(["--metrics", "bias", "--judge", &format!("local:{judge}"), "--judge-max-tokens", "16", "--report"])
        .arg(&in_process));
    assert_eq!(finished.code, Some(0), "{}", finished.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(in_process.join("report.json")).expect("report")).expect("json");
    let local: eval::EvalRun = serde_json::from_value(json["run"].clone()).expect("run");
    let bias_over_http: Vec<_> = over_http.records.iter().filter(|r| r.metric == "Bias").cloned().collect();
    assert_eq!(local.records, bias_over_http);
}
