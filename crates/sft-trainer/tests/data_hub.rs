//! Hub datasets by id, downloaded through `hf-hub` from a local server that speaks the hub's
//! dataset protocol (never the internet): `GET /api/datasets/{id}/revision/{rev}` lists the
//! files, `GET /datasets/{id}/resolve/{rev}/{path}` serves them with `Range` requests and the
//! `x-repo-commit` / `etag` / `content-range` headers.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use llama_model::Tokenizer;
use llama_model::weights::hub::HubOptions;
use sft_trainer::data::{DatasetConfig, Error, LoadOptions, RowFormat, load_dataset};

const REPO: &str = "kindling-test/alpaca-1k";
const COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// Serves the files under `root` (relative paths, `/`-separated) as dataset `REPO`.
fn serve(root: PathBuf, files: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new((root, files));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = state.clone();
            std::thread::spawn(move || answer(stream, &state.0, &state.1));
        }
    });
    format!("http://{addr}")
}

fn answer(stream: TcpStream, root: &Path, files: &[String]) {
    let Ok(clone) = stream.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some(spec) = header.to_ascii_lowercase().trim().strip_prefix("range: bytes=") {
            let (start, end) = spec.split_once('-').unwrap_or((spec, ""));
            range = start.parse().ok().map(|s| (s, end.parse().ok()));
        }
    }
    let mut out = stream;
    if path == format!("/api/datasets/{REPO}/revision/main") {
        let siblings: Vec<_> = files.iter().map(|f| serde_json::json!({"rfilename": f})).collect();
        let body = serde_json::json!({"id": REPO, "sha": COMMIT, "siblings": siblings}).to_string();
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let served = path.strip_prefix(&format!("/datasets/{REPO}/resolve/main/")).filter(|f| files.iter().any(|x| x == f));
    let Some(bytes) = served.and_then(|f| std::fs::read(root.join(f)).ok()) else {
        let _ = write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let size = bytes.len();
    let (start, end) = range.unwrap_or((0, None));
    let end = end.unwrap_or(size - 1).min(size - 1);
    let body = &bytes[start.min(size)..=end.max(start).min(size - 1)];
    let _ = write!(
        out,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\nx-repo-commit: {COMMIT}\r\netag: \"{size}-{}\"\r\nConnection: close\r\n\r\n",
        body.len(),
        path.len()
    );
    let _ = out.write_all(body);
}

#[test]
fn downloads_the_train_and_test_splits_of_a_hub_dataset() {
    let parquet = assets::require(assets::known::ALPACA_PARQUET).expect("run scripts/fetch-assets.sh");
    let tokenizer_path = assets::require(assets::known::LLAMA2_TOKENIZER).expect("run scripts/fetch-assets.sh");
    let tokenizer = Tokenizer::from_file(&tokenizer_path, Some(1), vec![2]).expect("tokenizer");

    let served = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(served.path().join("data")).expect("mkdir");
    std::fs::copy(&parquet, served.path().join("data/train-00000-of-00001.parquet")).expect("copy");
    let test_rows = "{\"text\": \"<s>[INST] Say hi. [/INST] Hi! </s>\"}\n{\"text\": \"<s>[INST] Say bye. [/INST] Bye! </s>\"}\n";
    std::fs::write(served.path().join("data/test-00000-of-00001.jsonl"), test_rows).expect("write");
    std::fs::write(served.path().join("README.md"), "# card").expect("write");
    let files = ["README.md", "data/train-00000-of-00001.parquet", "data/test-00000-of-00001.jsonl"];
    let endpoint = serve(served.path().to_path_buf(), files.iter().map(|s| s.to_string()).collect());

    let cache = tempfile::tempdir().expect("cache");
    let mut options = LoadOptions::new(512);
    options.hub = HubOptions { endpoint: Some(endpoint), cache_dir: Some(cache.path().to_path_buf()), ..HubOptions::default() };
    let config = DatasetConfig { eval_source: Some(REPO.into()), ..DatasetConfig::new(REPO) };
    let loaded = load_dataset(&config, &tokenizer, &options).expect("hub dataset");

    assert_eq!(loaded.format, RowFormat::Text);
    assert_eq!((loaded.train.len(), loaded.eval.len()), (999, 2));
    assert_eq!(loaded.files.len(), 2);
    assert_eq!(std::fs::read(&loaded.files[0]).expect("downloaded"), std::fs::read(&parquet).expect("asset"));
    assert!(loaded.files[0].starts_with(cache.path()), "{}", loaded.files[0].display());
    let first_eval = tokenizer.decode(&loaded.eval[0].input_ids, true).expect("decode");
    assert!(first_eval.contains("[INST] Say hi. [/INST] Hi!"), "{first_eval}");

    let missing = load_dataset(&DatasetConfig::new("kindling-test/absent"), &tokenizer, &options).expect_err("404");
    assert!(matches!(&missing, Error::Hub { repo, .. } if repo == "kindling-test/absent"), "{missing}");
    let no_split = DatasetConfig { split: "validation".into(), ..DatasetConfig::new(REPO) };
    let err = load_dataset(&no_split, &tokenizer, &options).expect_err("no validation split");
    assert!(err.to_string().contains("no data file for split `validation`"), "{err}");
}
