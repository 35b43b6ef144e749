//! Byte-for-byte parity with transformers' `apply_chat_template`, on the cases of
//! `tests/fixtures/hf_chat_templates/fixture.json` (made by `make_fixture.py` in that folder).

use std::collections::BTreeMap;
use std::path::PathBuf;

use prompt_templates::{ChatTemplate, Error, JinjaTemplate, Message, RenderOptions, SpecialTokens, gguf};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    transformers: String,
    templates: BTreeMap<String, TemplateEntry>,
    conversations: BTreeMap<String, Vec<Message>>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct TemplateEntry {
    source: String,
    special_tokens: SpecialTokens,
}

#[derive(Deserialize)]
struct Case {
    template: String,
    conversation: String,
    add_generation_prompt: bool,
    /// Kept as a MiniJinja value so that object key order survives, as it does in Python.
    variables: Option<minijinja::Value>,
    expected: Option<String>,
    error: Option<String>,
    error_kind: Option<String>,
}

impl Case {
    fn label(&self) -> String {
        format!("{} / {} / generation prompt {}", self.template, self.conversation, self.add_generation_prompt)
    }
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_chat_templates/fixture.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn options(entry: &TemplateEntry, case: &Case) -> RenderOptions {
    let options = RenderOptions::new().with_generation_prompt(case.add_generation_prompt).with_special_tokens(&entry.special_tokens);
    match &case.variables {
        None => options,
        Some(variables) => {
            let json = serde_json::to_string(variables).expect("variables serialize");
            options.with_variables_json(&json).expect("variables are an object")
        }
    }
}

/// Compares one render with what transformers did; `None` when they agree.
fn compare(case: &Case, result: Result<String, Error>, builtin: bool) -> Option<String> {
    match (&case.expected, &case.error, result) {
        (Some(expected), _, Ok(text)) if &text == expected => None,
        (Some(expected), _, Ok(text)) => Some(format!("{}:\n  expected {expected:?}\n  got      {text:?}", case.label())),
        (Some(_), _, Err(e)) => Some(format!("{}: transformers rendered it, we failed: {e}", case.label())),
        (None, Some(message), Err(e)) => {
            let agrees = match (case.error_kind.as_deref(), &e) {
                (Some("raised"), Error::Raised { message: ours, .. }) => ours == message,
                (Some("raised"), Error::Conversation { detail, .. }) if builtin => detail == message,
                (Some("empty"), Error::Conversation { index: 0, .. }) => true,
                (Some("render"), Error::Render { .. }) => true,
                _ => false,
            };
            (!agrees).then(|| format!("{}: transformers failed with {message:?}, we failed with {e}", case.label()))
        }
        (None, Some(message), Ok(text)) => Some(format!("{}: transformers failed with {message:?}, we rendered {text:?}", case.label())),
        (None, None, _) => Some(format!("{}: the fixture has neither expected text nor error", case.label())),
    }
}

#[test]
fn jinja_templates_render_byte_identical_to_transformers() {
    let fixture = fixture();
    let mut compiled: BTreeMap<&str, JinjaTemplate> = BTreeMap::new();
    for (name, entry) in &fixture.templates {
        let template = JinjaTemplate::with_label(entry.source.clone(), name.clone())
            .unwrap_or_else(|e| panic!("template {name} does not compile: {e}"));
        compiled.insert(name.as_str(), template);
    }
    let mut mismatches = Vec::new();
    for case in &fixture.cases {
        let entry = &fixture.templates[&case.template];
        let messages = &fixture.conversations[&case.conversation];
        let result = compiled[case.template.as_str()].render(messages, &options(entry, case));
        mismatches.extend(compare(case, result, false));
    }
    assert!(fixture.cases.len() >= 170, "only {} cases in the fixture", fixture.cases.len());
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ from transformers {}:\n{}",
        mismatches.len(),
        fixture.cases.len(),
        fixture.transformers,
        mismatches.join("\n")
    );
}

#[test]
fn builtin_formats_match_the_official_templates_they_are_named_after() {
    let fixture = fixture();
    let pairs =
        [(ChatTemplate::Llama2, "llama2-chat"), (ChatTemplate::Llama3, "llama3-instruct"), (ChatTemplate::ChatMl, "chatml-openhermes")];
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (builtin, official) in pairs {
        let renderer = builtin.prepare().expect("built-in formats always prepare");
        for case in fixture.cases.iter().filter(|c| c.template == official && c.variables.is_none()) {
            let entry = &fixture.templates[&case.template];
            let messages = &fixture.conversations[&case.conversation];
            mismatches.extend(compare(case, renderer.render(messages, &options(entry, case)), true));
            compared += 1;
        }
    }
    assert!(compared >= 50, "only {compared} cases compared");
    assert!(mismatches.is_empty(), "{} built-in renders differ:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn smollm2_template_read_from_the_gguf_is_the_one_transformers_rendered() {
    let path = assets::require(assets::known::SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"));
    let config = gguf::read_chat_config(&path).expect("SmolLM2 GGUF metadata");
    let fixture = fixture();
    let entry = &fixture.templates["smollm2-135m-instruct"];
    assert_eq!(config.template(None).expect("default template"), Some(entry.source.as_str()));
    assert_eq!(config.special_tokens, entry.special_tokens);
    assert_eq!(config.chat_template("auto").expect("auto"), Some(ChatTemplate::Jinja { source: entry.source.clone() }));
}
