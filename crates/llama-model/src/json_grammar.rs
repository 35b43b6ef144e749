//! JSON mode for local generation: an incremental JSON validator over bytes, and the token
//! constraint that keeps a generation a valid prefix of one JSON object (OpenAI's
//! `response_format: json_object`). Generation ends when the object closes.

use crate::generate::Constraint;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Before the top-level value (only `{` and whitespace allowed).
    Start,
    /// A value (after `:` or `,` in an array).
    Value,
    /// A value or `]` (right after `[`).
    ValueOrEnd,
    /// A key or `}` (right after `{`).
    KeyOrEnd,
    /// A key (after `,` in an object).
    Key,
    /// `:` after a key.
    Colon,
    /// `,` or the closing bracket after a value.
    After,
    /// Inside a string; `key` says whether it is an object key.
    Str { key: bool, escape: bool, hex: u8 },
    /// Inside a number: which part was seen last.
    Num(NumPart),
    /// Inside `true`/`false`/`null`: the rest to match.
    Lit(&'static [u8]),
    /// The top-level value is complete (only whitespace may follow).
    Done,
}

/// Where a JSON number is: the part read last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumPart {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl NumPart {
    /// The part a number starts with at byte `b`, if `b` starts one.
    pub(crate) fn start(b: u8) -> Option<Self> {
        match b {
            b'-' => Some(Self::Minus),
            b'0' => Some(Self::Zero),
            b'1'..=b'9' => Some(Self::Int),
            _ => None,
        }
    }

    /// The part after byte `b`, or `None` when `b` does not continue the number (no fraction or
    /// exponent when `integer`).
    pub(crate) fn step(self, b: u8, integer: bool) -> Option<Self> {
        use NumPart::*;
        match (self, b) {
            (Minus, b'0') => Some(Zero),
            (Minus, b'1'..=b'9') => Some(Int),
            (Int, b'0'..=b'9') => Some(Int),
            (Zero | Int, b'.') if !integer => Some(Dot),
            (Dot | Frac, b'0'..=b'9') => Some(Frac),
            (Zero | Int | Frac, b'e' | b'E') if !integer => Some(E),
            (E, b'+' | b'-') => Some(ESign),
            (E | ESign | Exp, b'0'..=b'9') => Some(Exp),
            _ => None,
        }
    }

    /// Whether the number may end here.
    pub(crate) fn is_complete(self) -> bool {
        matches!(self, Self::Zero | Self::Int | Self::Frac | Self::Exp)
    }
}

/// A JSON-object prefix checker; feed bytes, it says whether they can still become valid JSON.
#[derive(Debug, Clone)]
pub struct JsonPrefix {
    stack: Vec<Container>,
    expect: Expect,
}

impl Default for JsonPrefix {
    fn default() -> Self {
        Self { stack: Vec::new(), expect: Expect::Start }
    }
}

fn ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

impl JsonPrefix {
    /// Whether a whole top-level object has been read.
    pub fn is_complete(&self) -> bool {
        self.expect == Expect::Done
    }

    fn after_value(&mut self) {
        self.expect = if self.stack.is_empty() { Expect::Done } else { Expect::After };
    }

    fn start_value(&mut self, b: u8) -> bool {
        match b {
            b'{' => {
                self.stack.push(Container::Object);
                self.expect = Expect::KeyOrEnd;
            }
            b'[' => {
                self.stack.push(Container::Array);
                self.expect = Expect::ValueOrEnd;
            }
            b'"' => self.expect = Expect::Str { key: false, escape: false, hex: 0 },
            b'-' => self.expect = Expect::Num(NumPart::Minus),
            b'0' => self.expect = Expect::Num(NumPart::Zero),
            b'1'..=b'9' => self.expect = Expect::Num(NumPart::Int),
            b't' => self.expect = Expect::Lit(b"rue"),
            b'f' => self.expect = Expect::Lit(b"alse"),
            b'n' => self.expect = Expect::Lit(b"ull"),
            _ => return false,
        }
        true
    }

    fn close(&mut self, b: u8) -> bool {
        let want = match b {
            b'}' => Container::Object,
            b']' => Container::Array,
            _ => return false,
        };
        if self.stack.pop() != Some(want) {
            return false;
        }
        self.after_value();
        true
    }

