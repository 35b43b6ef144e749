//! `xtask eval` end to end with a real judge run in process (`--judge local:PATH`): the same
//! goldens and checks as over HTTP.

mod common;

use common::{asset, check_eval_report, root, run, xtask};

#[test]
fn eval_judged_by_a_local_model() {
    let model = asset(assets::known::SMOLLM2_GGUF);
    let dir = tempfile::tempdir().expect("tempdir");
    let goldens_path = root().join("datasets/goldens/smoke.jsonl");
    let goldens = eval::load_goldens(&goldens_path).expect("goldens");
    let report = dir.path().join("report");

    let finished = run(xtask()
        .args(["eval", "--goldens"])
        .arg(&goldens_path)
        .args(["--model"])
        .arg(&model)
        .args(["--judge", &format!("local:{}", model.display())])
        .args(["--max-new-tokens", "12", "--judge-max-tokens", "16", "--min-pass-rate", "0"])
        .arg("--report")
        .arg(&report));

    // A local judge is named by its reference; a zero bar always passes.
    check_eval_report(&report, &finished, &goldens, &model.display().to_string(), 0.0);
    assert_eq!(finished.code, Some(0));
}
