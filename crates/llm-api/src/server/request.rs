//! Reading and validating OpenAI request bodies; every refusal names the offending field.

use serde_json::{Map, Value};

use crate::{CompletionOptions, Message, Role};

/// A request refused before reaching the model: HTTP 400 with the field (`param`) named.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BadRequest {
    /// The offending field, as a JSON path (`messages[1].role`), when there is one.
    pub param: Option<String>,
    /// What is wrong with it.
    pub message: String,
}

impl BadRequest {
    fn field(param: impl Into<String>, message: impl Into<String>) -> Self {
        let param = param.into();
        let message = format!("`{param}`: {}", message.into());
        Self { param: Some(param), message }
    }
}

/// A validated `/chat/completions` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatCall {
    pub messages: Vec<Message>,
    pub options: CompletionOptions,
    /// Whether `logprobs` were asked for (then `options.top_logprobs` is `Some`).
    pub logprobs: bool,
    pub stream: bool,
    pub include_usage: bool,
}

/// A validated `/embeddings` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EmbedCall {
    pub input: Vec<String>,
}

type Checked<T> = std::result::Result<T, BadRequest>;

/// The request body as a JSON object.
pub(crate) fn body_object(body: &[u8]) -> Checked<Map<String, Value>> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BadRequest { param: None, message: format!("request body is not valid JSON: {e}") })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(BadRequest { param: None, message: "request body must be a JSON object".into() }),
    }
}

fn number(map: &Map<String, Value>, key: &str, min: f64, max: f64) -> Checked<Option<f64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.is_finite() && x >= min && x <= max {
                Ok(Some(x))
            } else {
                Err(BadRequest::field(key, format!("must be between {min} and {max}, got {n}")))
            }
        }
        Some(other) => Err(BadRequest::field(key, format!("must be a number, got {other}"))),
    }
}

fn integer(map: &Map<String, Value>, key: &str, min: u64, max: u64) -> Checked<Option<u64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(x) if x >= min && x <= max => Ok(Some(x)),
            _ => Err(BadRequest::field(key, format!("must be an integer between {min} and {max}, got {n}"))),
        },
        Some(other) => Err(BadRequest::field(key, format!("must be an integer, got {other}"))),
    }
}

fn boolean(map: &Map<String, Value>, key: &str) -> Checked<Option<bool>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(BadRequest::field(key, format!("must be true or false, got {other}"))),
    }
}

/// Message text: a string, or an array of `{type: "text", text}` parts joined together.
fn content_text(value: &Value, path: &str) -> Checked<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str);
                match (kind, part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(BadRequest::field(
                            format!("{path}[{j}]"),
                            "only {\"type\": \"text\", \"text\": ...} parts are supported",
                        ));
                    }
                }
            }
            Ok(text)
        }
        Value::Null => Ok(String::new()),
        other => Err(BadRequest::field(path, format!("must be a string or an array of text parts, got {other}"))),
    }
}

fn messages(map: &Map<String, Value>) -> Checked<Vec<Message>> {
    let list = match map.get("messages") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err(BadRequest::field("messages", "must not be empty")),
        Some(other) => {
            return Err(BadRequest::field("messages", format!("must be an array, got {other}")));
        }
        None => return Err(BadRequest::field("messages", "is required")),
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("system" | "developer") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some(other) => {
                    return Err(BadRequest::field(
                        format!("messages[{i}].role"),
                        format!("`{other}` is not supported (system, developer, user, assistant)"),
                    ));
                }
                None => {
                    return Err(BadRequest::field(format!("messages[{i}].role"), "is required"));
                }
            };
            let path = format!("messages[{i}].content");
            let content = match m.get("content") {
                Some(v) => content_text(v, &path)?,
                None => return Err(BadRequest::field(path, "is required")),
            };
            Ok(Message { role, content })
        })
        .collect()
}

fn stop_sequences(map: &Map<String, Value>) -> Checked<Vec<String>> {
    match map.get("stop") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(list)) if list.len() <= 4 => list
            .iter()
            .enumerate()
            .map(|(i, s)| s.as_str().map(str::to_string).ok_or_else(|| BadRequest::field(format!("stop[{i}]"), "must be a string")))
            .collect(),
        Some(Value::Array(_)) => Err(BadRequest::field("stop", "takes at most 4 sequences")),
        Some(other) => Err(BadRequest::field("stop", format!("must be a string or an array of strings, got {other}"))),
    }
}

