//! Test cases and goldens on disk: JSONL (one object per line) or one JSON array.
//!
//! The format is chosen by content: a file whose first non-blank character is `[` is a JSON
//! array, anything else is JSONL (blank lines skipped). Every refusal names the file, the
//! line (JSONL) or item (array), and the field.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::fsutil::write_atomic;
use crate::{Error, Golden, Result, TestCase};

/// Where a record sits in its file, for error messages.
struct Location<'a> {
    path: &'a Path,
    at: String,
}

impl Location<'_> {
    fn error(&self, field: Option<&str>, message: String) -> Error {
        Error::Dataset { path: self.path.to_path_buf(), at: self.at.clone(), field: field.map(str::to_string), message }
    }

    fn required_str(&self, obj: &Map<String, Value>, field: &str) -> Result<String> {
        match obj.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) => Err(self.error(Some(field), format!("required field `{field}` is missing"))),
            Some(other) => Err(self.error(Some(field), format!("field `{field}` must be a string, got {}", kind(other)))),
        }
    }

    fn optional_str(&self, obj: &Map<String, Value>, field: &str) -> Result<Option<String>> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.error(Some(field), format!("field `{field}` must be a string, got {}", kind(other)))),
        }
    }

    /// A list of strings; a single string is taken as a one-item list.
    fn optional_list(&self, obj: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error(Some(field), format!("field `{field}[{i}]` must be a string, got {}", kind(other)))),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(self.error(Some(field), format!("field `{field}` must be a list of strings, got {}", kind(other)))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn as_object(loc: Location<'_>, value: Value) -> Result<(Location<'_>, Map<String, Value>)> {
    match value {
        Value::Object(map) => Ok((loc, map)),
        other => Err(loc.error(None, format!("expected a JSON object, got {}", kind(&other)))),
    }
}

/// Reads every record of `path` as a JSON object with its location.
fn records(path: &Path) -> Result<Vec<(Location<'_>, Map<String, Value>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    if text.trim_start().starts_with('[') {
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::Dataset {
            path: path.to_path_buf(),
            at: format!("line {}", e.line()),
            field: None,
            message: format!("invalid JSON: {e}"),
        })?;
        let Value::Array(items) = value else {
            return Err(Error::Dataset {
                path: path.to_path_buf(),
                at: "top level".into(),
                field: None,
                message: "expected a JSON array of objects".into(),
            });
        };
        for (i, item) in items.into_iter().enumerate() {
            out.push(as_object(Location { path, at: format!("item {}", i + 1) }, item)?);
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let loc = Location { path, at: format!("line {}", i + 1) };
            let value: Value = serde_json::from_str(line).map_err(|e| loc.error(None, format!("invalid JSON: {e}")))?;
            out.push(as_object(loc, value)?);
        }
    }
    Ok(out)
}

/// Loads test cases; `input` and `actual_output` are required.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Dataset`] naming the line or item and
/// the field for invalid JSON, a missing required field, or a field of the wrong type.
pub fn load_test_cases(path: impl AsRef<Path>) -> Result<Vec<TestCase>> {
    let path = path.as_ref();
    records(path)?
        .into_iter()
        .map(|(loc, obj)| {
            Ok(TestCase {
                input: loc.required_str(&obj, "input")?,
                actual_output: loc.required_str(&obj, "actual_output")?,
                expected_output: loc.optional_str(&obj, "expected_output")?,
                context: loc.optional_list(&obj, "context")?,
                retrieval_context: loc.optional_list(&obj, "retrieval_context")?,
                name: loc.optional_str(&obj, "name")?,
            })
        })
        .collect()
}

/// Loads goldens; only `input` is required.
///
/// # Errors
/// As [`load_test_cases`].
pub fn load_goldens(path: impl AsRef<Path>) -> Result<Vec<Golden>> {
    let path = path.as_ref();
    records(path)?
        .into_iter()
        .map(|(loc, obj)| {
            Ok(Golden {
                input: loc.required_str(&obj, "input")?,
                actual_output: loc.optional_str(&obj, "actual_output")?,
                expected_output: loc.optional_str(&obj, "expected_output")?,
                context: loc.optional_list(&obj, "context")?,
                retrieval_context: loc.optional_list(&obj, "retrieval_context")?,
                name: loc.optional_str(&obj, "name")?,
                source_file: loc.optional_str(&obj, "source_file")?,
            })
        })
        .collect()
}

/// Writes records as JSONL, atomically.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn save_jsonl<T: Serialize>(path: impl AsRef<Path>, records: &[T]) -> Result<()> {
    let path = path.as_ref();
    let mut text = String::new();
    for r in records {
        let line = serde_json::to_string(r).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        text.push_str(&line);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write fixture");
        path
    }

    #[test]
    fn jsonl_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = vec![
            TestCase::new("q1", "a1").with_expected_output("e1").with_name("first"),
            TestCase::new("q2", "a2").with_context(vec!["c".into()]),
        ];
        let path = dir.path().join("cases.jsonl");
        save_jsonl(&path, &cases).expect("save");
        assert_eq!(load_test_cases(&path).expect("load"), cases);
    }

    #[test]
    fn json_array_and_single_string_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "cases.json", r#"[{"input": "q", "actual_output": "a", "context": "only one"}]"#);
        let cases = load_test_cases(&path).expect("load");
        assert_eq!(cases[0].context, Some(vec!["only one".to_string()]));
    }

    #[test]
    fn missing_field_names_file_line_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "cases.jsonl", "{\"input\": \"q\", \"actual_output\": \"a\"}\n\n{\"input\": \"q2\"}\n");
        let err = load_test_cases(&path).expect_err("missing actual_output");
        match &err {
            Error::Dataset { path: p, at, field, .. } => {
                assert_eq!(p, &path);
                assert_eq!(at, "line 3");
                assert_eq!(field.as_deref(), Some("actual_output"));
            }
            other => panic!("expected Dataset error, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("cases.jsonl: line 3: required field `actual_output` is missing"), "{text}");
    }

    #[test]
    fn wrong_types_and_bad_json_are_located() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "a.json", r#"[{"input": "q", "actual_output": "a"}, {"input": 3, "actual_output": "a"}]"#);
        let err = load_test_cases(&path).expect_err("bad type").to_string();
        assert!(err.contains("item 2") && err.contains("`input` must be a string, got a number"), "{err}");

        let path = write(&dir, "b.jsonl", "{\"input\": \"q\", \"actual_output\": \"a\", \"context\": [1]}\n");
        let err = load_test_cases(&path).expect_err("bad list").to_string();
        assert!(err.contains("line 1") && err.contains("`context[0]`"), "{err}");

        let path = write(&dir, "c.jsonl", "{\"input\": \"q\",\n");
        let err = load_test_cases(&path).expect_err("bad json").to_string();
        assert!(err.contains("line 1") && err.contains("invalid JSON"), "{err}");

        let err = load_test_cases(dir.path().join("absent.jsonl")).expect_err("absent").to_string();
        assert!(err.contains("absent.jsonl"), "{err}");
    }

    #[test]
    fn goldens_need_only_an_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "g.jsonl", "{\"input\": \"q\", \"source_file\": \"doc.pdf\", \"extra\": 1}\n");
        let goldens = load_goldens(&path).expect("load");
        assert_eq!(goldens[0].source_file.as_deref(), Some("doc.pdf"));
        let path = write(&dir, "h.jsonl", "{\"expected_output\": \"e\"}\n");
        let err = load_goldens(&path).expect_err("no input").to_string();
        assert!(err.contains("h.jsonl: line 1: required field `input` is missing"), "{err}");
    }
}
