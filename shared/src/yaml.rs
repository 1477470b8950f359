//! A strict, position-aware YAML loader.
//!
//! Every diagnostic of `ktsu validate` points at a file, line and column, and every check has to
//! see all problems at once, so configuration files are not deserialised with serde. Instead the
//! source is parsed into a [`Node`] tree that remembers where each key and value came from, with
//! the rules of config.md §0 applied: YAML 1.2 core schema scalars (only `true`/`false` are
//! booleans), exactly one document, anchors, aliases and `<<` merge keys expanded, repeated keys
//! reported as `duplicate_key`. The typed project model is then read from the tree.

use crate::diag::Pos;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::borrow::Cow;
use std::collections::HashMap;

/// Nesting deeper than this is refused, so that later recursive walks can never overflow the stack.
pub const MAX_DEPTH: usize = 256;
/// Upper bound on nodes after alias expansion ("billion laughs" protection).
pub const MAX_NODES: usize = 2_000_000;

/// A parsed YAML value with its position (for a mapping or sequence: where it starts).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair; keys are strings (a number or boolean key is taken as its text).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// A scalar: its source text and its core-schema interpretation.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    /// The scalar's text as the YAML parser produced it (after unquoting and folding).
    pub text: String,
    pub value: ScalarValue,
    /// Written without quotes or tags (a quoted `'<<'` is an ordinary key, not a merge).
    pub plain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScalarValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string: its value is [`Scalar::text`].
    Str,
}

/// A file that could not be read as one YAML document (check code `yaml_syntax`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub pos: Option<Pos>,
}

/// A repeated mapping key, reported at the repeated key (check code `duplicate_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    pub key: String,
    pub pos: Pos,
    pub first: Pos,
    /// YAML path of the mapping holding the key.
    pub path: String,
}

/// The result of loading one document: the tree plus the non-fatal findings.
#[derive(Debug, Clone)]
pub struct Document {
    pub root: Node,
    pub duplicate_keys: Vec<DuplicateKey>,
}

impl Node {
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The string value, when the node is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(Scalar {
                text,
                value: ScalarValue::Str,
                ..
            }) => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(
            self.kind,
            NodeKind::Scalar(Scalar {
                value: ScalarValue::Null,
                ..
            })
        )
    }

    /// Looks up a key of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// A short name of the node's YAML type, for `type_mismatch` messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "mapping",
            NodeKind::Seq(_) => "sequence",
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Null => "null",
                ScalarValue::Bool(_) => "boolean",
                ScalarValue::Int(_) => "integer",
                ScalarValue::Float(_) => "number",
                ScalarValue::Str => "string",
            },
        }
    }

    /// Converts to JSON (the `value` type of config.md §0). `.inf` and `.nan` have no JSON
    /// form: the position of the first one is returned as the error.
    pub fn to_json(&self) -> Result<serde_json::Value, Pos> {
        use serde_json::Value;
        Ok(match &self.kind {
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Null => Value::Null,
                ScalarValue::Bool(b) => Value::Bool(b),
                ScalarValue::Int(i) => Value::from(i),
                ScalarValue::Float(f) => match serde_json::Number::from_f64(f) {
                    Some(n) => Value::Number(n),
                    None => return Err(self.pos),
                },
                ScalarValue::Str => Value::String(s.text.clone()),
            },
            NodeKind::Seq(items) => Value::Array(
                items
                    .iter()
                    .map(Node::to_json)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            NodeKind::Map(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for e in entries {
                    map.insert(e.key.clone(), e.value.to_json()?);
                }
                Value::Object(map)
            }
        })
    }
}

/// Parses `src` as exactly one YAML document.
pub fn parse(src: &str) -> Result<Document, SyntaxError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    let mut documents = 0usize;
    let mut root: Option<Node> = None;
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| SyntaxError {
            message: e.info().to_string(),
            pos: Some(marker_pos(e.marker().line(), e.marker().col())),
        })?;
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        message: "more than one YAML document in the file (only one is allowed)"
                            .into(),
                        pos: Some(span_pos(&span)),
                    });
                }
            }
            Event::DocumentEnd => {}
            other => {
                if let Some(node) = builder.event(other, span)? {
                    root = Some(node);
                }
            }
        }
    }
    match root {
        Some(node) if !node.is_null() => Ok(Document {
            root: node,
            duplicate_keys: builder.duplicates,
        }),
        _ => Err(SyntaxError {
            message: "the file is empty (no YAML document)".into(),
            pos: None,
        }),
    }
}