fn json_mode(map: &Map<String, Value>) -> Checked<bool> {
    match map.get("response_format") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Object(format)) => match format.get("type").and_then(Value::as_str) {
            Some("text") => Ok(false),
            Some("json_object" | "json_schema") => Ok(true),
            _ => Err(BadRequest::field("response_format.type", "must be `text`, `json_object` or `json_schema`")),
        },
        Some(other) => Err(BadRequest::field("response_format", format!("must be an object, got {other}"))),
    }
}

/// The schema of `response_format: {"type": "json_schema", "json_schema": {"schema": …}}`.
fn json_schema(map: &Map<String, Value>) -> Checked<Option<Value>> {
    let Some(Value::Object(format)) = map.get("response_format") else { return Ok(None) };
    if format.get("type").and_then(Value::as_str) != Some("json_schema") {
        return Ok(None);
    }
    match format.get("json_schema") {
        Some(Value::Object(spec)) => match spec.get("schema") {
            Some(schema @ Value::Object(_)) => Ok(Some(schema.clone())),
            Some(other) => Err(BadRequest::field("response_format.json_schema.schema", format!("must be an object, got {other}"))),
            None => Err(BadRequest::field("response_format.json_schema.schema", "is required")),
        },
        Some(other) => Err(BadRequest::field("response_format.json_schema", format!("must be an object, got {other}"))),
        None => Err(BadRequest::field("response_format.json_schema", "is required with type `json_schema`")),
    }
}

/// Validates a chat request; `default_max_tokens` applies when neither `max_tokens` nor
/// `max_completion_tokens` is given.
pub(crate) fn chat_call(map: &Map<String, Value>, default_max_tokens: usize) -> Checked<ChatCall> {
    let messages = messages(map)?;
    let max_tokens = match integer(map, "max_completion_tokens", 1, 1 << 20)? {
        Some(n) => Some(n),
        None => integer(map, "max_tokens", 1, 1 << 20)?,
    };
    if let Some(n) = integer(map, "n", 1, u64::MAX)?
        && n != 1
    {
        return Err(BadRequest::field("n", "only n = 1 is supported"));
    }
    let logprobs = boolean(map, "logprobs")?.unwrap_or(false);
    let top_logprobs = integer(map, "top_logprobs", 0, 20)?;
    if top_logprobs.is_some() && !logprobs {
        return Err(BadRequest::field("top_logprobs", "requires `logprobs` to be true"));
    }
    let stream = boolean(map, "stream")?.unwrap_or(false);
    let include_usage = match map.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")
            .map_err(|_| BadRequest::field("stream_options.include_usage", "must be true or false"))?
            .unwrap_or(false),
        Some(_) => return Err(BadRequest::field("stream_options", "must be an object")),
    };
    let defaults = CompletionOptions::default();
    let options = CompletionOptions {
        max_tokens: max_tokens.map_or(default_max_tokens, |n| n as usize),
        temperature: number(map, "temperature", 0.0, 2.0)?.map_or(defaults.temperature, |t| t as f32),
        top_p: number(map, "top_p", 0.0, 1.0)?.map_or(defaults.top_p, |p| p as f32),
        seed: match map.get("seed") {
            Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Some(u),
                (None, Some(i)) => Some(i as u64),
                _ => {
                    return Err(BadRequest::field("seed", format!("must be an integer, got {n}")));
                }
            },
            None | Some(Value::Null) => None,
            Some(other) => {
                return Err(BadRequest::field("seed", format!("must be an integer, got {other}")));
            }
        },
        stop: stop_sequences(map)?,
        top_logprobs: logprobs.then(|| top_logprobs.unwrap_or(0) as usize),
        json_mode: json_mode(map)?,
        json_schema: json_schema(map)?,
    };
    if options.top_p == 0.0 {
        return Err(BadRequest::field("top_p", "must be greater than 0"));
    }
    Ok(ChatCall { messages, options, logprobs, stream, include_usage })
}

