//! Row shapes: detecting which one a file has, the fields each needs, and checking one row
//! (present, non-empty, UTF-8, right type) into a [`Sample`].

use llm_api::{Message, Role};
use prompt_templates::AlpacaRow;
use serde_json::Value;

use super::config::RowFormat;
use super::report::SkipReason;
use super::rows::{Cell, RawRow, json_type};

/// A checked row, before templating and tokenization.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sample {
    /// A language-modeling text.
    Text(String),
    /// An Alpaca row.
    Alpaca(AlpacaRow),
    /// A conversation ending with the assistant's answer.
    Messages(Vec<Message>),
}

/// Why a row is not usable.
pub(crate) type Problem = (SkipReason, String);

/// The shape `columns` has: `messages` (trl treats a row with messages as conversational even
/// when it also has a text field), then the text field, then `instruction` + `output`.
pub(crate) fn detect(columns: &[String], text_field: &str) -> Option<RowFormat> {
    let has = |name: &str| columns.iter().any(|c| c == name);
    if has("messages") {
        Some(RowFormat::Messages)
    } else if has(text_field) {
        Some(RowFormat::Text)
    } else if has("instruction") && has("output") {
        Some(RowFormat::Alpaca)
    } else {
        None
    }
}

/// The fields a shape cannot do without.
pub(crate) fn required(format: RowFormat, text_field: &str) -> Vec<String> {
    match format {
        RowFormat::Text => vec![text_field.to_string()],
        RowFormat::Alpaca => vec!["instruction".into(), "output".into()],
        RowFormat::Messages => vec!["messages".into()],
        RowFormat::Auto => Vec::new(),
    }
}

/// The fields a shape reads (required and optional) that `columns` has.
pub(crate) fn wanted(format: RowFormat, text_field: &str, columns: &[String]) -> Vec<String> {
    let mut fields = required(format, text_field);
    if format == RowFormat::Alpaca {
        fields.extend(["input".to_string(), "system".to_string()]);
    }
    fields.retain(|f| columns.contains(f));
    fields
}

/// Checks one row.
pub(crate) fn extract(format: RowFormat, text_field: &str, fields: &[(String, Cell)]) -> Result<Sample, Problem> {
    match format {
        RowFormat::Text | RowFormat::Auto => Ok(Sample::Text(text(fields, text_field, true)?.unwrap_or_default())),
        RowFormat::Alpaca => {
            let instruction = text(fields, "instruction", true)?.unwrap_or_default();
            let output = text(fields, "output", true)?.unwrap_or_default();
            let input = text(fields, "input", false)?.unwrap_or_default();
            let system = text(fields, "system", false)?.filter(|s| !s.is_empty());
            Ok(Sample::Alpaca(AlpacaRow { instruction, input, output, system }))
        }
        RowFormat::Messages => messages(fields).map(Sample::Messages),
    }
}