/// Parses raw bytes: checks the encoding first so that binary input gets a precise message.
pub fn parse_bytes(bytes: &[u8]) -> Result<Document, SyntaxError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
            Err(SyntaxError {
                message: format!(
                    "the file is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
                pos: Some(Pos::new(clamp_u32(line), clamp_u32(column))),
            })
        }
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// saphyr markers have 1-based lines and 0-based columns.
fn marker_pos(line: usize, col: usize) -> Pos {
    Pos::new(clamp_u32(line.max(1)), clamp_u32(col + 1))
}

fn span_pos(span: &Span) -> Pos {
    marker_pos(span.start.line(), span.start.col())
}

/// A collection being built: its start position, anchor and children so far.
enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

/// Turns the event stream into a [`Node`] tree iteratively (no recursion on input depth).
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    duplicates: Vec<DuplicateKey>,
}

impl Builder {
    /// Feeds one event; returns the root node once it is complete.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<Option<Node>, SyntaxError> {
        let pos = span_pos(&span);
        let node = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node {
                    pos,
                    kind: NodeKind::Scalar(resolve_scalar(text, style, tag.as_deref(), pos)?),
                };
                self.remember(anchor, &node);
                node
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    self.nodes = self.nodes.saturating_add(count_nodes(node));
                    if self.nodes > MAX_NODES {
                        return Err(SyntaxError {
                            message: format!(
                                "alias expansion produces more than {MAX_NODES} nodes"
                            ),
                            pos: Some(pos),
                        });
                    }
                    node.clone()
                }
                None => {
                    return Err(SyntaxError {
                        message: "alias refers to an unknown anchor".into(),
                        pos: Some(pos),
                    })
                }
            },
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", pos)?;
                self.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                })?;
                return Ok(None);
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", pos)?;
                self.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                })?;
                return Ok(None);
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { pos, anchor, items }) => {
                    let node = Node {
                        pos,
                        kind: NodeKind::Seq(items),
                    };
                    self.remember(anchor, &node);
                    node
                }
                _ => return Err(unbalanced(pos)),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => {
                    let path = self.path_hint();
                    let node = Node {
                        pos,
                        kind: NodeKind::Map(self.finish_map(entries, &path)?),
                    };
                    self.remember(anchor, &node);
                    node
                }
                _ => return Err(unbalanced(pos)),
            },
            _ => return Ok(None),
        };
        self.nodes = self.nodes.saturating_add(1);
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                message: format!("the document has more than {MAX_NODES} nodes"),
                pos: Some(pos),
            });
        }
        Ok(self.attach(node))
    }

    fn push(&mut self, frame: Frame) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            let pos = match &frame {
                Frame::Seq { pos, .. } | Frame::Map { pos, .. } => *pos,
            };
            return Err(SyntaxError {
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
                pos: Some(pos),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    /// Adds a finished node to its parent, or returns it when it is the root.
    fn attach(&mut self, node: Node) -> Option<Node> {
        match self.stack.last_mut() {
            None => Some(node),
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                None
            }
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => {
                match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => entries.push((key, node)),
                }
                None
            }
        }
    }

    /// A rough YAML path of the mapping being closed, for duplicate-key diagnostics: the keys of
    /// the enclosing mappings and indexes of the enclosing sequences.
    fn path_hint(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => path.push_str(&format!("[{}]", items.len())),
                Frame::Map { pending_key, .. } => {
                    if let Some(key) = pending_key.as_ref().and_then(|k| k.as_scalar()) {
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&key.text);
                    }
                }
            }
        }
        path
    }

    /// Checks keys, reports duplicates and applies `<<` merge keys (explicit keys win, then
    /// earlier merge sources win).
    fn finish_map(
        &mut self,
        raw: Vec<(Node, Node)>,
        path: &str,
    ) -> Result<Vec<Entry>, SyntaxError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
        let mut merged: Vec<Entry> = Vec::new();
        for (key, value) in raw {
            let key_pos = key.pos;
            let key_text = match key.kind {
                NodeKind::Scalar(s) if s.value != ScalarValue::Null => s,
                _ => {
                    return Err(SyntaxError {
                        message: "mapping keys must be strings".into(),
                        pos: Some(key_pos),
                    })
                }
            };
            if key_text.text == "<<" && key_text.plain && is_merge(&value) {
                match value.kind {
                    NodeKind::Map(src) => merged.extend(src),
                    NodeKind::Seq(maps) => {
                        for m in maps {
                            if let NodeKind::Map(src) = m.kind {
                                merged.extend(src);
                            }
                        }
                    }
                    NodeKind::Scalar(_) => {}
                }
                continue;
            }
            if let Some(first) = entries.iter().find(|e| e.key == key_text.text) {
                self.duplicates.push(DuplicateKey {
                    key: key_text.text.clone(),
                    pos: key_pos,
                    first: first.key_pos,
                    path: path.to_string(),
                });
                continue;
            }
            entries.push(Entry {
                key: key_text.text,
                key_pos,
                value,
            });
        }
        for entry in merged {
            if !entries.iter().any(|e| e.key == entry.key) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }
}

