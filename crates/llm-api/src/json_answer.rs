//! Reading one JSON object out of a model's answer.
//!
//! Judges asked for JSON often wrap it in a Markdown code fence, put a sentence before it, or
//! leave a trailing comma. [`parse_json_answer`] tolerates exactly that much and no more: the
//! answer must still contain one JSON object that deserializes into the wanted type.

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Longest answer text kept inside an [`Error::Malformed`] (in characters).
const MAX_ANSWER_CHARS: usize = 2000;

/// Parses the first JSON object in `text` that deserializes into `T`.
///
/// Tried in order: the whole (trimmed) text; the contents of each Markdown code fence; every
/// balanced `{ ... }` span (strings and escapes respected), first with and then without
/// trailing commas before `}` or `]`.
///
/// # Errors
/// [`Error::Malformed`] with the reason of the last failed attempt and the (truncated) answer.
///
/// # Example
/// ```
/// #[derive(serde::Deserialize)]
/// struct Verdict { verdict: String }
/// let text = "Sure! Here it is:\n```json\n{\"verdict\": \"yes\"}\n```";
/// let v: Verdict = llm_api::parse_json_answer(text).unwrap();
/// assert_eq!(v.verdict, "yes");
/// ```
pub fn parse_json_answer<T: DeserializeOwned>(text: &str) -> Result<T> {
    let mut last_error = String::from("no JSON object found");
    let mut try_parse = |candidate: &str| -> Option<T> {
        match serde_json::from_str::<T>(candidate) {
            Ok(value) => Some(value),
            Err(e) => {
                last_error = e.to_string();
                None
            }
        }
    };
    let trimmed = text.trim();
    if trimmed.starts_with('{')
        && let Some(value) = try_parse(trimmed)
    {
        return Ok(value);
    }
    for block in fenced_blocks(text) {
        if let Some(value) = try_parse(block.trim()) {
            return Ok(value);
        }
    }
    for span in object_spans(text) {
        if let Some(value) = try_parse(span) {
            return Ok(value);
        }
        let cleaned = without_trailing_commas(span);
        if cleaned != span
            && let Some(value) = try_parse(&cleaned)
        {
            return Ok(value);
        }
    }
    Err(Error::Malformed {
        what: format!("JSON object ({})", short_type_name::<T>()),
        detail: last_error,
        answer: truncate(text, MAX_ANSWER_CHARS),
    })
}

/// The last path segment of `T`'s type name (`Verdicts`, not `eval::metrics::Verdicts`).
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// `text` cut to at most `max` characters, with a marker when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((byte, _)) => format!("{}… [{} more chars]", &text[..byte], text[byte..].chars().count()),
        None => text.to_string(),
    }
}

/// The contents of each ```` ``` ```` fenced block (language tag line dropped).
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        // Skip the info string (e.g. `json`) up to the end of the line.
        let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let body = &after[body_start..];
        match body.find("```") {
            Some(close) => {
                blocks.push(&body[..close]);
                rest = &body[close + 3..];
            }
            None => {
                blocks.push(body);
                break;
            }
        }
    }
    blocks
}

/// Every balanced `{ ... }` span of `text`, in order of their opening brace; braces inside
/// JSON strings are ignored.
fn object_spans(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    for (start, &b) in bytes.iter().enumerate() {
        if b != b'{' {
            continue;
        }
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        for (offset, &c) in bytes[start..].iter().enumerate() {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        spans.push(&text[start..start + offset + 1]);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    spans
}

/// `span` with commas that directly precede (modulo whitespace) a `}` or `]` removed, outside
/// strings.
fn without_trailing_commas(span: &str) -> String {
    let chars: Vec<char> = span.chars().collect();
    let mut out = String::with_capacity(span.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            out.push(c);
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        if c == ',' {
            let next = chars[i + 1..].iter().find(|ch| !ch.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Score {
        score: i64,
        reason: String,
    }

    #[test]
    fn plain_object() {
        let s: Score = parse_json_answer(r#"{"score": 7, "reason": "ok"}"#).expect("parse");
        assert_eq!(s, Score { score: 7, reason: "ok".into() });
    }

    #[test]
    fn fenced_with_prose_around() {
        let text = "Here is my evaluation:\n```json\n{\"score\": 3, \"reason\": \"a } brace\"}\n```\nThanks!";
        let s: Score = parse_json_answer(text).expect("parse");
        assert_eq!(s, Score { score: 3, reason: "a } brace".into() });
    }

    #[test]
    fn leading_prose_and_trailing_comma() {
        let text = "Sure. {\"score\": 10, \"reason\": \"good\",} done";
        let s: Score = parse_json_answer(text).expect("parse");
        assert_eq!(s.score, 10);
    }

    #[test]
    fn skips_objects_of_the_wrong_shape() {
        let text = r#"Example: {"x": 1}. Answer: {"score": 2, "reason": "r"}"#;
        let s: Score = parse_json_answer(text).expect("parse");
        assert_eq!(s.score, 2);
    }

    #[test]
    fn no_object_is_malformed_with_the_answer() {
        let err = parse_json_answer::<Score>("I refuse to answer in JSON.").expect_err("malformed");
        match err {
            Error::Malformed { what, answer, .. } => {
                assert!(what.contains("Score"), "{what}");
                assert_eq!(answer, "I refuse to answer in JSON.");
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn missing_field_is_malformed_and_named() {
        let err = parse_json_answer::<Score>(r#"{"score": 1}"#).expect_err("malformed");
        assert!(err.to_string().contains("missing field `reason`"), "{err}");
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("abcdef", 3), "abc… [3 more chars]");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
