//! `xtask eval` end to end with a real judge over HTTP: `xtask serve` runs SmolLM2-135M-Instruct
//! and `xtask eval --judge openai:URL` judges the goldens of `datasets/goldens/smoke.jsonl` with
//! the seed's three metrics. A 135M judge's scores are not meaningful; what is checked is that
//! the protocol, the parsing of its answers and the reports are exact.

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
        .args(["--max-new-tokens", "16", "--judge-max-tokens", "24", "--concurrency", "2", "--min-pass-rate", "1"])
        .arg("--report")
        .arg(&report));

    // Without `#MODEL` the judge is the one model the endpoint lists: `serve` names it by path.
    let judge = model.display().to_string();
    check_eval_report(&report, &finished, &goldens, &judge, 1.0);
    drop(server);
}
