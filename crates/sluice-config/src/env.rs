//! `${VAR}` interpolation in scalar values, reading the environment through [`EnvSource`].
//!
//! Forms: `${NAME}` (an error when unset), `${NAME:-default}` (default when unset or empty),
//! and `$${` for a literal `${`. Only scalar *values* are interpolated, never keys.

use std::collections::HashMap;

use crate::yaml::{Node, NodeKind};
use crate::{Diagnostic, FieldPath};

/// Where environment variables come from; tests pass a [`MapEnv`].
pub trait EnvSource {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub HashMap<String, String>);

impl EnvSource for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Interpolates every scalar value under `node`, returning one diagnostic per bad reference.
pub fn interpolate(node: &mut Node, env: &dyn EnvSource) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    walk(node, &FieldPath::root(), env, &mut errors);
    errors
}

fn walk(node: &mut Node, path: &FieldPath, env: &dyn EnvSource, errors: &mut Vec<Diagnostic>) {
    match &mut node.kind {
        NodeKind::Scalar { value, .. } => {
            if value.contains('$') {
                match expand(value, env) {
                    Ok(expanded) => *value = expanded,
                    Err(error) => errors.push(Diagnostic::new(
                        node.location,
                        path.clone(),
                        error.to_string(),
                    )),
                }
            }
        }
        NodeKind::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(index), env, errors);
            }
        }
        NodeKind::Mapping(entries) => {
            for (key, value) in entries.iter_mut() {
                let key_text = match &key.kind {
                    NodeKind::Scalar { value, .. } => value.clone(),
                    _ => String::new(),
                };
                walk(value, &path.key(key_text), env, errors);
            }
        }
    }
}

/// A reference that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${` without its `}`.
    #[error("unterminated `${{` in {0:?}: expected `${{NAME}}`")]
    Unterminated(String),
    /// A name with other characters than letters, digits and `_`.
    #[error(
        "invalid variable name {name:?} in `${{{reference}}}`: expected letters, digits and `_`"
    )]
    BadName {
        /// The name.
        name: String,
        /// The whole reference.
        reference: String,
    },
    /// An unset variable without a default.
    #[error("environment variable `{0}` is not set (write `${{{0}:-default}}` to give a default)")]
    Unset(String),
}

/// Expands the references in one string.
pub fn expand(text: &str, env: &dyn EnvSource) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let Some(end) = body.find('}') else {
                return Err(ExpandError::Unterminated(text.to_owned()));
            };
            let reference = &body[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ExpandError::BadName {
                    name: name.to_owned(),
                    reference: reference.to_owned(),
                });
            }
            match (env.var(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(ExpandError::Unset(name.to_owned()));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> MapEnv {
        MapEnv(HashMap::from([
            ("HOST".to_owned(), "localhost".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]))
    }

    #[test]
    fn references_expand_with_defaults_and_escapes() {
        assert_eq!(
            expand("http://${HOST}:8000", &env()).unwrap(),
            "http://localhost:8000"
        );
        assert_eq!(expand("${PORT:-8000}", &env()).unwrap(), "8000");
        assert_eq!(expand("${EMPTY:-x}", &env()).unwrap(), "x");
        assert_eq!(
            expand("cost $5 and $${HOST}", &env()).unwrap(),
            "cost $5 and ${HOST}"
        );
    }

    #[test]
    fn unset_and_malformed_references_are_errors() {
        assert!(
            expand("${MISSING}", &env())
                .unwrap_err()
                .to_string()
                .contains("`MISSING` is not set")
        );
        assert!(
            expand("${HOST", &env())
                .unwrap_err()
                .to_string()
                .contains("unterminated")
        );
        assert!(
            expand("${a-b}", &env())
                .unwrap_err()
                .to_string()
                .contains("invalid variable name")
        );
    }

    #[test]
    fn interpolation_reports_the_scalar_location() {
        let mut root = crate::yaml::parse("a:\n  b: ${NOPE}\n").unwrap();
        let errors = interpolate(&mut root, &env());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path.to_string(), "a.b");
        assert_eq!(errors[0].location.map(|l| l.line), Some(2));
    }
}