/// A `<<` value is a merge only when it is a mapping or a sequence of mappings.
fn is_merge(value: &Node) -> bool {
    match &value.kind {
        NodeKind::Map(_) => true,
        NodeKind::Seq(items) => items.iter().all(|i| i.as_map().is_some()),
        NodeKind::Scalar(_) => false,
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar(_) => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| 1 + count_nodes(&e.value))
                .sum::<usize>()
        }
    }
}

fn unbalanced(pos: Pos) -> SyntaxError {
    SyntaxError {
        message: "unbalanced collection events".into(),
        pos: Some(pos),
    }
}

const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// The suffix of a core-schema tag (`!!str` → `str`), or None for a non-core tag.
fn core_tag(tag: &Tag) -> Option<&str> {
    if tag.handle == CORE_TAG_PREFIX {
        Some(&tag.suffix)
    } else if tag.handle.is_empty() {
        // a verbatim tag: `!<tag:yaml.org,2002:str>`
        tag.suffix.strip_prefix(CORE_TAG_PREFIX)
    } else {
        None
    }
}

/// The non-specific tag `!`: the scalar is a string.
fn is_non_specific(tag: &Tag) -> bool {
    tag.handle.is_empty() && tag.suffix == "!"
}

fn unsupported_tag(tag: &Tag, pos: Pos) -> SyntaxError {
    SyntaxError {
        message: format!(
            "unsupported YAML tag `{}{}` (only the core schema tags are allowed)",
            tag.handle, tag.suffix
        ),
        pos: Some(pos),
    }
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str, pos: Pos) -> Result<(), SyntaxError> {
    match tag {
        None => Ok(()),
        Some(t) if core_tag(t) == Some(expected) => Ok(()),
        Some(t) => Err(unsupported_tag(t, pos)),
    }
}

/// YAML 1.2 core schema resolution of one scalar.
fn resolve_scalar(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
    pos: Pos,
) -> Result<Scalar, SyntaxError> {
    let text = text.into_owned();
    if let Some(tag) = tag {
        if is_non_specific(tag) {
            return Ok(Scalar {
                text,
                value: ScalarValue::Str,
                plain: false,
            });
        }
        let value = match core_tag(tag) {
            Some("str") => Some(ScalarValue::Str),
            Some("null") => Some(ScalarValue::Null),
            Some("bool") => match resolve_plain(&text) {
                v @ ScalarValue::Bool(_) => Some(v),
                _ => None,
            },
            Some("int") => match resolve_plain(&text) {
                v @ ScalarValue::Int(_) => Some(v),
                _ => None,
            },
            Some("float") => match resolve_plain(&text) {
                ScalarValue::Int(i) => Some(ScalarValue::Float(i as f64)),
                v @ ScalarValue::Float(_) => Some(v),
                _ => None,
            },
            _ => return Err(unsupported_tag(tag, pos)),
        };
        return match value {
            Some(value) => Ok(Scalar {
                text,
                value,
                plain: false,
            }),
            None => Err(SyntaxError {
                message: format!("`{}` is not a valid !!{}", text, tag.suffix),
                pos: Some(pos),
            }),
        };
    }
    let plain = style == ScalarStyle::Plain;
    let value = if plain {
        resolve_plain(&text)
    } else {
        ScalarValue::Str
    };
    Ok(Scalar { text, value, plain })
}

