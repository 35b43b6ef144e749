//! Asking a model for JSON and reading its answer robustly.
//!
//! Small models wrap JSON in prose or code fences, add trailing commas, or quote numbers. The
//! reader tries, in order: the whole answer, the inside of a ```` ``` ```` fence, then every
//! `{`/`[` position (first complete value wins), each also with trailing commas removed. A
//! value that still does not have the expected shape is re-asked (bounded), then reported as
//! [`llm_api::Error::Malformed`] naming what was expected.
//!
//! Each request also carries the expected shape as a JSON Schema ([`schema_of_shape`]), so that
//! models that support structured outputs (kindling's local models, OpenAI's API) can only answer
//! in that shape.

use llm_api::{CompletionOptions, Llm, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{Error, Result};

/// Longest piece of a bad answer quoted in an error.
const QUOTE_LIMIT: usize = 600;

/// Parses the first JSON value in `answer` that deserializes into `T`.
///
/// # Errors
/// A message saying why nothing fit.
pub fn parse_lenient<T: DeserializeOwned>(answer: &str) -> std::result::Result<T, String> {
    let mut last_error = "no JSON object or array found".to_string();
    for candidate in candidates(answer) {
        for text in [candidate.clone(), strip_trailing_commas(&candidate)] {
            let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
            match stream.next() {
                Some(Ok(value)) => match serde_json::from_value::<T>(value) {
                    Ok(parsed) => return Ok(parsed),
                    Err(e) => last_error = e.to_string(),
                },
                Some(Err(e)) => last_error = e.to_string(),
                None => {}
            }
        }
    }
    Err(last_error)
}

/// Slices of `answer` that may hold the JSON value, most likely first.
fn candidates(answer: &str) -> Vec<String> {
    let trimmed = answer.trim();
    let mut out = vec![trimmed.to_string()];
    if let Some(after) = trimmed.split_once("```").map(|(_, rest)| rest) {
        let body = after.strip_prefix("json").or_else(|| after.strip_prefix("JSON")).unwrap_or(after);
        let body = body.split("```").next().unwrap_or(body);
        out.push(body.trim().to_string());
    }
    for (i, c) in trimmed.char_indices() {
        if c == '{' || c == '[' {
            out.push(trimmed[i..].to_string());
        }
    }
    out
}

/// Removes commas that directly precede `}` or `]` (outside strings).
fn strip_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some('}') | Some(']')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// A score in `[0, 1]`: accepts a number or a numeric string, clamps out-of-range values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let x = match &v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().trim_end_matches('%').parse::<f64>().ok(),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() => Ok(Score(x.clamp(0.0, 1.0))),
            _ => Err(serde::de::Error::custom(format!("expected a score between 0 and 1, found {v}"))),
        }
    }
}

/// The JSON Schema of a shape written as JSON with bare type names, e.g.
/// `{"data": [{"input": string}]}`: objects list their keys (all required, in that order),
/// arrays their one item shape; `string`, `number`, `integer` and `boolean` are the leaves.
///
/// # Errors
/// A shape that is not of that form (a message saying where).
pub fn schema_of_shape(shape: &str) -> std::result::Result<Value, String> {
    // Quote the bare type names so that the shape parses as JSON, keeping key order.
    let mut quoted = String::with_capacity(shape.len() + 16);
    let (mut in_string, mut escape, mut word) = (false, false, String::new());
    for c in shape.chars() {
        if in_string {
            in_string = c != '"' || escape;
            escape = c == '\\' && !escape;
            quoted.push(c);
        } else if c.is_ascii_alphabetic() {
            word.push(c);
        } else {
            if !word.is_empty() {
                quoted.push_str(&format!("\"{}\"", std::mem::take(&mut word)));
            }
            in_string = c == '"';
            quoted.push(c);
        }
    }
    if !word.is_empty() {
        quoted.push_str(&format!("\"{word}\""));
    }
    let mut de = serde_json::Deserializer::from_str(&quoted);
    let tree = Shape::deserialize(&mut de).map_err(|e| format!("shape {shape}: {e}"))?;
    tree.schema().map_err(|e| format!("shape {shape}: {e}"))
}

/// A shape as parsed, keys in their written order.
enum Shape {
    Leaf(String),
    Array(Vec<Shape>),
    Object(Vec<(String, Shape)>),
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object, an array or a type name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Shape, E> {
                Ok(Shape::Leaf(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Shape, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Shape::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Shape, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Shape>()? {
                    fields.push((k, v));
                }
                Ok(Shape::Object(fields))
            }
        }
        d.deserialize_any(V)
    }
}

