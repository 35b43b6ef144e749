//! Python's text semantics that chat templates depend on: `str.strip`, `repr(float)`,
//! `repr(str)` and `str(value)` as Jinja2 prints it.
//!
//! Hugging Face renders chat templates with Jinja2 in Python, so a value printed by a template
//! (`{{ none }}`, `{{ 1e16 }}`, `{{ [1, 'a'] }}`) and whitespace trimmed by it (`.strip()`,
//! `| trim`) must follow Python's rules, not Rust's, for the output to be byte-identical.
//!
//! ```
//! use prompt_templates::python::{float_repr, strip};
//!
//! assert_eq!(float_repr(1e16), "1e+16");
//! assert_eq!(float_repr(0.1), "0.1");
//! assert_eq!(strip("\u{1c} hi \n", None), "hi");
//! ```

use minijinja::value::{Value, ValueKind};

/// Whether Python's `str.isspace()` holds for `c`: Unicode White_Space plus the four ASCII
/// separators U+001C..U+001F, which Rust's `char::is_whitespace` leaves out.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.strip(chars)`: with `None`, strips Python whitespace; otherwise strips any of
/// the characters in `chars` from both ends.
pub fn strip<'a>(s: &'a str, chars: Option<&str>) -> &'a str {
    match chars {
        None => s.trim_matches(is_py_space),
        Some(chars) => s.trim_matches(|c| chars.contains(c)),
    }
}

/// Python's `s.lstrip(chars)`.
pub fn lstrip<'a>(s: &'a str, chars: Option<&str>) -> &'a str {
    match chars {
        None => s.trim_start_matches(is_py_space),
        Some(chars) => s.trim_start_matches(|c| chars.contains(c)),
    }
}

/// Python's `s.rstrip(chars)`.
pub fn rstrip<'a>(s: &'a str, chars: Option<&str>) -> &'a str {
    match chars {
        None => s.trim_end_matches(is_py_space),
        Some(chars) => s.trim_end_matches(|c| chars.contains(c)),
    }
}

/// Python's `repr(x)` (and `str(x)`) for a float: the shortest digits that round-trip,
/// positional when the decimal exponent is in `-4..16`, scientific (`1e+16`, `1e-05`)
/// otherwise, and always with a `.0` when positional and integral.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "-1.2345e-7".
    let sci = format!("{x:e}");
    let (sign, body) = match sci.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", sci.as_str()),
    };
    let (mantissa, exponent) = body.split_once('e').unwrap_or((body, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp10: i64 = exponent.parse().unwrap_or(0);
    // Python's `decpt`: the value is 0.DIGITS * 10^decpt.
    let decpt = exp10 + 1;
    let ndigits = digits.len() as i64;
    let text = if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let mut out = first.to_string();
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let exp_sign = if exp10 < 0 { '-' } else { '+' };
        out.push_str(&format!("e{exp_sign}{:02}", exp10.abs()));
        out
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= ndigits {
        format!("{digits}{}.0", "0".repeat((decpt - ndigits) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{text}")
}

/// Python's `repr(s)` for a string: single quotes unless the text holds a single quote and no
/// double quote; backslash escapes for the quote, `\\`, `\t`, `\n`, `\r` and control
/// characters. Non-ASCII characters are kept as they are, except the non-printable ones this
/// function knows (C1 controls, separators other than the space, and common format
/// characters), which Python escapes as `\xNN`/`\uNNNN`.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if !c.is_ascii() && !is_printable(c) => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else if code <= 0xffff {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable()` for the non-ASCII characters whose category is known to be
/// non-printable (Cc, Zs, Zl, Zp, common Cf, private use); everything else counts as printable.
fn is_printable(c: char) -> bool {
    let code = c as u32;
    let non_printable = (0x80..=0x9f).contains(&code)
        || code == 0xa0
        || code == 0xad
        || code == 0x1680
        || (0x2000..=0x200f).contains(&code)
        || (0x2028..=0x202f).contains(&code)
        || (0x205f..=0x2064).contains(&code)
        || code == 0x3000
        || code == 0xfeff
        || (0xe000..=0xf8ff).contains(&code)
        || code >= 0xf0000;
    !non_printable
}

/// What Jinja2 prints for `{{ value }}`: `str(value)` in Python. Undefined prints nothing,
/// `none` prints `None`, booleans `True`/`False`, floats as [`float_repr`], lists and dicts
/// as their Python `repr`.
pub fn display(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string()),
        _ => repr(value),
    }
}

/// Python's `repr(value)` for the values a chat template handles.
pub fn repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".to_string(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_string(),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(x) => float_repr(x),
            Err(_) => value.to_string(),
        },
        ValueKind::String => value.as_str().map(str_repr).unwrap_or_else(|| value.to_string()),
        ValueKind::Seq | ValueKind::Iterable => match value.try_iter() {
            Ok(items) => format!("[{}]", items.map(|item| repr(&item)).collect::<Vec<_>>().join(", ")),
            Err(_) => value.to_string(),
        },
        ValueKind::Map => match value.try_iter() {
            Ok(keys) => {
                let items: Vec<String> = keys
                    .map(|key| {
                        let item = value.get_item(&key).unwrap_or(Value::UNDEFINED);
                        format!("{}: {}", repr(&key), repr(&item))
                    })
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            Err(_) => value.to_string(),
        },
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected strings are Python 3's own `repr` of the same floats.
    #[test]
    fn float_repr_follows_python() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.2345e-7, "1.2345e-07"),
            (123456789.0, "123456789.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e100, "1e+100"),
            (-2.5, "-2.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::INFINITY, "inf"),
        ];
        for (x, expected) in cases {
            assert_eq!(float_repr(x), expected, "repr({x})");
        }
    }

    #[test]
    fn strip_uses_python_whitespace() {
        assert_eq!(strip("\u{1f}\u{a0} a b \u{3000}\n", None), "a b");
        assert_eq!(lstrip("  a  ", None), "a  ");
        assert_eq!(rstrip("  a  ", None), "  a");
        assert_eq!(strip("xxaxyx", Some("xy")), "a");
    }

    #[test]
    fn str_repr_picks_quotes_like_python() {
        assert_eq!(str_repr("a"), "'a'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("it's \"x\""), "'it\\'s \"x\"'");
        assert_eq!(str_repr("a\nb\\\u{1}é"), "'a\\nb\\\\\\x01é'");
        assert_eq!(str_repr("\u{a0}"), "'\\xa0'");
    }

    #[test]
    fn display_prints_like_jinja2() {
        assert_eq!(display(&Value::from(())), "None");
        assert_eq!(display(&Value::from(true)), "True");
        assert_eq!(display(&Value::from(2.0)), "2.0");
        assert_eq!(display(&Value::from(7)), "7");
        assert_eq!(display(&Value::UNDEFINED), "");
        let list = Value::from(vec![Value::from(1), Value::from("a"), Value::from(())]);
        assert_eq!(display(&list), "[1, 'a', None]");
    }
}
