//! YAML written by Sluice (the CI files `sluice pipeline export` writes, the Kubernetes
//! objects `sluice rollout export` writes): a small value tree emitted in block style with
//! its mappings in the order they were built. Every string that is not a plain word is written
//! double-quoted (JSON escapes), so a value such as `${{ github.ref }}`, `0.05` or `yes` can
//! never be read back as something else.

use std::fmt::Write as _;

/// A YAML value, with its mappings in the order they are written.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping.
    Map(Vec<(String, Yaml)>),
}

/// A string.
pub fn s(text: impl Into<String>) -> Yaml {
    Yaml::Str(text.into())
}

/// A mapping, in this order.
pub fn map(entries: Vec<(&str, Yaml)>) -> Yaml {
    Yaml::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// A sequence of strings.
pub fn seq<T: Into<String>>(items: impl IntoIterator<Item = T>) -> Yaml {
    Yaml::Seq(items.into_iter().map(|i| Yaml::Str(i.into())).collect())
}

/// `text` as a YAML scalar: plain when it cannot be read as anything but that string,
/// double-quoted (JSON escapes) otherwise.
pub fn scalar(text: &str) -> String {
    const WORDS: [&str; 12] = [
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", "", "<<",
    ];
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !text.starts_with(['-', '.'])
        && !WORDS.contains(&text.to_lowercase().as_str())
        && text.parse::<f64>().is_err()
        && !text.starts_with(|c: char| c.is_ascii_digit());
    if plain { text.to_owned() } else { quoted(text) }
}

impl Yaml {
    fn inline(&self) -> Option<String> {
        match self {
            Yaml::Str(text) => Some(scalar(text)),
            Yaml::Int(n) => Some(n.to_string()),
            Yaml::Bool(b) => Some(b.to_string()),
            Yaml::Seq(items) if items.is_empty() => Some("[]".to_owned()),
            Yaml::Map(entries) if entries.is_empty() => Some("{}".to_owned()),
            _ => None,
        }
    }

    /// Writes it in block style at `indent` spaces.
    pub fn emit(&self, out: &mut String, indent: usize) {
        let pad = " ".repeat(indent);
        match self {
            Yaml::Map(entries) if !entries.is_empty() => {
                for (key, value) in entries {
                    match value.inline() {
                        Some(text) => {
                            let _ = writeln!(out, "{pad}{}: {text}", scalar(key));
                        }
                        None => {
                            let _ = writeln!(out, "{pad}{}:", scalar(key));
                            value.emit(out, indent + 2);
                        }
                    }
                }
            }
            Yaml::Seq(items) if !items.is_empty() => {
                for item in items {
                    match item.inline() {
                        Some(text) => {
                            let _ = writeln!(out, "{pad}- {text}");
                        }
                        None => {
                            let mut inner = String::new();
                            item.emit(&mut inner, indent + 2);
                            out.push_str(&pad);
                            out.push_str("- ");
                            out.push_str(&inner[indent + 2..]);
                        }
                    }
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{}", other.inline().unwrap_or_default());
            }
        }
    }
}

/// A YAML double-quoted scalar (the escapes JSON shares with YAML).
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl std::fmt::Display for Yaml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.emit(&mut out, 0);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_could_be_read_as_something_else_are_quoted() {
        let doc = map(vec![
            ("plain", s("chat-canary")),
            ("number", s("0.05")),
            ("word", s("yes")),
            ("expression", s("${{ github.ref }} \"x\"\n\\")),
            ("count", Yaml::Int(3)),
            ("empty", map(vec![])),
            (
                "items",
                Yaml::Seq(vec![map(vec![("a", s("b")), ("c", seq(["d"]))]), s("e")]),
            ),
        ]);
        assert_eq!(
            doc.to_string(),
            "plain: chat-canary\nnumber: \"0.05\"\nword: \"yes\"\nexpression: \"${{ github.ref }} \\\"x\\\"\\n\\\\\"\ncount: 3\nempty: {}\nitems:\n  - a: b\n    c:\n      - d\n  - e\n"
        );
    }
}