/// The core schema's tag resolution for plain scalars.
fn resolve_plain(text: &str) -> ScalarValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarValue::Null,
        "true" | "True" | "TRUE" => return ScalarValue::Bool(true),
        "false" | "False" | "FALSE" => return ScalarValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ScalarValue::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return ScalarValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return ScalarValue::Float(f64::NAN),
        _ => {}
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return ScalarValue::Int(i);
            }
        }
        return ScalarValue::Str;
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return ScalarValue::Int(i);
            }
        }
        return ScalarValue::Str;
    }
    if is_core_int(text) {
        return match text.parse::<i64>() {
            Ok(i) => ScalarValue::Int(i),
            // Outside i64: keep the magnitude as a float rather than failing.
            Err(_) => text
                .parse::<f64>()
                .map_or(ScalarValue::Str, ScalarValue::Float),
        };
    }
    if is_core_float(text) {
        if let Ok(f) = text.parse::<f64>() {
            return ScalarValue::Float(f);
        }
    }
    ScalarValue::Str
}

/// `[-+]?[0-9]+`
fn is_core_int(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_core_float(text: &str) -> bool {
    let rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && (!int.is_empty() || !frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(src: &str) -> Document {
        parse(src).unwrap()
    }

    fn scalar(node: &Node) -> ScalarValue {
        node.as_scalar().unwrap().value
    }

    #[test]
    fn positions_are_one_based_and_point_at_keys_and_values() {
        let d = doc("kind: workflow\nname:  hello\npipeline:\n  - id: a\n");
        let entries = d.root.as_map().unwrap();
        assert_eq!(entries[0].key_pos, Pos::new(1, 1));
        assert_eq!(entries[0].value.pos, Pos::new(1, 7));
        assert_eq!(entries[1].value.pos, Pos::new(2, 8));
        let step = &entries[2].value.as_seq().unwrap()[0];
        assert_eq!(step.as_map().unwrap()[0].key_pos, Pos::new(4, 5));
    }

    #[test]
    fn core_schema_scalars() {
        let d = doc(
            "a: yes\nb: on\nc: true\nd: 10\ne: 1.5\nf: ~\ng: '10'\nh: 0x1F\ni: 0o17\nj: .inf\nk: 1e3\nl: -.5\nm: 1.0\nn: 007\n",
        );
        let v = |k: &str| scalar(d.root.get(k).unwrap());
        assert_eq!(v("a"), ScalarValue::Str);
        assert_eq!(v("b"), ScalarValue::Str);
        assert_eq!(v("c"), ScalarValue::Bool(true));
        assert_eq!(v("d"), ScalarValue::Int(10));
        assert_eq!(v("e"), ScalarValue::Float(1.5));
        assert_eq!(v("f"), ScalarValue::Null);
        assert_eq!(v("g"), ScalarValue::Str);
        assert_eq!(v("h"), ScalarValue::Int(31));
        assert_eq!(v("i"), ScalarValue::Int(15));
        assert_eq!(v("j"), ScalarValue::Float(f64::INFINITY));
        assert_eq!(v("k"), ScalarValue::Float(1000.0));
        assert_eq!(v("l"), ScalarValue::Float(-0.5));
        assert_eq!(v("n"), ScalarValue::Int(7));
        // the source text survives, so `version: 1.0` can be read as the string "1.0"
        assert_eq!(d.root.get("m").unwrap().as_scalar().unwrap().text, "1.0");
    }

    #[test]
    fn tags_force_types() {
        let d = doc("a: !!str 10\nb: !!float 1\nc: ! 12\n");
        assert_eq!(scalar(d.root.get("a").unwrap()), ScalarValue::Str);
        assert_eq!(scalar(d.root.get("b").unwrap()), ScalarValue::Float(1.0));
        assert_eq!(scalar(d.root.get("c").unwrap()), ScalarValue::Str);
        assert!(parse("a: !custom x\n").is_err());
        assert!(parse("a: !!int abc\n").is_err());
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_repeated_key() {
        let d = doc("a: 1\nb:\n  x: 1\n  x: 2\na: 3\n");
        assert_eq!(d.duplicate_keys.len(), 2);
        let inner = d.duplicate_keys.iter().find(|k| k.key == "x").unwrap();
        assert_eq!(inner.pos, Pos::new(4, 3));
        assert_eq!(inner.first, Pos::new(3, 3));
        assert_eq!(inner.path, "b");
        let outer = d.duplicate_keys.iter().find(|k| k.key == "a").unwrap();
        assert_eq!(outer.pos, Pos::new(5, 1));
        // the first value is kept
        assert_eq!(scalar(d.root.get("a").unwrap()), ScalarValue::Int(1));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_are_expanded() {
        let d = doc(
            "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nlist: [*b, *b]\nmulti:\n  <<: [{p: 1}, {p: 2, q: 2}]\n",
        );
        let use_ = d.root.get("use").unwrap();
        assert_eq!(scalar(use_.get("x").unwrap()), ScalarValue::Int(1));
        assert_eq!(scalar(use_.get("y").unwrap()), ScalarValue::Int(3));
        assert_eq!(d.root.get("list").unwrap().as_seq().unwrap().len(), 2);
        let multi = d.root.get("multi").unwrap();
        assert_eq!(scalar(multi.get("p").unwrap()), ScalarValue::Int(1));
        assert_eq!(scalar(multi.get("q").unwrap()), ScalarValue::Int(2));
        assert!(d.duplicate_keys.is_empty());
    }

    #[test]
    fn quoted_merge_key_is_an_ordinary_key() {
        let d = doc("'<<': {a: 1}\n");
        assert!(d.root.get("<<").is_some());
    }

    #[test]
    fn one_document_only_and_empty_files_are_errors() {
        assert!(parse("a: 1\n---\nb: 2\n")
            .unwrap_err()
            .message
            .contains("more than one"));
        assert!(parse("").unwrap_err().message.contains("empty"));
        assert!(parse("# only a comment\n")
            .unwrap_err()
            .message
            .contains("empty"));
        assert!(parse("---\n").unwrap_err().message.contains("empty"));
        // an explicit single document is fine
        assert!(parse("---\na: 1\n...\n").is_ok());
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.pos.is_some());
        let err = parse("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!(err.pos.map(|p| p.line), Some(2));
    }

    #[test]
    fn bom_is_ignored_and_binary_is_refused() {
        assert!(parse("\u{feff}a: 1\n").is_ok());
        let err = parse_bytes(b"a: 1\nb: \xff\xfe\n").unwrap_err();
        assert!(err.message.contains("UTF-8"));
        assert_eq!(err.pos, Some(Pos::new(2, 4)));
    }

    #[test]
    fn billion_laughs_is_bounded() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            src.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                std::iter::repeat_n(prev.as_str(), 10)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let err = parse(&src).unwrap_err();
        assert!(err.message.contains("nodes"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!("a: {}{}\n", "[".repeat(1000), "]".repeat(1000));
        let err = parse(&src).unwrap_err();
        assert!(
            err.message.contains("nesting") || err.message.contains("recursion"),
            "{}",
            err.message
        );
    }

    #[test]
    fn non_string_keys_become_text_and_null_keys_are_refused() {
        let d = doc("200: ok\ntrue: x\n");
        assert!(d.root.get("200").is_some());
        assert!(d.root.get("true").is_some());
        assert!(parse("? [a]\n: 1\n").is_err());
        assert!(parse("~: 1\n").is_err());
    }

    #[test]
    fn to_json_refuses_inf_and_nan() {
        let d = doc("a: [1, .nan]\n");
        assert_eq!(d.root.to_json().unwrap_err(), Pos::new(1, 8));
        let d = doc("a: {b: [1, 'x', 2.5, null, true]}\n");
        assert_eq!(
            d.root.to_json().unwrap(),
            serde_json::json!({"a": {"b": [1, "x", 2.5, null, true]}})
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(src in "\\PC{0,200}") {
            let _ = parse(&src);
        }

        #[test]
        fn parse_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_bytes(&bytes);
        }
    }
}
