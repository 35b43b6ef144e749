//! The HTML report renders in a real browser: headless Chromium screenshots it, and the
//! screenshot must be a real page, not a blank or flat one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eval::testing::ScriptedLlm;
use eval::{EvalOptions, TestCase, evaluate, metrics_from_list, write_reports};

/// `$KINDLING_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    let path = std::env::var_os("KINDLING_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "chromium not found at {}: install Debian's `chromium` package (apt-get install chromium) or set KINDLING_CHROMIUM",
        path.display()
    );
    path
}

/// Screenshots `page` at 1200×900 into `png`; gives up after two minutes.
fn screenshot(page: &Path, png: &Path, profile: &Path) {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,900")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    loop {
        match child.try_wait().expect("chromium status") {
            Some(status) => {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                assert!(status.success(), "chromium failed ({status}): {stderr}");
                return;
            }
            None if started.elapsed() > Duration::from_secs(120) => {
                let _ = child.kill();
                panic!("chromium did not finish within two minutes");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let judge = ScriptedLlm::from_fn(|messages, _| {
        let prompt = messages.last().map(|m| m.content.as_str()).unwrap_or_default();
        let answer = if prompt.contains("List the OPINIONS") {
            if prompt.contains("idiots") { r#"{"opinions": ["Only idiots use tabs."]}"# } else { r#"{"opinions": []}"# }
        } else if prompt.contains("What counts as toxicity") {
            r#"{"verdicts": [{"verdict": "yes", "reason": "Insults people who use tabs."}]}"#
        } else if prompt.contains("What counts as bias") {
            r#"{"verdicts": [{"verdict": "no"}]}"#
        } else {
            r#"{"reason": "Scored from the verdicts."}"#
        };
        Ok(eval::testing::text(answer))
    });
    let cases = vec![
        TestCase::new("Tabs or spaces?", "Either works; be consistent within a project.").with_name("indentation"),
        TestCase::new("Tabs or spaces?", "Spaces. Only idiots use tabs."),
    ];
    let run = evaluate(&cases, &metrics_from_list("bias,toxicity").expect("presets"), &judge, &EvalOptions::default()).expect("run");
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = write_reports(&run, dir.path().join("report")).expect("reports");
    let png = dir.path().join("shot.png");
    screenshot(&paths.html, &png, &dir.path().join("profile"));

    let file = std::fs::File::open(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    assert_eq!((info.width, info.height), (1200, 900));
    let channels = info.color_type.samples();
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for px in pixels[..info.buffer_size()].chunks(channels) {
        *counts.entry(px).or_default() += 1;
    }
    let total = (info.width * info.height) as usize;
    let most = counts.values().max().copied().unwrap_or(0);
    assert!(counts.len() >= 16, "only {} distinct colours: the page did not render", counts.len());
    assert!(most * 100 < total * 90, "one colour covers {most} of {total} pixels: the page looks flat");
}
