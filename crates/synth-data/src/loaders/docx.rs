//! DOCX → plain text: the runs of `word/document.xml` (`<w:t>`), with `<w:tab/>` as a tab,
//! `<w:br/>`/`<w:cr/>` as a line break and each paragraph (`</w:p>`) ending a line.
//!
//! A password-protected DOCX is not a zip but an OLE compound file holding an
//! `EncryptedPackage` stream; that is reported as encrypted. Any other non-zip, or a zip without
//! `word/document.xml`, is not a DOCX.

use std::io::Read;
use std::path::Path;

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::{Error, Result};

/// The signature of an OLE compound file (encrypted OOXML, legacy `.doc`).
const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Extracts the body text of a DOCX.
///
/// # Errors
/// [`Error::Encrypted`] or [`Error::Corrupt`], naming the file.
pub fn extract(bytes: &[u8], path: &Path) -> Result<String> {
    let corrupt = |detail: String| Error::Corrupt { path: path.to_path_buf(), format: "DOCX", detail };
    if bytes.starts_with(&OLE_MAGIC) {
        let marker: Vec<u8> = "EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes).collect();
        if bytes.windows(marker.len()).any(|w| w == marker.as_slice()) {
            return Err(Error::Encrypted { path: path.to_path_buf(), format: "DOCX" });
        }
        return Err(corrupt("an OLE compound file (a legacy .doc?), not a DOCX zip".into()));
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| corrupt(format!("not a zip archive: {e}")))?;
    let mut entry =
        archive.by_name("word/document.xml").map_err(|_| corrupt("zip archive has no word/document.xml, so it is not a DOCX".into()))?;
    let mut xml = String::new();
    entry.read_to_string(&mut xml).map_err(|e| corrupt(format!("word/document.xml: {e}")))?;
    body_text(&xml).map_err(|e| corrupt(format!("word/document.xml: {e}")))
}

/// The text of a WordprocessingML body.
fn body_text(xml: &str) -> std::result::Result<String, String> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    let mut in_text = false;
    loop {
        let event = reader.read_event().map_err(|e| format!("XML error at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) if e.name().as_ref() == "w:t" => in_text = true,
            Event::End(e) => match e.name().as_ref() {
                "w:t" => in_text = false,
                "w:p" => out.push('\n'),
                _ => {}
            },
            Event::Empty(e) => match e.name().as_ref() {
                "w:tab" => out.push('\t'),
                "w:br" | "w:cr" => out.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_text => out.push_str(&t.xml10_content()),
            Event::CData(t) if in_text => out.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => {
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => out.push(c),
                        _ => {
                            return Err(format!("bad character reference &{};", r.xml10_content()));
                        }
                    }
                } else {
                    let name = r.xml10_content();
                    let c = match name.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(format!("unknown entity &{other};")),
                    };
                    out.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    // One blank line between paragraphs reads better and chunks the same.
    Ok(out.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_with(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            for (name, body) in entries {
                w.start_file(*name, zip::write::SimpleFileOptions::default()).expect("start");
                w.write_all(body.as_bytes()).expect("write");
            }
            w.finish().expect("finish");
        }
        buf.into_inner()
    }

    #[test]
    fn runs_tabs_breaks_and_entities() {
        let xml = r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body>
            <w:p><w:r><w:t>Salt &amp; </w:t></w:r><w:r><w:t xml:space="preserve">pepper</w:t><w:tab/><w:t>&#233;</w:t></w:r></w:p>
            <w:p><w:r><w:t>line</w:t><w:br/><w:t>two</w:t></w:r></w:p></w:body></w:document>"#;
        let bytes = zip_with(&[("word/document.xml", xml)]);
        let text = extract(&bytes, Path::new("a.docx")).expect("docx");
        assert_eq!(text, "Salt & pepper\té\n\nline\n\ntwo");
    }

    #[test]
    fn zip_without_document_is_not_docx() {
        let bytes = zip_with(&[("hello.txt", "hi")]);
        let err = extract(&bytes, Path::new("plain.docx")).expect_err("no document.xml");
        assert!(err.to_string().contains("plain.docx") && err.to_string().contains("word/document.xml"), "{err}");
    }

    #[test]
    fn ole_container_with_encrypted_package_is_encrypted() {
        let mut bytes = OLE_MAGIC.to_vec();
        bytes.extend(vec![0u8; 64]);
        bytes.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
        let err = extract(&bytes, Path::new("secret.docx")).expect_err("encrypted");
        assert!(matches!(err, Error::Encrypted { .. }) && err.to_string().contains("secret.docx"), "{err}");
    }

    #[test]
    fn broken_xml_is_corrupt() {
        let bytes = zip_with(&[("word/document.xml", "<w:document><w:p><w:t>oops</w:x>")]);
        let err = extract(&bytes, Path::new("bad.docx")).expect_err("bad xml");
        assert!(matches!(err, Error::Corrupt { .. }) && err.to_string().contains("bad.docx"), "{err}");
    }
}
