//! Every loader on the sample documents of `datasets/docs/`, and the broken inputs of
//! `datasets/docs/bad/` (made by `datasets/docs/make_docs.sh`).

use std::path::PathBuf;

use synth_data::{DocumentFormat, Error, load_document};

fn docs(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/docs").join(rel)
}

#[test]
fn each_format_loads_its_sample() {
    let cases = [
        ("tides.txt", DocumentFormat::Text, ["Ocean Tides", "amphidromic points", "Bay of Fundy"]),
        ("sourdough.md", DocumentFormat::Markdown, ["Keeping a starter", "- Whole-grain rye", "4. Bake it in"]),
        ("beekeeping.pdf", DocumentFormat::Pdf, ["Keeping Honey Bees", "varroa mite", "eighteen percent"]),
        ("lighthouses.docx", DocumentFormat::Docx, ["Lighthouses and Their Lights", "Augustin Fresnel", "solar panels"]),
    ];
    for (file, format, phrases) in cases {
        let doc = load_document(&docs(file)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(doc.format, format, "{file}");
        // Extractors may break lines where the source had spaces: compare whitespace-folded.
        let folded = doc.text.split_whitespace().collect::<Vec<_>>().join(" ");
        for phrase in phrases {
            assert!(folded.contains(phrase), "{file}: missing {phrase:?} in:\n{}", doc.text);
        }
    }
}

#[test]
fn markdown_keeps_heading_text_without_markup() {
    let doc = load_document(&docs("sourdough.md")).expect("md");
    let first = doc.text.lines().next().expect("a line");
    assert_eq!(first, "Baking Sourdough Bread");
    assert!(!doc.text.contains("## "), "{}", doc.text);
    assert!(doc.text.lines().any(|l| l == "Mixing and fermentation"), "{}", doc.text);
}

#[test]
fn docx_headings_and_paragraphs_are_separate_lines() {
    let doc = load_document(&docs("lighthouses.docx")).expect("docx");
    let lines: Vec<&str> = doc.text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "Lighthouses and Their Lights");
    assert!(lines.contains(&"Lamps and lenses"), "{lines:?}");
    // Title, four headings, five paragraphs.
    assert_eq!(lines.len(), 10, "{lines:?}");
}

fn load_err(rel: &str) -> Error {
    let path = docs(rel);
    let err = load_document(&path).expect_err(rel);
    let file = path.file_name().expect("name").to_string_lossy().into_owned();
    assert!(err.to_string().contains(&file), "message of {rel} does not name the file: {err}");
    err
}

#[test]
fn broken_inputs_are_refused_naming_the_file() {
    assert!(matches!(load_err("bad/empty.txt"), Error::EmptyFile { .. }));
    assert!(matches!(load_err("bad/empty.pdf"), Error::EmptyFile { .. }));
    assert!(matches!(load_err("bad/corrupted.pdf"), Error::Corrupt { format: "PDF", .. }));
    assert!(matches!(load_err("bad/encrypted.pdf"), Error::Encrypted { format: "PDF", .. }));
    let err = load_err("bad/plain-zip.docx");
    assert!(matches!(err, Error::Corrupt { format: "DOCX", .. }) && err.to_string().contains("word/document.xml"), "{err}");
    assert!(matches!(load_err("bad/truncated.docx"), Error::Corrupt { format: "DOCX", .. }));
    assert!(matches!(load_err("bad"), Error::IsDirectory { .. }));
}

#[test]
fn a_pdf_named_docx_and_an_unknown_extension_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("report.docx");
    std::fs::copy(docs("beekeeping.pdf"), &fake).expect("copy");
    let err = load_document(&fake).expect_err("pdf as docx");
    assert!(matches!(err, Error::Corrupt { format: "DOCX", .. }) && err.to_string().contains("report.docx"), "{err}");
    let odd = dir.path().join("notes.rtf");
    std::fs::write(&odd, "{\\rtf1 hi}").expect("write");
    let err = load_document(&odd).expect_err("rtf");
    assert!(matches!(err, Error::UnsupportedFormat { .. }) && err.to_string().contains("notes.rtf"), "{err}");
}