/// The text of `field`: required fields must be present and non-blank; optional ones may be
/// missing or null (`Ok(None)`).
fn text(fields: &[(String, Cell)], field: &str, required: bool) -> Result<Option<String>, Problem> {
    let value = match RawRow::get(fields, field) {
        None | Some(Cell::Null) if !required => return Ok(None),
        None => return Err((SkipReason::MissingField, format!("no `{field}` field"))),
        Some(Cell::Null) => return Err((SkipReason::MissingField, format!("`{field}` is null"))),
        Some(Cell::Text(s)) => s.clone(),
        Some(Cell::Bytes(b)) => String::from_utf8(b.clone()).map_err(|e| {
            (SkipReason::NotUtf8, format!("`{field}` is not UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()))
        })?,
        Some(Cell::Invalid(reason, detail)) => return Err((*reason, format!("`{field}`: {detail}"))),
        Some(other @ Cell::Json(_)) => {
            return Err((SkipReason::WrongType, format!("`{field}` is a {}, expected a string", other.type_name())));
        }
    };
    if required && value.trim().is_empty() {
        return Err((SkipReason::Empty, format!("`{field}` is empty")));
    }
    Ok(Some(value))
}

fn messages(fields: &[(String, Cell)]) -> Result<Vec<Message>, Problem> {
    let items = match RawRow::get(fields, "messages") {
        None => return Err((SkipReason::MissingField, "no `messages` field".into())),
        Some(Cell::Null) => return Err((SkipReason::MissingField, "`messages` is null".into())),
        Some(Cell::Json(Value::Array(items))) => items,
        Some(Cell::Invalid(reason, detail)) => return Err((*reason, format!("`messages`: {detail}"))),
        Some(other) => {
            return Err((SkipReason::WrongType, format!("`messages` is a {}, expected a list of {{role, content}}", other.type_name())));
        }
    };
    if items.is_empty() {
        return Err((SkipReason::Empty, "`messages` is empty".into()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let get = |key: &str| match item.get(key) {
                None | Some(Value::Null) => Err((SkipReason::MissingField, format!("`messages[{i}].{key}` is missing"))),
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(other) => Err((SkipReason::WrongType, format!("`messages[{i}].{key}` is a {}, expected a string", json_type(other)))),
            };
            if !item.is_object() {
                return Err((SkipReason::WrongType, format!("`messages[{i}]` is a {}, expected an object", json_type(item))));
            }
            let role = match get("role")? {
                "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err((SkipReason::WrongType, format!("`messages[{i}].role` is `{other}`, expected system, user or assistant")));
                }
            };
            Ok(Message { role, content: get("content")?.to_string() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(pairs: &[(&str, Cell)]) -> Vec<(String, Cell)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn detection_order() {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(detect(&cols(&["text", "messages"]), "text"), Some(RowFormat::Messages));
        assert_eq!(detect(&cols(&["instruction", "output", "text"]), "text"), Some(RowFormat::Text));
        assert_eq!(detect(&cols(&["messages"]), "text"), Some(RowFormat::Messages));
        assert_eq!(detect(&cols(&["instruction", "input", "output"]), "text"), Some(RowFormat::Alpaca));
        assert_eq!(detect(&cols(&["prompt"]), "text"), None);
        assert_eq!(detect(&cols(&["body"]), "body"), Some(RowFormat::Text));
    }

    #[test]
    fn text_rows_are_checked() {
        let ok = extract(RowFormat::Text, "text", &row(&[("text", Cell::Text("hi".into()))]));
        assert_eq!(ok, Ok(Sample::Text("hi".into())));
        let cases = [
            (row(&[]), SkipReason::MissingField),
            (row(&[("text", Cell::Null)]), SkipReason::MissingField),
            (row(&[("text", Cell::Text("  \n".into()))]), SkipReason::Empty),
            (row(&[("text", Cell::Bytes(vec![b'a', 0xc3]))]), SkipReason::NotUtf8),
            (row(&[("text", Cell::Json(json!(5)))]), SkipReason::WrongType),
        ];
        for (fields, reason) in cases {
            let err = extract(RowFormat::Text, "text", &fields).expect_err("bad row");
            assert_eq!(err.0, reason, "{}", err.1);
        }
    }

    #[test]
    fn alpaca_input_is_optional() {
        let fields = row(&[("instruction", Cell::Text("i".into())), ("output", Cell::Text("o".into())), ("input", Cell::Null)]);
        assert_eq!(extract(RowFormat::Alpaca, "text", &fields), Ok(Sample::Alpaca(AlpacaRow::new("i", "", "o"))));
        let fields = row(&[("instruction", Cell::Text("i".into())), ("output", Cell::Text("".into()))]);
        assert_eq!(extract(RowFormat::Alpaca, "text", &fields).expect_err("empty").0, SkipReason::Empty);
    }

    #[test]
    fn messages_are_checked() {
        let good = row(&[("messages", Cell::Json(json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])))]);
        assert_eq!(extract(RowFormat::Messages, "text", &good), Ok(Sample::Messages(vec![Message::user("q"), Message::assistant("a")])));
        let bad_role = row(&[("messages", Cell::Json(json!([{"role": "tool", "content": "q"}])))]);
        let err = extract(RowFormat::Messages, "text", &bad_role).expect_err("role");
        assert!(err.1.contains("messages[0].role"), "{}", err.1);
        let no_content = row(&[("messages", Cell::Json(json!([{"role": "user"}])))]);
        assert_eq!(extract(RowFormat::Messages, "text", &no_content).expect_err("content").0, SkipReason::MissingField);
        let text = row(&[("messages", Cell::Text("[]".into()))]);
        assert_eq!(extract(RowFormat::Messages, "text", &text).expect_err("type").0, SkipReason::WrongType);
    }
}
