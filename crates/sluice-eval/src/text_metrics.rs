//! Text-overlap and structure checks: ROUGE-N, BLEU, XML well-formedness and JSON Schema.

use std::collections::HashMap;

use serde_json::Value;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if n > 0 && tokens.len() >= n {
        for window in tokens.windows(n) {
            *counts.entry(window).or_insert(0) += 1;
        }
    }
    counts
}

/// ROUGE-N recall: the share of the reference's n-grams found in the candidate (clipped).
pub fn rouge_n(candidate: &str, reference: &str, n: usize) -> f64 {
    let (candidate, reference) = (words(candidate), words(reference));
    let (candidate, reference) = (ngrams(&candidate, n), ngrams(&reference, n));
    let total: usize = reference.values().sum();
    if total == 0 {
        return 0.0;
    }
    let overlap: usize = reference
        .iter()
        .map(|(gram, count)| (*count).min(candidate.get(gram).copied().unwrap_or(0)))
        .sum();
    overlap as f64 / total as f64
}

/// Sentence BLEU-4 with uniform weights and the brevity penalty, against one or more references;
/// 0 when some n-gram order has no match (no smoothing).
pub fn bleu(candidate: &str, references: &[String]) -> f64 {
    let candidate = words(candidate);
    let references: Vec<Vec<String>> = references.iter().map(|r| words(r)).collect();
    if candidate.is_empty() || references.iter().all(Vec::is_empty) {
        return 0.0;
    }
    let mut log_precision = 0.0;
    for n in 1..=4 {
        let counts = ngrams(&candidate, n);
        let total: usize = counts.values().sum();
        if total == 0 {
            return 0.0;
        }
        let reference_counts: Vec<HashMap<&[String], usize>> =
            references.iter().map(|r| ngrams(r, n)).collect();
        let clipped: usize = counts
            .iter()
            .map(|(gram, count)| {
                (*count).min(
                    reference_counts
                        .iter()
                        .map(|r| r.get(gram).copied().unwrap_or(0))
                        .max()
                        .unwrap_or(0),
                )
            })
            .sum();
        if clipped == 0 {
            return 0.0;
        }
        log_precision += (clipped as f64 / total as f64).ln() / 4.0;
    }
    let c = candidate.len() as f64;
    let r = references
        .iter()
        .map(|r| r.len() as f64)
        .min_by(|a, b| (a - c).abs().total_cmp(&(b - c).abs()))
        .unwrap_or(c);
    let brevity = if c >= r { 1.0 } else { (1.0 - r / c).exp() };
    brevity * log_precision.exp()
}

/// Whether `text` is one well-formed XML document holding every `required` element path
/// (`root.child.grandchild`).
pub fn check_xml(text: &str, required: &[String]) -> Result<(), String> {
    let document =
        roxmltree::Document::parse(text.trim()).map_err(|e| format!("not well-formed XML: {e}"))?;
    for path in required {
        let mut parts = path.split('.');
        let root = document.root_element();
        if parts.next() != Some(root.tag_name().name()) {
            return Err(format!(
                "missing element `{path}` (the root is `{}`)",
                root.tag_name().name()
            ));
        }
        let mut nodes = vec![root];
        for part in parts {
            nodes = nodes
                .iter()
                .flat_map(|n| {
                    n.children()
                        .filter(|c| c.is_element() && c.tag_name().name() == part)
                })
                .collect();
            if nodes.is_empty() {
                return Err(format!("missing element `{path}`"));
            }
        }
    }
    Ok(())
}

/// The first embedded XML element in `text` that is well formed and holds `required`.
pub fn find_xml(text: &str, required: &[String]) -> Result<(), String> {
    let mut last_error = "no XML element found".to_owned();
    for (start, _) in text.match_indices('<') {
        let rest = &text[start + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '.'))
            .collect();
        if name.is_empty() {
            continue;
        }
        let closing = format!("</{name}>");
        let candidates = text[start..]
            .match_indices(&closing)
            .map(|(i, _)| start + i + closing.len())
            .collect::<Vec<_>>();
        let self_closing = rest.find("/>").map(|i| start + 1 + i + 2).into_iter();
        for end in candidates.into_iter().rev().chain(self_closing) {
            match check_xml(&text[start..end], required) {
                Ok(()) => return Ok(()),
                Err(error) => last_error = error,
            }
        }
    }
    Err(last_error)
}

/// Compiles a JSON Schema (draft inferred from `$schema`, else the newest).
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("invalid JSON Schema: {e}"))
}

/// Checks `instance` against `schema`; the error names the first violation and where it is.
pub fn check_schema(schema: &Value, instance: &Value) -> Result<(), String> {
    let validator = compile_schema(schema)?;
    match validator.iter_errors(instance).next() {
        None => Ok(()),
        Some(error) => {
            let at = error.instance_path().to_string();
            Err(format!(
                "does not match the schema at `{}`: {error}",
                if at.is_empty() { "/" } else { &at }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rouge_counts_clipped_reference_ngrams() {
        assert_eq!(rouge_n("the cat sat", "the cat sat", 1), 1.0);
        assert!((rouge_n("the cat", "the cat sat down", 1) - 0.5).abs() < 1e-12);
        assert!((rouge_n("the the the", "the cat", 1) - 0.5).abs() < 1e-12);
        assert_eq!(rouge_n("anything", "", 1), 0.0);
    }

    #[test]
    fn bleu_is_one_for_a_copy_and_penalizes_brevity_and_mismatch() {
        let reference = vec!["the quick brown fox jumps over the lazy dog".to_owned()];
        assert!(
            (bleu("the quick brown fox jumps over the lazy dog", &reference) - 1.0).abs() < 1e-12
        );
        let short = bleu("the quick brown fox jumps", &reference);
        assert!(short > 0.0 && short < 0.7, "{short}");
        assert_eq!(bleu("completely different words here now", &reference), 0.0);
    }

    #[test]
    fn xml_is_checked_whole_and_embedded_with_required_elements() {
        assert!(check_xml("<a><b>1</b></a>", &[]).is_ok());
        assert!(check_xml("<a><b>1</a>", &[]).is_err());
        assert!(check_xml("<a><b><c/></b></a>", &["a.b.c".to_owned()]).is_ok());
        assert!(check_xml("<a><b/></a>", &["a.c".to_owned()]).is_err());
        assert!(
            find_xml(
                "Here you go: <note><to>Ada</to></note> enjoy",
                &["note.to".to_owned()]
            )
            .is_ok()
        );
        assert!(find_xml("no markup at all", &[]).is_err());
    }

    #[test]
    fn schemas_validate_and_name_the_violation() {
        let schema = json!({"type": "object", "required": ["name"], "properties": {"age": {"type": "integer"}}});
        assert!(check_schema(&schema, &json!({"name": "Ada", "age": 36})).is_ok());
        let error = check_schema(&schema, &json!({"name": "Ada", "age": "old"})).unwrap_err();
        assert!(error.contains("/age"), "{error}");
        assert!(compile_schema(&json!({"type": 12})).is_err());
    }
}
