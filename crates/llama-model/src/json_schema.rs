//! Structured outputs for local generation (OpenAI's `response_format: json_schema`): a JSON
//! Schema subset compiled to a byte-level prefix checker, used as a token constraint so that a
//! generation can only spell a document of that shape.
//!
//! The subset: `object` with `properties` (every property is written, with no others: OpenAI's
//! strict mode; in the order of `required` when it is given, which must then list them all, else
//! in key order), `array` with `items`, `string` (optionally with an `enum` of strings), `number`,
//! `integer`, `boolean`. Whitespace is allowed where JSON allows it. Anything else is refused with the
//! schema path of the part that is not supported.

use std::sync::Arc;

use serde_json::Value;

use crate::json_grammar::NumPart;

/// One node of a compiled schema.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Properties in order: the key as JSON text (quotes included) and its value's node.
    Object(Vec<(Vec<u8>, usize)>),
    /// The items' node.
    Array(usize),
    Str,
    /// One of these JSON strings (quotes included), sorted; JSON-encoded strings are prefix-free.
    Enum(Vec<Vec<u8>>),
    Num {
        integer: bool,
    },
    Bool,
}

/// A JSON Schema (subset) ready to constrain generation.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledSchema {
    nodes: Vec<Node>,
    /// Bytes of each node's shortest document.
    min_len: Vec<usize>,
}

