//! What a request log may keep of a request or an answer: the text as a reader would see it,
//! with every secret and piece of personal data replaced by its label.
//!
//! Patterns run on what the text *means*, not on how it was sent: a JSON request is decoded
//! first (so `jane\u0040example.com` is an email), every string is put in Unicode's NFKC form
//! (so full-width digits `４１１１…` are digits), and the strings of a request are also scanned
//! joined together (so a card number split across two message parts is still a card number:
//! each part loses its piece of it).

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::detect::{Finding, scan};

/// The label a finding is replaced with.
fn label(finding: &Finding) -> String {
    if finding.detail == "bearer" {
        format!("Bearer {}", finding.kind.label())
    } else {
        finding.kind.label().to_owned()
    }
}

/// A text put in NFKC form with every finding replaced by its label.
pub fn text_for_log(text: &str) -> String {
    let mut parts = vec![text.nfkc().collect::<String>()];
    redact_parts(&mut parts);
    parts.pop().unwrap_or_default()
}

/// A request body as the log may keep it: JSON decoded, every string in NFKC form with its
/// findings replaced, and the text a user wrote (`content`, `text`, `prompt`, `input`,
/// `arguments`) scanned once more joined in order, for values split across message parts;
/// then written back as JSON. A body that is not JSON is kept as text, with `\uXXXX` escapes
/// decoded first.
pub fn request_for_log(raw: &str) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(mut value) => {
            let mut strings: Vec<(bool, &mut String)> = Vec::new();
            collect_strings(&mut value, false, &mut strings);
            for (_, text) in strings.iter_mut() {
                **text = text_for_log(text);
            }
            let mut written: Vec<&mut String> = strings
                .into_iter()
                .filter_map(|(written, text)| written.then_some(text))
                .collect();
            let mut parts: Vec<String> = written.iter().map(|s| s.to_string()).collect();
            redact_parts(&mut parts);
            for (slot, part) in written.iter_mut().zip(parts) {
                **slot = part;
            }
            value.to_string()
        }
        Err(_) => text_for_log(&unescape(raw)),
    }
}

/// Fields whose strings are text a person or a model wrote.
const WRITTEN: &[&str] = &["content", "text", "prompt", "input", "arguments"];

/// Every string value in document order (keys are not data), marked when it is written text:
/// the value of one of [`WRITTEN`], or an item of an array that is.
fn collect_strings<'a>(value: &'a mut Value, written: bool, out: &mut Vec<(bool, &'a mut String)>) {
    match value {
        Value::String(text) => out.push((written, text)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| collect_strings(v, written, out)),
        Value::Object(map) => map
            .iter_mut()
            .for_each(|(key, v)| collect_strings(v, WRITTEN.contains(&key.as_str()), out)),
        _ => {}
    }
}

/// Replaces the findings of `parts` joined by single spaces: a finding inside one part becomes
/// its label there; one that spans parts leaves its label in the first and removes its
/// pieces from the others.
fn redact_parts(parts: &mut [String]) {
    let joined = parts.join(" ");
    let findings = scan(&joined);
    if findings.is_empty() {
        return;
    }
    let mut edits: Vec<Vec<(usize, usize, String)>> = vec![Vec::new(); parts.len()];
    let mut start = 0;
    let bounds: Vec<(usize, usize)> = parts
        .iter()
        .map(|p| {
            let bound = (start, start + p.len());
            start += p.len() + 1;
            bound
        })
        .collect();
    for finding in &findings {
        let mut first = true;
        for (i, (from, to)) in bounds.iter().enumerate() {
            let (low, high) = (finding.start.max(*from), finding.end.min(*to));
            if low < high {
                let replacement = if first { label(finding) } else { String::new() };
                edits[i].push((low - from, high - from, replacement));
                first = false;
            }
        }
    }
    for (part, edits) in parts.iter_mut().zip(edits) {
        // Findings do not overlap; apply from the end so earlier offsets stay valid.
        for (low, high, replacement) in edits.into_iter().rev() {
            part.replace_range(low..high, &replacement);
        }
    }
}

/// Decodes `\uXXXX` escapes (and JSON's other backslash escapes) in text that is not JSON.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('u') => {
                chars.next();
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => out.push(decoded),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some('n') => {
                chars.next();
                out.push('\n');
            }
            Some('t') => {
                chars.next();
                out.push('\t');
            }
            Some(other @ ('"' | '\\' | '/')) => {
                chars.next();
                out.push(other);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_full_width_and_split_values_are_found() {
        let request = r#"{"messages":[{"role":"user","content":"mail jane\u0040example.com"},{"role":"user","content":[{"type":"text","text":"card 4111 1111 "},{"type":"text","text":"1111 1111 please"}]}]}"#;
        let logged = request_for_log(request);
        assert!(!logged.contains("example.com"), "{logged}");
        assert!(
            !logged.contains("4111") && !logged.contains("1111 please"),
            "{logged}"
        );
        assert!(
            logged.contains("[EMAIL]") && logged.contains("[CARD]"),
            "{logged}"
        );
        assert!(logged.contains(" please"), "the rest is kept: {logged}");
        let wide = text_for_log("pay with ４１１１１１１１１１１１１１１１ now");
        assert_eq!(wide, "pay with [CARD] now");
    }

    #[test]
    fn text_that_is_not_json_is_unescaped_first() {
        let logged = request_for_log(r#"{"broken": "jane\u0040example.com"#);
        assert!(!logged.contains("example.com"), "{logged}");
    }
}
