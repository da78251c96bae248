//! YAML text → a tree of [`Node`]s that remember where they came from.
//!
//! Scalars keep their text and whether they were plain (unquoted); types are resolved later,
//! from what the deserializing struct asks for, so `version: 1.10` can still be a string and
//! `"50"` is never silently a number.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

use crate::path::Segment;
use crate::{Diagnostic, FieldPath, Location};

/// The most nesting a config may have; deeper input is rejected instead of exhausting the stack.
const MAX_DEPTH: usize = 128;

/// The most nodes that aliases may copy into one document. Each `*alias` copies its anchor's
/// whole subtree, so a few hundred bytes of nested aliases ("billion laughs") could otherwise
/// expand to gigabytes; real configs that reuse an anchored block a few thousand times stay far
/// below this.
pub const MAX_ALIAS_NODES: usize = 250_000;

/// A YAML value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub kind: NodeKind,
    /// Where the value starts.
    pub location: Location,
}

/// The three kinds of YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar's text; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        /// The scalar's text after YAML unescaping.
        value: String,
        /// Whether it was written unquoted.
        plain: bool,
    },
    /// A sequence.
    Sequence(Vec<Node>),
    /// A mapping, in document order.
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// Whether this is a plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true } if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short description of the value's kind for "found …" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "null".to_owned(),
            NodeKind::Scalar { value, .. } => {
                let shown: String = value.chars().take(40).collect();
                let ellipsis = if value.chars().count() > 40 {
                    "…"
                } else {
                    ""
                };
                format!("{shown:?}{ellipsis}")
            }
            NodeKind::Sequence(_) => "a list".to_owned(),
            NodeKind::Mapping(_) => "a mapping".to_owned(),
        }
    }

    /// The value under mapping key `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Mapping(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, NodeKind::Scalar { value, .. } if value == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at `path`, or the deepest ancestor of it that exists.
    pub fn find_nearest(&self, path: &FieldPath) -> &Node {
        let mut node = self;
        for segment in path.segments() {
            let next = match (segment, &node.kind) {
                (Segment::Key(key), NodeKind::Mapping(_)) => node.get(key),
                (Segment::Index(index), NodeKind::Sequence(items)) => items.get(*index),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }

    /// Whether two nodes hold the same value, wherever they were written (locations are not
    /// compared; scalars compare by text and by whether they were plain).
    pub fn same_value(&self, other: &Node) -> bool {
        match (&self.kind, &other.kind) {
            (
                NodeKind::Scalar {
                    value: a,
                    plain: pa,
                },
                NodeKind::Scalar {
                    value: b,
                    plain: pb,
                },
            ) => a == b && pa == pb,
            (NodeKind::Sequence(a), NodeKind::Sequence(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (NodeKind::Mapping(a), NodeKind::Mapping(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka.same_value(kb) && va.same_value(vb))
            }
            _ => false,
        }
    }

    /// Where this node starts.
    pub fn location(&self) -> Location {
        self.location
    }

    /// The value under mapping key `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.kind {
            NodeKind::Mapping(entries) => entries
                .iter_mut()
                .find(|(k, _)| matches!(&k.kind, NodeKind::Scalar { value, .. } if value == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Replaces a scalar with a one-entry mapping `{key: scalar}` at the same location, so that
    /// shorthand forms (`- openai:chat:gpt-4o`) deserialize as their long form (`- id: …`).
    pub fn wrap_scalar(&mut self, key: &str) {
        if let NodeKind::Scalar { .. } = self.kind {
            let location = self.location;
            let scalar = std::mem::replace(&mut self.kind, NodeKind::Mapping(Vec::new()));
            let key_node = Node {
                kind: NodeKind::Scalar {
                    value: key.to_owned(),
                    plain: true,
                },
                location,
            };
            self.kind = NodeKind::Mapping(vec![(
                key_node,
                Node {
                    kind: scalar,
                    location,
                },
            )]);
        }
    }

    /// Replaces a non-sequence with a one-item sequence holding it.
    pub fn wrap_in_sequence(&mut self) {
        if !matches!(self.kind, NodeKind::Sequence(_)) && !self.is_null() {
            let location = self.location;
            let inner = std::mem::replace(&mut self.kind, NodeKind::Sequence(Vec::new()));
            self.kind = NodeKind::Sequence(vec![Node {
                kind: inner,
                location,
            }]);
        }
    }

    /// The items of a sequence, mutably (empty for other kinds).
    pub fn items_mut(&mut self) -> &mut [Node] {
        match &mut self.kind {
            NodeKind::Sequence(items) => items,
            _ => &mut [],
        }
    }
}

fn location(marker: Marker) -> Location {
    Location {
        line: marker.line(),
        column: marker.col() + 1,
    }
}

/// Parses one YAML document. An empty document is a null scalar.
pub fn parse(text: &str) -> Result<Node, Vec<Diagnostic>> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        alias_nodes: 0,
        errors: Vec::new(),
    };
    let root = builder.document();
    match root {
        Ok(root) if builder.errors.is_empty() => Ok(root),
        Ok(_) => Err(builder.errors),
        Err(error) => {
            builder.errors.push(error);
            Err(builder.errors)
        }
    }
}

struct Builder<'input> {
    parser: Parser<'input, saphyr_parser::StrInput<'input>>,
    /// Anchored nodes with their size in nodes and their height.
    anchors: HashMap<usize, Anchored>,
    /// Nodes copied by aliases so far, bounded by [`MAX_ALIAS_NODES`].
    alias_nodes: usize,
    errors: Vec<Diagnostic>,
}

/// An anchored node and what copying it costs.
struct Anchored {
    node: Node,
    /// Nodes in its subtree, itself included.
    size: usize,
    /// Levels in its subtree: 1 for a scalar.
    height: usize,
}

/// The size and height of a subtree (see [`Anchored`]).
fn measure(node: &Node) -> (usize, usize) {
    let children: Vec<&Node> = match &node.kind {
        NodeKind::Scalar { .. } => Vec::new(),
        NodeKind::Sequence(items) => items.iter().collect(),
        NodeKind::Mapping(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
    };
    children
        .into_iter()
        .map(measure)
        .fold((1, 1), |(size, height), (s, h)| {
            (size.saturating_add(s), height.max(h + 1))
        })
}

impl<'input> Builder<'input> {
    fn next(&mut self) -> Result<(Event<'input>, Location), Diagnostic> {
        match self.parser.next_event() {
            Some(Ok((event, span))) => Ok((event, location(span.start))),
            Some(Err(error)) => Err(Diagnostic::new(
                location(*error.marker()),
                FieldPath::root(),
                format!("invalid YAML: {}", error.info()),
            )),
            None => Ok((Event::StreamEnd, Location::default())),
        }
    }

    fn document(&mut self) -> Result<Node, Diagnostic> {
        let mut root = None;
        loop {
            let (event, at) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) if root.is_some() => {
                    return Err(Diagnostic::new(
                        at,
                        FieldPath::root(),
                        "expected a single YAML document, found a second one (`---`)",
                    ));
                }
                Event::DocumentStart(_) => {
                    let (event, at) = self.next()?;
                    root = Some(self.node(event, at, &FieldPath::root(), 0)?);
                }
                other => {
                    return Err(Diagnostic::new(
                        at,
                        FieldPath::root(),
                        format!("unexpected YAML event {other:?}"),
                    ));
                }
            }
        }
        Ok(root.unwrap_or(Node {
            kind: NodeKind::Scalar {
                value: String::new(),
                plain: true,
            },
            location: Location { line: 1, column: 1 },
        }))
    }

    fn node(
        &mut self,
        event: Event<'input>,
        at: Location,
        path: &FieldPath,
        depth: usize,
    ) -> Result<Node, Diagnostic> {
        if depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                at,
                path.clone(),
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        let (node, anchor) = match event {
            Event::Scalar(value, style, anchor, tag) => {
                let forced_string = tag.as_ref().is_some_and(|tag| tag.suffix == "str");
                let plain = style == ScalarStyle::Plain && !forced_string;
                (
                    Node {
                        kind: NodeKind::Scalar {
                            value: value.into_owned(),
                            plain,
                        },
                        location: at,
                    },
                    anchor,
                )
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, item_at) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    let item_path = path.index(items.len());
                    items.push(self.node(event, item_at, &item_path, depth + 1)?);
                }
                (
                    Node {
                        kind: NodeKind::Sequence(items),
                        location: at,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (event, key_at) = self.next()?;
                    if event == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(event, key_at, path, depth + 1)?;
                    let key_text = match &key.kind {
                        NodeKind::Scalar { value, .. } => value.clone(),
                        _ => {
                            return Err(Diagnostic::new(
                                key.location,
                                path.clone(),
                                "expected a plain key, found a complex key",
                            ));
                        }
                    };
                    let (event, value_at) = self.next()?;
                    let value =
                        self.node(event, value_at, &path.key(key_text.clone()), depth + 1)?;
                    if entries
                        .iter()
                        .any(|(k, _)| matches!(&k.kind, NodeKind::Scalar { value, .. } if *value == key_text))
                    {
                        self.errors.push(Diagnostic::new(
                            key.location,
                            path.key(key_text.clone()),
                            format!("duplicate key `{key_text}`"),
                        ));
                        continue;
                    }
                    entries.push((key, value));
                }
                (
                    Node {
                        kind: NodeKind::Mapping(entries),
                        location: at,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(anchored) => {
                    if depth + anchored.height > MAX_DEPTH + 1 {
                        return Err(Diagnostic::new(
                            at,
                            path.clone(),
                            format!("this alias nests the document deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    self.alias_nodes = self.alias_nodes.saturating_add(anchored.size);
                    if self.alias_nodes > MAX_ALIAS_NODES {
                        return Err(Diagnostic::new(
                            at,
                            path.clone(),
                            format!(
                                "aliases expand to more than {MAX_ALIAS_NODES} nodes \
                                 (an alias bomb?): refusing to expand them"
                            ),
                        ));
                    }
                    let mut node = anchored.node.clone();
                    node.location = at;
                    return Ok(node);
                }
                None => {
                    return Err(Diagnostic::new(
                        at,
                        path.clone(),
                        "alias refers to an unknown anchor",
                    ));
                }
            },
            other => {
                return Err(Diagnostic::new(
                    at,
                    path.clone(),
                    format!("unexpected YAML event {other:?}"),
                ));
            }
        };
        if anchor != 0 {
            let (size, height) = measure(&node);
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    size,
                    height,
                },
            );
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_one_based_lines_and_columns() {
        let root = parse("models:\n  stable:\n    ttft_ms: 50\n").unwrap();
        let ttft = root.find_nearest(&FieldPath::root().key("models").key("stable").key("ttft_ms"));
        assert_eq!(
            ttft.location,
            Location {
                line: 3,
                column: 14
            }
        );
        assert_eq!(
            ttft.kind,
            NodeKind::Scalar {
                value: "50".into(),
                plain: true
            }
        );
    }

    #[test]
    fn quoted_scalars_are_not_plain() {
        let root = parse("a: '50'\nb: !!str 7\n").unwrap();
        assert!(matches!(
            root.get("a").unwrap().kind,
            NodeKind::Scalar { plain: false, .. }
        ));
        assert!(matches!(
            root.get("b").unwrap().kind,
            NodeKind::Scalar { plain: false, .. }
        ));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let errors = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].location.is_some());
        assert!(errors[0].message.starts_with("invalid YAML"));
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let errors = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(errors[0].message, "duplicate key `a`");
        assert_eq!(errors[0].location, Some(Location { line: 3, column: 1 }));
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let root = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(
            root.get("other").unwrap().get("x").unwrap().kind,
            NodeKind::Scalar {
                value: "1".into(),
                plain: true
            }
        );
    }

    /// Nine levels of nine aliases each: 9^9 (387 million) nodes from a few hundred bytes.
    fn alias_bomb() -> String {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let refs = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{next}: &{next} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_alias_that_crosses_the_budget() {
        let text = alias_bomb();
        assert!(text.len() < 700, "{} bytes", text.len());
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("alias bomb"),
            "{}",
            errors[0].message
        );
        assert!(
            errors[0].location.unwrap().line >= 6,
            "{:?}",
            errors[0].location
        );
    }

    #[test]
    fn reusing_an_anchor_many_times_is_fine() {
        let mut text = String::from("base: &b {provider: x, vars: {a: 1, b: 2}}\ntests:\n");
        for _ in 0..5_000 {
            text.push_str("  - *b\n");
        }
        let root = parse(&text).unwrap();
        assert!(
            matches!(&root.get("tests").unwrap().kind, NodeKind::Sequence(items) if items.len() == 5_000)
        );
    }

    #[test]
    fn an_alias_may_not_nest_past_the_depth_limit() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let text = format!(
            "a: &a {deep}\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
        );
        let errors = parse(&text).unwrap_err();
        assert!(
            errors[0].message.contains("deeper than"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn values_compare_without_their_locations() {
        let a = parse("x: {a: 1, b: [2, \"3\"]}\n").unwrap();
        let b = parse("\n\nx:\n  a: 1\n  b:\n    - 2\n    - \"3\"\n").unwrap();
        let c = parse("x: {a: 1, b: [2, 3]}\n").unwrap();
        assert!(a.get("x").unwrap().same_value(b.get("x").unwrap()));
        assert!(!a.get("x").unwrap().same_value(c.get("x").unwrap()));
    }

    #[test]
    fn an_empty_document_is_null() {
        assert!(parse("").unwrap().is_null());
        assert!(parse("# only a comment\n").unwrap().is_null());
    }

    #[test]
    fn a_second_document_is_an_error() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