    /// Feeds one byte; `false` when the input can no longer be valid JSON.
    pub fn push(&mut self, b: u8) -> bool {
        match self.expect {
            Expect::Start => ws(b) || (b == b'{' && self.start_value(b)),
            Expect::Done => ws(b),
            Expect::Value => ws(b) || self.start_value(b),
            Expect::ValueOrEnd => ws(b) || self.start_value(b) || (b == b']' && self.close(b)),
            Expect::KeyOrEnd => {
                if ws(b) {
                    return true;
                }
                if b == b'"' {
                    self.expect = Expect::Str { key: true, escape: false, hex: 0 };
                    return true;
                }
                b == b'}' && self.close(b)
            }
            Expect::Key => {
                if b == b'"' {
                    self.expect = Expect::Str { key: true, escape: false, hex: 0 };
                    true
                } else {
                    ws(b)
                }
            }
            Expect::Colon => {
                if b == b':' {
                    self.expect = Expect::Value;
                    true
                } else {
                    ws(b)
                }
            }
            Expect::After => match b {
                b',' => {
                    self.expect = if self.stack.last() == Some(&Container::Object) { Expect::Key } else { Expect::Value };
                    true
                }
                b'}' | b']' => self.close(b),
                _ => ws(b),
            },
            Expect::Str { key, escape, hex } => {
                if hex > 0 {
                    if !b.is_ascii_hexdigit() {
                        return false;
                    }
                    self.expect = Expect::Str { key, escape: false, hex: hex - 1 };
                    return true;
                }
                if escape {
                    return match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            self.expect = Expect::Str { key, escape: false, hex: 0 };
                            true
                        }
                        b'u' => {
                            self.expect = Expect::Str { key, escape: false, hex: 4 };
                            true
                        }
                        _ => false,
                    };
                }
                match b {
                    b'"' => {
                        if key {
                            self.expect = Expect::Colon;
                        } else {
                            self.after_value();
                        }
                        true
                    }
                    b'\\' => {
                        self.expect = Expect::Str { key, escape: true, hex: 0 };
                        true
                    }
                    0x00..=0x1f => false,
                    _ => true,
                }
            }
            Expect::Lit(rest) => {
                if rest.first() != Some(&b) {
                    return false;
                }
                if rest.len() == 1 {
                    self.after_value();
                } else {
                    self.expect = Expect::Lit(&rest[1..]);
                }
                true
            }
            Expect::Num(part) => {
                if let Some(n) = part.step(b, false) {
                    self.expect = Expect::Num(n);
                    return true;
                }
                // The number ends here if it is complete; the byte then continues the structure.
                if !part.is_complete() {
                    return false;
                }
                self.after_value();
                self.push(b)
            }
        }
    }

    /// The fewest bytes that complete the document from here (e.g. `"` then the closers).
    pub fn bytes_to_close(&self) -> usize {
        let closers = self.stack.len();
        match self.expect {
            Expect::Start => 2,
            Expect::Done => 0,
            Expect::Value => 1 + closers,
            Expect::ValueOrEnd | Expect::KeyOrEnd | Expect::After => closers,
            Expect::Key => 4 + closers,
            Expect::Colon => 2 + closers,
            Expect::Str { key, escape, hex } => {
                let finish_escape = if escape { 1 } else { hex as usize };
                finish_escape + 1 + if key { 2 } else { 0 } + closers
            }
            Expect::Num(NumPart::Minus | NumPart::Dot | NumPart::E | NumPart::ESign) => 1 + closers,
            Expect::Num(_) => closers,
            Expect::Lit(rest) => rest.len() + closers,
        }
    }

    /// Feeds bytes; `false` (and a partly advanced state) when they cannot continue valid JSON.
    pub fn push_all(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.push(b))
    }
}

/// A byte-level checker of document prefixes that a [`PrefixConstraint`] drives.
pub trait BytePrefix: Clone {
    /// Feeds bytes; `false` when they cannot continue a document.
    fn push_all(&mut self, bytes: &[u8]) -> bool;
    /// The fewest bytes that complete the document from here.
    fn bytes_to_close(&self) -> usize;
    /// Whether a whole document has been read.
    fn is_complete(&self) -> bool;
    /// Whether the next byte is inside a string (where whitespace is content).
    fn in_string(&self) -> bool;
}

impl BytePrefix for JsonPrefix {
    fn push_all(&mut self, bytes: &[u8]) -> bool {
        JsonPrefix::push_all(self, bytes)
    }
    fn bytes_to_close(&self) -> usize {
        JsonPrefix::bytes_to_close(self)
    }
    fn is_complete(&self) -> bool {
        JsonPrefix::is_complete(self)
    }
    fn in_string(&self) -> bool {
        matches!(self.expect, Expect::Str { .. })
    }
}

impl BytePrefix for crate::json_schema::SchemaPrefix {
    fn push_all(&mut self, bytes: &[u8]) -> bool {
        crate::json_schema::SchemaPrefix::push_all(self, bytes)
    }
    fn bytes_to_close(&self) -> usize {
        crate::json_schema::SchemaPrefix::bytes_to_close(self)
    }
    fn is_complete(&self) -> bool {
        crate::json_schema::SchemaPrefix::is_complete(self)
    }
    fn in_string(&self) -> bool {
        crate::json_schema::SchemaPrefix::in_string(self)
    }
}

