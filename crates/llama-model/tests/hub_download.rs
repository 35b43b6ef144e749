//! Hub downloads through `hf-hub` against a local server that speaks the hub's file protocol
//! (never the internet): `/api/models/{id}/revision/{rev}` and `/{id}/resolve/{rev}/{file}`
//! with `Range` requests and the `x-repo-commit`/`etag` headers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::Device;
use llama_model::weights::hub::{HubOptions, download_model};
use llama_model::{OpenOptions, pretrained};

const REPO: &str = "kindling-test/tiny-gqa";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dir = Arc::new(dir);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut range = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = v
                            .trim()
                            .split('-')
                            .next()
                            .and_then(|s| s.parse::<usize>().ok())
                            .map(|start| (start, v.trim().ends_with("-0") && start == 0));
                    }
                }
                let mut out = stream;
                let files: Vec<String> =
                    std::fs::read_dir(&*dir).expect("dir").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                if path.starts_with(&format!("/api/models/{REPO}")) {
                    let siblings: Vec<_> = files.iter().map(|f| serde_json::json!({"rfilename": f})).collect();
                    let body = serde_json::json!({"id": REPO, "sha": COMMIT, "siblings": siblings}).to_string();
                    let _ = write!(
                        out,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                let prefix = format!("/{REPO}/resolve/main/");
                let Some(file) = path.strip_prefix(&prefix).filter(|f| files.iter().any(|x| x == f)) else {
                    let _ = write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                };
                let mut bytes = Vec::new();
                std::fs::File::open(dir.join(file)).expect("open").read_to_end(&mut bytes).expect("read");
                let size = bytes.len();
                let (start, probe) = range.unwrap_or((0, false));
                let end = if probe { 0 } else { size - 1 };
                let body = &bytes[start..=end.max(start).min(size - 1)];
                let body = if probe { &bytes[..1] } else { body };
                let _ = write!(
                    out,
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{size}\r\nx-repo-commit: {COMMIT}\r\netag: \"{file}-{size}\"\r\nConnection: close\r\n\r\n",
                    body.len(),
                    start + body.len() - 1
                );
                let _ = out.write_all(body);
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn downloads_a_model_folder_and_loads_it() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_parity/gqa");
    let served = tempfile::tempdir().expect("tmp");
    for f in ["config.json", "model.safetensors", "generation_config.json"] {
        std::fs::copy(fixture.join(f), served.path().join(f)).expect("copy");
    }
    let tok = assets::require(assets::known::SMOLLM2_TOKENIZER).expect("run scripts/fetch-assets.sh");
    std::fs::copy(tok, served.path().join("tokenizer.json")).expect("copy tokenizer");
    let endpoint = serve(served.path().to_path_buf());
    let cache = tempfile::tempdir().expect("cache");
    let hub = HubOptions { endpoint: Some(endpoint), cache_dir: Some(cache.path().to_path_buf()), ..HubOptions::default() };
    let local = download_model(REPO, &hub).expect("download");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(std::fs::read(local.join(f)).expect("downloaded"), std::fs::read(served.path().join(f)).expect("served"), "{f}");
    }
    let mut options = OpenOptions::new(&Device::flex());
    options.hub = hub;
    let model = pretrained::open(REPO, &options).expect("open by hub id");
    assert_eq!(model.model.config.num_kv_heads, 2);

    let missing = download_model("kindling-test/absent", &options.hub).expect_err("404");
    assert!(missing.to_string().contains("kindling-test/absent"), "{missing}");
}
