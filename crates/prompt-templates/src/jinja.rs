//! Hugging Face Jinja chat templates (`tokenizer_config.json`'s `chat_template`, a GGUF's
//! `tokenizer.chat_template`), rendered with MiniJinja configured as transformers configures
//! Jinja2: `trim_blocks`, `lstrip_blocks`, no trailing newline, no auto-escaping, loop
//! controls, the `{% generation %}` block, and HF's globals and filters (`raise_exception`,
//! `strftime_now`, `tojson`), with Python's string methods and Python's way of printing values.
//!
//! The sandbox has no loader: `include`, `import` and `extends` find nothing, and nothing in a
//! template can reach the filesystem.
//!
//! ```
//! use llm_api::Message;
//! use prompt_templates::{JinjaTemplate, RenderOptions};
//!
//! let template = JinjaTemplate::new(
//!     "{% for m in messages %}{{ m.role | upper }}: {{ m.content.strip() }}\n{% endfor %}\
//!      {% if add_generation_prompt %}ASSISTANT:{% endif %}",
//! ).unwrap();
//! let text = template
//!     .render(&[Message::user("  hi  ")], &RenderOptions::new().with_generation_prompt(true))
//!     .unwrap();
//! assert_eq!(text, "USER: hi\nASSISTANT:");
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use llm_api::Message;
use minijinja::value::{Kwargs, Value, from_args};
use minijinja::{AutoEscape, Environment, Error as JinjaError, ErrorKind, State, UndefinedBehavior};

use crate::options::RenderOptions;
use crate::python;
use crate::tojson::tojson_filter;
use crate::{Error, Result};

/// The name the one template is stored under inside its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// A compiled Jinja chat template.
#[derive(Clone)]
pub struct JinjaTemplate {
    env: Environment<'static>,
    source: String,
    label: String,
}

impl fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JinjaTemplate").field("label", &self.label).field("source_len", &self.source.len()).finish()
    }
}

impl JinjaTemplate {
    /// Compiles a template; errors name it `jinja`.
    ///
    /// # Errors
    /// [`Error::Syntax`] when the template does not parse.
    pub fn new(source: impl Into<String>) -> Result<Self> {
        Self::with_label(source, "jinja")
    }

    /// Compiles a template whose errors name it `label` (e.g. the file it came from).
    ///
    /// # Errors
    /// [`Error::Syntax`] when the template does not parse.
    pub fn with_label(source: impl Into<String>, label: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let label = label.into();
        let mut env = hf_environment();
        env.add_template_owned(TEMPLATE_NAME, rewrite_generation_tags(&source).into_owned())
            .map_err(|e| Error::Syntax { template: label.clone(), detail: describe(&e) })?;
        Ok(Self { env, source, label })
    }

    /// The template's source text, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The name errors use for this template.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Renders `messages` as `tokenizer.apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=..., **variables)` does.
    ///
    /// # Errors
    /// [`Error::Conversation`] for an empty conversation (transformers refuses those too),
    /// [`Error::Raised`] when the template calls `raise_exception`, [`Error::Render`] for any
    /// other failure.
    pub fn render(&self, messages: &[Message], options: &RenderOptions) -> Result<String> {
        if messages.is_empty() {
            return Err(crate::template::empty_conversation(&self.label));
        }
        let mut context: Vec<(String, Value)> = vec![
            ("messages".to_string(), Value::from_serialize(messages)),
            ("tools".to_string(), Value::from(())),
            ("documents".to_string(), Value::from(())),
            ("add_generation_prompt".to_string(), Value::from(options.add_generation_prompt)),
        ];
        for (name, token) in options.special_tokens.pairs() {
            context.push((name.to_string(), Value::from(token)));
        }
        context.extend(options.variables().iter().cloned());
        let context: Value = context.into_iter().collect();
        let template =
            self.env.get_template(TEMPLATE_NAME).map_err(|e| Error::Render { template: self.label.clone(), detail: describe(&e) })?;
        template.render(context).map_err(|e| match raised_message(&e) {
            Some(message) => Error::Raised { template: self.label.clone(), message },
            None => Error::Render { template: self.label.clone(), detail: describe(&e) },
        })
    }
}

