//! Raw rows as read from a file, before their shape is checked: named cells that keep what the
//! file said (text, raw bytes, nested JSON, null), plus JSON and JSONL readers.
//!
//! A row that cannot even be parsed (a JSONL line that is not JSON, a JSON array element that
//! is not an object) is kept as [`RowContent::Invalid`] so that it is reported with its index.

use std::path::Path;

use serde_json::Value;

use super::report::SkipReason;
use super::{Error, Result};

/// One field's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// An explicit null.
    Null,
    /// Text (already valid UTF-8).
    Text(String),
    /// Raw bytes (a parquet `binary` column); may or may not be UTF-8.
    Bytes(Vec<u8>),
    /// Anything else (numbers, lists, objects), as JSON.
    Json(Value),
    /// A value the reader could not convert (e.g. invalid UTF-8 inside a nested column).
    Invalid(SkipReason, String),
}

impl Cell {
    /// A JSON value as a cell (strings become [`Cell::Text`]).
    pub(crate) fn from_json(value: Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::String(s) => Self::Text(s),
            other => Self::Json(other),
        }
    }

    /// A short name of the cell's type, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Text(_) => "string",
            Self::Bytes(_) => "binary",
            Self::Json(v) => json_type(v),
            Self::Invalid(..) => "invalid",
        }
    }
}

/// The JSON type name of a value.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A row's fields, or why the row could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowContent {
    /// The row's fields in file order.
    Fields(Vec<(String, Cell)>),
    /// The row could not be parsed.
    Invalid(SkipReason, String),
}

/// One row of a file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRow {
    /// 0-based index in the file.
    pub row: usize,
    /// 1-based line number (JSONL only).
    pub line: Option<usize>,
    /// Its content.
    pub content: RowContent,
}

impl RawRow {
    /// The cell of `field`, if the row has it.
    pub(crate) fn get<'a>(fields: &'a [(String, Cell)], field: &str) -> Option<&'a Cell> {
        fields.iter().find(|(name, _)| name == field).map(|(_, cell)| cell)
    }
}

/// The rows of a JSON or JSONL file and the union of their field names (in order of first
/// appearance).
pub(crate) struct JsonRows {
    /// Field names over all rows.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<RawRow>,
}

/// Reads a `.json` file: a JSON array of objects, or (as `datasets` accepts) one object per
/// line.
///
/// # Errors
/// [`Error::Io`] when unreadable, [`Error::Json`] when the array is malformed or not UTF-8.
pub(crate) fn read_json(path: &Path, limit: Option<usize>) -> Result<JsonRows> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Ok(read_lines(&bytes, limit));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        detail: format!("not UTF-8 text (invalid byte at offset {})", e.valid_up_to()),
    })?;
    let items: Vec<Value> =
        serde_json::from_str(text).map_err(|e| Error::Json { path: path.to_path_buf(), detail: format!("invalid JSON: {e}") })?;
    let mut out = JsonRows { columns: Vec::new(), rows: Vec::with_capacity(items.len()) };
    for (row, item) in items.into_iter().take(limit.unwrap_or(usize::MAX)).enumerate() {
        let content = object_content(item, &mut out.columns);
        out.rows.push(RawRow { row, line: None, content });
    }
    Ok(out)
}

/// Reads a `.jsonl` file: one JSON object per line; blank lines are ignored.
///
/// # Errors
/// [`Error::Io`] when unreadable. Bad lines become [`RowContent::Invalid`] rows.
pub(crate) fn read_jsonl(path: &Path, limit: Option<usize>) -> Result<JsonRows> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(read_lines(&bytes, limit))
}

fn read_lines(bytes: &[u8], limit: Option<usize>) -> JsonRows {
    let mut out = JsonRows { columns: Vec::new(), rows: Vec::new() };
    let limit = limit.unwrap_or(usize::MAX);
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if out.rows.len() >= limit {
            break;
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = out.rows.len();
        let line = Some(index + 1);
        let content = match std::str::from_utf8(raw) {
            Err(e) => RowContent::Invalid(SkipReason::NotUtf8, format!("invalid UTF-8 at byte {} of the line", e.valid_up_to())),
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Ok(value) => object_content(value, &mut out.columns),
                Err(e) => RowContent::Invalid(SkipReason::BadJson, format!("not JSON: {e}")),
            },
        };
        out.rows.push(RawRow { row, line, content });
    }
    out
}

fn object_content(value: Value, columns: &mut Vec<String>) -> RowContent {
    match value {
        Value::Object(map) => {
            let fields: Vec<(String, Cell)> = map.into_iter().map(|(k, v)| (k, Cell::from_json(v))).collect();
            for (name, _) in &fields {
                if !columns.contains(name) {
                    columns.push(name.clone());
                }
            }
            RowContent::Fields(fields)
        }
        other => RowContent::Invalid(SkipReason::WrongType, format!("the row is a JSON {}, not an object", json_type(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_keeps_line_numbers_and_bad_lines() {
        let rows = read_lines(b"{\"text\": \"a\"}\n\n{oops\n[1]\n{\"text\": \"b\", \"n\": 1}\n", None);
        assert_eq!(rows.columns, vec!["text", "n"]);
        assert_eq!(rows.rows.len(), 4);
        assert_eq!(rows.rows[1].line, Some(3));
        assert!(matches!(rows.rows[1].content, RowContent::Invalid(SkipReason::BadJson, _)));
        assert!(matches!(rows.rows[2].content, RowContent::Invalid(SkipReason::WrongType, _)));
        assert_eq!((rows.rows[3].row, rows.rows[3].line), (3, Some(5)));
    }

    #[test]
    fn jsonl_reports_invalid_utf8_lines() {
        let rows = read_lines(b"{\"text\": \"a\"}\n{\"text\": \"\xff\"}\n", Some(5));
        assert!(matches!(rows.rows[1].content, RowContent::Invalid(SkipReason::NotUtf8, _)));
    }

    #[test]
    fn limit_stops_reading() {
        let rows = read_lines(b"{}\n{}\n{}\n", Some(2));
        assert_eq!(rows.rows.len(), 2);
    }

    #[test]
    fn cells_keep_types() {
        assert_eq!(Cell::from_json(Value::Null), Cell::Null);
        assert_eq!(Cell::from_json(serde_json::json!("x")), Cell::Text("x".into()));
        assert_eq!(Cell::from_json(serde_json::json!(3)).type_name(), "number");
    }
}