/// Keeps generation a prefix of one document that a [`BytePrefix`] accepts; `token_bytes[id]` is
/// each token's text as bytes (`None` for special tokens, which are refused until the document
/// is complete). Near the end of the token budget only tokens that bring the document closer to
/// complete are allowed, so that it closes in time.
#[derive(Debug, Clone)]
pub struct PrefixConstraint<'a, P> {
    state: P,
    token_bytes: &'a [Option<Vec<u8>>],
    /// Most whitespace bytes in a row outside strings (stops a model from padding forever).
    max_whitespace_run: usize,
    whitespace_run: usize,
    /// Tokens left in the generation budget.
    budget: usize,
}

/// JSON mode: one JSON object of any shape.
pub type JsonConstraint<'a> = PrefixConstraint<'a, JsonPrefix>;

impl<'a> PrefixConstraint<'a, JsonPrefix> {
    /// A JSON-object constraint over the given token texts.
    pub fn new(token_bytes: &'a [Option<Vec<u8>>]) -> Self {
        Self::with_prefix(JsonPrefix::default(), token_bytes)
    }
}

impl<'a, P: BytePrefix> PrefixConstraint<'a, P> {
    /// A constraint starting from `state` over the given token texts.
    pub fn with_prefix(state: P, token_bytes: &'a [Option<Vec<u8>>]) -> Self {
        Self { state, token_bytes, max_whitespace_run: 16, whitespace_run: 0, budget: usize::MAX }
    }
}

impl<P: BytePrefix> Constraint for PrefixConstraint<'_, P> {
    fn allows(&self, token: u32) -> bool {
        let Some(Some(bytes)) = self.token_bytes.get(token as usize) else { return false };
        if bytes.is_empty() {
            return false;
        }
        let all_ws = bytes.iter().all(|&b| ws(b));
        if all_ws && !self.state.in_string() && self.whitespace_run + bytes.len() > self.max_whitespace_run {
            return false;
        }
        let mut s = self.state.clone();
        if !s.push_all(bytes) {
            return false;
        }
        // Each closing byte may need a token of its own.
        let need = self.state.bytes_to_close();
        if self.budget <= need + 2 {
            return s.bytes_to_close() < need;
        }
        true
    }

    fn set_budget(&mut self, remaining: usize) {
        self.budget = remaining;
    }

    fn accept(&mut self, token: u32) {
        if let Some(Some(bytes)) = self.token_bytes.get(token as usize) {
            let all_ws = bytes.iter().all(|&b| ws(b));
            self.whitespace_run = if all_ws { self.whitespace_run + bytes.len() } else { 0 };
            self.state.push_all(bytes);
        }
    }

    fn is_complete(&self) -> bool {
        self.state.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_prefix(s: &str) -> bool {
        JsonPrefix::default().push_all(s.as_bytes())
    }

    #[test]
    fn accepts_valid_objects_and_their_prefixes() {
        for doc in [r#"{"a": 1, "b": [true, false, null, -0.5e+3, "x\"\u00e9"], "c": {}}"#, r#"{}"#, r#" { "k" : [ ] } "#] {
            let mut p = JsonPrefix::default();
            assert!(p.push_all(doc.as_bytes()), "{doc}");
            assert!(p.is_complete(), "{doc}");
            for cut in 0..doc.len() {
                assert!(valid_prefix(&doc[..cut]), "prefix of {doc}: {:?}", &doc[..cut]);
            }
        }
    }

    #[test]
    fn rejects_invalid_continuations() {
        for bad in [
            r#"["#,
            r#"{"a" 1"#,
            r#"{"a": 01"#,
            r#"{"a": tru3"#,
            r#"{"a": 1,}"#,
            r#"{"a": [1 2]}"#,
            r#"{"a": [1,]}"#,
            r#"{}}"#,
            "{\"a\": \"\n\"}",
            r#"{"a": -}"#,
            r#"{"a": 1} x"#,
        ] {
            assert!(!valid_prefix(bad), "{bad}");
        }
        let mut p = JsonPrefix::default();
        assert!(p.push_all(br#"{"a": 12"#) && !p.is_complete());
        assert!(p.push_all(b"}") && p.is_complete());
    }

    #[test]
    fn bytes_to_close_counts_the_shortest_completion() {
        for (prefix, completion) in
            [(r#"{"a": [1, {"b": "x"#, "\"}]}"), (r#"{"k"#, "\":0}"), (r#"{"a": tr"#, "ue}"), ("{", "}"), (r#"{"a": [1,"#, "0]}")]
        {
            let mut p = JsonPrefix::default();
            assert!(p.push_all(prefix.as_bytes()), "{prefix}");
            assert_eq!(p.bytes_to_close(), completion.len(), "{prefix}");
            assert!(p.push_all(completion.as_bytes()) && p.is_complete(), "{prefix}{completion}");
        }
    }
}
