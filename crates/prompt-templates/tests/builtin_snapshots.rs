//! Snapshots of every built-in format: a single turn and a system + multi-turn conversation,
//! each with and without the generation prompt, plus the training pairs they split into.
//! Strings are shown with Rust escapes so that whitespace is exact.

use prompt_templates::{AlpacaRow, ChatTemplate, Message, RenderOptions, SpecialTokens};

fn single_turn() -> Vec<Message> {
    vec![Message::user("What is the capital of France?")]
}

fn multi_turn() -> Vec<Message> {
    vec![
        Message::system("You are a concise assistant."),
        Message::user("What is 2+2?"),
        Message::assistant("4."),
        Message::user("And in Roman numerals?"),
    ]
}

fn with_answer() -> Vec<Message> {
    let mut messages = multi_turn();
    messages.push(Message::assistant("IV."));
    messages
}

fn options() -> RenderOptions {
    // The EOS token matters only to Alpaca; the other formats have theirs built in.
    RenderOptions::new().with_special_tokens(&SpecialTokens { eos_token: Some("</s>".into()), ..Default::default() })
}

fn report(template: &ChatTemplate) -> String {
    let renderer = template.prepare().expect("built-in formats prepare");
    let mut out = String::new();
    for (name, messages) in [("single turn", single_turn()), ("system + multi-turn", multi_turn())] {
        for generation in [false, true] {
            let text = renderer
                .render(&messages, &options().with_generation_prompt(generation))
                .expect("built-in formats render these conversations");
            out.push_str(&format!("{name}, generation prompt {generation}:\n{text:?}\n\n"));
        }
    }
    let pair = renderer.render_pair(&with_answer(), &options()).expect("pair");
    out.push_str(&format!("pair prompt:\n{:?}\npair completion:\n{:?}\n", pair.prompt, pair.completion));
    out
}

#[test]
fn llama2() {
    insta::assert_snapshot!(report(&ChatTemplate::Llama2));
}

#[test]
fn llama3() {
    insta::assert_snapshot!(report(&ChatTemplate::Llama3));
}

#[test]
fn chatml() {
    insta::assert_snapshot!(report(&ChatTemplate::ChatMl));
}

#[test]
fn alpaca() {
    insta::assert_snapshot!(report(&ChatTemplate::Alpaca));
}

#[test]
fn alpaca_rows() {
    let renderer = ChatTemplate::Alpaca.prepare().expect("built-in");
    let mut out = String::new();
    for row in [
        AlpacaRow::new("Give three tips for staying healthy.", "", "Eat well, sleep, move."),
        AlpacaRow::new("Translate to French.", "Good morning", "Bonjour"),
    ] {
        let pair = renderer.render_alpaca(&row, &options()).expect("alpaca row");
        out.push_str(&format!("prompt:\n{:?}\ncompletion:\n{:?}\n\n", pair.prompt, pair.completion));
    }
    insta::assert_snapshot!(out);
}