/// An environment set up as transformers' `_compile_jinja_template` sets up Jinja2.
fn hf_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(|out, _state, value| {
        out.write_str(&python::display(value)).map_err(|_| JinjaError::new(ErrorKind::WriteFailure, "could not write template output"))
    });
    env.set_unknown_method_callback(python_methods);
    env.add_filter("tojson", tojson_filter);
    env.add_filter("trim", trim_filter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

/// Turns `{% generation %}`/`{% endgeneration %}` (HF's assistant-mask markers, which render
/// their body unchanged) into `{% if true %}`/`{% endif %}`, keeping whitespace control, so the
/// template's text and whitespace handling stay what Jinja2 renders.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let (before, tag_and_after) = rest.split_at(start);
        out.push_str(before);
        match tag_and_after.find("%}") {
            Some(end) => {
                let tag = &tag_and_after[..end + 2];
                out.push_str(&rewrite_tag(tag).unwrap_or_else(|| tag.to_string()));
                rest = &tag_and_after[end + 2..];
            }
            None => {
                out.push_str(tag_and_after);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `{%- generation +%}` → `{%- if true +%}`; `None` for any other tag.
fn rewrite_tag(tag: &str) -> Option<String> {
    let inner = &tag[2..tag.len() - 2];
    let (open, inner) = split_control(inner, true);
    let (close, word) = split_control(inner, false);
    let replacement = match word.trim() {
        "generation" => "if true",
        "endgeneration" => "endif",
        _ => return None,
    };
    Some(format!("{{%{open} {replacement} {close}%}}"))
}

/// Splits a leading (or trailing) `-`/`+` whitespace-control marker off a tag's inside.
fn split_control(inner: &str, leading: bool) -> (&str, &str) {
    let marker = if leading { inner.chars().next() } else { inner.chars().last() };
    match marker {
        Some('-' | '+') if leading => (&inner[..1], &inner[1..]),
        Some('-' | '+') => (&inner[inner.len() - 1..], &inner[..inner.len() - 1]),
        _ => ("", inner),
    }
}

/// Marks an error as raised by the template itself through `raise_exception`.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

/// `raise_exception(message)`: aborts the render with the template's own message.
fn raise_exception(message: Option<Value>) -> std::result::Result<Value, JinjaError> {
    let message = message.map(|m| python::display(&m)).unwrap_or_default();
    Err(JinjaError::new(ErrorKind::InvalidOperation, message.clone()).with_source(RaisedByTemplate(message)))
}

/// `strftime_now(format)`: the local time formatted as Python's `datetime.now().strftime`.
fn strftime_now(format: String) -> std::result::Result<Value, JinjaError> {
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format))
        .map_err(|_| JinjaError::new(ErrorKind::InvalidOperation, format!("strftime_now: invalid format {format:?}")))?;
    Ok(Value::from(out))
}

/// Jinja2's `trim(value, chars=None)`: Python's `str(value).strip(chars)`.
fn trim_filter(value: Value, chars: Option<Value>, kwargs: Kwargs) -> std::result::Result<Value, JinjaError> {
    let chars = kwargs.get::<Option<Value>>("chars")?.or(chars);
    kwargs.assert_all_used()?;
    let text = python::display(&value);
    let chars = chars.as_ref().and_then(Value::as_str);
    Ok(Value::from(python::strip(&text, chars)))
}

/// Python's `str.strip`/`lstrip`/`rstrip` with Python's whitespace, then the rest of
/// `minijinja_contrib`'s Python methods (`dict.items`, `str.startswith`, ...).
fn python_methods(state: &State, value: &Value, method: &str, args: &[Value]) -> std::result::Result<Value, JinjaError> {
    if let (Some(text), "strip" | "lstrip" | "rstrip") = (value.as_str(), method) {
        let (chars,): (Option<Value>,) = from_args(args)?;
        let chars = chars.as_ref().and_then(Value::as_str);
        let stripped = match method {
            "strip" => python::strip(text, chars),
            "lstrip" => python::lstrip(text, chars),
            _ => python::rstrip(text, chars),
        };
        return Ok(Value::from(stripped));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// The message of a `raise_exception` call somewhere in `error`'s chain.
fn raised_message(error: &JinjaError) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<RaisedByTemplate>() {
            return Some(raised.0.clone());
        }
        source = e.source();
    }
    None
}

/// A one-line description of a MiniJinja error with the line it happened on.
fn describe(error: &JinjaError) -> String {
    let mut text = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[Message], options: &RenderOptions) -> Result<String> {
        JinjaTemplate::new(source)?.render(messages, options)
    }

    #[test]
    fn empty_conversations_are_refused_as_transformers_does() {
        let err = render("{{ 1 }}", &[], &RenderOptions::new()).expect_err("empty");
        assert!(matches!(err, Error::Conversation { index: 0, .. }), "{err}");
    }

    #[test]
    fn raise_exception_surfaces_the_message() {
        let err =
            render("{{ raise_exception('System role not supported') }}", &[Message::user("x")], &RenderOptions::new()).expect_err("raises");
        match err {
            Error::Raised { message, .. } => assert_eq!(message, "System role not supported"),
            other => panic!("expected Raised, got {other}"),
        }
    }

    #[test]
    fn syntax_errors_name_the_template_and_line() {
        let err = JinjaTemplate::with_label("ok\n{% if %}", "tokenizer_config.json").expect_err("bad syntax");
        let text = err.to_string();
        assert!(text.contains("tokenizer_config.json") && text.contains("line 2"), "{text}");
    }

    #[test]
    fn no_filesystem_access() {
        for source in ["{% include '/etc/passwd' %}", "{% import 'x.j2' as x %}", "{% extends 'base' %}"] {
            let err = render(source, &[Message::user("x")], &RenderOptions::new()).expect_err(source);
            assert!(matches!(err, Error::Render { .. }), "{source}: {err}");
            assert!(err.to_string().contains("not found"), "{source}: {err}");
        }
    }

    #[test]
    fn values_print_as_python_does() {
        let text = render(
            "{{ tools }}|{{ add_generation_prompt }}|{{ 10 / 4 }}|{{ 1e16 }}|{{ [1, 'a'] }}|{{ undefined_name }}",
            &[Message::user("x")],
            &RenderOptions::new(),
        )
        .expect("render");
        assert_eq!(text, "None|False|2.5|1e+16|[1, 'a']|");
    }

    #[test]
    fn special_tokens_and_variables_are_visible() {
        let options = RenderOptions::new()
            .with_special_tokens(&crate::SpecialTokens { bos_token: Some("<s>".into()), ..Default::default() })
            .with_variable("date_string", "1 Jan 2025");
        let text =
            render("{{ bos_token }}{{ eos_token is defined }}{{ date_string }}{{ messages | length }}", &[Message::user("x")], &options)
                .expect("render");
        assert_eq!(text, "<s>False1 Jan 20251");
    }

    #[test]
    fn generation_blocks_render_their_body() {
        let source = "{% for m in messages %}\n  {%- generation -%}\n{{ m.content }}\n{%- endgeneration %}\n|{% endfor %}";
        let text = render(source, &[Message::assistant("a"), Message::assistant("b")], &RenderOptions::new()).expect("render");
        assert_eq!(text, "a|b|");
        assert_eq!(rewrite_generation_tags("{%- generation +%}"), "{%- if true +%}");
        assert_eq!(rewrite_generation_tags("{% endgeneration %}x"), "{% endif %}x");
        assert_eq!(rewrite_generation_tags("{% if generation %}"), "{% if generation %}");
    }

    #[test]
    fn python_string_methods_and_trim() {
        let text = render(
            "{{ messages[0].content.strip() }}|{{ messages[0].content | trim }}|{{ 'a,b'.split(',') }}|{{ 'x'.startswith('x') }}|{% for k, v in {'k': 1}.items() %}{{ k }}={{ v }}{% endfor %}",
            &[Message::user("\u{1c} hi \n")],
            &RenderOptions::new(),
        )
        .expect("render");
        assert_eq!(text, "hi|hi|['a', 'b']|True|k=1");
    }

    #[test]
    fn loop_controls_and_namespace_work() {
        let text = render(
            "{% set ns = namespace(n=0) %}{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
            &[Message::user("x")],
            &RenderOptions::new(),
        )
        .expect("render");
        assert_eq!(text, "3");
    }

    #[test]
    fn strftime_now_formats_the_local_date() {
        let before = chrono::Local::now().format("%Y").to_string();
        let text = render("{{ strftime_now('%Y') }}", &[Message::user("x")], &RenderOptions::new()).expect("render");
        let after = chrono::Local::now().format("%Y").to_string();
        assert!(text == before || text == after, "{text}");
        let err = render("{{ strftime_now('%Q') }}", &[Message::user("x")], &RenderOptions::new()).expect_err("bad format");
        assert!(err.to_string().contains("strftime_now"), "{err}");
    }

    #[test]
    fn tojson_filter_takes_hf_keywords() {
        let options = RenderOptions::new().with_variables_json(r#"{"t": {"b": 1, "a": [true]}}"#).expect("json");
        let text = render(
            "{{ t | tojson }}|{{ t | tojson(indent=2) }}|{{ t | tojson(separators=(',', ':'), sort_keys=true) }}",
            &[Message::user("x")],
            &options,
        )
        .expect("render");
        assert_eq!(text, "{\"b\": 1, \"a\": [true]}|{\n  \"b\": 1,\n  \"a\": [\n    true\n  ]\n}|{\"a\":[true],\"b\":1}");
    }
}