impl CompiledSchema {
    /// Compiles `schema`; the error names the schema path (`$.properties.x.items`) and why.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        let mut out = Self { nodes: Vec::new(), min_len: Vec::new() };
        out.add(schema, "$")?;
        Ok(out)
    }

    /// The root node is node 0; children are added after their parent.
    fn add(&mut self, schema: &Value, path: &str) -> Result<usize, String> {
        let map = schema.as_object().ok_or_else(|| format!("{path}: a schema must be an object, got {schema}"))?;
        let kind = match map.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(other) => return Err(format!("{path}.type: must be one type name, got {other}")),
            None if map.contains_key("properties") => "object",
            None if map.contains_key("enum") => "string",
            None => return Err(format!("{path}: no `type`")),
        };
        let id = self.nodes.len();
        self.nodes.push(Node::Bool);
        self.min_len.push(0);
        let (node, min) = match kind {
            "object" => {
                let props = match map.get("properties") {
                    Some(Value::Object(p)) => p,
                    None => return Err(format!("{path}: an object needs `properties` (free-form objects are not supported)")),
                    Some(other) => return Err(format!("{path}.properties: must be an object, got {other}")),
                };
                let order: Vec<&String> = match map.get("required") {
                    None => props.keys().collect(),
                    Some(Value::Array(names)) => {
                        let names: Vec<&String> = names
                            .iter()
                            .map(|n| match n {
                                Value::String(n) if props.contains_key(n) => Ok(n),
                                other => Err(format!("{path}.required: {other} is not one of the properties")),
                            })
                            .collect::<Result<_, _>>()?;
                        if let Some(missing) = props.keys().find(|k| !names.contains(k)) {
                            return Err(format!("{path}.required: every property must be required (strict mode); `{missing}` is not"));
                        }
                        names
                    }
                    Some(other) => return Err(format!("{path}.required: must be an array of names, got {other}")),
                };
                let mut fields = Vec::with_capacity(order.len());
                let mut min = 2 + order.len().saturating_sub(1);
                for key in order {
                    let sub = &props[key];
                    let child = self.add(sub, &format!("{path}.properties.{key}"))?;
                    let encoded = serde_json::to_vec(key).map_err(|e| format!("{path}: key {key}: {e}"))?;
                    min += encoded.len() + 1 + self.min_len[child];
                    fields.push((encoded, child));
                }
                (Node::Object(fields), min)
            }
            "array" => {
                let items = map.get("items").ok_or_else(|| format!("{path}: an array needs `items`"))?;
                (Node::Array(self.add(items, &format!("{path}.items"))?), 2)
            }
            "string" => match map.get("enum") {
                None => (Node::Str, 2),
                Some(Value::Array(values)) if !values.is_empty() => {
                    let mut alternatives = values
                        .iter()
                        .map(|v| match v {
                            Value::String(_) => serde_json::to_vec(v).map_err(|e| format!("{path}.enum: {e}")),
                            other => Err(format!("{path}.enum: only strings are supported, got {other}")),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    alternatives.sort();
                    alternatives.dedup();
                    let min = alternatives.iter().map(Vec::len).min().unwrap_or(2);
                    (Node::Enum(alternatives), min)
                }
                Some(other) => return Err(format!("{path}.enum: must be a non-empty array of strings, got {other}")),
            },
            "number" => (Node::Num { integer: false }, 1),
            "integer" => (Node::Num { integer: true }, 1),
            "boolean" => (Node::Bool, 4),
            other => return Err(format!("{path}.type: `{other}` is not supported (object, array, string, number, integer, boolean)")),
        };
        self.nodes[id] = node;
        self.min_len[id] = min;
        Ok(id)
    }

    /// Bytes of the shortest document of this schema.
    pub fn min_document_len(&self) -> usize {
        self.min_len[0]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjAt {
    /// Before key `next` (or `}` when the object has no properties).
    BeforeKey,
    /// This many bytes of key `next`'s literal matched.
    Key(usize),
    Colon,
    /// After value `next`: `,` then key `next + 1`, or `}` after the last.
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrAt {
    FirstOrEnd,
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Obj { node: usize, next: usize, at: ObjAt },
    Arr { node: usize, at: ArrAt },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Str {
        escape: bool,
        hex: u8,
    },
    Num {
        part: NumPart,
        integer: bool,
    },
    Lit(&'static [u8]),
    /// `len` bytes of an enum value read; alternatives `lo..hi` (sorted) still agree with them.
    Enum {
        node: usize,
        len: usize,
        lo: usize,
        hi: usize,
    },
}

/// A prefix checker for documents of one [`CompiledSchema`]: feed bytes, it says whether they
/// can still become such a document.
#[derive(Debug, Clone)]
pub struct SchemaPrefix {
    schema: Arc<CompiledSchema>,
    stack: Vec<Frame>,
    /// The next non-whitespace byte starts a value of this node.
    pending: Option<usize>,
    leaf: Option<Leaf>,
    done: bool,
}

fn ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

impl SchemaPrefix {
    /// The checker at the start of a document.
    pub fn new(schema: Arc<CompiledSchema>) -> Self {
        Self { schema, stack: Vec::new(), pending: Some(0), leaf: None, done: false }
    }

    /// Whether a whole document has been read.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Whether the next byte is inside a string.
    pub fn in_string(&self) -> bool {
        matches!(self.leaf, Some(Leaf::Str { .. }))
    }

    fn value_done(&mut self) {
        if self.stack.is_empty() {
            self.done = true;
        }
    }

    fn start_value(&mut self, node: usize, b: u8) -> bool {
        match (&self.schema.nodes[node], b) {
            (Node::Object(_), b'{') => self.stack.push(Frame::Obj { node, next: 0, at: ObjAt::BeforeKey }),
            (Node::Array(_), b'[') => self.stack.push(Frame::Arr { node, at: ArrAt::FirstOrEnd }),
            (Node::Str, b'"') => self.leaf = Some(Leaf::Str { escape: false, hex: 0 }),
            (Node::Enum(alternatives), b'"') => self.leaf = Some(Leaf::Enum { node, len: 1, lo: 0, hi: alternatives.len() }),
            (Node::Num { integer }, _) => match NumPart::start(b) {
                Some(part) => self.leaf = Some(Leaf::Num { part, integer: *integer }),
                None => return false,
            },
            (Node::Bool, b't') => self.leaf = Some(Leaf::Lit(b"rue")),
            (Node::Bool, b'f') => self.leaf = Some(Leaf::Lit(b"alse")),
            _ => return false,
        }
        true
    }

    /// Feeds one byte; `false` (state unspecified) when it cannot continue a document.
    pub fn push(&mut self, b: u8) -> bool {
        if self.done {
            return ws(b);
        }
        if let Some(leaf) = self.leaf {
            return self.push_leaf(leaf, b);
        }
        if let Some(node) = self.pending {
            if ws(b) {
                return true;
            }
            self.pending = None;
            return self.start_value(node, b);
        }
        let Some(top) = self.stack.last_mut() else { return false };
        match *top {
            Frame::Obj { node, next, at } => {
                let Node::Object(fields) = &self.schema.nodes[node] else { return false };
                match at {
                    ObjAt::BeforeKey if ws(b) => true,
                    ObjAt::BeforeKey if next == fields.len() => {
                        if b != b'}' {
                            return false;
                        }
                        self.stack.pop();
                        self.value_done();
                        true
                    }
                    ObjAt::BeforeKey | ObjAt::Key(_) => {
                        let i = if let ObjAt::Key(i) = at { i } else { 0 };
                        let key = &fields[next].0;
                        if key[i] != b {
                            return false;
                        }
                        *top = Frame::Obj { node, next, at: if i + 1 == key.len() { ObjAt::Colon } else { ObjAt::Key(i + 1) } };
                        true
                    }
                    ObjAt::Colon if ws(b) => true,
                    ObjAt::Colon => {
                        if b != b':' {
                            return false;
                        }
                        let child = fields[next].1;
                        *top = Frame::Obj { node, next, at: ObjAt::After };
                        self.pending = Some(child);
                        true
                    }
                    ObjAt::After if ws(b) => true,
                    ObjAt::After if next + 1 < fields.len() => {
                        if b != b',' {
                            return false;
                        }
                        *top = Frame::Obj { node, next: next + 1, at: ObjAt::BeforeKey };
                        true
                    }
                    ObjAt::After => {
                        if b != b'}' {
                            return false;
                        }
                        self.stack.pop();
                        self.value_done();
                        true
                    }
                }
            }
            Frame::Arr { node, at } => {
                let Node::Array(item) = self.schema.nodes[node] else { return false };
                if ws(b) {
                    return true;
                }
                match (at, b) {
                    (_, b']') => {
                        self.stack.pop();
                        self.value_done();
                        true
                    }
                    (ArrAt::After, b',') => {
                        self.pending = Some(item);
                        true
                    }
                    (ArrAt::After, _) => false,
                    (ArrAt::FirstOrEnd, _) => {
                        *top = Frame::Arr { node, at: ArrAt::After };
                        self.start_value(item, b)
                    }
                }
            }
        }
    }

    fn push_leaf(&mut self, leaf: Leaf, b: u8) -> bool {
        match leaf {
            Leaf::Str { escape, hex } => {
                let next = if hex > 0 {
                    if !b.is_ascii_hexdigit() {
                        return false;
                    }
                    Some(Leaf::Str { escape: false, hex: hex - 1 })
                } else if escape {
                    match b {
                        b'u' => Some(Leaf::Str { escape: false, hex: 4 }),
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(Leaf::Str { escape: false, hex: 0 }),
                        _ => return false,
                    }
                } else {
                    match b {
                        b'"' => None,
                        b'\\' => Some(Leaf::Str { escape: true, hex: 0 }),
                        0..=0x1f => return false,
                        _ => Some(leaf),
                    }
                };
                self.leaf = next;
                if next.is_none() {
                    self.value_done();
                }
                true
            }
            Leaf::Num { part, integer } => {
                if let Some(part) = part.step(b, integer) {
                    self.leaf = Some(Leaf::Num { part, integer });
                    return true;
                }
                if !part.is_complete() {
                    return false;
                }
                // The number ends here; the byte continues the structure.
                self.leaf = None;
                self.value_done();
                self.push(b)
            }
            Leaf::Enum { node, len, lo, hi } => {
                let Node::Enum(alternatives) = &self.schema.nodes[node] else { return false };
                // Sorted alternatives sharing the first `len` bytes: those with byte `b` next
                // form a contiguous run.
                let agrees = |i: &usize| alternatives[*i].get(len) == Some(&b);
                let Some(first) = (lo..hi).find(agrees) else { return false };
                let end = (first..hi).find(|i| !agrees(i)).unwrap_or(hi);
                if alternatives[first].len() == len + 1 {
                    // The closing quote: prefix-freeness leaves this alternative alone.
                    self.leaf = None;
                    self.value_done();
                } else {
                    self.leaf = Some(Leaf::Enum { node, len: len + 1, lo: first, hi: end });
                }
                true
            }
            Leaf::Lit(rest) => {
                if rest.first() != Some(&b) {
                    return false;
                }
                if rest.len() == 1 {
                    self.leaf = None;
                    self.value_done();
                } else {
                    self.leaf = Some(Leaf::Lit(&rest[1..]));
                }
                true
            }
        }
    }

    /// Feeds bytes; `false` when they cannot continue a document.
    pub fn push_all(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.push(b))
    }

    /// The fewest bytes that complete the document from here.
    pub fn bytes_to_close(&self) -> usize {
        if self.done {
            return 0;
        }
        let s = &self.schema;
        let mut n = match self.leaf {
            Some(Leaf::Str { escape, hex }) => usize::from(escape) + hex as usize + 1,
            Some(Leaf::Num { part: NumPart::Minus | NumPart::Dot | NumPart::E | NumPart::ESign, .. }) => 1,
            Some(Leaf::Num { .. }) | None => 0,
            Some(Leaf::Lit(rest)) => rest.len(),
            Some(Leaf::Enum { node, len, lo, hi }) => match &s.nodes[node] {
                Node::Enum(alternatives) => alternatives[lo..hi].iter().map(|a| a.len() - len).min().unwrap_or(0),
                _ => unreachable!("an enum leaf"),
            },
        };
        n += self.pending.map_or(0, |p| s.min_len[p]);
        for frame in &self.stack {
            n += match *frame {
                Frame::Obj { node, next, at } => {
                    let Node::Object(fields) = &s.nodes[node] else { unreachable!("an object frame") };
                    let field = |j: usize| fields[j].0.len() + 1 + s.min_len[fields[j].1];
                    let later: usize = (next + 1..fields.len()).map(|j| 1 + field(j)).sum();
                    1 + later
                        + match at {
                            ObjAt::BeforeKey if next < fields.len() => field(next),
                            ObjAt::BeforeKey | ObjAt::After => 0,
                            ObjAt::Key(i) => fields[next].0.len() - i + 1 + s.min_len[fields[next].1],
                            ObjAt::Colon => 1 + s.min_len[fields[next].1],
                        }
                }
                Frame::Arr { .. } => 1,
            };
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Arc<CompiledSchema> {
        Arc::new(
            CompiledSchema::compile(&json!({
                "type": "object",
                "properties": {
                    "data": {"type": "array", "items": {"type": "object", "properties": {"input": {"type": "string"}}}},
                    "score": {"type": "number"},
                    "n": {"type": "integer"},
                    "ok": {"type": "boolean"}
                },
                "required": ["data", "score", "n", "ok"]
            }))
            .expect("compiles"),
        )
    }

    fn accepts(doc: &str) -> bool {
        let mut p = SchemaPrefix::new(schema());
        p.push_all(doc.as_bytes()) && p.is_complete()
    }

    #[test]
    fn documents_of_the_schema_and_their_prefixes_pass() {
        for doc in [
            r#"{"data": [{"input": "a \"q\" \u00e9"}, {"input": ""}], "score": 0.5, "n": -3, "ok": true}"#,
            r#"{"data":[],"score":1e-2,"n":0,"ok":false}"#,
            "{ \"data\" : [ ] ,\n \"score\" : 2 , \"n\" : 7 , \"ok\" : false }  ",
        ] {
            assert!(accepts(doc), "{doc}");
            for cut in 0..doc.len() {
                assert!(SchemaPrefix::new(schema()).push_all(&doc.as_bytes()[..cut]), "prefix of {doc}: {:?}", &doc[..cut]);
            }
        }
    }

    #[test]
    fn other_shapes_are_refused() {
        for bad in [
            r#"{"score": 1, "data": [], "n": 0, "ok": true}"#,
            r#"{"data": [], "score": "1", "n": 0, "ok": true}"#,
            r#"{"data": [], "score": 1, "n": 0.5, "ok": true}"#,
            r#"{"data": [{"input": 1}], "score": 1, "n": 0, "ok": true}"#,
            r#"{"data": [], "score": 1, "n": 0, "ok": true, "x": 1}"#,
            r#"{"data": [], "score": 1, "n": 0}"#,
            r#"{"data": [,], "score": 1, "n": 0, "ok": true}"#,
            r#"{"data": [], "score": 1, "n": 0, "ok": yes}"#,
            r#"["data"]"#,
        ] {
            assert!(!accepts(bad), "{bad}");
        }
    }

    #[test]
    fn bytes_to_close_is_the_shortest_completion() {
        let shortest = r#"{"data":[],"score":0,"n":0,"ok":true}"#;
        assert_eq!(schema().min_document_len(), shortest.len());
        for (prefix, completion) in [
            ("", shortest),
            (r#"{"data": [{"in"#, r#"put":""}],"score":0,"n":0,"ok":true}"#),
            (r#"{"data": [{"input": "x"#, r#""}],"score":0,"n":0,"ok":true}"#),
            (r#"{"data": [], "score": 0."#, r#"0,"n":0,"ok":true}"#),
            (r#"{"data": [], "score": 1, "n": 2, "ok": fa"#, "lse}"),
            (r#"{"data": [], "score": 1, "n": 2, "ok": true"#, "}"),
        ] {
            let mut p = SchemaPrefix::new(schema());
            assert!(p.push_all(prefix.as_bytes()), "{prefix}");
            assert_eq!(p.bytes_to_close(), completion.len(), "{prefix}");
            assert!(p.push_all(completion.as_bytes()) && p.is_complete(), "{prefix}{completion}");
        }
    }

    #[test]
    fn enums_allow_exactly_their_strings() {
        let s = Arc::new(
            CompiledSchema::compile(&json!({
                "type": "object",
                "properties": {"verdict": {"type": "string", "enum": ["yes", "no", "idk", "n\"o"]}, "tag": {"enum": ["a", "ab"]}},
                "required": ["verdict", "tag"]
            }))
            .expect("compiles"),
        );
        let accepts = |doc: &str| {
            let mut p = SchemaPrefix::new(s.clone());
            p.push_all(doc.as_bytes()) && p.is_complete()
        };
        for doc in [r#"{"verdict": "yes", "tag": "a"}"#, r#"{"verdict":"idk","tag":"ab"}"#, r#"{"verdict": "n\"o", "tag": "ab"}"#] {
            assert!(accepts(doc), "{doc}");
        }
        for doc in [
            r#"{"verdict": "ye", "tag": "a"}"#,
            r#"{"verdict": "yess", "tag": "a"}"#,
            r#"{"verdict": "maybe", "tag": "a"}"#,
            r#"{"verdict": "no", "tag": "b"}"#,
        ] {
            assert!(!accepts(doc), "{doc}");
        }
        assert_eq!(s.min_document_len(), r#"{"verdict":"no","tag":"a"}"#.len());
        let mut p = SchemaPrefix::new(s.clone());
        assert!(p.push_all(br#"{"verdict": "i"#));
        assert_eq!(p.bytes_to_close(), r#"dk","tag":"a"}"#.len());
        assert!(!p.clone().push(b'x') && p.push_all(br#"dk", "tag": "ab"}"#) && p.is_complete());
    }

    #[test]
    fn without_required_the_keys_come_in_key_order() {
        let s = CompiledSchema::compile(&json!({"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}}}))
            .expect("compiles");
        let mut p = SchemaPrefix::new(Arc::new(s));
        assert!(p.push_all(br#"{"a": 1, "b": 2}"#) && p.is_complete());
    }

    #[test]
    fn unsupported_schemas_name_their_path() {
        for (schema, want) in [
            (json!({"type": "object"}), "$: an object needs `properties`"),
            (json!({"type": "object", "properties": {"a": {"type": "null"}}}), "$.properties.a.type: `null` is not supported"),
            (json!({"type": "array"}), "$: an array needs `items`"),
            (json!({"type": ["string", "null"]}), "$.type: must be one type name"),
            (json!("string"), "$: a schema must be an object"),
            (json!({"type": "string", "enum": ["a", 1]}), "$.enum: only strings are supported, got 1"),
            (json!({"type": "string", "enum": []}), "$.enum: must be a non-empty array of strings"),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]}),
                "$.required: every property must be required (strict mode); `b` is not",
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["c"]}),
                "$.required: \"c\" is not one of the properties",
            ),
        ] {
            let err = CompiledSchema::compile(&schema).unwrap_err();
            assert!(err.starts_with(want), "{err}");
        }
    }
}
