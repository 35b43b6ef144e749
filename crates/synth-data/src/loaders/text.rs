//! Plain text: UTF-8 (a leading byte-order mark is dropped), or UTF-16 with a byte-order mark.

use std::path::Path;

use crate::{Error, Result};

/// Decodes a text file's bytes.
///
/// # Errors
/// [`Error::Encoding`] naming the file and the first bad byte offset.
pub fn decode(bytes: &[u8], path: &Path) -> Result<String> {
    let bad = |detail: String| Error::Encoding { path: path.to_path_buf(), detail };
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return std::str::from_utf8(rest).map(str::to_string).map_err(|e| bad(e.to_string()));
    }
    let utf16 = |rest: &[u8], le: bool| -> Result<String> {
        if !rest.len().is_multiple_of(2) {
            return Err(bad("UTF-16 text has an odd number of bytes".into()));
        }
        let units = rest.chunks_exact(2).map(|b| if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) });
        char::decode_utf16(units).collect::<std::result::Result<String, _>>().map_err(|e| bad(format!("invalid UTF-16: {e}")))
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    std::str::from_utf8(bytes).map(str::to_string).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom() {
        let p = Path::new("a.txt");
        assert_eq!(decode("héllo".as_bytes(), p).expect("utf8"), "héllo");
        assert_eq!(decode(b"\xEF\xBB\xBFhi", p).expect("bom"), "hi");
    }

    #[test]
    fn utf16_with_bom() {
        let p = Path::new("a.txt");
        let mut le = vec![0xFF, 0xFE];
        le.extend("hé".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode(&le, p).expect("le"), "hé");
        let mut be = vec![0xFE, 0xFF];
        be.extend("hé".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode(&be, p).expect("be"), "hé");
    }

    #[test]
    fn latin1_is_refused_naming_the_file() {
        let err = decode(b"caf\xE9", Path::new("docs/menu.txt")).expect_err("latin-1");
        assert!(err.to_string().contains("docs/menu.txt"), "{err}");
    }
}
