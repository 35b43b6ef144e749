//! Markdown → plain text.
//!
//! Headings keep their text on a line of their own; paragraphs, code blocks and list items
//! keep their text; list items get `- ` (or `N. `); table cells are joined by ` | `;
//! raw HTML and link targets are dropped (link and image texts are kept).

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Flattens Markdown to plain text.
pub fn to_plain_text(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    // One counter per open list: `Some(n)` for ordered lists.
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut first_cell = true;
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(Tag::Heading { .. } | Tag::Paragraph | Tag::CodeBlock(_) | Tag::BlockQuote(_)) => block_break(&mut out),
            Event::End(TagEnd::Heading(_) | TagEnd::Paragraph | TagEnd::CodeBlock | TagEnd::Table) => {
                out.push('\n');
            }
            Event::Start(Tag::List(start)) => {
                block_break(&mut out);
                lists.push(start);
            }
            Event::End(TagEnd::List(_)) => {
                lists.pop();
                out.push('\n');
            }
            Event::Start(Tag::Item) => {
                line_break(&mut out);
                out.push_str(&"  ".repeat(lists.len().saturating_sub(1)));
                match lists.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str("- "),
                }
            }
            Event::Start(Tag::Table(_)) => block_break(&mut out),
            Event::Start(Tag::TableHead | Tag::TableRow) => {
                line_break(&mut out);
                first_cell = true;
            }
            Event::Start(Tag::TableCell) => {
                if !first_cell {
                    out.push_str(" | ");
                }
                first_cell = false;
            }
            Event::Text(text) | Event::Code(text) | Event::InlineMath(text) | Event::DisplayMath(text) => out.push_str(&text),
            Event::SoftBreak => out.push(' '),
            Event::HardBreak | Event::Rule => out.push('\n'),
            Event::TaskListMarker(done) => out.push_str(if done { "[x] " } else { "[ ] " }),
            _ => {}
        }
    }
    tidy(&out)
}

/// Ends the current line and leaves one blank line (unless at the start).
fn block_break(out: &mut String) {
    if out.is_empty() {
        return;
    }
    while out.ends_with(' ') {
        out.pop();
    }
    while !out.ends_with("\n\n") {
        out.push('\n');
    }
}

fn line_break(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Trims trailing spaces of lines, keeps at most one blank line in a row, trims the ends.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_paragraphs_lists_and_links() {
        let md = "# Tides\n\nThe *moon* pulls\nthe sea. See [NOAA](https://noaa.gov).\n\n## Causes\n\n- gravity\n- rotation\n\n1. first\n2. second\n\n<div>raw</div>\n";
        let text = to_plain_text(md);
        assert_eq!(text, "Tides\n\nThe moon pulls the sea. See NOAA.\n\nCauses\n\n- gravity\n- rotation\n\n1. first\n2. second");
    }

    #[test]
    fn code_blocks_and_tables_keep_their_text() {
        let md = "Intro\n\n```rust\nfn main() {}\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        let text = to_plain_text(md);
        assert_eq!(text, "Intro\n\nfn main() {}\n\na | b\n1 | 2");
    }
}