impl Shape {
    fn schema(&self) -> std::result::Result<Value, String> {
        Ok(match self {
            Shape::Leaf(t) if ["string", "number", "integer", "boolean"].contains(&t.as_str()) => serde_json::json!({"type": t}),
            Shape::Leaf(t) => return Err(format!("`{t}` is not a type name (string, number, integer, boolean)")),
            Shape::Array(items) => match items.as_slice() {
                [item] => serde_json::json!({"type": "array", "items": item.schema()?}),
                _ => return Err("an array shape lists exactly one item shape".into()),
            },
            Shape::Object(fields) => {
                let mut props = serde_json::Map::new();
                for (k, v) in fields {
                    props.insert(k.clone(), v.schema()?);
                }
                let required: Vec<&String> = fields.iter().map(|(k, _)| k).collect();
                serde_json::json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
            }
        })
    }
}

/// Sends prompts to one model with fixed sampling options and a bounded JSON retry budget.
pub(crate) struct Asker<'a> {
    pub llm: &'a dyn Llm,
    pub options: CompletionOptions,
    pub max_json_retries: usize,
}

impl Asker<'_> {
    /// One plain-text answer, trimmed.
    pub fn text(&self, stage: &str, prompt: String) -> Result<String> {
        let messages = [Message::user(prompt)];
        let completion = self.llm.complete(&messages, &self.options).map_err(|e| Error::llm(stage, e))?;
        Ok(completion.text.trim().to_string())
    }

    /// A JSON answer of shape `T`; `shape` describes it (e.g. `{"score": number}`) for the
    /// retry message and the error.
    pub fn json<T: DeserializeOwned>(&self, stage: &str, prompt: String, shape: &str) -> Result<T> {
        let mut messages = vec![Message::user(prompt)];
        let schema = schema_of_shape(shape).unwrap_or_else(|e| panic!("a stage's shape must be well formed: {e}"));
        let mut options = CompletionOptions { json_mode: true, json_schema: Some(schema), ..self.options.clone() };
        let base_seed = options.seed;
        let mut attempt = 0;
        loop {
            let completion = self.llm.complete(&messages, &options).map_err(|e| Error::llm(stage, e))?;
            match parse_lenient::<T>(&completion.text) {
                Ok(parsed) => return Ok(parsed),
                Err(detail) if attempt >= self.max_json_retries => {
                    let answer: String = completion.text.chars().take(QUOTE_LIMIT).collect();
                    let source = llm_api::Error::Malformed { what: format!("JSON {shape}"), detail, answer };
                    return Err(Error::llm(format!("{stage} (after {} attempts)", attempt + 1), source));
                }
                Err(detail) => {
                    tracing::debug!(stage, attempt, %detail, "answer is not the JSON asked for; asking again");
                    attempt += 1;
                    messages.push(Message::assistant(completion.text));
                    messages.push(Message::user(format!(
                        "That answer could not be read ({detail}). Reply with only a JSON value of the form {shape}, nothing else."
                    )));
                    options.seed = base_seed.map(|s| s.wrapping_add(attempt as u64));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_become_strict_schemas_in_key_order() {
        let s = schema_of_shape(r#"{"data": [{"input": string}], "score": number}"#).expect("shape");
        assert_eq!(
            s,
            serde_json::json!({
                "type": "object",
                "properties": {
                    "data": {"type": "array", "items": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"], "additionalProperties": false}},
                    "score": {"type": "number"}
                },
                "required": ["data", "score"],
                "additionalProperties": false
            })
        );
        let s = schema_of_shape(r#"{"z": number, "a": string}"#).expect("shape");
        assert_eq!(s["required"], serde_json::json!(["z", "a"]));
        for bad in [r#"{"a": str}"#, r#"{"a": [string, number]}"#, r#"{"a": "#] {
            assert!(schema_of_shape(bad).is_err(), "{bad}");
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Feedback {
        feedback: String,
        score: Score,
    }

    #[test]
    fn reads_json_in_prose_fences_and_with_trailing_commas() {
        let want = Feedback { feedback: "ok".into(), score: Score(0.75) };
        for answer in [
            r#"{"feedback": "ok", "score": 0.75}"#,
            "Sure! Here it is:\n```json\n{\"feedback\": \"ok\", \"score\": 0.75}\n```\nHope it helps.",
            r#"The JSON: {"feedback": "ok", "score": "0.75",} done"#,
            r#"{"note": 1} then {"feedback": "ok", "score": 0.75}"#,
        ] {
            assert_eq!(parse_lenient::<Feedback>(answer).expect(answer), want, "{answer}");
        }
    }

    #[test]
    fn commas_inside_strings_survive() {
        let f: Feedback = parse_lenient(r#"{"feedback": "a ,} b", "score": 1}"#).expect("parse");
        assert_eq!(f.feedback, "a ,} b");
    }

    #[test]
    fn scores_clamp_and_reject_words() {
        let f: Feedback = parse_lenient(r#"{"feedback": "", "score": 7}"#).expect("clamped");
        assert_eq!(f.score, Score(1.0));
        let err = parse_lenient::<Feedback>(r#"{"feedback": "", "score": "high"}"#).expect_err("word");
        assert!(err.contains("score"), "{err}");
        assert!(parse_lenient::<Feedback>("no json here").is_err());
    }
}
