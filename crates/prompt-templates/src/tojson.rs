//! The `tojson` filter exactly as Hugging Face defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, with no
//! HTML escaping (unlike Jinja2's and MiniJinja's own `tojson`).
//!
//! ```
//! use minijinja::Value;
//! use prompt_templates::tojson::{dumps, JsonOptions};
//!
//! let value = Value::from_serialize(serde_json::json!({"b": [1, 2.0, null], "a": "<é>"}));
//! // serde_json's map sorts keys; the separators and escapes are Python's.
//! assert_eq!(dumps(&value, &JsonOptions::default()).unwrap(), r#"{"a": "<é>", "b": [1, 2.0, null]}"#);
//! ```

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error as JinjaError, ErrorKind};

use crate::python::float_repr;

/// The options of Python's `json.dumps` that HF's `tojson` exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonOptions {
    /// Escape every non-ASCII character as `\uXXXX` (HF's default: `false`).
    pub ensure_ascii: bool,
    /// Pretty-print with this string per nesting level (`indent=4` is four spaces).
    pub indent: Option<String>,
    /// Between items: `", "` by default, `","` when indenting.
    pub item_separator: String,
    /// Between a key and its value: `": "` by default.
    pub key_separator: String,
    /// Sort object keys.
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self { ensure_ascii: false, indent: None, item_separator: ", ".to_string(), key_separator: ": ".to_string(), sort_keys: false }
    }
}

/// Serializes `value` as Python's `json.dumps` would with `options`.
///
/// # Errors
/// A MiniJinja error (surfacing as a render error) for values JSON cannot hold: undefined,
/// bytes, objects.
pub fn dumps(value: &Value, options: &JsonOptions) -> Result<String, JinjaError> {
    let mut out = String::new();
    encode(value, options, 0, &mut out)?;
    Ok(out)
}

/// The filter registered as `tojson`: `tojson(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`; `ensure_ascii` and `indent` may also be positional.
pub(crate) fn tojson_filter(value: Value, ensure_ascii: Option<Value>, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let ensure_ascii = kwargs.get::<Option<Value>>("ensure_ascii")?.or(ensure_ascii);
    let indent = kwargs.get::<Option<Value>>("indent")?.or(indent);
    let separators = kwargs.get::<Option<Value>>("separators")?;
    let sort_keys = kwargs.get::<Option<Value>>("sort_keys")?;
    kwargs.assert_all_used()?;

    let mut options = JsonOptions {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
        ..JsonOptions::default()
    };
    options.indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => {
                let n = v.as_i64().ok_or_else(|| {
                    JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: indent must be an integer or a string, not {}", v.kind()))
                })?;
                " ".repeat(n.max(0) as usize)
            }
        }),
    };
    if options.indent.is_some() {
        options.item_separator = ",".to_string();
    }
    if let Some(seps) = separators.filter(|v| !v.is_none() && !v.is_undefined()) {
        let pair: Vec<Value> = seps.try_iter()?.collect();
        match (pair.first().and_then(Value::as_str), pair.get(1).and_then(Value::as_str), pair.len()) {
            (Some(item), Some(key), 2) => {
                options.item_separator = item.to_string();
                options.key_separator = key.to_string();
            }
            _ => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be a pair of strings (item_separator, key_separator)",
                ));
            }
        }
    }
    dumps(&value, &options).map(Value::from)
}

fn not_serializable(value: &Value) -> JinjaError {
    JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: object of type {} is not JSON serializable", value.kind()))
}

fn encode(value: &Value, options: &JsonOptions, level: usize, out: &mut String) -> Result<(), JinjaError> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
        ValueKind::Number => {
            let x = f64::try_from(value.clone())?;
            out.push_str(&if x.is_nan() {
                "NaN".to_string()
            } else if x.is_infinite() {
                if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
            } else {
                float_repr(x)
            });
        }
        ValueKind::String => encode_str(value.as_str().unwrap_or_default(), options.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            encode_container(('[', ']'), items.len(), options, level, out, |i, level, out| encode(&items[i], options, level, out))?;
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key_string(&key)?, item));
            }
            if options.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            encode_container(('{', '}'), entries.len(), options, level, out, |i, level, out| {
                let (key, item) = &entries[i];
                encode_str(key, options.ensure_ascii, out);
                out.push_str(&options.key_separator);
                encode(item, options, level, out)
            })?;
        }
        _ => return Err(not_serializable(value)),
    }
    Ok(())
}

/// Writes `open`, the `len` items (each through `item`), and `close`, with Python's newlines
/// and indentation when indenting.
fn encode_container(
    (open, close): (char, char),
    len: usize,
    options: &JsonOptions,
    level: usize,
    out: &mut String,
    mut item: impl FnMut(usize, usize, &mut String) -> Result<(), JinjaError>,
) -> Result<(), JinjaError> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    let inner = level + 1;
    let newline_indent = options.indent.as_ref().map(|ind| format!("\n{}", ind.repeat(inner)));
    if let Some(nl) = &newline_indent {
        out.push_str(nl);
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&options.item_separator);
            if let Some(nl) = &newline_indent {
                out.push_str(nl);
            }
        }
        item(i, inner, out)?;
    }
    if let Some(ind) = &options.indent {
        out.push('\n');
        out.push_str(&ind.repeat(level));
    }
    out.push(close);
    Ok(())
}

/// Python converts non-string keys: `True` → `"true"`, `None` → `"null"`, numbers → their text.
fn key_string(key: &Value) -> Result<String, JinjaError> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::None => "null".to_string(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
        ValueKind::Number if key.is_integer() => key.to_string(),
        ValueKind::Number => float_repr(f64::try_from(key.clone())?),
        _ => {
            return Err(JinjaError::new(
                ErrorKind::InvalidOperation,
                format!("tojson: keys must be str, int, float, bool or None, not {}", key.kind()),
            ));
        }
    })
}

fn encode_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> Value {
        serde_json::from_str(json).expect("test JSON")
    }

    // Expected strings are what Python's json.dumps prints for the same data.
    #[test]
    fn compact_keeps_key_order_and_python_separators() {
        let v = value(r#"{"z": 1, "a": [true, null, 0.5, 1e16, "x\ny"], "m": {}}"#);
        assert_eq!(dumps(&v, &JsonOptions::default()).expect("dumps"), r#"{"z": 1, "a": [true, null, 0.5, 1e+16, "x\ny"], "m": {}}"#);
    }

    #[test]
    fn indent_matches_python_layout() {
        let v = value(r#"{"k": "é", "a": [1, {}], "z": []}"#);
        let options = JsonOptions { indent: Some("  ".into()), item_separator: ",".into(), ..JsonOptions::default() };
        assert_eq!(dumps(&v, &options).expect("dumps"), "{\n  \"k\": \"é\",\n  \"a\": [\n    1,\n    {}\n  ],\n  \"z\": []\n}");
    }

    #[test]
    fn ensure_ascii_escapes_like_python() {
        let v = Value::from("é😀\u{7f}<&>'");
        let options = JsonOptions { ensure_ascii: true, ..JsonOptions::default() };
        assert_eq!(dumps(&v, &options).expect("dumps"), r#""\u00e9\ud83d\ude00\u007f<&>'""#);
        assert_eq!(dumps(&Value::from("\u{1}\u{8}"), &JsonOptions::default()).expect("dumps"), r#""\u0001\b""#);
    }

    #[test]
    fn undefined_is_not_serializable() {
        let err = dumps(&Value::UNDEFINED, &JsonOptions::default()).expect_err("undefined");
        assert!(err.to_string().contains("not JSON serializable"), "{err}");
    }
}
