//! The JSON Schema of every judge answer, sent with each judge call as OpenAI's
//! `response_format: json_schema` (strict: every property present, in the listed order), so a
//! judge that supports structured outputs — local models here, most hosted APIs — can only
//! answer in the shape the metric parses. Verdicts are constrained to their allowed words.
//!
//! The schemas stay within what local generation supports (`llama_model::json_schema`:
//! objects, arrays, strings with optional `enum`, numbers, integers, booleans).

use serde_json::{Value, json};

/// `{"<key>": [string, …]}`: statements, opinions, evaluation steps.
pub fn string_list(key: &str) -> Value {
    object(&[(key, json!({"type": "array", "items": {"type": "string"}}))])
}

/// `{"verdicts": [{"verdict": one of <allowed>, "reason": string}, …]}`.
pub fn verdicts(allowed: &[&str]) -> Value {
    let verdict = object(&[("verdict", json!({"type": "string", "enum": allowed})), ("reason", json!({"type": "string"}))]);
    object(&[("verdicts", json!({"type": "array", "items": verdict}))])
}

/// `{"reason": string}`.
pub fn reason() -> Value {
    object(&[("reason", json!({"type": "string"}))])
}

/// `{"score": integer, "reason": string}` (G-Eval: the score comes first, its token's
/// probabilities weight the score).
pub fn score_reason() -> Value {
    object(&[("score", json!({"type": "integer"})), ("reason", json!({"type": "string"}))])
}

/// Every schema the metrics send, by step name.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("statements", string_list("statements")),
        ("opinions", string_list("opinions")),
        ("evaluation steps", string_list("steps")),
        ("relevancy verdicts", verdicts(&["yes", "no", "idk"])),
        ("opinion verdicts", verdicts(&["yes", "no"])),
        ("reason", reason()),
        ("score", score_reason()),
    ]
}

/// A strict object schema with `fields` in order.
fn object(fields: &[(&str, Value)]) -> Value {
    let properties: serde_json::Map<String, Value> = fields.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
    let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_required_in_order() {
        let s = score_reason();
        assert_eq!(s["required"], json!(["score", "reason"]));
        assert_eq!(s["properties"]["score"]["type"], "integer");
        let v = verdicts(&["yes", "no"]);
        assert_eq!(v["properties"]["verdicts"]["items"]["properties"]["verdict"]["enum"], json!(["yes", "no"]));
        assert_eq!(v["properties"]["verdicts"]["items"]["required"], json!(["verdict", "reason"]));
    }
}