/// Validates an embeddings request.
pub(crate) fn embed_call(map: &Map<String, Value>) -> Checked<EmbedCall> {
    if let Some(format) = map.get("encoding_format").and_then(Value::as_str)
        && format != "float"
    {
        return Err(BadRequest::field("encoding_format", format!("`{format}` is not supported (float)")));
    }
    let input = match map.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, s)| s.as_str().map(str::to_string).ok_or_else(|| BadRequest::field(format!("input[{i}]"), "must be a string")))
            .collect::<Checked<Vec<_>>>()?,
        Some(Value::Array(_)) => return Err(BadRequest::field("input", "must not be empty")),
        Some(other) => {
            return Err(BadRequest::field("input", format!("must be a string or an array of strings, got {other}")));
        }
        None => return Err(BadRequest::field("input", "is required")),
    };
    Ok(EmbedCall { input })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(v: Value) -> Checked<ChatCall> {
        match v {
            Value::Object(map) => chat_call(&map, 99),
            _ => panic!("test body must be an object"),
        }
    }

    #[test]
    fn full_request_is_read() {
        let c = call(json!({
            "model": "x",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "max_tokens": 12, "temperature": 0.7, "top_p": 0.5, "seed": 42, "stop": "END",
            "logprobs": true, "top_logprobs": 3, "response_format": {"type": "json_object"},
            "stream": true, "stream_options": {"include_usage": true}
        }))
        .expect("valid");
        assert_eq!(c.messages, vec![Message::system("s"), Message::user("ab")]);
        assert_eq!(c.options.max_tokens, 12);
        assert_eq!(c.options.temperature, 0.7);
        assert_eq!(c.options.top_p, 0.5);
        assert_eq!(c.options.seed, Some(42));
        assert_eq!(c.options.stop, vec!["END".to_string()]);
        assert_eq!(c.options.top_logprobs, Some(3));
        assert!(c.options.json_mode && c.logprobs && c.stream && c.include_usage);
    }

    #[test]
    fn defaults_apply() {
        let c = call(json!({"messages": [{"role": "user", "content": "q"}]})).expect("valid");
        assert_eq!(c.options.max_tokens, 99);
        assert_eq!(c.options.top_logprobs, None);
        assert!(!c.stream && !c.logprobs);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!({}), "messages"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": [{"role": "tool", "content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "user"}]}), "messages[0].content"),
            (json!({"messages": [{"role": "user", "content": "q"}], "temperature": 3}), "temperature"),
            (json!({"messages": [{"role": "user", "content": "q"}], "temperature": "hot"}), "temperature"),
            (json!({"messages": [{"role": "user", "content": "q"}], "top_logprobs": 2}), "top_logprobs"),
            (json!({"messages": [{"role": "user", "content": "q"}], "logprobs": true, "top_logprobs": 21}), "top_logprobs"),
            (json!({"messages": [{"role": "user", "content": "q"}], "max_tokens": 0}), "max_tokens"),
            (json!({"messages": [{"role": "user", "content": "q"}], "stop": [1]}), "stop[0]"),
            (json!({"messages": [{"role": "user", "content": "q"}], "n": 2}), "n"),
            (json!({"messages": [{"role": "user", "content": "q"}], "response_format": {"type": "xml"}}), "response_format.type"),
            (
                json!({"messages": [{"role": "user", "content": "q"}], "response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                json!({"messages": [{"role": "user", "content": "q"}], "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": 3}}}),
                "response_format.json_schema.schema",
            ),
        ];
        for (body, field) in cases {
            let err = call(body.clone()).expect_err(&format!("{body} must be refused"));
            assert_eq!(err.param.as_deref(), Some(field), "{body}: {}", err.message);
            assert!(err.message.contains(field), "{}", err.message);
        }
    }

    #[test]
    fn a_json_schema_is_read() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]});
        let c = call(json!({
            "messages": [{"role": "user", "content": "q"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": schema}},
        }))
        .expect("valid");
        assert!(c.options.json_mode);
        assert_eq!(c.options.json_schema, Some(schema));
    }

    #[test]
    fn embeddings_input_forms() {
        let one = embed_call(json!({"input": "a"}).as_object().expect("object")).expect("valid");
        assert_eq!(one.input, vec!["a".to_string()]);
        let err = embed_call(json!({"input": ["a", 2]}).as_object().expect("object")).expect_err("bad");
        assert_eq!(err.param.as_deref(), Some("input[1]"));
        let err = body_object(b"[1]").expect_err("not an object");
        assert_eq!(err.param, None);
    }
}
