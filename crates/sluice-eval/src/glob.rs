//! File globs in configuration files (`file://tests/*.csv`, `file://cases/**/*.jsonl`): `*` and
//! `?` within a name, `[abc]` / `[a-z]` / `[!a]` classes, `**` for any depth of directories and
//! `{a,b}` alternatives. Matches are files only, sorted, so a suite's order never depends on
//! the file system.

use std::path::{Path, PathBuf};

/// Whether `pattern` holds glob syntax (else it names one file).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// The files under `base` that `pattern` (relative to `base`, `/`-separated) matches, sorted.
/// Directories that cannot be read are skipped; a pattern with unbalanced braces is an error.
pub fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for alternative in braces(pattern)? {
        let parts: Vec<&str> = alternative.split('/').filter(|p| !p.is_empty()).collect();
        let start = if alternative.starts_with('/') {
            PathBuf::from("/")
        } else {
            base.to_path_buf()
        };
        walk(&start, &parts, &mut found);
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn walk(dir: &Path, parts: &[&str], found: &mut Vec<PathBuf>) {
    let Some((first, rest)) = parts.split_first() else {
        if dir.is_file() {
            found.push(dir.to_path_buf());
        }
        return;
    };
    match *first {
        "**" => {
            // Zero directories, then each subdirectory at any depth.
            walk(dir, rest, found);
            for entry in entries(dir).into_iter().filter(|p| p.is_dir()) {
                walk(&entry, parts, found);
            }
        }
        "." => walk(dir, rest, found),
        ".." => walk(&dir.join(".."), rest, found),
        part if !is_glob(part) => walk(&dir.join(part), rest, found),
        part => {
            for entry in entries(dir) {
                let name = entry
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Hidden files match only a pattern that starts with a dot.
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if matches(part.as_bytes(), name.as_bytes()) {
                    walk(&entry, rest, found);
                }
            }
        }
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|read| read.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Expands `{a,b}` alternatives (nested allowed) into plain patterns.
fn braces(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(format!("unbalanced `}}` in glob `{pattern}`"));
        }
        return Ok(vec![pattern.to_owned()]);
    };
    let mut depth = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, c) in pattern[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(open + i),
            _ => {}
        }
    }
    let close = close.ok_or_else(|| format!("unbalanced `{{` in glob `{pattern}`"))?;
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    let mut out = Vec::new();
    for pair in bounds.windows(2) {
        let choice = &pattern[pair[0] + 1..pair[1]];
        out.extend(braces(&format!("{head}{choice}{tail}"))?);
    }
    Ok(out)
}

/// Matches one path component against a pattern of `*`, `?` and `[...]`.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the name position it is currently standing for.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class(&pattern[p..], name[n]) {
                Some((hit, len)) => hit.then_some(p + len),
                None => (name[n] == b'[').then_some(p + 1),
            },
            Some(c) if *c == name[n] => Some(p + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                n += 1;
            }
            (None, Some((star_p, star_n))) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Whether `c` is in the class at the start of `pattern` (`[...]`), and the class's length.
/// An unterminated `[` is no class.
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let end = pattern.iter().skip(2).position(|b| *b == b']')? + 2;
    let body = &pattern[1..end];
    let (negated, body) = match body.first() {
        Some(b'!' | b'^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut hit = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == b'-' {
            hit |= (body[i]..=body[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= body[i] == c;
            i += 1;
        }
    }
    Some((hit != negated, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_match_stars_marks_and_classes() {
        let m = |p: &str, n: &str| matches(p.as_bytes(), n.as_bytes());
        assert!(m("*.csv", "tests.csv"));
        assert!(!m("*.csv", "tests.csv.bak"));
        assert!(m("t?sts.*", "tests.jsonl"));
        assert!(m("case[0-9].yaml", "case7.yaml"));
        assert!(!m("case[!0-9].yaml", "case7.yaml"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("*", ""));
        assert!(m("[ab]]", "a]"));
    }

    #[test]
    fn braces_expand_to_alternatives() {
        assert_eq!(
            braces("t/{a,b{1,2}}.csv").unwrap(),
            ["t/a.csv", "t/b1.csv", "t/b2.csv"]
        );
        assert!(braces("t/{a,b.csv").is_err());
    }

    #[test]
    fn expand_walks_directories_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |p: &str| {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        };
        for p in [
            "b.csv",
            "a.csv",
            "x.jsonl",
            ".hidden.csv",
            "deep/c.csv",
            "deep/er/d.csv",
        ] {
            touch(p);
        }
        let names = |pattern: &str| -> Vec<String> {
            expand(dir.path(), pattern)
                .unwrap()
                .iter()
                .map(|p| {
                    p.strip_prefix(dir.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(names("*.csv"), ["a.csv", "b.csv"]);
        assert_eq!(
            names("**/*.csv"),
            ["a.csv", "b.csv", "deep/c.csv", "deep/er/d.csv"]
        );
        assert_eq!(names("{x.jsonl,deep/*.csv}"), ["deep/c.csv", "x.jsonl"]);
        assert!(names("*.yaml").is_empty());
    }
}
