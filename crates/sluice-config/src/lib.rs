//! The config compiler shared by every YAML file Sluice reads.
//!
//! A file goes through three steps: YAML text → a spanned [`Node`] tree ([`yaml`]), `${VAR}`
//! interpolation on its scalars ([`env`]), then deserialization into the caller's raw serde
//! structs ([`de`]). Deserialization does not stop at the first problem: unknown fields, wrong
//! types, unknown enum variants and missing fields are all collected, each with file, line,
//! column, field path and what was expected. Callers then run their own semantic checks against
//! the kept [`Document`] (which can tell the span of any path) and report everything at once.

#![deny(unsafe_code)]

pub mod de;
mod duration;
pub mod emit;
pub mod env;
mod error;
mod path;
pub mod yaml;

use std::path::Path;

pub use duration::{DurationError, parse_duration};
pub use env::{EnvSource, ExpandError, MapEnv, ProcessEnv};
pub use error::{Diagnostic, Diagnostics, Location};
pub use path::FieldPath;
pub use yaml::{Node, NodeKind};

use serde::de::DeserializeOwned;

/// A parsed, interpolated YAML document with the name of the file it came from.
#[derive(Debug, Clone)]
pub struct Document {
    name: String,
    root: Node,
}

impl Document {
    /// Parses `text` (named `name` in diagnostics) and interpolates `${VAR}` references from `env`.
    pub fn parse(name: &str, text: &str, env: &dyn EnvSource) -> Result<Self, Diagnostics> {
        let mut root = yaml::parse(text).map_err(|errors| Diagnostics::in_file(name, errors))?;
        let errors = env::interpolate(&mut root, env);
        if !errors.is_empty() {
            return Err(Diagnostics::in_file(name, errors));
        }
        Ok(Self {
            name: name.to_owned(),
            root,
        })
    }

    /// Parses `text` without `${VAR}` interpolation, for files whose values are read by a
    /// shell or by their own template language (a pipeline's commands).
    pub fn parse_literal(name: &str, text: &str) -> Result<Self, Diagnostics> {
        let root = yaml::parse(text).map_err(|errors| Diagnostics::in_file(name, errors))?;
        Ok(Self {
            name: name.to_owned(),
            root,
        })
    }

    /// Reads a file as [`Document::parse_literal`] does.
    pub fn read_literal(path: &Path) -> Result<Self, Diagnostics> {
        let name = path.display().to_string();
        let text = read_text(path).map_err(|error| Diagnostics::in_file(&name, vec![error]))?;
        Self::parse_literal(&name, &text)
    }

    /// Reads and parses a file; a missing or unreadable file is a diagnostic naming the path.
    pub fn read(path: &Path, env: &dyn EnvSource) -> Result<Self, Diagnostics> {
        let name = path.display().to_string();
        let text = read_text(path).map_err(|error| Diagnostics::in_file(&name, vec![error]))?;
        Self::parse(&name, &text, env)
    }

    /// The file name used in diagnostics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root node.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// The root node, for rewriting shorthand forms into their long form before
    /// deserializing (locations are kept).
    pub fn root_mut(&mut self) -> &mut Node {
        &mut self.root
    }

    /// Where the value at `path` starts, or where its nearest existing ancestor starts.
    pub fn location(&self, path: &FieldPath) -> Location {
        self.root.find_nearest(path).location()
    }

    /// Deserializes the document into `T`, collecting every error.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, Diagnostics> {
        de::from_node(&self.root).map_err(|errors| Diagnostics::in_file(&self.name, errors))
    }

    /// A diagnostic for `path` in this document (for semantic checks after deserialization).
    pub fn error_at(&self, path: &FieldPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.location(path), path.clone(), message)
    }

    /// Wraps diagnostics produced by semantic checks with this document's file name.
    pub fn diagnostics(&self, errors: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics::in_file(&self.name, errors)
    }
}

/// The largest config or test file read: past this a file is refused rather than loaded.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a text file people wrote: at most [`MAX_FILE_BYTES`], and UTF-8, with the line and
/// column of the first byte that is not (the diagnostic carries no file name; callers add it).
pub fn read_text(path: &Path) -> Result<String, Diagnostic> {
    use std::io::Read as _;
    let unreadable =
        |err: std::io::Error| Diagnostic::without_location(format!("cannot read file: {err}"));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Diagnostic::without_location(format!(
            "the file is larger than {} MiB: refusing to load it",
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        let valid = &error.as_bytes()[..offset];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        Diagnostic::new(
            Location { line, column },
            FieldPath::root(),
            format!(
                "invalid UTF-8 at byte {offset} (0x{:02x}): expected UTF-8 text",
                error.as_bytes()[offset]
            ),
        )
    })
}

/// Reads, interpolates and deserializes a YAML file in one call.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    env: &dyn EnvSource,
) -> Result<(T, Document), Diagnostics> {
    let document = Document::read(path, env)?;
    let value = document.deserialize()?;
    Ok((value, document))
}

/// The candidate in `candidates` closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            (
                edit_distance(&word_lower, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, candidate)| *distance <= (candidate.len().max(word.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars (also used for fuzzy matching outside configs).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_pick_the_closest_candidate_within_reach() {
        assert_eq!(
            did_you_mean("tokens_per_secnd", ["ttft_ms", "tokens_per_second"]),
            Some("tokens_per_second")
        );
        assert_eq!(did_you_mean("TTFT_MS", ["ttft_ms"]), Some("ttft_ms"));
        assert_eq!(did_you_mean("zzzzzz", ["ttft_ms", "script"]), None);
    }

    #[test]
    fn invalid_utf8_is_located_by_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, b"a: 1\nname: caf\xe9 ok\n").unwrap();
        let error = read_text(&path).unwrap_err();
        assert_eq!(
            error.location,
            Some(Location {
                line: 2,
                column: 10
            })
        );
        assert!(error.message.contains("byte 14"), "{}", error.message);
        let diagnostics = Document::read(&path, &MapEnv::default()).unwrap_err();
        assert!(diagnostics.to_string().contains(":2:10"), "{diagnostics}");
    }
}
